"""LV fault location (G2): the seed's topology assessment, by hand and on CIGRE LV with
pandapower's short-circuit currents.

Hand feeder (source at h; sensors S0 at h, S1 at n2, S2 at n4, S3 at n6)::

    h ─ n1 ─ n2 ─ n3 ─ n4 ─ n7
              └ n5 ─ n6
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandapower as pp
import pandapower.shortcircuit as sc
import pytest

from gridhub.domain.topology import Line, Node, NodeKind, Source, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.fault_location import (
    DetectionThresholds,
    FaultLocator,
    FaultReport,
    SensorSample,
    detect_faults,
    locate_fault,
    sensor_layout,
)
from gridhub.grid.topology_import import (
    bus_indices,
    pandapower_quiet,
    reference_network,
    to_pandapower,
)

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
PAIRS = [("h", "n1"), ("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n4", "n7"), ("n2", "n5"),
         ("n5", "n6")]  # fmt: skip
SENSORS = {"S0": "h", "S1": "n2", "S2": "n4", "S3": "n6"}


def feeder() -> Topology:
    nodes = [Node("h", 0.4, NodeKind.LV_FEEDER)]
    nodes += [Node(f"n{i}", 0.4) for i in range(1, 8)]
    lines = [Line(f"{a}-{b}", a, b, 0.01, 0.005, 0.1) for a, b in PAIRS]
    return Topology("feeder", tuple(nodes), tuple(lines), sources=(Source("src", "h"),))


def reports(*sensors: str, at: datetime = T0) -> list[FaultReport]:
    return [FaultReport(s, at) for s in sensors]


@pytest.fixture(scope="module")
def layout() -> Any:
    return sensor_layout(feeder(), SENSORS)


def test_fault_between_a_sensor_and_the_next_ones_on_each_branch(layout: Any) -> None:
    # S0 and S1 saw fault current, S2 and S3 did not: the fault is below n2 and above n4 and
    # n6, on either branch (one sensor per branch cannot tell which).
    found = locate_fault(layout, reports("S1", "S0"))
    assert found is not None
    assert (found.upstream_sensor, found.upstream_node) == ("S1", "n2")
    assert found.downstream_sensors == ("S2", "S3") and found.downstream_nodes == ("n4", "n6")
    assert set(found.nodes) == {"n2", "n3", "n4", "n5", "n6"}
    assert set(found.lines) == {"n2-n3", "n3-n4", "n2-n5", "n5-n6"}
    assert found.length_km == pytest.approx(0.4)  # four 100 m lines
    assert not found.after_last_sensor
    assert found.reporting == ("S0", "S1") and found.conflicting == () and found.silent == ()


def test_fault_after_the_last_sensor(layout: Any) -> None:
    found = locate_fault(layout, reports("S0", "S1", "S2"))
    assert found is not None and found.after_last_sensor
    assert found.upstream_node == "n4" and found.downstream_sensors == ()
    assert found.nodes == ("n4", "n7") and found.lines == ("n4-n7",)


def test_silent_and_conflicting_sensors_are_named(layout: Any) -> None:
    # S1 on the path to S2 stayed silent; S3 on the other branch reported (back-feed, a fault
    # of its own): the path with most reports wins (S0, S2), S3 conflicts, S1 is silent.
    # S0, S2 and S3 report: each branch's path holds two reports and is as deep; the tie goes
    # to the larger sensor id, deterministically, and the other is named
    found = locate_fault(layout, reports("S0", "S2", "S3") + reports("S0"))
    assert found is not None
    assert (found.upstream_sensor, found.conflicting, found.silent) == ("S3", ("S2",), ("S1",))
    found = locate_fault(layout, reports("S0", "S2") + reports("S3", at=T0 - timedelta(hours=1)))
    assert found is not None
    # S3's report is an hour old: outside the 10 s window, not part of this fault
    assert found.upstream_sensor == "S2" and found.silent == ("S1",) and found.conflicting == ()
    tie = locate_fault(layout, reports("S0", "S1", "S2", "S3"))
    assert tie is not None and len(tie.conflicting) == 1


def test_locator_on_arrival_narrows_as_reports_come_in(layout: Any) -> None:
    locator = FaultLocator(layout)
    first = locator.report(FaultReport("S0", T0))
    assert first is not None and first.upstream_sensor == "S0"
    assert first.downstream_sensors == ("S1",)
    narrowed = locator.report(FaultReport("S1", T0 + timedelta(milliseconds=300)))
    assert narrowed is not None and narrowed.upstream_sensor == "S1"
    assert narrowed.reported_at == T0  # the fault began with the first report
    assert locator.report(FaultReport("S0", T0 + timedelta(seconds=1))) is None  # a repeat
    # a report a minute later is another fault: the old ones fall out of the window
    later = locator.report(FaultReport("S0", T0 + timedelta(minutes=1)))
    assert later is not None and later.upstream_sensor == "S0" and later.reporting == ("S0",)


def test_no_reports_no_fault_and_unknown_sensors_refused(layout: Any) -> None:
    assert locate_fault(layout, []) is None
    with pytest.raises(InvalidRequest, match="unknown sensor"):
        locate_fault(layout, reports("S9"))
    with pytest.raises(InvalidRequest, match="unknown node"):
        sensor_layout(feeder(), {"S": "nowhere"})


def test_meshed_grids_are_refused() -> None:
    grid = feeder()
    meshed = Topology(grid.name, grid.nodes, (*grid.lines, Line("loop", "n7", "n6", 0.1, 0.1)),
                      sources=grid.sources)  # fmt: skip
    with pytest.raises(InvalidRequest, match="radial"):
        sensor_layout(meshed, SENSORS)


def test_centralised_detection(layout: Any) -> None:
    # healthy: 100 A at 230 V. S0: 350 A at 180 V (3.5x its load, sagged): fault.
    # S1: 350 A at 225 V: an overload, not a fault. S2: 900 A (9x) at 229 V: no sag (an
    # inrush), no fault. S3: 1,200 A > the 1,000 A absolute threshold: fault, sag or not.
    thresholds = DetectionThresholds(current_a=1_000.0, current_ratio=3.0, voltage_sag_pu=0.9)
    samples = [SensorSample(s, T0, 230.0, 100.0) for s in ("S0", "S1", "S2", "S3")]
    later = T0 + timedelta(seconds=1)
    samples += [
        SensorSample("S0", later, 180.0, 350.0),
        SensorSample("S1", later, 225.0, 350.0),
        SensorSample("S2", later, 229.0, 900.0),
        SensorSample("S3", later, 229.0, 1_200.0),
        SensorSample("S0", later + timedelta(seconds=1), 150.0, 400.0),  # same fault: no repeat
    ]
    found = detect_faults(layout, samples, thresholds)
    assert found == [FaultReport("S0", later), FaultReport("S3", later)]
    # after a healthy sample, the next fault is reported again
    again = [SensorSample("S0", later + timedelta(seconds=5), 230.0, 100.0),
             SensorSample("S0", later + timedelta(seconds=6), 150.0, 400.0)]  # fmt: skip
    assert len(detect_faults(layout, samples + again, thresholds)) == 3


# --- CIGRE LV with pandapower's short-circuit calculation --------------------------------

CIGRE_SENSORS = {"H": "bus2", "A": "bus5", "B": "bus7", "C": "bus10", "D": "bus16"}
# the branch feeding each sensor's node: H the transformer, the others a line
FEEDING = {"H": ("trafo", 0), "A": ("line", 2), "B": ("line", 4), "C": ("line", 7),
           "D": ("line", 13)}  # fmt: skip


def cigre_samples(fault_bus: str) -> list[SensorSample]:
    """Healthy samples from a load flow, then fault samples from an IEC 60909 short circuit at
    ``fault_bus`` (the switches at 20 kV are fused away: pandapower's branch results need it)."""
    topology = reference_network("cigre_lv")
    net = to_pandapower(topology)
    bus = bus_indices(net)
    samples = []
    with pandapower_quiet():
        pp.runpp(net, numba=False)
        for sensor, (table, index) in FEEDING.items():
            node = CIGRE_SENSORS[sensor]
            current = net[f"res_{table}"][f"i_{'lv_' if table == 'trafo' else ''}ka"][index]
            volts = net.res_bus.vm_pu[bus[node]] * 400 / 3**0.5
            samples.append(SensorSample(sensor, T0, volts, current * 1000))
        net.ext_grid["s_sc_max_mva"] = 100.0
        net.ext_grid["rx_max"] = 0.1
        net.line["endtemp_degree"] = 80.0
        net.switch.drop(net.switch.index, inplace=True)
        pp.toolbox.fuse_buses(net, bus["bus0"], [bus["bus1"], bus["bus20"], bus["bus23"]])
        sc.calc_sc(net, bus=bus[fault_bus], branch_results=True, case="max")
    later = T0 + timedelta(milliseconds=200)
    for sensor, (table, index) in FEEDING.items():
        result = net[f"res_{table}_sc"].loc[index]
        current = result["ikss_lv_ka" if table == "trafo" else "ikss_ka"]
        vm = result["vm_lv_pu" if table == "trafo" else "vm_to_pu"]
        samples.append(SensorSample(sensor, later, vm * 400 / 3**0.5, current * 1000))
    return samples


@pytest.mark.parametrize(
    ("fault_bus", "upstream", "downstream"),
    [("bus9", "B", ("C",)), ("bus11", "C", ()), ("bus14", "A", ("B", "D")),
     ("bus3", "H", ("A",))],
)  # fmt: skip
def test_cigre_fault_located_between_the_right_sensors(
    fault_bus: str, upstream: str, downstream: tuple[str, ...]
) -> None:
    layout = sensor_layout(reference_network("cigre_lv"), CIGRE_SENSORS)
    found = detect_faults(layout, cigre_samples(fault_bus))
    location = locate_fault(layout, found)
    assert location is not None
    assert location.upstream_sensor == upstream and location.downstream_sensors == downstream
    assert fault_bus in location.nodes
    assert location.conflicting == () and location.silent == ()
    # distributed mode: the sensors send these reports themselves; same answer
    assert locate_fault(layout, [FaultReport(r.sensor, r.at) for r in found]) == location
