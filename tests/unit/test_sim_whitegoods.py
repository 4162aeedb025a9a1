"""The smart whitegoods' own reports in the fleet: configured and started alerts per cycle."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridhub.domain.messages import AlertLevel, DeviceAlert, decode
from gridhub.domain.timeutil import day_bounds
from gridhub.domain.validation import event_time_us
from gridhub.sim import Fleet
from gridhub.sim import profiles as pf
from gridhub.sim import whitegoods as wg

ZONE = ZoneInfo("Europe/Brussels")
DAY = date(2026, 3, 4)  # a Wednesday
FAR_FUTURE_US = 4_102_444_800_000_000  # 2100: validation's "not in the future" never trips


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet(12, seed=3)


def alerts(fleet: Fleet, start: datetime, end: datetime, dt: int = 900, **kw: Any):
    """(hardwareId, DeviceAlert) of the span, in the order sent."""
    out = []
    for batch in fleet.batches(start, end, dt, **kw):
        for hardware_id, raw in batch:
            message = decode(raw)
            if isinstance(message, DeviceAlert):
                assert message.hardwareId == hardware_id
                out.append((hardware_id, message))
    return out


def _at(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text).timestamp()


def test_every_cycle_is_configured_then_started_as_the_appliance_reports_it(
    fleet: Fleet,
) -> None:
    start, end = day_bounds(DAY, ZONE)
    sent = alerts(fleet, start, end)
    cycles = fleet._plan(DAY)[1]
    plugs = {d.hardware_id: d for d in fleet.devices() if d.device_type == "smart-plug"}
    expected = 0
    by_device: dict[str, list[DeviceAlert]] = defaultdict(list)
    for hardware_id, message in sent:
        assert hardware_id in plugs
        assert message.request.level is AlertLevel.INFO
        event_time_us(message.request.eventDate, FAR_FUTURE_US)  # valid canonical time
        by_device[hardware_id].append(message)
    for h, home in enumerate(fleet.households):
        for appliance, runs in cycles[h].items():
            device = f"{home.site.id}-plug-{pf.PLUG_SUFFIX[appliance]}"
            got = by_device.get(device, [])
            assert [m.request.type for m in got] == [wg.CONFIGURED, wg.STARTED] * len(runs)
            previous_end = -math.inf
            for run, (configured, started) in zip(
                runs, zip(got[::2], got[1::2], strict=True), strict=True
            ):
                meta, same = configured.request.metadata or {}, started.request.metadata or {}
                assert {k: same[k] for k in ("configuredAt", "deadline", "program")} == {
                    k: meta[k] for k in ("configuredAt", "deadline", "program")
                }
                assert meta["configuredAt"] == configured.request.eventDate
                assert _at(started.request.eventDate) == pytest.approx(run.start_s, abs=0.5)
                config_s, deadline_s = _at(meta["configuredAt"]), _at(meta["deadline"])
                assert previous_end < config_s <= run.start_s
                assert run.start_s - config_s <= wg.LEAD_S[appliance][1] + 1
                assert deadline_s >= run.end_s + wg.SLACK_S[0] - 1
                assert deadline_s % wg.QUARTER_S == 0
                assert meta["program"] == wg.program_of(appliance, run)
                assert meta["estimatedEnergyKwh"] == pytest.approx(run.energy_kwh, abs=1e-3)
                previous_end = run.end_s
            expected += 2 * len(runs)
    assert expected > 10 and len(sent) == expected  # the day has cycles, and nothing else


def test_the_same_events_however_the_span_is_cut_and_for_a_new_fleet(fleet: Fleet) -> None:
    start, end = day_bounds(DAY, ZONE)
    whole = [(h, m.request) for h, m in alerts(fleet, start, end)]
    fresh = Fleet(12, seed=3)
    cut = []
    moment = start + timedelta(hours=5)
    cut += [(h, m.request) for h, m in alerts(fresh, start, moment)]
    while moment < end:  # live mode: one 1-minute tick per call
        cut += [(h, m.request) for h, m in alerts(fresh, moment, moment + timedelta(minutes=1), 60)]
        moment += timedelta(minutes=1)
    assert cut == whole
    assert [(h, m.request) for h, m in alerts(Fleet(12, seed=4), start, end)] != whole


def test_events_follow_their_ticks_measurements_and_keep_batches_whole(fleet: Fleet) -> None:
    start, end = day_bounds(DAY, ZONE)
    per_tick = len(fleet.devices())
    moments, measured = [], []
    for batch in fleet.batches(start, end, 900, batch_size=per_tick * 3):
        readings = [raw for _, raw in batch if not isinstance(decode(raw), DeviceAlert)]
        measured.append(len(readings))
        for _, raw in batch:
            moments.append(datetime.fromisoformat(decode(raw).request.eventDate or ""))
    assert moments == sorted(moments)
    assert measured == [per_tick * 3] * 32  # 96 ticks in batches of whole ticks


def test_a_silent_plug_loses_its_events_too(fleet: Fleet) -> None:
    start, end = day_bounds(DAY, ZONE)
    every = alerts(fleet, start, end)
    device = every[0][0]
    quiet = alerts(fleet, start, end, gap_windows=[(start, end, device)])
    assert quiet == [(h, m) for h, m in every if h != device]


def test_program_names_follow_the_power_curve() -> None:
    rng = np.random.default_rng(5)
    names = {
        wg.program_of("washing_machine", pf.Cycle(0, *pf.washer_program(rng))) for _ in "x" * 200
    }
    assert names == {"cotton 30°C", "cotton 40°C", "cotton 60°C"}
    hot = pf.Cycle(0, (180, 20 * 60, 2400, 900, 600), (0.05, 2.1, 0.2, 0.1, 0.4))
    cool = pf.Cycle(0, (180, 7 * 60, 2400, 900, 600), (0.05, 2.1, 0.2, 0.1, 0.4))
    assert wg.program_of("washing_machine", hot) == "cotton 60°C"
    assert wg.program_of("washing_machine", cool) == "cotton 30°C"
    assert wg.program_of("dryer", pf.Cycle(0, *pf.dryer_program(rng))) in {
        "cupboard dry",
        "extra dry",
    }
    assert wg.program_of("dishwasher", pf.Cycle(0, *pf.dishwasher_program(rng))) in {
        "eco 50°C",
        "normal 65°C",
    }


def test_by_tick_splits_on_interval_edges() -> None:
    events = [wg.Event(t, 0, "x", b"") for t in (100, 899, 900, 1799, 2700)]
    got = wg.by_tick(events, [0, 900, 1800], 900)
    assert [[e.at_s for e in tick] for tick in got] == [[100, 899], [900, 1799], []]
