"""The fraud simulator (sim/fraud.py): a bypass hides exactly its share, node meters see the
true load of the households below them plus I²R losses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gridhub.domain.topology import Line, Node, NodeKind, SiteAttachment, Source, Topology
from gridhub.errors import InvalidRequest
from gridhub.sim.fleet import INJECTED, POWER, REGISTER, Fleet
from gridhub.sim.fraud import Bypass, NodeMeter, fraudulent


def _grid() -> Topology:
    nodes = (
        Node("ss", 0.4, NodeKind.SECONDARY_SUBSTATION),
        Node("a", 0.4, NodeKind.CONNECTION_POINT),
        Node("b", 0.4, NodeKind.CONNECTION_POINT),
    )
    lines = (Line("l1", "ss", "a", 0.1, 0.05), Line("l2", "ss", "b", 0.1, 0.05))
    sites = (SiteAttachment("hh001", "a"), SiteAttachment("hh002", "b"))
    return Topology("t", nodes, lines, sources=(Source("s", "ss"),), sites=sites)


def _values(raw: bytes) -> dict[str, float]:
    return json.loads(raw)["request"]["measurements"]  # type: ignore[no-any-return]


def test_bypass_and_node_meters_against_the_honest_messages() -> None:
    fleet = Fleet(2, seed=3, tenant="t")
    start = datetime(2026, 3, 2, tzinfo=UTC)
    end = start + timedelta(hours=6)
    honest = [m for b in Fleet(2, seed=3, tenant="t").batches(start, end, 900) for m in b]
    sites = {"hh001": ["hh001-meter"], "hh002": ["hh002-meter"]}
    total = NodeMeter("ss-meter", _grid(), "ss", sites, loss_coefficient=0.01)
    head = NodeMeter("a-meter", _grid(), "a", sites)
    per_tick = len(fleet.devices())
    batches = fleet.batches(start, end, 900, batch_size=per_tick * 4)
    sent = [m for b in fraudulent(batches, [Bypass("hh001-meter", 0.7)], [total, head]) for m in b]
    truth = [_values(raw) for hw, raw in honest if hw == "hh001-meter"]
    cheat = [_values(raw) for hw, raw in sent if hw == "hh001-meter"]
    assert [c[POWER] for c in cheat] == pytest.approx([0.3 * t[POWER] for t in truth], abs=1e-4)
    grown = [c[REGISTER] - cheat[0][REGISTER] for c in cheat]
    assert grown == pytest.approx(
        [0.3 * (t[REGISTER] - truth[0][REGISTER]) for t in truth], abs=1e-3
    )
    net = {}
    for hw, raw in honest:
        if hw.endswith("-meter"):
            at = json.loads(raw)["request"]["eventDate"]
            v = _values(raw)
            net.setdefault(at, []).append(v[POWER] - v[INJECTED])
    ss = [_values(raw) for hw, raw in sent if hw == "ss-meter"]
    assert len(ss) == 24
    expected = [sum(p) + 0.01 * sum(p) ** 2 for p in net.values()]
    assert [v[POWER] - v[INJECTED] for v in ss] == pytest.approx(expected, abs=1e-3)
    heads = [_values(raw)[POWER] for hw, raw in sent if hw == "a-meter"]
    assert heads == pytest.approx([max(t[POWER] - t[INJECTED], 0) for t in truth], abs=1e-3)


def test_refusals() -> None:
    with pytest.raises(InvalidRequest):
        Bypass("m", 1.0)
    with pytest.raises(InvalidRequest, match="no site meter"):
        NodeMeter("x", _grid(), "a", {})
