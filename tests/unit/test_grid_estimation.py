"""State estimation (G5) on pandapower's CIGRE LV and MV benchmark grids.

The truth is a pandapower load flow; measurements are taken from it (exact, or with Gaussian
noise of their stated σ from a seeded generator). Stated tolerances:

* exact measurements reproduce the load-flow voltages within 1e-6 p.u. (the WLS converges to
  the exact state, residuals ~0; the brief asks 1e-4);
* with noise, every node's voltage error stays within 4σ of the estimate's own σ (from the
  inverse gain matrix), and the σ are small (< 0.5 % on LV with 1 % meters);
* a gross error (a 30σ wrong reading) fails the χ² test, is identified by the largest
  normalised residual and removed, and the estimate without it is back within 4σ.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandapower as pp
import pytest

from gridhub.domain.topology import SiteAttachment, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.estimation import LvGrid, estimate, estimate_hierarchy, upstream_measurements
from gridhub.grid.estimation_inputs import (
    Measurement,
    MeterAccuracy,
    MeterReading,
    measurement_set,
    meter_measurements,
    zero_injections,
)
from gridhub.grid.topology_import import (
    bus_indices,
    pandapower_quiet,
    reference_network,
    to_pandapower,
)

METER = MeterAccuracy(relative=0.01, floor_mw=1e-5, v_pu=0.002)


def load_flow(topology: Topology) -> Any:
    net = to_pandapower(topology)
    with pandapower_quiet():
        pp.runpp(net, numba=False)
    return net


def true_voltages(topology: Topology, net: Any) -> dict[str, float]:
    return {n: float(net.res_bus.vm_pu[i]) for n, i in bus_indices(net).items()}


def injection_nodes(topology: Topology) -> set[str]:
    return {x.node for x in (*topology.loads, *topology.generators)} | {
        s.node for s in topology.sources
    }


def meter_set(
    topology: Topology, net: Any, rng: np.random.Generator | None = None
) -> tuple[Measurement, ...]:
    """P, Q, V at every node with a load, generator or source, σ per ``METER``; noisy with
    ``rng``; plus zero injections everywhere else."""
    bus = bus_indices(net)
    out = []
    for node in sorted(injection_nodes(topology)):
        p, q = float(net.res_bus.p_mw[bus[node]]), float(net.res_bus.q_mvar[bus[node]])
        v = float(net.res_bus.vm_pu[bus[node]])
        for kind, value, std in (("p", p, METER.power(p)), ("q", q, METER.power(q)),
                                 ("v", v, METER.v_pu)):  # fmt: skip
            noise = rng.normal(0.0, std) if rng is not None else 0.0
            out.append(Measurement(node, kind, value + noise, std, "meter", node))  # type: ignore[arg-type]
    return (*out, *zero_injections(topology, injection_nodes(topology)))


@pytest.fixture(scope="module")
def lv() -> tuple[Topology, Any]:
    topology = reference_network("cigre_lv")
    return topology, load_flow(topology)


@pytest.fixture(scope="module")
def mv() -> tuple[Topology, Any]:
    topology = reference_network("cigre_mv")
    return topology, load_flow(topology)


@pytest.mark.parametrize("grid", ["lv", "mv"])
def test_exact_measurements_reproduce_the_load_flow(grid: str, request: Any) -> None:
    topology, net = request.getfixturevalue(grid)
    result = estimate(topology, meter_set(topology, net))
    truth = true_voltages(topology, net)
    assert max(abs(s.vm_pu - truth[s.node]) for s in result.nodes) < 1e-6
    bus = bus_indices(net)
    group_p: dict[str, float] = {}
    for s in result.nodes:  # angles and powers (of a group joined by couplers: its total) too
        assert s.va_degree == pytest.approx(float(net.res_bus.va_degree[bus[s.node]]), abs=1e-5)
        group_p[s.group] = group_p.get(s.group, 0.0) + float(net.res_bus.p_mw[bus[s.node]])
    for s in result.nodes:
        assert s.p_mw == pytest.approx(group_p[s.group], abs=1e-6)
    assert result.objective < 1e-6 and not result.bad_data and result.removed == ()
    assert result.degrees_of_freedom > 0


@pytest.mark.parametrize("grid", ["lv", "mv"])
def test_noisy_measurements_stay_within_the_estimated_uncertainty(grid: str, request: Any) -> None:
    topology, net = request.getfixturevalue(grid)
    result = estimate(topology, meter_set(topology, net, np.random.default_rng(7)))
    truth = true_voltages(topology, net)
    z = [abs(s.vm_pu - truth[s.node]) / s.vm_std_pu for s in result.nodes]
    assert max(z) < 4.0
    assert max(s.vm_std_pu for s in result.nodes) < 0.005
    assert not result.bad_data and result.removed == ()
    # the redundancy filters: the estimate is closer to the truth than the voltage meters
    assert max(s.vm_std_pu for s in result.nodes) < METER.v_pu


def test_a_gross_error_is_detected_identified_and_removed(lv: tuple[Topology, Any]) -> None:
    topology, net = lv
    clean = meter_set(topology, net, np.random.default_rng(11))
    victim = next(i for i, m in enumerate(clean) if m.node == "bus16" and m.kind == "p")
    bad = list(clean)
    bad[victim] = replace(clean[victim], value=clean[victim].value + 30 * clean[victim].std_dev)
    result = estimate(topology, bad)
    assert [r.measurement for r in result.removed] == [bad[victim]]
    removed = result.removed[0]
    assert removed.normalized_residual > 3.0 and removed.objective > removed.chi2_threshold
    assert not result.bad_data and result.objective <= result.chi2_threshold
    truth = true_voltages(topology, net)
    assert all(abs(s.vm_pu - truth[s.node]) < 4 * s.vm_std_pu for s in result.nodes)
    # without detection the error stays in and the χ² test says so
    kept = estimate(topology, bad, detect_bad_data=False)
    assert kept.bad_data and kept.removed == ()


def test_pseudo_measurements_fill_unmetered_nodes_with_a_larger_uncertainty(
    lv: tuple[Topology, Any],
) -> None:
    topology, net = lv
    bus = bus_indices(net)
    metered = ["bus12", "bus16", "bus17", "bus18", "bus19"]  # residential feeder only
    sites = [SiteAttachment(f"hh-{n}", n) for n in metered]
    readings = [
        MeterReading(f"hh-{n}", float(net.res_bus.p_mw[bus[n]]), float(net.res_bus.q_mvar[bus[n]]),
                     float(net.res_bus.vm_pu[bus[n]]))
        for n in metered
    ]  # fmt: skip
    grid = topology.with_sites(sites)
    measurements = measurement_set(grid, readings, accuracy=METER)
    origins = {m.origin for m in measurements}
    assert origins == {"meter", "pseudo", "virtual"}
    result = estimate(grid, measurements)
    metered_p = max(result.node(n).p_std_mw for n in metered)
    pseudo_p = min(result.node(n).p_std_mw for n in ("bus35", "bus40", "bus22"))
    assert pseudo_p > 10 * metered_p  # nominal loads at ±50 % against 1 % meters
    truth = true_voltages(grid, net)
    assert all(abs(s.vm_pu - truth[s.node]) < 4 * s.vm_std_pu + 1e-9 for s in result.nodes)


def test_meter_readings_aggregate_per_node_by_hand() -> None:
    grid = reference_network("cigre_lv").with_sites(
        [SiteAttachment("a", "bus12"), SiteAttachment("b", "bus12")]
    )
    readings = [MeterReading("a", 0.003, 0.001, 1.00), MeterReading("b", 0.004, None, 0.98)]
    got = {m.kind: m for m in meter_measurements(grid, readings, METER)}
    assert set(got) == {"p", "v"}  # Q only when every meter on the node gives it
    assert got["p"].value == pytest.approx(0.007)
    assert got["p"].std_dev == pytest.approx(math.hypot(3e-5, 4e-5))
    assert got["v"].value == pytest.approx(0.99)
    assert got["v"].std_dev == pytest.approx(0.002 / math.sqrt(2))
    with pytest.raises(InvalidRequest):
        Measurement("bus12", "p", 1.0, 0.0)
    with pytest.raises(InvalidRequest):  # no voltage anywhere
        estimate(grid, [m for m in meter_measurements(grid, readings) if m.kind != "v"])
    with pytest.raises(InvalidRequest):  # 3 measurements for 87 states: not observable
        estimate(grid, meter_measurements(grid, readings))


def _cigre_lv_under(lv: Topology, mv_truth: Any, bus: int, scale: float) -> tuple[Topology, Any]:
    lv = replace(lv, loads=tuple(replace(x, p_mw=x.p_mw * scale, q_mvar=x.q_mvar * scale)
                                 for x in lv.loads))  # fmt: skip
    lv = replace(lv, sources=(replace(lv.sources[0], vm_pu=float(mv_truth.res_bus.vm_pu[bus])),))
    return lv, load_flow(lv)


def test_hierarchical_lv_estimate_feeds_the_mv_estimate(
    mv: tuple[Topology, Any], lv: tuple[Topology, Any]
) -> None:
    """CIGRE LV (scaled ×1.3) hangs under CIGRE MV's bus5 in place of its load there. The MV
    grid has measurements only at its primary substation and pseudo-measurements (nominal loads,
    which are 20 % off the truth) elsewhere; the LV estimate from 1 % meters replaces the
    pseudo-measurement at bus5 and makes the MV estimate of bus5 exact to its σ."""
    mv_topology, _ = mv
    rng = np.random.default_rng(3)
    loads = tuple(replace(x, p_mw=x.p_mw * 1.2, q_mvar=x.q_mvar * 1.2) for x in mv_topology.loads)
    truth_topology = replace(mv_topology, loads=tuple(x for x in loads if x.node != "bus5"))
    lv_net: Any = None
    for _ in range(2):  # MV voltage at bus5 ↔ what the LV grid draws at it (constant-power
        # loads: the draw hardly depends on the voltage, two rounds agree to < 1e-6 MW)
        net = load_flow(truth_topology)
        bus5 = bus_indices(net)["bus5"]
        lv_topology, lv_net = _cigre_lv_under(lv[0], net, bus5, 1.3)
        draw = -float(lv_net.res_bus.p_mw[0]), -float(lv_net.res_bus.q_mvar[0])
        others = tuple(x for x in loads if x.node != "bus5")
        truth_topology = replace(
            mv_topology, loads=(*others, replace(loads[3], p_mw=draw[0], q_mvar=draw[1]))
        )
    net = load_flow(truth_topology)
    lv_measurements = meter_set(lv_topology, lv_net, rng)
    lv_measurements = tuple(m for m in lv_measurements if m.node != "bus0")  # no MV sensor
    source = mv_topology.sources[0].node
    bus = bus_indices(net)
    mv_measurements = [
        Measurement(source, "v", float(net.res_bus.vm_pu[bus[source]]), 0.002),
        Measurement(source, "p", float(net.res_bus.p_mw[bus[source]]), 0.05),
        Measurement(source, "q", float(net.res_bus.q_mvar[bus[source]]), 0.05),
        *measurement_set(mv_topology, extra=[]),  # pseudo from nominal loads, zero injections
    ]
    mv_measurements = [m for m in mv_measurements if not (m.node == source and m.origin != "meter")]
    alone = estimate(mv_topology, mv_measurements)
    result, lv_results = estimate_hierarchy(
        mv_topology, mv_measurements, [LvGrid("bus5", lv_topology, lv_measurements, "bus0")]
    )
    up = upstream_measurements(lv_results["bus5"], "bus0", "bus5")
    assert {m.kind for m in up} == {"p", "q", "v"}
    true_p5 = float(net.res_bus.p_mw[bus["bus5"]])
    with_lv, without = result.node("bus5"), alone.node("bus5")
    assert abs(with_lv.p_mw - true_p5) < 4 * with_lv.p_std_mw
    assert with_lv.p_std_mw < without.p_std_mw / 10
    assert abs(without.p_mw - true_p5) > abs(with_lv.p_mw - true_p5)
    truth = true_voltages(mv_topology, net)
    assert all(abs(s.vm_pu - truth[s.node]) < 4 * s.vm_std_pu for s in result.nodes)
