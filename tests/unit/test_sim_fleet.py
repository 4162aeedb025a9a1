"""The fleet simulator (S1): devices, timing, values, faults, determinism, and its publishers."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from gridhub.domain.identifiers import IdentifierRegistry, validate_custom
from gridhub.domain.messages import DeviceMeasurements, decode, encode
from gridhub.domain.rejections import RejectReason
from gridhub.domain.timeutil import day_bounds
from gridhub.domain.validation import measurement_readings, to_us
from gridhub.errors import RejectedMessage
from gridhub.sim import (
    CUSTOM_IDENTIFIERS,
    MALFORMED_CYCLE,
    Fleet,
    HttpPublisher,
    MalformedKind,
    run_live,
)

ZONE = ZoneInfo("Europe/Brussels")
POWER = "electricity.power.active.consumed.total"
INJECTED = "electricity.power.active.injected.total"
REGISTER = "electricity.energy.active.consumed.total"
ALERT = b'{"type":"DeviceAlert"'
FAR_FUTURE_US = to_us(datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet(12, seed=7)


@pytest.fixture(scope="module")
def identifiers() -> IdentifierRegistry:
    registry = IdentifierRegistry()
    for name, unit in CUSTOM_IDENTIFIERS:
        registry.add(validate_custom(name, unit))
    return registry


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)


def messages(fleet: Fleet, start: datetime, end: datetime, dt: int = 900, **options: object):
    """The measurement messages; the whitegood alerts among them: test_sim_whitegoods.py."""
    return [
        item
        for batch in fleet.batches(start, end, dt, **options)
        for item in batch
        if not item[1].startswith(ALERT)
    ]


def series(items: list[tuple[str, bytes]]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for hardware_id, payload in items:
        for name, value in decode(payload).request.measurements.items():
            out[(hardware_id, name)].append(value)
    return out


# --- sites and devices -------------------------------------------------------------------------


def test_sites_and_devices_follow_the_naming_rules(fleet: Fleet) -> None:
    sites = fleet.sites()
    assert [s.id for s in sites] == [f"hh{n:03d}" for n in range(1, 13)]
    devices = {d.hardware_id: d for d in fleet.devices()}
    for site in sites:
        assert site.tenant == "demo"
        assert devices[f"{site.id}-meter"].device_type == "smart-meter"
        own = {d.hardware_id for d in devices.values() if d.site == site.id}
        expected = {f"{site.id}-meter"}
        for appliance, suffix in [
            ("washing_machine", "washer"),
            ("dryer", "dryer"),
            ("dishwasher", "dishwasher"),
        ]:
            if appliance in site.appliance_types:
                expected.add(f"{site.id}-plug-{suffix}")
                assert devices[f"{site.id}-plug-{suffix}"].device_type == "smart-plug"
        if "boiler" in site.appliance_types:
            expected.add(f"{site.id}-boiler")
            assert devices[f"{site.id}-boiler"].device_type == "boiler"
        assert own == expected


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        Fleet(0)
    with pytest.raises(ValueError):
        Fleet(3, seed=-1)
    with pytest.raises(Exception, match="time zone"):
        Fleet(3, zone="Mars/Olympus")
    assert Fleet(2, prefix="house", tenant="pilot").sites()[1].id == "house002"


def test_batches_checks_its_arguments(fleet: Fleet) -> None:
    start = local(2026, 1, 5)
    with pytest.raises(ValueError):
        fleet.batches(start.replace(tzinfo=None), start + timedelta(hours=1), 900)
    with pytest.raises(ValueError):
        fleet.batches(start, start + timedelta(hours=1), 0)
    with pytest.raises(ValueError):
        fleet.batches(start, start + timedelta(hours=1), 900, gap_rate=1.5)


# --- timing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "quarters"),
    [(date(2026, 1, 14), 96), (date(2026, 3, 29), 92), (date(2026, 10, 25), 100)],
)
def test_ticks_per_local_day_at_15_minutes(fleet: Fleet, day: date, quarters: int) -> None:
    start, end = day_bounds(day, ZONE)
    assert fleet.ticks_count(start, end, 900) == quarters
    items = messages(fleet, start, end)
    meter = [decode(p).request.eventDate for h, p in items if h == "hh001-meter"]
    assert len(meter) == quarters
    assert meter[0] == f"{day.isoformat()}T00:00:00{start.strftime('%z')[:3]}:00"
    moments = [datetime.fromisoformat(d) for d in meter]
    assert all(b - a == timedelta(minutes=15) for a, b in zip(moments, moments[1:], strict=False))
    assert moments[-1] + timedelta(minutes=15) == end


def test_autumn_day_repeats_the_hour_with_two_offsets(fleet: Fleet) -> None:
    start, end = day_bounds(date(2026, 10, 25), ZONE)
    dates = [
        decode(p).request.eventDate for h, p in messages(fleet, start, end) if h == "hh001-meter"
    ]
    assert "2026-10-25T02:15:00+02:00" in dates and "2026-10-25T02:15:00+01:00" in dates


def test_ticks_align_to_the_interval_not_to_start(fleet: Fleet) -> None:
    start = local(2026, 5, 4, 10, 7, 30)
    assert fleet.ticks_count(start, local(2026, 5, 4, 11), 900) == 3  # 10:15, 10:30, 10:45
    first = decode(next(iter(fleet.batches(start, local(2026, 5, 4, 11), 900)))[0][1])
    assert first.request.eventDate == "2026-05-04T10:15:00+02:00"
    assert fleet.ticks_count(start, start, 900) == 0
    assert list(fleet.batches(start, start, 900)) == []


def test_one_second_interval_for_a_short_span(fleet: Fleet) -> None:
    start = local(2026, 5, 4, 20, 0)
    items = messages(fleet, start, start + timedelta(seconds=90), 1)
    assert len(items) == 90 * len(fleet.devices())
    values = series(items)
    dates = [decode(p).request.eventDate for h, p in items if h == "hh002-meter"]
    assert dates[0] == "2026-05-04T20:00:00+02:00" and dates[-1] == "2026-05-04T20:01:29+02:00"
    power, register = np.array(values[("hh002-meter", POWER)]), values[("hh002-meter", REGISTER)]
    np.testing.assert_allclose(np.diff(register), power[:-1] / 3600, atol=1.5e-4)


def test_utc_zone_writes_z(fleet: Fleet) -> None:
    utc_fleet = Fleet(1, zone="UTC")
    payload = next(
        iter(
            utc_fleet.batches(
                datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 15, tzinfo=UTC), 900
            )
        )
    )[0][1]
    assert decode(payload).request.eventDate == "2026-01-01T00:00:00Z"


def test_batches_are_in_time_order_and_bounded(fleet: Fleet) -> None:
    sizes, moments = [], []
    for batch in fleet.batches(local(2026, 2, 1), local(2026, 2, 1, 6), 900, batch_size=77):
        sizes.append(sum(not p.startswith(ALERT) for _, p in batch))  # alerts ride along
        moments += [datetime.fromisoformat(decode(p).request.eventDate) for _, p in batch]
    assert max(sizes) == 77 and sum(sizes) == 24 * len(fleet.devices())
    assert moments == sorted(moments)


# --- messages ----------------------------------------------------------------------------------


def test_every_message_is_canonical_and_valid(
    fleet: Fleet, identifiers: IdentifierRegistry
) -> None:
    start, end = day_bounds(date(2026, 6, 10), ZONE)
    items = messages(fleet, start, end, update_state=False)
    assert len(items) == 96 * len(fleet.devices())
    for hardware_id, payload in items:
        message = decode(payload)
        assert isinstance(message, DeviceMeasurements)
        assert message.hardwareId == hardware_id
        assert message.request.updateState is False
        assert encode(message) == payload  # the bytes are exactly the canonical encoding
        readings = measurement_readings(message, identifiers, FAR_FUTURE_US)
        assert all(start <= datetime.fromtimestamp(ts / 1e6, UTC) < end for _, ts, _ in readings)


def test_meter_values_are_plausible(fleet: Fleet) -> None:
    values = series(messages(fleet, local(2026, 1, 12), local(2026, 1, 19)))
    for home in fleet.households:
        meter = home.site.id + "-meter"
        voltages = np.array([values[(meter, f"electricity.voltage.rms.l{p}")] for p in (1, 2, 3)])
        assert np.all((voltages > 215) & (voltages < 245))
        days = voltages.mean(axis=0).reshape(7, 96)
        assert days[:, 72:84].mean() < days[:, 8:20].mean()  # lower at the evening peak
        assert min(values[(meter, POWER)]) >= 0 and min(values[(meter, INJECTED)]) >= 0
        if not home.site.has_pv:
            assert max(values[(meter, INJECTED)]) == 0


def test_daily_energy_is_on_the_annual_scale(fleet: Fleet) -> None:
    values = series(messages(fleet, local(2026, 2, 2), local(2026, 2, 16)))
    ratios = []
    for home in fleet.households:
        daily = sum(values[(home.site.id + "-meter", POWER)]) * 0.25 / 14
        assert 2.0 < daily < 40.0
        if not home.site.has_pv:
            ratios.append(daily / (home.annual_kwh / 365))
    assert 0.7 < float(np.mean(ratios)) < 1.4


def test_pv_injects_at_noon_in_june_and_never_at_night(fleet: Fleet) -> None:
    values = series(messages(fleet, local(2026, 6, 15), local(2026, 6, 22)))
    pv_meters = [h.site.id + "-meter" for h in fleet.households if h.site.has_pv]
    assert pv_meters
    for meter in pv_meters:
        injected = np.array(values[(meter, INJECTED)]).reshape(7, 96)
        assert np.all(injected[:, :20] == 0) and np.all(injected[:, 90:] == 0)  # 00-05, 22:30-
        assert injected[:, 50:60].max() > 0.3  # 12:30-15:00 on at least one day


def test_register_only_increases_and_continues_across_calls(fleet: Fleet) -> None:
    fresh = Fleet(4, seed=3)
    first = series(messages(fresh, local(2026, 3, 1), local(2026, 3, 3)))
    second = series(messages(fresh, local(2026, 3, 3), local(2026, 3, 4)))
    for home in fresh.households:
        key = (home.site.id + "-meter", REGISTER)
        register = np.array(first[key] + second[key])
        power = np.array(first[(key[0], POWER)] + second[(key[0], POWER)])
        assert np.all(np.diff(register) >= 0)
        np.testing.assert_allclose(np.diff(register), power[:-1] * 0.25, atol=1.5e-4)


def test_register_survives_overlaps_interval_changes_and_jumps() -> None:
    def meters(fleet: Fleet, start: datetime, end: datetime, dt: int = 900):
        values = series(messages(fleet, start, end, dt))
        return [(values[(m, REGISTER)], values[(m, POWER)]) for m in ("hh001-meter", "hh002-meter")]

    noon, five_past = local(2026, 3, 1, 12), local(2026, 3, 1, 12, 5)
    overlap, switch, jump = Fleet(2, seed=4), Fleet(2, seed=4), Fleet(2, seed=4)
    for fleet in (overlap, switch, jump):
        backfill = meters(fleet, local(2026, 3, 1), five_past)  # same for all; last tick 12:00
    again = meters(overlap, noon, noon + timedelta(minutes=1), 1)
    live = meters(switch, five_past, five_past + timedelta(minutes=5), 60)
    later = meters(jump, local(2026, 3, 2), local(2026, 3, 2, 1))
    for (register, power), (first, _), (minutes, _), (next_day, _), home in zip(
        backfill, again, live, later, jump.households, strict=True
    ):
        assert first[0] == register[-1]  # the 12:00 tick, sent twice, agrees
        # 12:05 at 1 min: five minutes of the 12:00 quarter's mean power later
        assert minutes[0] == pytest.approx(register[-1] + power[-1] * 5 / 60, abs=2e-4)
        assert np.all(np.diff(minutes) >= 0)
        # a day later: about the average day more, never less
        assert register[-1] < next_day[0] < register[-1] + 2 * home.annual_kwh / 365


def test_plugs_and_boilers_report_their_appliance(fleet: Fleet) -> None:
    values = series(messages(fleet, local(2026, 4, 6), local(2026, 4, 13)))
    for (device, name), points in values.items():
        arr = np.array(points)
        if "-plug-" in device:
            assert arr.min() >= 0 and arr.max() < 3.0
        elif device.endswith("-boiler") and name == "boiler.stateOfCharge":
            assert arr.min() >= 0 and arr.max() <= 100 and arr.min() < 90
        elif device.endswith("-boiler") and name == "boiler.temperature":
            assert arr.min() >= 40 and arr.max() <= 65
    washers = [v for (d, _), v in values.items() if d.endswith("-plug-washer")]
    assert washers and all(max(v) > 1.0 for v in washers)  # a week always holds a wash


# --- determinism, gaps, malformed --------------------------------------------------------------


def test_same_seed_same_bytes_and_cutting_a_span_changes_nothing() -> None:
    start, middle, end = local(2026, 8, 1), local(2026, 8, 1, 13, 15), local(2026, 8, 2, 6)
    whole = messages(Fleet(5, seed=9), start, end)
    split = Fleet(5, seed=9)
    assert messages(split, start, middle) + messages(split, middle, end) == whole
    assert messages(Fleet(5, seed=10), start, end) != whole
    assert messages(Fleet(9, seed=9), start, end)[:5] == whole[:5]  # hh001 does not depend on N


def test_gap_rate_drops_readings(fleet: Fleet) -> None:
    start, end = local(2026, 9, 1), local(2026, 9, 3)
    full = len(messages(fleet, start, end))
    gappy = len(messages(fleet, start, end, gap_rate=0.2))
    assert 0.75 * full < gappy < 0.85 * full
    assert len(messages(fleet, start, end, gap_rate=0.2)) == gappy  # deterministic


def test_outages_and_gap_windows_silence_whole_spans(fleet: Fleet) -> None:
    start, end = local(2026, 9, 1), local(2026, 9, 2)
    per_device = defaultdict(int)
    for hardware_id, _ in messages(fleet, start, end, outage_rate=1.0):
        per_device[hardware_id] += 1
    assert all(96 - 24 <= per_device[d.hardware_id] <= 96 - 4 for d in fleet.devices())
    window = (local(2026, 9, 1, 10), local(2026, 9, 1, 12), "hh003")
    items = messages(fleet, start, end, gap_windows=[window])
    silenced = {d.hardware_id for d in fleet.devices() if d.site == "hh003"}
    for hardware_id, payload in items:
        if hardware_id in silenced:
            moment = datetime.fromisoformat(decode(payload).request.eventDate)
            assert not window[0] <= moment < window[1]
    assert len(items) == 96 * len(fleet.devices()) - 8 * len(silenced)


def test_malformed_messages_fail_with_their_reason_in_cycle(
    fleet: Fleet, identifiers: IdentifierRegistry
) -> None:
    items = messages(fleet, local(2026, 7, 1), local(2026, 7, 2), malformed_rate=0.05)
    reasons = []
    for _, payload in items:
        try:
            measurement_readings(decode(payload), identifiers, FAR_FUTURE_US)  # type: ignore[arg-type]
        except RejectedMessage as exc:
            reasons.append(exc.reason)
    assert 0.03 * len(items) < len(reasons) < 0.07 * len(items)
    expected = [RejectReason(MALFORMED_CYCLE[i % 5].value) for i in range(len(reasons))]
    assert reasons == expected
    assert {k.value for k in MalformedKind} <= {r.value for r in RejectReason}


# --- publishers --------------------------------------------------------------------------------


def test_http_publisher_batches_valid_json_and_sends_broken_json_alone() -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        assert request.url.path == "/api/v1/tenants/demo/events"
        bodies.append(request.content)
        if not request.content.startswith(b"["):
            body = {
                "accepted": 0,
                "rejected": [{"index": 0, "reason": "malformed_json", "detail": "truncated"}],
            }
            return httpx.Response(400, json=body)
        count = len(json.loads(request.content))
        if count == 3:
            rejected = [{"index": 1, "reason": "unknown_identifier", "detail": "x"}]
            return httpx.Response(422, json={"accepted": 2, "rejected": rejected})
        return httpx.Response(200, json={"accepted": count, "readings": count, "rejected": []})

    good = b'{"type":"DeviceMeasurements","hardwareId":"a","request":{"measurements":{}}}'
    items = [("a", good), ("a", good), ("a", good[:-3]), ("a", good), ("a", good), ("a", good)]
    publisher = HttpPublisher("http://hub", "demo", "tok", transport=httpx.MockTransport(handler))
    result = publisher.publish(items)
    publisher.close()
    assert len(bodies) == 3 and bodies[1] == good[:-3]
    assert result.accepted == 4
    assert [(r.index, r.reason) for r in result.rejected] == [
        (2, "malformed_json"),
        (4, "unknown_identifier"),
    ]


def test_http_publisher_honours_retry_after_a_bounded_number_of_times() -> None:
    calls, waits = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": "full"})
        return httpx.Response(200, json={"accepted": 1, "rejected": []})

    publisher = HttpPublisher(
        "http://hub", "demo", "t", transport=httpx.MockTransport(handler), sleep=waits.append
    )
    assert publisher.publish([("a", b"{}")]).accepted == 1
    assert waits == [2.0, 2.0]

    busy = httpx.MockTransport(lambda r: httpx.Response(503))
    always = HttpPublisher(
        "http://hub", "demo", "t", max_retries=2, sleep=waits.append, transport=busy
    )
    with pytest.raises(httpx.HTTPStatusError):
        always.publish([("a", b"{}")])


class _Recorder:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        self.items += items

    def close(self) -> None:
        pass


def test_run_live_publishes_ticks_and_stops(fleet: Fleet) -> None:
    recorder, ticks = _Recorder(), []
    sent = run_live(
        fleet, recorder, 900, duration_s=900, start=local(2026, 1, 1, 8), on_tick=ticks.append
    )
    assert sent == len(recorder.items) == len(fleet.devices()) == ticks[0]
    assert decode(recorder.items[0][1]).request.eventDate == "2026-01-01T08:00:00+01:00"
    stop = threading.Event()
    stop.set()
    assert run_live(fleet, recorder, 1, duration_s=None, stop=stop) == 0
