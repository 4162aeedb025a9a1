"""Validation rules: every reason a measurement message can be refused for."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from gridhub.domain.identifiers import IdentifierRegistry
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest
from gridhub.domain.rejections import RejectReason
from gridhub.domain.timeutil import day_bounds, expected_readings, quarter_hours_in_day
from gridhub.domain.validation import (
    check_hardware_id,
    event_time_us,
    measurement_readings,
    to_us,
)
from gridhub.errors import RejectedMessage

NOW = to_us(datetime(2026, 11, 21, 12, tzinfo=UTC))
P = "electricity.power.active.consumed.total"


def msg(measurements: dict[str, object], date_: str | None = "2026-11-21T10:00:00+01:00"):
    return DeviceMeasurements("m1", MeasurementsRequest(measurements, eventDate=date_))


def reason_of(measurements: dict[str, object], date_: str | None = "2026-11-21T10:00:00Z"):
    with pytest.raises(RejectedMessage) as caught:
        measurement_readings(msg(measurements, date_), IdentifierRegistry(), NOW)
    return caught.value.reason


def test_readings_in_utc_microseconds() -> None:
    readings = measurement_readings(
        msg({P: 1.5, "electricity.frequency": 50}), IdentifierRegistry(), NOW
    )
    ts = to_us(datetime(2026, 11, 21, 9, tzinfo=UTC))
    assert readings == [(P, ts, 1.5), ("electricity.frequency", ts, 50.0)]


def test_missing_event_date_means_receive_time() -> None:
    assert measurement_readings(msg({P: 1}, None), IdentifierRegistry(), NOW)[0][1] == NOW


@pytest.mark.parametrize(
    ("measurements", "date_", "reason"),
    [
        ({"electricity.power.bogus": 1}, "2026-11-21T10:00:00Z", RejectReason.UNKNOWN_IDENTIFIER),
        ({P: "12.5"}, "2026-11-21T10:00:00Z", RejectReason.WRONG_VALUE_TYPE),
        ({P: True}, "2026-11-21T10:00:00Z", RejectReason.WRONG_VALUE_TYPE),
        ({P: None}, "2026-11-21T10:00:00Z", RejectReason.WRONG_VALUE_TYPE),
        ({P: [1]}, "2026-11-21T10:00:00Z", RejectReason.WRONG_VALUE_TYPE),
        ({P: float("inf")}, "2026-11-21T10:00:00Z", RejectReason.NON_FINITE_VALUE),
        ({P: float("nan")}, "2026-11-21T10:00:00Z", RejectReason.NON_FINITE_VALUE),
        ({P: 10**400}, "2026-11-21T10:00:00Z", RejectReason.NON_FINITE_VALUE),
        ({P: 1}, "yesterday", RejectReason.BAD_DATE),
        ({P: 1}, "2026-13-01T00:00:00Z", RejectReason.BAD_DATE),
        ({P: 1}, "2026-11-21T10:00:00", RejectReason.MISSING_OFFSET),
        ({P: 1}, "2099-01-01T00:00:00Z", RejectReason.BAD_DATE),
        ({}, "2026-11-21T10:00:00Z", RejectReason.INVALID_MESSAGE),
    ],
)
def test_rejections(measurements: dict[str, object], date_: str, reason: RejectReason) -> None:
    assert reason_of(measurements, date_) is reason


def test_offsets_in_every_iso_spelling() -> None:
    expected = to_us(datetime(2016, 2, 13, 18, 57, 8, 274000, tzinfo=UTC))
    assert event_time_us("2016-02-13T13:57:08.274-0500", NOW) == expected
    assert event_time_us("2016-02-13T13:57:08.274-05:00", NOW) == expected
    assert event_time_us("2016-02-13T18:57:08.274Z", NOW) == expected


def test_tenant_identifier_accepted() -> None:
    from gridhub.domain.identifiers import validate_custom

    registry = IdentifierRegistry()
    registry.add(validate_custom("boiler.temperature", "°C"))
    readings = measurement_readings(msg({"boiler.temperature": 55}), registry, NOW)
    assert readings[0][2] == 55.0


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#", "x" * 129, "-lead", "sp ace"])
def test_hardware_id_rules(bad: str) -> None:
    with pytest.raises(RejectedMessage):
        check_hardware_id(bad)


def test_dst_days_in_brussels() -> None:
    zone = ZoneInfo("Europe/Brussels")
    assert quarter_hours_in_day(date(2026, 3, 29), zone) == 92
    assert quarter_hours_in_day(date(2026, 10, 25), zone) == 100
    assert quarter_hours_in_day(date(2026, 11, 21), zone) == 96
    assert expected_readings(date(2026, 10, 25), zone, 1) == 90_000
    start, end = day_bounds(date(2026, 3, 29), zone)
    assert start.utcoffset() != end.utcoffset()


F = "electricity.frequency"


@pytest.mark.parametrize(
    ("measurements", "reason"),
    [  # all floats: what the quick check (set of types, finite sum) must still refuse
        ({P: 1.5, F: float("nan")}, RejectReason.NON_FINITE_VALUE),
        ({P: float("-inf"), F: 50.0}, RejectReason.NON_FINITE_VALUE),
        ({P: float("inf"), F: float("-inf")}, RejectReason.NON_FINITE_VALUE),
        ({P: 1.5, "electricity.power.bogus": 2.5}, RejectReason.UNKNOWN_IDENTIFIER),
    ],
)
def test_all_float_messages_refused_like_any_other(
    measurements: dict[str, object], reason: RejectReason
) -> None:
    assert reason_of(measurements) is reason


def test_finite_floats_whose_sum_overflows_are_accepted() -> None:
    readings = measurement_readings(msg({P: 1.5e308, F: 1.5e308}), IdentifierRegistry(), NOW)
    assert [value for _i, _ts, value in readings] == [1.5e308, 1.5e308]
