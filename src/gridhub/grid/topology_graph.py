"""Explain a topology: its loops, its oddities, its size; and hand it to networkx.

The domain answers *whether* a grid is radial; operators and services need *why not* (which
loop, through which branches), a review list of what looks wrong before a service trusts the
model, and, for reconfiguration (G6, a minimum spanning tree over current-weighted lines), the
grid as a networkx graph. networkx is imported by :func:`to_networkx` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gridhub.domain.topology import HIERARCHY, NodeKind, SwitchTarget, Topology

_RANK = {kind: rank for rank, kind in enumerate(HIERARCHY)}


class IssueCode(StrEnum):
    LOOP = "loop"  # a closed path of conducting branches
    PARALLEL_FEED = "parallel_feed"  # a conducting path from one supply root to another
    UNSUPPLIED = "unsupplied"  # an in-service node no supply root reaches
    NO_SUPPLY_ROOT = "no_supply_root"  # no source, no substation: nothing to walk from
    HIERARCHY = "hierarchy"  # e.g. an LV feeder fed through a connection point
    VOLTAGE_MISMATCH = "voltage_mismatch"  # a line or coupler joining different voltages


@dataclass(frozen=True, slots=True)
class Loop:
    """A closed path; opening ``branch`` (the one the walk met last) breaks it. With
    ``between_sources`` the path runs from one supply root to another instead."""

    branch: str
    nodes: tuple[str, ...]
    branches: tuple[str, ...]
    between_sources: bool = False


@dataclass(frozen=True, slots=True)
class TopologyIssue:
    code: IssueCode
    element: str
    detail: str


def find_loops(topology: Topology) -> tuple[Loop, ...]:
    """Each loop the conducting branches close: the two ends' paths up to their nearest common
    node, and the closing branch (one loop per closing branch: a basis of the cycles)."""
    loops = []
    for branch, a, b in topology.loop_branches():
        up_a, up_b = topology.supply_path(a), topology.supply_path(b)
        common = set(up_a.nodes) & set(up_b.nodes)
        cut_a = next((i for i, n in enumerate(up_a.nodes) if n in common), len(up_a.nodes) - 1)
        meet = up_a.nodes[cut_a]
        between = meet not in common
        cut_b = len(up_b.nodes) - 1 if between else up_b.nodes.index(meet)
        side_b = up_b.nodes[: cut_b + (1 if between else 0)]
        nodes = (*up_a.nodes[: cut_a + 1], *reversed(side_b))
        branches = (*up_a.edges[:cut_a], *reversed(up_b.edges[:cut_b]), branch)
        loops.append(Loop(branch, nodes, branches, between))
    return tuple(loops)


def check_topology(topology: Topology) -> tuple[TopologyIssue, ...]:
    """What looks electrically wrong, for the operator to review before services rely on it.
    Never raises: a grid under construction is allowed to be odd."""
    issues: list[TopologyIssue] = []
    if not topology.supply_roots:
        issues.append(TopologyIssue(IssueCode.NO_SUPPLY_ROOT, topology.name, "nothing feeds it"))
    for loop in find_loops(topology):
        code = IssueCode.PARALLEL_FEED if loop.between_sources else IssueCode.LOOP
        issues.append(TopologyIssue(code, loop.branch, "through " + " - ".join(loop.nodes)))
    issues += [
        TopologyIssue(IssueCode.UNSUPPLIED, node, "no supply root reaches it")
        for node in topology.unsupplied()
    ]
    # the nearest ranked node above a ranked node must not rank below it
    nearest_ranked: dict[str, str | None] = {}
    order = list(topology.supply_roots)
    for node_id in order:  # breadth-first: a parent is always settled before its children
        order.extend(topology.children(node_id))
        above = topology.parent(node_id)
        if above is not None and topology.node(above).kind not in _RANK:
            above = nearest_ranked[above]
        kind = topology.node(node_id).kind
        nearest_ranked[node_id] = node_id if kind in _RANK else above
        if above is not None and kind in _RANK:
            above_kind = topology.node(above).kind
            if _RANK[above_kind] > _RANK[kind]:
                detail = f"{kind} fed through {above_kind} {above!r}"
                issues.append(TopologyIssue(IssueCode.HIERARCHY, node_id, detail))
    joins = [(line.id, line.from_node, line.to_node) for line in topology.lines]
    joins += [
        (s.id, s.node, s.target) for s in topology.switches if s.target_kind is SwitchTarget.NODE
    ]
    for element, a, b in joins:
        va, vb = topology.node(a).vn_kv, topology.node(b).vn_kv
        if abs(va - vb) > 0.01 * max(va, vb):
            detail = f"joins {a!r} at {va} kV to {b!r} at {vb} kV"
            issues.append(TopologyIssue(IssueCode.VOLTAGE_MISMATCH, element, detail))
    return tuple(issues)


def topology_counts(topology: Topology) -> dict[str, int]:
    """Element counts and nodes per kind: what an import reports."""
    counts = {
        "nodes": len(topology.nodes), "lines": len(topology.lines),
        "transformers": len(topology.transformers), "switches": len(topology.switches),
        "sources": len(topology.sources), "loads": len(topology.loads),
        "generators": len(topology.generators), "devices": len(topology.devices),
        "sites": len(topology.sites),
    }  # fmt: skip
    for kind in NodeKind:
        counts[kind.value] = len(topology.nodes_of_kind(kind))
    return counts


def to_networkx(topology: Topology, *, conducting_only: bool = True) -> Any:
    """A ``networkx.MultiGraph``: nodes carry ``kind`` and ``vn_kv``; each branch is an edge
    keyed by its id with ``element`` (line, transformer, switch), ``r_ohm``, ``x_ohm``,
    ``length_km`` (lines), ``switches`` (ids of the switches on it) and ``closed`` (all of them
    closed). ``conducting_only=False`` keeps open and out-of-service branches too, which is what
    a reconfiguration search needs to consider."""
    import networkx as nx

    graph = nx.MultiGraph(name=topology.name)
    for node in topology.nodes:
        if node.in_service or not conducting_only:
            graph.add_node(node.id, kind=node.kind.value, vn_kv=node.vn_kv)
    on: dict[str, list[str]] = {}
    for s in topology.switches:
        if s.target_kind is not SwitchTarget.NODE:
            on.setdefault(s.target, []).append(s.id)
    closed = {s.id: s.closed for s in topology.switches}
    edges: list[tuple[str, str, str, dict[str, Any]]] = []
    for line in topology.lines:
        attrs = {"element": "line", "r_ohm": line.r_ohm, "x_ohm": line.x_ohm}
        attrs |= {"length_km": line.length_km, "in_service": line.in_service}
        edges.append((line.id, line.from_node, line.to_node, attrs))
    for t in topology.transformers:
        attrs = {"element": "transformer", "in_service": t.in_service}
        edges.append((t.id, t.hv_node, t.lv_node, attrs))
    for s in topology.switches:
        if s.target_kind is SwitchTarget.NODE:
            attrs = {"element": "switch", "r_ohm": 0.0, "x_ohm": 0.0, "in_service": True}
            edges.append((s.id, s.node, s.target, attrs))
    for branch, a, b, attrs in edges:
        switches = on.get(branch, [branch] if attrs["element"] == "switch" else [])
        attrs |= {"switches": tuple(switches), "closed": all(closed[s] for s in switches)}
        live = attrs["in_service"] and attrs["closed"] and a in graph and b in graph
        if live or not conducting_only:
            graph.add_edge(a, b, key=branch, **attrs)
    return graph
