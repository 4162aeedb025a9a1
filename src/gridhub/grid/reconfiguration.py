"""Reconfiguration for loss minimisation (G6, seed 002 §7.3): which switches to open.

Convert → solve → typed result. The grid is operated radially; the lines carrying a switch
(:class:`~gridhub.domain.topology.Switch` on a line) are the degrees of freedom. Steps:

1. **load flow of the meshed grid**: every switchable line closed; its line currents ``Iₗ``;
2. **minimum spanning tree** (Kruskal, networkx) with weights ``wₗ = 1 − Iₗ/I_max``, lower for
   lines carrying more current (seed 002: "inversely proportional to the current"): the tree
   keeps the lines the meshed grid uses most and opens the least used, so the radial grid runs
   close to the meshed one, whose losses are the lower bound. Branches without a switch,
   transformers and closed bus couplers are forced into the tree (weight −1);
3. **branch exchange** (Civanlar et al. 1988, Baran & Wu 1989): the MST is a heuristic (on Baran
   & Wu's 33-bus grid it stops at a few percent above the best known configuration), so each
   open line is tried against the switchable lines of the loop its closing would form, nearest
   to it first and a step at a time (moving the open point along the loop while the losses
   fall), with a full load flow per try; the first improving move is taken and the search
   repeats until no move lowers the losses (a local optimum) or ``max_load_flows`` are spent;
4. **acceptance**: the proposal is accepted only when it is radial, supplies every node the
   current configuration supplies, and lowers the losses by more than ``threshold`` (a fraction
   of the current losses, seed 002's ``ε_L``). The seed's second condition, that the situation
   is stable for a time ``ε_T``, is the caller's: run this on consecutive estimates.

Loads are the topology's loads and generators; feed it the state estimate (G5) by setting them
from the estimated node powers. ``with_line_switches`` models "every branch has a
sectionaliser", which is what the literature's test cases assume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gridhub.domain.topology import Load, Switch, SwitchTarget, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.topology_import import pandapower_quiet, to_pandapower

if TYPE_CHECKING:
    from gridhub.grid.estimation import StateEstimate

__all__ = [
    "Reconfiguration",
    "SwitchChange",
    "apply_estimate",
    "losses_mw",
    "reconfigure",
    "with_line_switches",
]

MAX_SWITCHABLE = 5_000
_FORCED = -1.0  # weight of a branch that cannot be opened: always in the tree


@dataclass(frozen=True, slots=True)
class SwitchChange:
    switch: str
    line: str
    closed: bool


@dataclass(frozen=True)
class Reconfiguration:
    """The proposal and why it is (not) accepted. ``steps`` is the losses after the MST and after
    each accepted branch exchange; ``topology`` is the grid with ``changes`` applied."""

    grid: str
    accepted: bool
    reason: str
    base_losses_mw: float
    losses_mw: float
    reduction: float  # fraction of base_losses_mw
    open_lines: tuple[str, ...]
    changes: tuple[SwitchChange, ...]
    steps: tuple[tuple[str, float], ...]
    load_flows: int
    min_vm_pu_before: float
    min_vm_pu_after: float
    topology: Topology


def with_line_switches(topology: Topology, lines: Iterable[str] | None = None) -> Topology:
    """``topology`` with a closed switch (``sw-<line id>``) on each of ``lines`` (default: every
    line) that has none."""
    have = {s.target for s in topology.switches if s.target_kind is SwitchTarget.LINE}
    chosen = None if lines is None else set(lines)
    added = tuple(
        Switch(f"sw-{line.id}", line.from_node, SwitchTarget.LINE, line.id, closed=True)
        for line in topology.lines
        if line.id not in have and (chosen is None or line.id in chosen)
    )
    return replace(topology, switches=topology.switches + added)


def apply_estimate(topology: Topology, estimate: StateEstimate) -> Topology:
    """``topology`` with its loads and generators replaced by the estimated node powers (seed
    002 §7.3: "the power injections and consumptions calculated by the SE algorithm are applied
    to the MV buses"): one load per node (per coupler group) that draws or feeds anything;
    supply roots keep their role as slack."""
    roots = {s.node for s in topology.sources if s.in_service}
    loads = tuple(
        Load(f"est-{state.node}", state.node, state.p_mw, state.q_mvar)
        for state in estimate.nodes
        if state.group == state.node and state.node not in roots
        and (state.p_mw != 0.0 or state.q_mvar != 0.0)
    )  # fmt: skip
    return replace(topology, loads=loads, generators=())


class _Solver:
    """One pandapower network, switch states set per configuration, load flows counted."""

    def __init__(self, topology: Topology) -> None:
        self.net = to_pandapower(topology)
        self.switches: dict[str, list[int]] = {}
        for index, switch in enumerate(topology.switches):
            if switch.target_kind is SwitchTarget.LINE:
                self.switches.setdefault(switch.target, []).append(index)
        self.count = 0
        self.cache: dict[frozenset[str], tuple[float, float, Any] | None] = {}

    def run(self, open_lines: frozenset[str]) -> tuple[float, float, Any] | None:
        """(losses MW, lowest voltage p.u., line currents kA by line id), None if it diverges."""
        if open_lines not in self.cache:
            self.cache[open_lines] = self._run(open_lines)
        return self.cache[open_lines]

    def _run(self, open_lines: frozenset[str]) -> tuple[float, float, Any] | None:
        import pandapower as pp

        for line, indices in self.switches.items():
            self.net.switch.loc[indices, "closed"] = line not in open_lines
        self.count += 1
        try:
            with pandapower_quiet():
                pp.runpp(self.net, numba=False)
        except pp.LoadflowNotConverged:
            return None
        net = self.net
        losses = float(net.res_line.pl_mw.sum()) + float(net.res_trafo.pl_mw.sum())
        vm = net.res_bus.vm_pu[net.bus.in_service].dropna()
        currents = dict(zip(net.line.name, net.res_line.i_ka.fillna(0.0), strict=True))
        return losses, float(vm.min()), currents


def losses_mw(topology: Topology) -> float:
    """Total line and transformer losses of a load flow on ``topology`` (MW)."""
    result = _Solver(topology).run(frozenset(_open_lines(topology)))
    if result is None:
        raise InvalidRequest(f"the load flow of {topology.name!r} does not converge")
    return result[0]


def _open_lines(topology: Topology) -> set[str]:
    return {
        s.target for s in topology.switches if s.target_kind is SwitchTarget.LINE and not s.closed
    }


def _graph(topology: Topology, switchable: set[str], currents: dict[str, float]) -> Any:
    import networkx as nx

    graph = nx.MultiGraph()
    graph.add_nodes_from(n.id for n in topology.nodes if n.in_service)
    top = max([currents.get(line, 0.0) for line in switchable] + [1e-12])
    open_now = _open_lines(topology)
    for line in topology.lines:
        if line.in_service and (line.id in switchable or line.id not in open_now):
            weight = 1.0 - currents.get(line.id, 0.0) / top if line.id in switchable else _FORCED
            graph.add_edge(line.from_node, line.to_node, key=line.id, weight=weight)
    for t in topology.transformers:
        if t.in_service:
            graph.add_edge(t.hv_node, t.lv_node, key=t.id, weight=_FORCED)
    for s in topology.switches:
        if s.target_kind is SwitchTarget.NODE and s.closed:
            graph.add_edge(s.node, s.target, key=s.id, weight=_FORCED)
    for source in topology.sources:  # several sources: one tree from a common root
        if source.in_service:
            graph.add_edge("\0root", source.node, key=f"\0{source.id}", weight=2 * _FORCED)
    return graph


def _spanning_tree_open(
    topology: Topology, switchable: set[str], currents: dict[str, float]
) -> frozenset[str]:
    import networkx as nx

    graph = _graph(topology, switchable, currents)
    tree = nx.minimum_spanning_edges(graph, algorithm="kruskal", keys=True, data=False)
    kept = {key for _, _, key in tree}
    return frozenset(switchable - kept)


def _neighbours(
    topology: Topology, open_lines: frozenset[str], line_id: str, switchable: dict[str, Any]
) -> list[str]:
    """The nearest switchable line on each side of the loop closing ``line_id`` would form:
    where its open point can move one step. The loop is the two ends' paths up to where they
    meet, walked with ``line_id`` still open."""
    current = _configured(topology, open_lines)
    line = next(x for x in topology.lines if x.id == line_id)
    a = current.supply_path(line.from_node).edges
    b = current.supply_path(line.to_node).edges
    common = set(a) & set(b)
    out = []
    for side in (a, b):
        out += [e for e in side if e not in common and e in switchable][:1]
    return out


def _configured(topology: Topology, open_lines: frozenset[str]) -> Topology:
    """``topology`` with exactly ``open_lines`` open among the switchable lines. A line with a
    switch at each end opens at one: the one already open if any, else the first; the other
    stays closed, so a proposal switches as little as it can."""
    states: dict[str, bool] = {}
    by_line: dict[str, list[Switch]] = {}
    for s in topology.switches:
        if s.target_kind is SwitchTarget.LINE:
            by_line.setdefault(s.target, []).append(s)
    for line, switches in by_line.items():
        if line not in open_lines:
            states |= {s.id: True for s in switches}
        elif all(s.closed for s in switches):
            states |= {s.id: i > 0 for i, s in enumerate(switches)}
    return topology.with_switch_states(states)


def reconfigure(
    topology: Topology,
    *,
    threshold: float = 0.01,
    exchange: bool = True,
    max_load_flows: int = 400,
) -> Reconfiguration:
    """The loss-minimising radial configuration of ``topology`` (see the module doc)."""
    switchable = {s.target for s in topology.switches if s.target_kind is SwitchTarget.LINE}
    if not switchable:
        raise InvalidRequest(f"{topology.name!r} has no switch on a line: nothing to reconfigure")
    if len(switchable) > MAX_SWITCHABLE:
        raise InvalidRequest(f"at most {MAX_SWITCHABLE} switchable lines")
    if not 0.0 <= threshold < 1.0:
        raise InvalidRequest("threshold must lie in [0, 1)")
    solver = _Solver(topology)
    current_open = frozenset(_open_lines(topology))
    base = solver.run(current_open)
    meshed = solver.run(frozenset())
    if base is None or meshed is None:
        raise InvalidRequest(f"the load flow of {topology.name!r} does not converge")
    supplied = {n.id for n in topology.nodes} - set(topology.unsupplied())
    best_open = _spanning_tree_open(topology, switchable, meshed[2])
    best = solver.run(best_open)
    steps: list[tuple[str, float]] = [("mst", best[0] if best else float("inf"))]
    if best is None or best[0] > base[0]:  # the MST can be worse than where we start
        best_open, best = current_open, base
    while exchange and solver.count < max_load_flows:
        move = _improving_exchange(topology, solver, best_open, best[0], max_load_flows)
        if move is None:
            break
        best_open, best = move
        steps.append(("exchange", best[0]))
    proposal = _configured(topology, best_open)
    reduction = (base[0] - best[0]) / base[0] if base[0] > 0 else 0.0
    accepted, reason = _verdict(proposal, supplied, reduction, threshold)
    before = {s.id: s.closed for s in topology.switches}
    changes = tuple(
        SwitchChange(s.id, s.target, s.closed)
        for s in proposal.switches
        if s.target_kind is SwitchTarget.LINE and s.closed != before[s.id]
    )
    return Reconfiguration(
        topology.name, accepted, reason, base[0], best[0], reduction, tuple(sorted(best_open)),
        changes, tuple(steps), solver.count, base[1], best[1], proposal,
    )  # fmt: skip


def _improving_exchange(
    topology: Topology, solver: _Solver, open_lines: frozenset[str], losses: float, budget: int
) -> tuple[frozenset[str], tuple[float, float, Any]] | None:
    """The best one-step move of an open point along its loop, if it lowers the losses."""
    best: tuple[frozenset[str], tuple[float, float, Any]] | None = None
    for line in sorted(open_lines):
        for candidate in _neighbours(topology, open_lines, line, solver.switches):
            trial = (open_lines - {line}) | {candidate}
            if solver.count >= budget:
                return best
            result = solver.run(trial)
            if result is not None and result[0] < (best[1][0] if best else losses) - 1e-9:
                best = trial, result
    return best


def _verdict(
    proposal: Topology, supplied: set[str], reduction: float, threshold: float
) -> tuple[bool, str]:
    if not proposal.is_radial():
        return False, "the proposal is not radial"
    lost = supplied - ({n.id for n in proposal.nodes} - set(proposal.unsupplied()))
    if lost:
        return False, f"{len(lost)} nodes would lose supply"
    if reduction <= threshold:
        return False, f"losses fall by {reduction:.1%}, not more than the threshold {threshold:.1%}"
    return True, f"losses fall by {reduction:.1%}"
