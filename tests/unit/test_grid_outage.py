"""Outage detection (G1) on a hand-checkable grid and on CIGRE LV.

The hand grid (source at ``ss``; two meters per connection point, 10 in all)::

    ss ═t═ lv ─ fa ─ a1 ─ a2                 fa, fb: LV feeders; a1..b3: connection points
              └ fb ─ b1 ─ jb ─ b2            jb: a plain bus
                            └ b3

Meters below: a1 4, a2 2, fa 4; b1 6, jb 4, b2 2, b3 2, fb 6; lv 10, ss 10.
Default rule: a node qualifies with >= 2 counting meters and >= 60 % of its meters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridhub.domain.topology import (
    DeviceAttachment,
    Line,
    Node,
    NodeKind,
    SiteAttachment,
    Source,
    Topology,
    Transformer,
)
from gridhub.errors import InvalidRequest
from gridhub.grid.households import attach_households
from gridhub.grid.outage import (
    MeterSignal,
    OutageDetector,
    OutageEnded,
    OutageRelocated,
    OutageRules,
    OutageScope,
    OutageStarted,
    SignalKind,
    detect_outages,
    outage_grid,
    signal_from_alert,
)
from gridhub.grid.topology_import import reference_network

T0 = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
GASP, BACK, READING = SignalKind.LAST_GASP, SignalKind.POWER_RESTORED, SignalKind.READING
CPS = ("a1", "a2", "b1", "b2", "b3")


def hand_grid() -> Topology:
    lv, cp, bus = NodeKind.LV_FEEDER, NodeKind.CONNECTION_POINT, NodeKind.BUS
    nodes = [
        Node("ss", 20.0, NodeKind.SECONDARY_SUBSTATION), Node("lv", 0.4, bus),
        Node("fa", 0.4, lv), Node("fb", 0.4, lv), Node("jb", 0.4, bus),
        *(Node(c, 0.4, cp) for c in CPS),
    ]  # fmt: skip
    pairs = [("lv", "fa"), ("fa", "a1"), ("a1", "a2"), ("lv", "fb"), ("fb", "b1"),
             ("b1", "jb"), ("jb", "b2"), ("jb", "b3")]  # fmt: skip
    lines = [Line(f"l-{a}-{b}", a, b, 0.01, 0.005, 0.05) for a, b in pairs]
    trafo = Transformer("t", "ss", "lv", 0.4, 20.0, 0.4, 4.0, 1.0)
    devices = [DeviceAttachment(f"m-{c}-{i}", c) for c in CPS for i in (1, 2)]
    return Topology("hand", tuple(nodes), tuple(lines), (trafo,), (), (Source("src", "ss"),),
                    devices=tuple(devices))  # fmt: skip


def sig(meter: str, minutes: float, kind: SignalKind = GASP) -> MeterSignal:
    return MeterSignal(meter, T0 + timedelta(minutes=minutes), kind)


def run(detector: OutageDetector, *signals: MeterSignal) -> list[object]:
    events: list[object] = []
    for signal in signals:
        events += detector.feed(signal)
    return events


@pytest.fixture
def detector() -> OutageDetector:
    return OutageDetector(outage_grid(hand_grid()))


def test_grid_counts_meters_below_each_node(detector: OutageDetector) -> None:
    below = detector.grid.meters_below
    assert [below[n] for n in ("a1", "fa", "b1", "jb", "lv", "ss")] == [4, 4, 6, 4, 10, 10]


def test_a_single_last_gasp_is_not_an_outage(detector: OutageDetector) -> None:
    assert run(detector, sig("m-b2-1", 0)) == []
    assert detector.ongoing == {}


def test_feeder_outage_starts_at_the_fourth_gasp_and_ends_at_the_first_restore(
    detector: OutageDetector,
) -> None:
    # After b1-1, b2-1, b3-1: b-points 1/2 each, jb 2/4, fb 3/6 = 50 % < 60 %: nothing.
    assert run(detector, sig("m-b1-1", 0), sig("m-b2-1", 0.1), sig("m-b3-1", 0.2)) == []
    # b1-2: fb 4/6 = 67 % qualifies (lv 4/10 does not). The lowest common node of b1, b2, b3 is
    # b1, which feeds the same 6 meters as fb: the outage is the whole feeder fb.
    (started,) = run(detector, sig("m-b1-2", 0.3))
    assert isinstance(started, OutageStarted)
    outage = started.outage
    assert (outage.node, outage.deepest, outage.scope) == ("fb", "b1", OutageScope.LV_FEEDER)
    assert (outage.meters_out, outage.meters_total) == (4, 6)
    assert outage.started_at == T0 and outage.lv_feeder == "fb"
    assert outage.secondary_substation == "ss"
    assert started.detected_at == T0 + timedelta(minutes=0.3)
    # 5th gasp: still fb, no event
    assert run(detector, sig("m-b2-2", 0.4)) == []
    # b2-2 comes back at 42 min: a restoration starts settling (2 min) before it is judged
    assert run(detector, sig("m-b2-2", 42, BACK)) == []
    # settled at 44 min: 4 of 6 still dark (67 %), fb is still out (only b2-2 had its own issue)
    assert detector.advance(T0 + timedelta(minutes=44)) == [] and len(detector.ongoing) == 1
    # a reading of b1-1 stamped 50 min, then nothing: at 52 min 3/6 = 50 % are dark: over, and
    # supply was back at 50 min
    assert run(detector, sig("m-b1-1", 50, READING)) == []
    (ended,) = detector.advance(T0 + timedelta(minutes=52))
    assert isinstance(ended, OutageEnded) and ended.reason == "restored"
    assert ended.ended_at == T0 + timedelta(minutes=50)
    assert ended.duration == timedelta(minutes=50)
    assert detector.ongoing == {}


def test_trickling_restores_end_the_outage_once(detector: OutageDetector) -> None:
    meters = [f"m-{c}-{i}" for c in CPS for i in (1, 2)]
    events = run(detector, *(sig(m, 0) for m in meters))
    # a1-1, a1-2, a2-1: fa is out (3/4); b1-1 makes it the substation
    assert [type(e) for e in events] == [OutageStarted, OutageRelocated]
    assert [o.node for o in detector.ongoing.values()] == ["ss"]
    # restores trickle in over 90 s, those of a1-1 and b3-2 are lost: no narrowing on the
    # way, one end at the first restore once it settled (at 33 min)
    lost = {"m-a1-1", "m-b3-2"}
    back = [sig(m, 30 + 0.15 * n, BACK) for n, m in enumerate(meters) if m not in lost]
    assert run(detector, *back) == []
    (ended,) = detector.advance(T0 + timedelta(minutes=33))
    # the first restore that arrived: a1-2's, at 30 min 9 s
    assert isinstance(ended, OutageEnded) and ended.ended_at == T0 + timedelta(minutes=30.15)
    # the two meters whose restore was lost are stale (30 min) and count no more
    assert detector.advance(T0 + timedelta(minutes=40)) == [] and detector.ongoing == {}


def test_lost_restores_of_one_point_leave_that_point_out(detector: OutageDetector) -> None:
    # both restores of b3 are lost: b3 may really still be out (its service fuse), so the
    # outage narrows to b3 and ends with b3's next reading
    meters = [f"m-{c}-{i}" for c in CPS for i in (1, 2)]
    run(detector, *(sig(m, 0) for m in meters))
    run(detector, *(sig(m, 30, BACK) for m in meters if not m.startswith("m-b3")))
    (narrowed,) = detector.advance(T0 + timedelta(minutes=33))
    assert isinstance(narrowed, OutageRelocated) and narrowed.outage.node == "b3"
    assert narrowed.outage.scope is OutageScope.SECTION and narrowed.outage.started_at == T0
    assert run(detector, sig("m-b3-1", 45, READING)) == []
    (ended,) = detector.advance(T0 + timedelta(minutes=48))
    assert isinstance(ended, OutageEnded) and ended.ended_at == T0 + timedelta(minutes=45)


def test_outage_widens_from_feeder_to_substation(detector: OutageDetector) -> None:
    b_meters = [f"m-{c}-{i}" for c in CPS[2:] for i in (1, 2)]
    events = run(detector, *(sig(m, 0.1 * n) for n, m in enumerate(b_meters)))
    # six fb gasps: lv is at 6/10 = 60 % and qualifies, but its out meters' common node is b1,
    # so the outage is fb
    assert [type(e) for e in events] == [OutageStarted]
    assert events[0].outage.node == "fb"  # type: ignore[attr-defined]
    (moved,) = run(detector, sig("m-a2-1", 1))
    # a2-1 joins: the common node is lv, which feeds the same 10 meters as ss
    assert isinstance(moved, OutageRelocated) and moved.previous_node == "fb"
    assert (moved.outage.node, moved.outage.deepest) == ("ss", "lv")
    assert moved.outage.scope is OutageScope.SECONDARY_SUBSTATION
    assert moved.outage.started_at == T0 and moved.outage.meters_out == 7


def test_an_old_dark_meter_does_not_widen_a_fresh_outage(detector: OutageDetector) -> None:
    # a2-1 died alone two hours earlier (no outage); then feeder fb goes out entirely.
    assert run(detector, sig("m-a2-1", -120)) == []
    events = run(detector, *(sig(f"m-{c}-{i}", 0) for c in CPS[2:] for i in (1, 2)))
    # without the window lv would count 7/10 and the area would be the substation
    assert [e.outage.node for e in events] == ["fb"]  # type: ignore[attr-defined]


def test_two_outages_merge_when_a_wider_area_qualifies() -> None:
    detector = OutageDetector(outage_grid(hand_grid()), OutageRules(fraction=0.9))
    (fa,) = run(detector, *(sig(f"m-{c}-{i}", 0) for c in ("a1", "a2") for i in (1, 2)))
    (b2,) = run(detector, sig("m-b2-1", 1), sig("m-b2-2", 1))
    assert fa.outage.node == "fa" and b2.outage.node == "b2"  # type: ignore[attr-defined]
    assert b2.outage.scope is OutageScope.SECTION  # type: ignore[attr-defined]
    # 9 of 10 dark: lv qualifies at 90 %; fa's outage (the older) becomes the substation's
    events = run(detector, sig("m-b1-1", 2), sig("m-b1-2", 2), sig("m-b3-1", 2))
    relocated = [e for e in events if isinstance(e, OutageRelocated)]
    merged = [e for e in events if isinstance(e, OutageEnded)]
    assert relocated[0].outage.node == "ss" and relocated[0].previous_node == "fa"
    assert merged[0].reason == "merged" and merged[0].outage.node == "b2"
    assert merged[0].merged_into == relocated[0].outage.id
    assert list(detector.ongoing) == [relocated[0].outage.id]


def test_late_and_repeated_signals(detector: OutageDetector) -> None:
    run(detector, sig("m-b2-1", 0), sig("m-b2-2", 0))
    assert len(detector.ongoing) == 1
    # a repeated gasp does not move the start; an older reading proves nothing
    assert run(detector, sig("m-b2-1", 1), sig("m-b2-2", -1, READING)) == []
    assert run(detector, sig("m-b2-2", 5, READING)) == []
    # any later signal (here a reading of a live meter) lets the restoration settle
    (ended,) = run(detector, sig("m-a1-1", 7.5, READING))
    assert isinstance(ended, OutageEnded) and ended.ended_at == T0 + timedelta(minutes=5)
    # a gasp stamped before the meter's own restore is stale
    assert run(detector, sig("m-b2-2", 4)) == []


def test_unmapped_meters_are_counted_not_used(detector: OutageDetector) -> None:
    assert run(detector, sig("stranger", 0)) == []
    assert detector.unmapped == 1


def test_rules_and_placement_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="fraction"):
        OutageRules(fraction=0)
    with pytest.raises(InvalidRequest, match="window"):
        OutageRules(window=timedelta(0))
    grid = hand_grid().with_sites([SiteAttachment("s1", "a1")])
    # a site's meters join the grid at the site's node
    assert outage_grid(grid, {"s1": ["m-extra"]}).meter_node["m-extra"] == "a1"
    with pytest.raises(InvalidRequest, match="placed at"):
        outage_grid(grid.with_sites([SiteAttachment("s1", "b3")]), {"s1": ["m-b1-1"]})


@pytest.mark.parametrize(
    ("alert", "kind"),
    [("last.gasp", GASP), ("lastGasp", GASP), ("LAST_GASP", GASP), ("power-restored", BACK),
     ("powerRestore", BACK), ("maximum.power.approaching", None)],
)  # fmt: skip
def test_alert_types_map_to_signals(alert: str, kind: SignalKind | None) -> None:
    signal = signal_from_alert("m1", alert, T0)
    assert (signal.kind if signal else None) is kind


# --- CIGRE LV ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cigre() -> Topology:
    topology = reference_network("cigre_lv")
    points = topology.nodes_of_kind(NodeKind.CONNECTION_POINT)
    return topology.with_devices(
        DeviceAttachment(f"m-{cp}-{i}", cp) for cp in points for i in (1, 2)
    )


def meters_below(topology: Topology, node: str) -> list[str]:
    return sorted(topology.devices_downstream(node))


def test_cigre_residential_substation_out_although_a_quarter_of_gasps_are_lost(
    cigre: Topology,
) -> None:
    # Residential: substation bus1 (R0), transformer to bus2 (R1, the one LV feeder), 5
    # connection points (bus12, bus16-bus19), 10 meters. 8 of 10 gasps arrive (80 % >= 60 %).
    meters = meters_below(cigre, "bus2")
    assert len(meters) == 10
    signals = [sig(m, 0.05 * i) for i, m in enumerate(meters) if i % 4 != 3]
    events, detector = detect_outages(outage_grid(cigre), signals)
    started = [e for e in events if isinstance(e, OutageStarted)]
    assert len(started) >= 1
    (outage,) = detector.ongoing.values()
    assert outage.node == "bus1" and outage.scope is OutageScope.SECONDARY_SUBSTATION
    assert outage.lv_feeder == "bus2" and outage.meters_out == 8 and outage.meters_total == 10
    # the commercial and industrial feeders are untouched
    assert all(e.outage.lv_feeder == "bus2" for e in events)  # type: ignore[union-attr]


def test_cigre_single_last_gasp_raises_nothing(cigre: Topology) -> None:
    events, detector = detect_outages(outage_grid(cigre), [sig("m-bus35-1", 0)])
    assert events == [] and detector.ongoing == {}


def test_cigre_commercial_branch_section(cigre: Topology) -> None:
    # bus34 feeds connection points bus35 and bus36 (4 meters); bus33 feeds those and bus37 (6).
    # All four below bus34 gasp: bus33 qualifies too (4/6), but the common node is bus34.
    signals = [sig(m, 0) for m in meters_below(cigre, "bus34")]
    events, detector = detect_outages(outage_grid(cigre), signals)
    (outage,) = detector.ongoing.values()
    assert (outage.node, outage.deepest) == ("bus34", "bus34")
    assert outage.scope is OutageScope.SECTION and outage.lv_feeder == "bus24"


def test_cigre_households_commercial_substation_out_through_site_meters(cigre: Topology) -> None:
    # the demo's path: households (sites) on the connection points, their meters from the
    # registry. 26 households round-robin on 13 points: C0's feeder C1 (bus24) has 7 points,
    # 14 households; every one of their meters gasps.
    homes = attach_households(cigre.with_devices([]), [f"h{i}" for i in range(26)])
    site_meters = {s.site_id: [f"{s.site_id}-meter"] for s in homes.sites}
    grid = outage_grid(homes, site_meters)
    below = set(homes.sites_downstream("bus24"))
    assert len(below) == 14
    alerts = [signal_from_alert(f"{site}-meter", "lastGasp", T0) for site in sorted(below)]
    events, detector = detect_outages(grid, [a for a in alerts if a is not None])
    (outage,) = detector.ongoing.values()
    assert (outage.node, outage.lv_feeder, outage.scope) == (
        "bus23", "bus24", OutageScope.SECONDARY_SUBSTATION
    )  # fmt: skip
    assert outage.meters_out == outage.meters_total == 14


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_cigre_any_dark_subtree_is_reported_as_exactly_its_meters(
    cigre: Topology, data: st.DataObject
) -> None:
    # every meter below a random node gasps, in a random order: one outage remains, and the
    # meters below its node are exactly the dark ones
    grid = outage_grid(cigre)
    candidates = sorted(n for n, count in grid.meters_below.items() if count >= 2)
    node = data.draw(st.sampled_from(candidates))
    dark = data.draw(st.permutations(meters_below(cigre, node)))
    events, detector = detect_outages(grid, [sig(m, 0.01 * i) for i, m in enumerate(dark)])
    (outage,) = detector.ongoing.values()
    assert meters_below(cigre, outage.node) == sorted(dark)
    assert outage.meters_out == len(dark) and outage.started_at == T0
    assert set(meters_below(cigre, outage.deepest)) == set(dark)
