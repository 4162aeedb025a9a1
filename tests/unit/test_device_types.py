"""Device types: the built-in table, tenant-defined types, DST-aware expected counts."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from gridhub.adapters.registry_csv import parse_registry
from gridhub.domain.device_types import (
    BUILTIN_DEVICE_TYPES,
    DeviceType,
    day_seconds,
    expected_per_day,
    validate_custom_type,
)
from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS
from gridhub.errors import Conflict, InvalidRequest

BRUSSELS = ZoneInfo("Europe/Brussels")


def test_builtin_types_expect_only_table_2_or_obis_identifiers() -> None:
    for device_type in BUILTIN_DEVICE_TYPES.values():
        for identifier in device_type.identifiers:
            assert identifier in BUILTIN_IDENTIFIERS, (device_type.name, identifier)
        assert (device_type.interval_s is None) == (not device_type.identifiers)
    for name in ("smart-meter", "dsmr-p1-meter", "smart-plug", "boiler", "whitegood"):
        assert name in BUILTIN_DEVICE_TYPES
    assert {"pv-inverter", "gateway", "unknown", "auto-registered"} <= set(BUILTIN_DEVICE_TYPES)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 29), 92),  # spring forward: 23 h
        (date(2026, 10, 25), 100),  # fall back: 25 h
        (date(2026, 6, 1), 96),
    ],
)
def test_quarter_hours_per_local_day_follow_dst(day: date, expected: int) -> None:
    meter = BUILTIN_DEVICE_TYPES["smart-meter"]
    assert expected_per_day(meter, day, BRUSSELS) == expected
    assert expected_per_day(meter, day, "Europe/Brussels") == expected
    assert expected_per_day(meter, day, "UTC") == 96


def test_day_lengths_and_other_intervals() -> None:
    assert day_seconds(date(2026, 3, 29), BRUSSELS) == 23 * 3600
    assert day_seconds(date(2026, 10, 25), BRUSSELS) == 25 * 3600
    whitegood = BUILTIN_DEVICE_TYPES["whitegood"]  # every minute: 25 h = 1,500 minutes
    assert expected_per_day(whitegood, date(2026, 10, 25), BRUSSELS) == 1500
    plug = BUILTIN_DEVICE_TYPES["smart-plug"]  # quarter-hours, like the meter
    assert expected_per_day(plug, date(2026, 10, 25), BRUSSELS) == 100
    assert expected_per_day(BUILTIN_DEVICE_TYPES["gateway"], date(2026, 6, 1), BRUSSELS) == 0
    # an interval that does not divide the day counts whole intervals
    odd = DeviceType("odd", identifiers=("gas.volume",), interval_s=7 * 3600)
    assert expected_per_day(odd, date(2026, 6, 1), BRUSSELS) == 3


@pytest.mark.parametrize("day", [date(1, 1, 1), date(1969, 12, 31), date(9999, 12, 31)])
def test_days_beyond_the_supported_years_are_refused_not_overflowed(day: date) -> None:
    # 0001-01-01 and 9999-12-31 overflowed datetime in a time zone (a 500 over HTTP)
    with pytest.raises(InvalidRequest, match="1970..9998"):
        expected_per_day(BUILTIN_DEVICE_TYPES["smart-meter"], day, BRUSSELS)


def test_custom_type_validation() -> None:
    known = set(BUILTIN_IDENTIFIERS) | {"boiler.stateOfCharge"}
    made = validate_custom_type(
        "heat-pump", "a heat pump", ["boiler.stateOfCharge", "boiler.stateOfCharge"], 300, known
    )
    assert made.identifiers == ("boiler.stateOfCharge",) and not made.builtin
    with pytest.raises(Conflict):
        validate_custom_type("smart-meter", "", [], None, known)
    for name in ("Heat Pump", "", "x" * 65, "a\nuser evil"):
        with pytest.raises(InvalidRequest):
            validate_custom_type(name, "", [], None, known)
    with pytest.raises(InvalidRequest, match="unknown identifier"):
        validate_custom_type("hp", "", ["nope.nothing"], 60, known)
    with pytest.raises(InvalidRequest, match="interval_s"):
        validate_custom_type("hp", "", ["gas.volume"], None, known)
    with pytest.raises(InvalidRequest, match="interval_s"):
        validate_custom_type("hp", "", ["gas.volume"], 0, known)


def test_registry_csv_checks_types_when_given() -> None:
    sheet = "hardwareId,deviceType\nm1,smart-meter\nm2,smart-meterr\nm3,heat-pump\n"
    unchecked = parse_registry(sheet.splitlines(keepends=True), "pilot")
    assert len(unchecked.devices) == 3 and not unchecked.errors
    checked = parse_registry(
        sheet.splitlines(keepends=True),
        "pilot",
        device_types={*BUILTIN_DEVICE_TYPES, "heat-pump"},
    )
    assert [d.hardware_id for d in checked.devices] == ["m1", "m3"]
    assert [(e.line, "smart-meterr" in e.message) for e in checked.errors] == [(3, True)]
