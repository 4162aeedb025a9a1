"""Grid topology (P5): the pure model the grid services reason on.

A bus-branch graph. Nodes have a *kind* placing them in the DSO's hierarchy — primary substation →
MV feeder → secondary substation → LV feeder → connection point — or are plain buses. Branches are
lines (series impedance, length), transformers and bus-bus switches; switches on lines or
transformers open them. Sources, loads and generators are what a load flow needs; devices and
sites (households) are attached to nodes by ``hardwareId`` and site id, which is how a last gasp,
a reading or a sensor report lands on the grid. Single-phase (positive-sequence) equivalent.

Why the queries live here: every service asks the same few — which LV feeder and substation feed
this meter (G1, G4, G9), which meters are below this node (G1, G4, G7), what lies between two
sensors (G2, G3), is the grid radial with these switch states (G6) — and they are breadth-first
walks from the *supply roots* (nodes with an in-service source; without sources, the primary
substations, else the secondary ones) over *conducting* branches (in service, both nodes in
service, every switch on them closed; the walk itself is :mod:`gridhub.domain.topology_walk`).
On a meshed grid they still answer (paths of fewest hops) and :meth:`Topology.loop_branches`
names the branches closing loops (``grid.topology_graph`` explains them). Structural faults
(duplicate ids, unknown nodes, non-finite numbers) raise :class:`~gridhub.errors.InvalidRequest`:
nothing can be answered on such a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from gridhub.domain.topology_walk import Walk, walk
from gridhub.domain.validation import ID_PATTERN
from gridhub.errors import InvalidRequest, NotFound

MAX_ID_LENGTH = 128
MAX_PROBLEMS_SHOWN = 20


class NodeKind(StrEnum):
    PRIMARY_SUBSTATION = "primary_substation"
    MV_FEEDER = "mv_feeder"
    SECONDARY_SUBSTATION = "secondary_substation"
    LV_FEEDER = "lv_feeder"
    CONNECTION_POINT = "connection_point"
    BUS = "bus"


HIERARCHY: tuple[NodeKind, ...] = tuple(NodeKind)[:5]
"""The kinds from the top of the hierarchy down; ``BUS`` has no rank."""
_RANK = {kind: rank for rank, kind in enumerate(HIERARCHY)}


class SwitchTarget(StrEnum):
    LINE = "line"
    TRANSFORMER = "transformer"
    NODE = "node"  # a bus-bus switch (coupler, breaker between busbars)


def _check_id(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(f"{what} must be a string of 1..{MAX_ID_LENGTH} characters")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{what} {value[:64]!r} may hold only letters, digits and . _ : @ -")


def _check_num(what: str, value: float, *, low: float | None = None, above: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{what} must be a finite number, got {value!r}")
    if low is not None and (value <= low if above else value < low):
        raise InvalidRequest(f"{what} must be {'>' if above else '>='} {low}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    vn_kv: float
    kind: NodeKind = NodeKind.BUS
    name: str = ""
    in_service: bool = True

    def __post_init__(self) -> None:
        _check_id("node id", self.id)
        _check_num(f"node {self.id!r}: vn_kv", self.vn_kv, low=0.0, above=True)


@dataclass(frozen=True, slots=True)
class Line:
    """A line or cable with its total series impedance (ohm) and shunt capacitance (nF)."""

    id: str
    from_node: str
    to_node: str
    r_ohm: float
    x_ohm: float
    length_km: float = 0.0  # 0: not known
    c_nf: float = 0.0
    g_us: float = 0.0
    max_i_ka: float | None = None
    in_service: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_id("line id", self.id)
        what = f"line {self.id!r}"
        for name in ("r_ohm", "length_km", "c_nf", "g_us"):
            _check_num(f"{what}: {name}", getattr(self, name), low=0.0)
        _check_num(f"{what}: x_ohm", self.x_ohm)
        if self.max_i_ka is not None:
            _check_num(f"{what}: max_i_ka", self.max_i_ka, low=0.0, above=True)
        if self.from_node == self.to_node:
            raise InvalidRequest(f"{what} starts and ends at node {self.from_node!r}")

    @property
    def impedance(self) -> complex:
        return complex(self.r_ohm, self.x_ohm)


@dataclass(frozen=True, slots=True)
class TapChanger:
    side: Literal["hv", "lv"]
    position: float = 0.0
    neutral: float = 0.0
    min: float = 0.0
    max: float = 0.0
    step_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Transformer:
    """A two-winding transformer, in the short-circuit-test data load flows take."""

    id: str
    hv_node: str
    lv_node: str
    sn_mva: float
    vn_hv_kv: float
    vn_lv_kv: float
    vk_percent: float
    vkr_percent: float
    pfe_kw: float = 0.0
    i0_percent: float = 0.0
    shift_degree: float = 0.0
    tap: TapChanger | None = None
    in_service: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_id("transformer id", self.id)
        what = f"transformer {self.id!r}"
        for name in ("sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent"):
            _check_num(f"{what}: {name}", getattr(self, name), low=0.0, above=True)
        for name in ("vkr_percent", "pfe_kw", "i0_percent"):
            _check_num(f"{what}: {name}", getattr(self, name), low=0.0)
        _check_num(f"{what}: shift_degree", self.shift_degree)
        if self.vkr_percent > self.vk_percent:
            raise InvalidRequest(f"{what}: vkr_percent must not exceed vk_percent")
        if self.hv_node == self.lv_node:
            raise InvalidRequest(f"{what} has both sides at node {self.hv_node!r}")


@dataclass(frozen=True, slots=True)
class Switch:
    """A switch at ``node`` on a line or transformer touching it, or between two nodes."""

    id: str
    node: str
    target_kind: SwitchTarget
    target: str
    closed: bool = True
    kind: str = ""  # CB, LBS, DS, fuse...: free text
    name: str = ""

    def __post_init__(self) -> None:
        _check_id("switch id", self.id)
        if self.target_kind is SwitchTarget.NODE and self.target == self.node:
            raise InvalidRequest(f"switch {self.id!r} joins node {self.node!r} to itself")

    @property
    def state(self) -> Literal["open", "closed"]:
        return "closed" if self.closed else "open"


@dataclass(frozen=True, slots=True)
class Source:
    """The upstream grid (a slack bus) at ``node``."""

    id: str
    node: str
    vm_pu: float = 1.0
    va_degree: float = 0.0
    in_service: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_id("source id", self.id)
        _check_num(f"source {self.id!r}: vm_pu", self.vm_pu, low=0.0, above=True)
        _check_num(f"source {self.id!r}: va_degree", self.va_degree)


@dataclass(frozen=True, slots=True)
class _Injection:
    id: str
    node: str
    p_mw: float
    q_mvar: float = 0.0
    in_service: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_id(f"{type(self).__name__.lower()} id", self.id)
        _check_num(f"{self.id!r}: p_mw", self.p_mw)
        _check_num(f"{self.id!r}: q_mvar", self.q_mvar)


@dataclass(frozen=True, slots=True)
class Load(_Injection):
    """A nominal consumption at a node: what a load flow runs on until measurements or
    forecasts replace it."""


@dataclass(frozen=True, slots=True)
class Generator(_Injection):
    """A static generator (PV inverter, CHP) injecting ``p_mw`` at a node."""


@dataclass(frozen=True, slots=True)
class DeviceAttachment:
    hardware_id: str
    node: str

    def __post_init__(self) -> None:
        _check_id("hardwareId", self.hardware_id)


@dataclass(frozen=True, slots=True)
class SiteAttachment:
    site_id: str
    node: str

    def __post_init__(self) -> None:
        _check_id("site id", self.site_id)


_Element = Line | Transformer | Switch | Source | _Injection


@dataclass(frozen=True, slots=True)
class SupplyPath:
    """The nodes that feed ``node``, nearest first, with the first of each kind on the way."""

    node: str
    nodes: tuple[str, ...]  # node ... supply root
    edges: tuple[str, ...]  # the branch ids between them
    lv_feeder: str | None
    secondary_substation: str | None
    mv_feeder: str | None
    primary_substation: str | None


@dataclass(frozen=True)
class Topology:
    """A grid: its elements, validated together, and the queries services need."""

    name: str
    nodes: tuple[Node, ...]
    lines: tuple[Line, ...] = ()
    transformers: tuple[Transformer, ...] = ()
    switches: tuple[Switch, ...] = ()
    sources: tuple[Source, ...] = ()
    loads: tuple[Load, ...] = ()
    generators: tuple[Generator, ...] = ()
    devices: tuple[DeviceAttachment, ...] = ()
    sites: tuple[SiteAttachment, ...] = ()
    f_hz: float = 50.0
    sn_mva: float = 1.0
    _node: dict[str, Node] = field(init=False, repr=False, compare=False)
    _attached: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)
    _walk: Walk = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_num("f_hz", self.f_hz, low=0.0, above=True)
        _check_num("sn_mva", self.sn_mva, low=0.0, above=True)
        problems = self._structural_problems()
        if problems:
            more = len(problems) - MAX_PROBLEMS_SHOWN
            tail = f"; and {more} more" if more > 0 else ""
            raise InvalidRequest(
                f"topology {self.name!r}: " + "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + tail
            )
        object.__setattr__(self, "_node", {node.id: node for node in self.nodes})
        attached = {("site", s.site_id): s.node for s in self.sites}
        attached |= {("device", d.hardware_id): d.node for d in self.devices}
        object.__setattr__(self, "_attached", attached)
        object.__setattr__(self, "_walk", self._build_walk())

    def _structural_problems(self) -> list[str]:
        problems: list[str] = []
        node_ids: set[str] = set()
        for node in self.nodes:
            if node.id in node_ids:
                problems.append(f"duplicate node id {node.id!r}")
            node_ids.add(node.id)
        groups: tuple[tuple[str, Iterable[_Element]], ...] = (
            ("line", self.lines), ("transformer", self.transformers), ("switch", self.switches),
            ("source", self.sources), ("load", self.loads), ("generator", self.generators),
        )  # fmt: skip
        element_ids: set[str] = set()
        refs: list[tuple[str, str]] = []
        for what, elements in groups:
            for element in elements:
                if element.id in element_ids:
                    problems.append(f"duplicate element id {element.id!r} ({what})")
                element_ids.add(element.id)
                for end in _ends(element):
                    refs.append((f"{what} {element.id!r}", end))
        for attached, ids in (("device", self.devices), ("site", self.sites)):
            seen: set[str] = set()
            for item in ids:
                key = item.hardware_id if isinstance(item, DeviceAttachment) else item.site_id
                if key in seen:
                    problems.append(f"{attached} {key!r} attached twice")
                seen.add(key)
                refs.append((f"{attached} {key!r}", item.node))
        problems += [f"{who} refers to unknown node {n!r}" for who, n in refs if n not in node_ids]
        lines = {line.id: line for line in self.lines}
        trafos = {trafo.id: trafo for trafo in self.transformers}
        for switch in self.switches:
            target: Line | Transformer | None = None
            if switch.target_kind is SwitchTarget.NODE:
                continue  # both its nodes are checked as references
            if switch.target_kind is SwitchTarget.LINE:
                target = lines.get(switch.target)
            else:
                target = trafos.get(switch.target)
            if target is None:
                problems.append(
                    f"switch {switch.id!r} is on unknown {switch.target_kind} {switch.target!r}"
                )
            elif switch.node not in _ends(target):
                problems.append(
                    f"switch {switch.id!r} is at node {switch.node!r}, which "
                    f"{switch.target_kind} {switch.target!r} does not touch"
                )
        return problems

    def _build_walk(self) -> Walk:
        """Which nodes and branches conduct and where supply starts; ``topology_walk`` walks."""
        live = {node.id for node in self.nodes if node.in_service}
        node_switches = [s for s in self.switches if s.target_kind is SwitchTarget.NODE]
        on_branches = [s for s in self.switches if s.target_kind is not SwitchTarget.NODE]
        shut = {s.target for s in on_branches if not s.closed}  # line and trafo ids are unique
        branches = [(ln.id, ln.from_node, ln.to_node, ln.in_service) for ln in self.lines]
        branches += [(t.id, t.hv_node, t.lv_node, t.in_service) for t in self.transformers]
        branches += [(s.id, s.node, s.target, s.closed) for s in node_switches]
        conducting = [
            (branch_id, a, b)
            for branch_id, a, b, on in branches
            if on and branch_id not in shut and a in live and b in live
        ]
        roots = [s.node for s in self.sources if s.in_service and s.node in live]
        for kind in (NodeKind.PRIMARY_SUBSTATION, NodeKind.SECONDARY_SUBSTATION):
            if not roots:
                roots = [n.id for n in self.nodes if n.kind is kind and n.id in live]
        return walk(live, conducting, roots)

    # --- lookups -------------------------------------------------------------------------

    def node(self, node_id: str) -> Node:
        try:
            return self._node[node_id]
        except KeyError:
            raise NotFound(f"no node {node_id[:64]!r} in topology {self.name!r}") from None

    def nodes_of_kind(self, kind: NodeKind) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes if node.kind is kind)

    def node_named(self, name: str) -> Node:
        """The one node called ``name`` (imported grids keep their original bus names)."""
        found = [node for node in self.nodes if node.name == name]
        if len(found) != 1:
            raise NotFound(f"{len(found)} nodes named {name[:64]!r} in topology {self.name!r}")
        return found[0]

    @property
    def supply_roots(self) -> tuple[str, ...]:
        return self._walk.roots

    def is_supplied(self, node_id: str) -> bool:
        return self.node(node_id).id in self._walk.depth

    def parent(self, node_id: str) -> str | None:
        self.node(node_id)
        up = self._walk.parent.get(node_id)
        return None if up is None else up[0]

    def children(self, node_id: str) -> tuple[str, ...]:
        self.node(node_id)
        return tuple(self._walk.children.get(node_id, ()))

    # --- paths up ------------------------------------------------------------------------

    def supply_path(self, node_id: str) -> SupplyPath:
        """Where ``node_id`` is fed from: its path to the supply root and, on it (itself
        included), the first LV feeder, secondary substation, MV feeder and primary substation.
        An unsupplied node's path is just the node."""
        self.node(node_id)
        nodes, edges = self._walk.path_up(node_id)
        first: dict[NodeKind, str] = {}
        for step in nodes:
            first.setdefault(self._node[step].kind, step)
        return SupplyPath(
            node_id, nodes, edges,
            lv_feeder=first.get(NodeKind.LV_FEEDER),
            secondary_substation=first.get(NodeKind.SECONDARY_SUBSTATION),
            mv_feeder=first.get(NodeKind.MV_FEEDER),
            primary_substation=first.get(NodeKind.PRIMARY_SUBSTATION),
        )  # fmt: skip

    def ancestor(self, node_id: str, kind: NodeKind) -> str | None:
        """The first node of ``kind`` on the way from ``node_id`` (included) to the supply root."""
        for step in self.supply_path(node_id).nodes:
            if self._node[step].kind is kind:
                return step
        return None

    def path_between(
        self, upstream: str, downstream: str
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(nodes, branch ids) from ``upstream`` down to ``downstream``, which it must feed."""
        path = self.supply_path(downstream)
        self.node(upstream)
        if upstream not in path.nodes:
            raise InvalidRequest(f"node {downstream!r} is not fed through node {upstream!r}")
        cut = path.nodes.index(upstream)
        return path.nodes[cut::-1], path.edges[:cut][::-1]

    def series_impedance(self, upstream: str, downstream: str) -> complex:
        """The sum of line impedances (ohm) between two nodes on one feeder: what a segment
        between two sensors should show (G2, G3). Switches and transformers count as zero."""
        lines = {line.id: line for line in self.lines}
        _, edges = self.path_between(upstream, downstream)
        return sum((lines[e].impedance for e in edges if e in lines), complex(0.0, 0.0))

    # --- below a node --------------------------------------------------------------------

    def downstream(self, node_id: str) -> tuple[str, ...]:
        """``node_id`` and every node fed through it, in breadth-first order."""
        self.node(node_id)
        return self._walk.below(node_id)

    def connection_points_downstream(self, node_id: str) -> tuple[str, ...]:
        below = self.downstream(node_id)
        return tuple(n for n in below if self._node[n].kind is NodeKind.CONNECTION_POINT)

    def sites_downstream(self, node_id: str) -> tuple[str, ...]:
        below = set(self.downstream(node_id))
        return tuple(site.site_id for site in self.sites if site.node in below)

    def devices_downstream(self, node_id: str) -> tuple[str, ...]:
        """The devices attached (directly, by ``hardwareId``) to nodes fed through ``node_id``;
        a site's devices come from the registry and :meth:`sites_downstream`."""
        below = set(self.downstream(node_id))
        return tuple(device.hardware_id for device in self.devices if device.node in below)

    def site_node(self, site_id: str) -> str:
        return self._attachment("site", site_id)

    def device_node(self, hardware_id: str) -> str:
        """The node a device hangs on: where its last gasp or fault report lands (G1, G2)."""
        return self._attachment("device", hardware_id)

    def _attachment(self, what: str, key: str) -> str:
        try:
            return self._attached[what, key]
        except KeyError:
            raise NotFound(f"{what} {key[:64]!r} is not attached to {self.name!r}") from None

    # --- variants ------------------------------------------------------------------------

    def with_switch_states(self, closed: Mapping[str, bool]) -> Topology:
        """The same grid with some switches set (``{switch id: closed}``), as G6 proposes."""
        known = {s.id for s in self.switches}
        unknown = sorted(set(closed) - known)
        if unknown:
            raise InvalidRequest(f"unknown switches {', '.join(map(repr, unknown[:10]))}")
        switches = tuple(
            replace(s, closed=bool(closed[s.id])) if s.id in closed else s for s in self.switches
        )
        return replace(self, switches=switches)

    def with_sites(self, sites: Iterable[SiteAttachment]) -> Topology:
        return replace(self, sites=tuple(sites))

    def with_devices(self, devices: Iterable[DeviceAttachment]) -> Topology:
        return replace(self, devices=tuple(devices))

    def is_radial(self) -> bool:
        """True when no conducting branch closes a loop (two supply roots joined count as one):
        every supplied node then has exactly one path up. ``grid.topology_graph`` explains."""
        return not self._walk.chords

    def loop_branches(self) -> tuple[tuple[str, str, str], ...]:
        """(branch id, node, node) of each conducting branch that closes a loop: opening all of
        them leaves the walk's tree; each loop is the two ends' paths up plus the branch."""
        return tuple(self._walk.chords)

    def unsupplied(self) -> tuple[str, ...]:
        """In-service nodes no supply root reaches (behind open switches, or islands)."""
        return tuple(n.id for n in self.nodes if n.in_service and n.id not in self._walk.depth)


def _ends(element: _Element) -> tuple[str, ...]:
    if isinstance(element, Line):
        return element.from_node, element.to_node
    if isinstance(element, Transformer):
        return element.hv_node, element.lv_node
    if isinstance(element, Switch):
        if element.target_kind is SwitchTarget.NODE:
            return element.node, element.target
        return (element.node,)
    return (element.node,)
