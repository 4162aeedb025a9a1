"""Fused luminaires (G3) on a public-lighting feeder with four sensors (seed 004 Figure 19)::

    S1 (h) ─ segment a ─ S2 (p1) ─ segment b ─ S3 (p2) ─ segment c ─ S4 (p3) ─ segment d ─ p4

Each segment has 5 bulbs of 100 W at 230 V: R = 230² / 100 = 529 Ω, one bulb's admittance
1/529 = 1.8904 mS, a segment 5/529 = 9.452 mS. A sensor sees the bulbs below it in parallel:
S1 20 bulbs (I = 230 · 20/529 = 8.696 A at 230 V), S2 15, S3 10, S4 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta

import pytest

from gridhub.domain.topology import Line, Node, NodeKind, Source, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.luminaires import (
    LightingFeeder,
    LuminaireMonitor,
    LuminaireRules,
    LuminairesFused,
    LuminairesRepaired,
    MonitoringSet,
    ScheduleMismatch,
    SensorReading,
    lighting_feeder,
    segment_admittances,
)

R_BULB = 529.0
SENSORS = {"S1": "h", "S2": "p1", "S3": "p2", "S4": "p3"}
T0 = datetime(2026, 1, 10, 18, 0, tzinfo=UTC)


def pl_grid() -> Topology:
    names = ["h", "p1", "p2", "p3", "p4"]
    nodes = [Node("h", 0.4, NodeKind.LV_FEEDER), *(Node(n, 0.4) for n in names[1:])]
    lines = [
        Line(f"{a}-{b}", a, b, 0.02, 0.001, 0.05) for a, b in zip(names, names[1:], strict=False)
    ]
    return Topology("pl", tuple(nodes), tuple(lines), sources=(Source("src", "h"),))


@pytest.fixture
def feeder() -> LightingFeeder:
    return lighting_feeder(pl_grid(), SENSORS, luminaires={s: 5 for s in SENSORS})


def readings(bulbs: Mapping[str, int], volts: float) -> dict[str, SensorReading]:
    """What each sensor measures with ``bulbs`` lit per segment (a-d) at ``volts``; cable drop
    neglected, as the seed does."""
    order = ["a", "b", "c", "d"]
    out = {}
    for i, sensor in enumerate(["S1", "S2", "S3", "S4"]):
        below = sum(bulbs[s] for s in order[i:])
        out[sensor] = SensorReading(volts, volts * below / R_BULB)
    return out


ALL = {"a": 5, "b": 5, "c": 5, "d": 5}


def night(monitor: LuminaireMonitor, states: list[tuple[dict[str, int], float]]) -> list[object]:
    events: list[object] = []
    for k, (bulbs, volts) in enumerate(states):
        at = T0 + timedelta(minutes=10 * (k + 1))
        events += monitor.feed(MonitoringSet(at, readings(bulbs, volts)))
    return events


def test_segment_admittances_follow_the_seed_formula(feeder: LightingFeeder) -> None:
    values = segment_admittances(feeder, readings(ALL, 230.0))
    assert values == pytest.approx([5 / 529] * 4)  # 9.452 mS each
    # the seed's impedance form for segment a: Z1a = Z1·Z2 / (Z2 − Z1)
    z1, z2 = 529 / 20, 529 / 15
    assert 1 / values[0] == pytest.approx(z1 * z2 / (z2 - z1))  # 105.8 Ω = 529 / 5


def test_voltage_swings_alone_raise_nothing(feeder: LightingFeeder) -> None:
    # 215 V .. 245 V over the night: currents move ±7 %, admittances do not
    monitor = LuminaireMonitor(feeder)
    swing = [(ALL, 215.0 + (k * 7) % 31) for k in range(30)]
    assert night(monitor, swing) == []


def test_a_fused_bulb_is_located_in_its_segment_after_three_sets(feeder: LightingFeeder) -> None:
    monitor = LuminaireMonitor(feeder)
    # 2 warm-up sets skipped, 6 to learn the baseline, then one bulb of segment c fuses at set 11
    states = [(ALL, 230.0 + k % 3) for k in range(10)]
    broken = {"a": 5, "b": 5, "c": 4, "d": 5}
    states += [(broken, 228.0), (broken, 233.0), (broken, 226.0)]
    events = night(monitor, states)
    assert len(events) == 1 and isinstance(events[0], LuminairesFused)
    event = events[0]
    assert (event.segment.upstream, event.segment.downstream) == ("S3", "S4")
    assert event.estimated_luminaires == 1
    assert event.first_seen == T0 + timedelta(minutes=110)
    assert event.confirmed_at == T0 + timedelta(minutes=130)
    assert event.baseline_s == pytest.approx(5 / 529) and event.now_s == pytest.approx(4 / 529)
    # a second bulb in the same segment is found against the new baseline; then both replaced
    worse = {"a": 5, "b": 5, "c": 3, "d": 5}
    again = night_from(monitor, 13, [(worse, 230.0)] * 3 + [(ALL, 230.0)] * 3)
    assert [type(e) for e in again] == [LuminairesFused, LuminairesRepaired]
    assert again[0].estimated_luminaires == 1 and again[1].estimated_luminaires == 2  # type: ignore[union-attr]


def night_from(
    monitor: LuminaireMonitor, start: int, states: list[tuple[dict[str, int], float]]
) -> list[object]:
    events: list[object] = []
    for k, (bulbs, volts) in enumerate(states, start + 1):
        events += monitor.feed(
            MonitoringSet(T0 + timedelta(minutes=10 * k), readings(bulbs, volts))
        )
    return events


def test_flicker_and_low_voltage_do_not_alarm(feeder: LightingFeeder) -> None:
    monitor = LuminaireMonitor(feeder)
    flicker = {"a": 5, "b": 3, "c": 5, "d": 5}  # two bulbs restriking, for one set only
    states = [(ALL, 230.0)] * 8 + [(flicker, 230.0), (ALL, 230.0)]
    # at 200 V (0.87 pu) the lamps of segment d drop out: a low-voltage set, skipped
    states += [({"a": 5, "b": 5, "c": 5, "d": 0}, 200.0)] * 4 + [(ALL, 230.0)] * 3
    assert night(monitor, states) == []
    assert monitor.skipped == 2 + 4


def test_unknown_counts_use_a_relative_threshold() -> None:
    feeder = lighting_feeder(pl_grid(), SENSORS)
    monitor = LuminaireMonitor(feeder, LuminaireRules(relative_change=0.15, persistence=2))
    # one bulb of five is -20 % of segment b: above 15 %
    broken = {"a": 5, "b": 4, "c": 5, "d": 5}
    events = night(monitor, [(ALL, 230.0)] * 8 + [(broken, 230.0)] * 2)
    assert len(events) == 1 and isinstance(events[0], LuminairesFused)
    assert events[0].segment.upstream == "S2" and events[0].estimated_luminaires is None


def test_schedule_mismatch_when_dark_at_night(feeder: LightingFeeder) -> None:
    def lit_hours(at: datetime) -> bool:
        return at.time() >= time(17, 30) or at.time() < time(7, 0)

    monitor = LuminaireMonitor(feeder, LuminaireRules(schedule=lit_hours))
    dark = {"a": 0, "b": 0, "c": 0, "d": 0}
    events = night(monitor, [(ALL, 230.0)] * 3 + [(dark, 230.0)] * 5)
    assert events == [
        ScheduleMismatch(T0 + timedelta(minutes=40), T0 + timedelta(minutes=60), True)
    ]


def test_inputs_are_checked(feeder: LightingFeeder) -> None:
    with pytest.raises(InvalidRequest, match="one path"):
        grid = pl_grid()
        branch = Topology(grid.name, (*grid.nodes, Node("q", 0.4)),
                          (*grid.lines, Line("p1-q", "p1", "q", 0.02, 0.001)),
                          sources=grid.sources)  # fmt: skip
        lighting_feeder(branch, {"S1": "h", "S2": "q", "S3": "p2"})
    monitor = LuminaireMonitor(feeder)
    with pytest.raises(InvalidRequest, match="lacks sensors"):
        monitor.feed(MonitoringSet(T0, {"S1": SensorReading(230.0, 1.0)}))
    bad = readings(ALL, 230.0) | {"S2": SensorReading(0.0, 1.0)}
    with pytest.raises(InvalidRequest, match="bad reading"):
        monitor.feed(MonitoringSet(T0, bad))
    monitor.feed(MonitoringSet(T0, readings(ALL, 230.0)))
    with pytest.raises(InvalidRequest, match="not after"):
        monitor.feed(MonitoringSet(T0, readings(ALL, 230.0)))


# --- a load flow with cables: the seed neglects cable impedance; check that this holds ---------

CHAIN = ["h", "a1", "a2", "s2", "b1", "b2", "s3", "c1", "c2", "s4", "d1", "d2"]
LAMPS = {"a1": 3, "a2": 2, "b1": 3, "b2": 2, "c1": 3, "c2": 2, "d1": 3, "d2": 2}  # per phase
PL_SENSORS = {"S1": "h", "S2": "s2", "S3": "s3", "S4": "s4"}


def load_flow_sets(
    broken: dict[str, int], source_pu: list[float], first: int = 0
) -> list[MonitoringSet]:
    """One monitoring set per source voltage: a 0.4 kV chain of 40 m cables (0.6 Ω/km), lamps
    of 100 W per phase at 230 V as constant-impedance loads, ``broken`` lamps removed. Each
    sensor reads its node's phase voltage and the current of the cable leaving it."""
    import pandapower as pp

    from gridhub.grid.topology_import import pandapower_quiet

    sets = []
    for k, vm in enumerate(source_pu):
        net = pp.create_empty_network()
        bus = {n: pp.create_bus(net, 0.4, name=n) for n in CHAIN}
        pp.create_ext_grid(net, bus["h"], vm_pu=vm)
        line = {}
        for a, b in zip(CHAIN, CHAIN[1:], strict=False):
            line[a] = pp.create_line_from_parameters(
                net, bus[a], bus[b], 0.04, r_ohm_per_km=0.6, x_ohm_per_km=0.08,
                c_nf_per_km=0.0, max_i_ka=0.1,
            )  # fmt: skip
        for node, lamps in LAMPS.items():
            lit = lamps - broken.get(node, 0)
            if lit:
                pp.create_load(net, bus[node], p_mw=3 * lit * 100e-6, q_mvar=0.0,
                               const_z_p_percent=100.0, const_z_q_percent=100.0)  # fmt: skip
        with pandapower_quiet():
            pp.runpp(net, numba=False)
        readings = {
            s: SensorReading(
                float(net.res_bus.vm_pu[bus[n]]) * 400 / 3**0.5,
                float(net.res_line.i_from_ka[line[n]]) * 1000,
            )
            for s, n in PL_SENSORS.items()
        }
        sets.append(MonitoringSet(T0 + timedelta(minutes=10 * (first + k + 1)), readings))
    return sets


def test_load_flow_feeder_with_cables_finds_the_fused_lamp_segment() -> None:
    # sensors on the chain: S1 at h (segment a: a1, a2), S2 at s2 (b), S3 at s3 (c), S4 (d)
    topology = Topology(
        "chain",
        tuple(Node(n, 0.4, NodeKind.LV_FEEDER if n == "h" else NodeKind.BUS) for n in CHAIN),
        tuple(Line(f"{a}-{b}", a, b, 0.024, 0.0032, 0.04)
              for a, b in zip(CHAIN, CHAIN[1:], strict=False)),
        sources=(Source("src", "h"),),
    )  # fmt: skip
    feeder = lighting_feeder(topology, PL_SENSORS, luminaires=dict.fromkeys(PL_SENSORS, 5))
    monitor = LuminaireMonitor(feeder)
    # the source voltage wanders 0.95..1.05 pu all night; 2 warm-up sets, 6 for the baseline,
    # then a lamp at c1 (segment c) fuses for the last 3 sets
    swing = [0.95 + 0.1 * ((k * 7) % 11) / 10 for k in range(11)]
    sets = load_flow_sets({}, swing[:8]) + load_flow_sets({"c1": 1}, swing[8:], first=8)
    events: list[object] = []
    for monitoring in sets:
        events += monitor.feed(monitoring)
    assert len(events) == 1 and isinstance(events[0], LuminairesFused)
    assert events[0].segment.upstream == "S3" and events[0].estimated_luminaires == 1
