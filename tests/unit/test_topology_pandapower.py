"""Topology from pandapower's reference networks, and back to pandapower to solve on.

Each reference network is built once per module (pandapower takes a second or so per network).
The round trip — network → topology → network → load flow — must give the original network's
bus voltages, which is what lets every grid service run as convert → solve → write back.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandapower as pp
import pytest

from gridhub.domain.topology import NodeKind, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.households import attach_households
from gridhub.grid.topology_graph import find_loops, topology_counts
from gridhub.grid.topology_import import (
    bus_indices,
    from_pandapower,
    pandapower_quiet,
    reference_network,
    to_pandapower,
)
from gridhub.grid.topology_json import topology_from_json, topology_to_json

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "topology" / "sample.json"

with pandapower_quiet():
    import pandapower.networks as pn

MAKERS: dict[str, Callable[[], Any]] = {
    "cigre_lv": pn.create_cigre_network_lv,
    "cigre_mv": pn.create_cigre_network_mv,
    "ieee_european_lv": pn.ieee_european_lv_asymmetric,
    "case33bw": pn.case33bw,
}
KINDS = ("primary_substation", "mv_feeder", "secondary_substation", "lv_feeder")
# name: (nodes, lines, switches, transformers, loads), (nodes per kind in KINDS, cp, bus)
EXPECTED = {
    "cigre_lv": ((44, 37, 3, 3, 15), (1, 0, 3, 3, 13, 24)),
    "cigre_mv": ((15, 15, 8, 2, 18), (1, 2, 0, 0, 11, 1)),
    "ieee_european_lv": ((907, 905, 0, 1, 55), (0, 0, 1, 1, 55, 850)),
    "case33bw": ((33, 37, 0, 0, 32), (1, 1, 0, 0, 31, 0)),
}


@pytest.fixture(scope="module")
def nets() -> dict[str, Any]:
    """pandapower's networks, made on first use and shared by the module's tests."""
    cache: dict[str, Any] = {}

    class Lazy(dict[str, Any]):
        def __missing__(self, name: str) -> Any:
            with pandapower_quiet():
                cache[name] = self[name] = MAKERS[name]()
            return cache[name]

    return Lazy()


def imported(nets: dict[str, Any], name: str, **options: Any) -> Topology:
    return from_pandapower(nets[name], name=name, **options)


def run(net: Any) -> None:
    with pandapower_quiet():
        pp.runpp(net, numba=False)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_reference_networks_import_with_their_counts(nets: dict[str, Any], name: str) -> None:
    topology = imported(nets, name)
    counts = topology_counts(topology)
    sizes, kinds = EXPECTED[name]
    assert (
        tuple(counts[k] for k in ("nodes", "lines", "switches", "transformers", "loads")) == sizes
    )
    assert tuple(counts[k] for k in (*KINDS, "connection_point", "bus")) == kinds
    assert counts["sources"] == 1
    assert topology.is_radial() and topology.unsupplied() == ()
    for cp in topology.nodes_of_kind(NodeKind.CONNECTION_POINT):  # every meter finds its feeder
        path = topology.supply_path(cp)
        assert path.lv_feeder or path.mv_feeder


def test_reference_network_by_name(nets: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pn, "create_cigre_network_mv", lambda: nets["cigre_mv"])  # made once
    assert reference_network("cigre_mv") == imported(nets, "cigre_mv")
    with pytest.raises(InvalidRequest, match="unknown reference network 'cigre_hv'"):
        reference_network("cigre_hv")


def test_cigre_lv_hierarchy(nets: dict[str, Any]) -> None:
    lv = imported(nets, "cigre_lv")
    assert lv.node_named("Bus 0").kind is NodeKind.PRIMARY_SUBSTATION  # the external grid
    assert lv.node_named("Bus R0").kind is NodeKind.SECONDARY_SUBSTATION  # transformer HV side
    assert lv.node_named("Bus R1").kind is NodeKind.LV_FEEDER  # its LV busbar, one line out
    assert lv.node_named("Bus R2").kind is NodeKind.BUS
    r18 = lv.node_named("Bus R18").id
    path = lv.supply_path(r18)
    names = [lv.node(n).name for n in path.nodes]
    assert names == ["Bus R18", "Bus R10", "Bus R9", "Bus R8", "Bus R7", "Bus R6", "Bus R5",
                     "Bus R4", "Bus R3", "Bus R2", "Bus R1", "Bus R0", "Bus 0"]  # fmt: skip
    assert lv.node(path.lv_feeder or "").name == "Bus R1"
    assert lv.node(path.secondary_substation or "").name == "Bus R0"
    residential = lv.connection_points_downstream(lv.node_named("Bus R0").id)
    assert sorted(lv.node(n).name for n in residential) == [
        "Bus R11", "Bus R15", "Bus R16", "Bus R17", "Bus R18",
    ]  # fmt: skip
    # the busbar loads R1 and C1 stand for whole feeders: not connection points
    assert lv.node_named("Bus C1").kind is NodeKind.LV_FEEDER


def test_cigre_mv_with_every_switch_closed_has_three_loops(nets: dict[str, Any]) -> None:
    mv = imported(nets, "cigre_mv")
    assert sorted(s.id for s in mv.switches if not s.closed) == ["switch1", "switch2", "switch4"]
    meshed = mv.with_switch_states({s.id: True for s in mv.switches})
    loops = find_loops(meshed)
    assert len(loops) == 3 and not meshed.is_radial()
    ends = {line.id: {line.from_node, line.to_node} for line in meshed.lines}
    ends |= {t.id: {t.hv_node, t.lv_node} for t in meshed.transformers}
    for loop in loops:  # each loop is a closed walk: branch i joins node i and node i + 1
        assert loop.branches[-1] == loop.branch and len(loop.nodes) == len(loop.branches) >= 3
        steps = zip(loop.nodes, (*loop.nodes[1:], loop.nodes[0]), strict=True)
        assert [ends[branch] for branch in loop.branches] == [{x, y} for x, y in steps]
    # the three normally-open lines each close a loop: 6-7, 11-4 (feeder 1), 14-8 (feeders 1-2)
    assert {"line12", "line13", "line14"} <= {b for loop in loops for b in loop.branches}
    as_secondary = imported(nets, "cigre_mv", mv_load_kind=NodeKind.SECONDARY_SUBSTATION)
    assert len(as_secondary.nodes_of_kind(NodeKind.SECONDARY_SUBSTATION)) == 11


def test_baran_wu_tie_lines_as_open_switches(nets: dict[str, Any]) -> None:
    plain = imported(nets, "case33bw")
    assert sum(not line.in_service for line in plain.lines) == 5
    ties = imported(nets, "case33bw", open_lines_as_switches=True)
    assert all(line.in_service for line in ties.lines)
    assert [(s.id, s.target, s.closed) for s in ties.switches] == [
        (f"tie{i}", f"line{i}", False) for i in range(32, 37)
    ]
    assert ties.is_radial()
    assert len(find_loops(ties.with_switch_states({s.id: True for s in ties.switches}))) == 5


@pytest.mark.parametrize("name", list(EXPECTED))
def test_round_trip_load_flow_gives_the_same_voltages(nets: dict[str, Any], name: str) -> None:
    original = nets[name]
    topology = imported(nets, name, open_lines_as_switches=True)
    rebuilt = to_pandapower(topology)
    run(original)
    run(rebuilt)
    buses = bus_indices(rebuilt)
    assert len(buses) == len(original.bus)
    for node in topology.nodes:
        before = original.res_bus.loc[int(node.id.removeprefix("bus"))]
        after = rebuilt.res_bus.loc[buses[node.id]]
        assert after.vm_pu == pytest.approx(before.vm_pu, abs=1e-6), node.id
        assert after.va_degree == pytest.approx(before.va_degree, abs=1e-6), node.id
    losses = original.res_line.pl_mw.sum()
    assert rebuilt.res_line.pl_mw.sum() == pytest.approx(losses, rel=1e-9)
    # and back: the classification rules find the same kinds on the exported network
    back = from_pandapower(rebuilt)
    assert [(n.name, n.kind) for n in back.nodes] == [(n.id, n.kind) for n in topology.nodes]
    assert back.lines == tuple(replace(line, name=line.id) for line in topology.lines)


def test_json_round_trip_of_the_largest_network(nets: dict[str, Any]) -> None:
    ieee = imported(nets, "ieee_european_lv")
    assert topology_from_json(topology_to_json(ieee)) == ieee
    (trafo,) = ieee.transformers
    assert trafo.tap is not None and trafo.tap.step_percent == 2.5


def test_demo_households_on_cigre_lv(nets: dict[str, Any]) -> None:
    lv = imported(nets, "cigre_lv")
    homes = [f"hh{i:03}" for i in range(1, 31)]
    placed = attach_households(lv, homes)
    per_point = Counter(site.node for site in placed.sites)
    assert len(per_point) == 13 and set(per_point.values()) == {2, 3}
    feeders = Counter(lv.supply_path(site.node).lv_feeder for site in placed.sites)
    assert {lv.node(f or "").name: n for f, n in feeders.items()} == {
        "Bus R1": 14, "Bus I1": 2, "Bus C1": 14,  # 30 = 13 × 2 + 4: R11, R15, R16, R17 get 3
    }  # fmt: skip


def test_unsupported_pandapower_elements_are_refused(nets: dict[str, Any]) -> None:
    net = copy.deepcopy(nets["cigre_mv"])
    with pandapower_quiet():
        pp.create_shunt(net, 3, q_mvar=0.1)
    with pytest.raises(InvalidRequest, match="table 'shunt' is not supported"):
        from_pandapower(net)


def test_sample_solves_and_the_import_rules_give_back_its_kinds() -> None:
    sample = topology_from_json(SAMPLE.read_bytes())
    net = to_pandapower(sample)
    run(net)
    buses = bus_indices(net)
    voltage = net.res_bus.vm_pu
    assert voltage[buses["ps"]] == pytest.approx(1.02)
    assert 0.95 < voltage[buses["cp3"]] < voltage[buses["j"]] < voltage[buses["f1b"]] < 1.02
    assert net.switch.type.tolist() == ["LBS", "fuse", "fuse", "CB"]
    assert net.res_line.loading_percent.notna().sum() == 1  # only m1 has a rating
    back = from_pandapower(net)
    assert [(n.name, n.kind) for n in back.nodes] == [(n.id, n.kind) for n in sample.nodes]
    assert [line.max_i_ka for line in back.lines] == [line.max_i_ka for line in sample.lines]
