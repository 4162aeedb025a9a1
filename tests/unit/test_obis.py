"""The OBIS table, codes, units, derived totals, meter time and ids shared by the meter adapters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gridhub.adapters.obis import (
    OBIS_CUSTOM_IDENTIFIERS,
    OBIS_TABLE,
    UNIT_FACTORS,
    ObisCode,
    ObisMapping,
    convert,
    derive_totals,
    equipment_id,
    lookup,
    make_message,
    parse_code,
    resolve_local_time,
)
from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS, validate_custom
from gridhub.domain.messages import DeviceMeasurements, decode

AMS = ZoneInfo("Europe/Amsterdam")
T1 = "electricity.energy.active.consumed.t1"
T2 = "electricity.energy.active.consumed.t2"
TOTAL = "electricity.energy.active.consumed.total"


def code(text: str) -> ObisCode:
    parsed = parse_code(text)
    assert parsed is not None, text
    return parsed


# --- the table -----------------------------------------------------------------------------------


def test_every_row_feeds_a_table_2_identifier_with_its_unit_or_a_registrable_custom_one() -> None:
    custom = dict(OBIS_CUSTOM_IDENTIFIERS)
    for row in OBIS_TABLE:
        builtin = BUILTIN_IDENTIFIERS.get(row.identifier)
        if builtin is not None:
            assert builtin.unit == row.unit, row
        else:
            assert custom[row.identifier] == row.unit, row
        assert row.unit in UNIT_FACTORS, row  # every target unit has its conversions


def test_custom_identifiers_are_the_tariff_registers_and_pass_tenant_registration() -> None:
    names = [name for name, _ in OBIS_CUSTOM_IDENTIFIERS]
    assert names == sorted(
        f"electricity.energy.active.{direction}.t{n}"
        for direction in ("consumed", "injected")
        for n in (1, 2, 3, 4)
    )
    for name, unit in OBIS_CUSTOM_IDENTIFIERS:
        assert unit == "kWh"
        assert validate_custom(name, unit).builtin is False


def test_rows_are_unique_per_code_and_medium() -> None:
    keys = [(row.obis, row.device_type) for row in OBIS_TABLE]
    assert len(keys) == len(set(keys))


# --- codes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-0:1.8.1", ObisCode(1, 0, 1, 8, 1, None)),
        ("0-2:24.2.1", ObisCode(0, 2, 24, 2, 1, None)),
        ("1-0:1.8.0*255", ObisCode(1, 0, 1, 8, 0, 255)),
        ("1.8.0", ObisCode(None, None, 1, 8, 0, None)),
        ("1.8.0*01", ObisCode(None, None, 1, 8, 0, 1)),
        ("1.8.0&12", ObisCode(None, None, 1, 8, 0, 12)),
        ("C.1.0", ObisCode(None, None, 96, 1, 0, None)),
        ("F.F", ObisCode(None, None, 97, 97, 0, None)),
    ],
)
def test_parse_code_reads_full_reduced_and_lettered_codes(text: str, expected: ObisCode) -> None:
    assert parse_code(text) == expected


@pytest.mark.parametrize("text", ["", "1-0:1.8", "1-0:256.8.0", "X.8.0", "1-0:1.8.0*", "1.8.0 "])
def test_parse_code_refuses_what_is_not_a_code(text: str) -> None:
    assert parse_code(text) is None


def test_reduced_codes_are_electricity_and_map_like_full_ones() -> None:
    assert code("1.8.0").key == "1-0:1.8.0"
    assert lookup(code("1.8.0")) == lookup(code("1-0:1.8.0"))
    mapping = lookup(code("1.8.0"))
    assert mapping is not None and mapping.identifier == TOTAL


@pytest.mark.parametrize(
    ("text", "identifier", "unit"),
    [
        ("1-0:1.8.1", T1, "kWh"),
        ("1-0:2.8.2", "electricity.energy.active.injected.t2", "kWh"),
        ("1-0:1.7.0", "electricity.power.active.consumed.total", "kW"),
        ("1-0:2.7.0", "electricity.power.active.injected.total", "kW"),
        ("1-0:41.7.0", "electricity.power.active.consumed.l2", "kW"),
        ("1-0:62.7.0", "electricity.power.active.injected.l3", "kW"),
        ("1-0:32.7.0", "electricity.voltage.rms.l1", "Vrms"),
        ("1-0:72.7.0", "electricity.voltage.rms.l3", "Vrms"),
        ("1-0:51.7.0", "electricity.current.rms.l2", "Arms"),
        ("1-0:4.8.0", "electricity.energy.reactive.injected.total", "kVARh"),
        ("1-0:14.7.0", "electricity.frequency", "HZ"),
    ],
)
def test_electricity_codes_map_to_their_series(text: str, identifier: str, unit: str) -> None:
    mapping = lookup(code(text))
    assert mapping is not None
    assert (mapping.identifier, mapping.unit) == (identifier, unit)


def test_mbus_readings_map_by_the_channel_medium_on_any_channel() -> None:
    for channel in (1, 2, 3, 4):
        gas, water = lookup(code(f"0-{channel}:24.2.1"), 3), lookup(code(f"0-{channel}:24.2.1"), 7)
        assert gas is not None and gas.identifier == "gas.volume"
        assert water is not None and water.identifier == "water.volume"
    belgian = lookup(code("0-1:24.2.3"), 3)
    assert belgian is not None and belgian.identifier == "gas.volume"
    untyped = lookup(code("0-1:24.2.1"))  # DSMR defines 24.2.1 as the gas register
    assert untyped is not None and untyped.identifier == "gas.volume"
    assert lookup(code("0-1:24.2.1"), 4) is None  # heat: no row, stays unmapped
    assert lookup(code("0-5:24.2.1"), 3) is None  # not an M-Bus channel


def test_billing_period_values_are_not_current_values() -> None:
    assert lookup(code("1.8.0*01")) is None
    assert lookup(code("1-0:1.8.0*255")) is not None


# --- units and totals ----------------------------------------------------------------------------


def test_convert_scales_exactly_to_the_identifier_unit() -> None:
    def row(text: str) -> ObisMapping:
        mapping = lookup(code(text))
        assert mapping is not None
        return mapping

    assert convert(Decimal("000000286"), "W", row("1-0:1.7.0")) == Decimal("0.286")
    assert convert(Decimal("006545766"), "Wh", row("1-0:1.8.0")) == Decimal("6545.766")
    assert convert(Decimal("000000747"), "varh", row("1-0:3.8.0")) == Decimal("0.747")
    assert convert(Decimal("00003.239"), "kVArh", row("1-0:3.8.0")) == Decimal("3.239")
    assert convert(Decimal("230.1"), "V", row("1-0:32.7.0")) == Decimal("230.1")
    assert convert(Decimal("49.99"), "Hz", row("1-0:14.7.0")) == Decimal("49.99")


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        (Decimal("1.5"), None, "no unit"),
        (Decimal("1.5"), "", "no unit"),
        (Decimal("1.5"), "MWh", "cannot be converted"),
        (Decimal("1.5"), "m3", "cannot be converted"),
        (Decimal("NaN"), "kWh", "not a finite number"),
        (Decimal("Infinity"), "kWh", "not a finite number"),
    ],
)
def test_convert_refuses_rather_than_guesses(
    value: Decimal, unit: str | None, message: str
) -> None:
    mapping = lookup(code("1-0:1.8.1"))
    assert mapping is not None
    with pytest.raises(ValueError, match=message):
        convert(value, unit, mapping)


def test_totals_are_the_sum_of_the_tariff_registers() -> None:
    values = {T1: Decimal("4.426"), T2: Decimal("2.399")}
    assert derive_totals(values, set()) == {TOTAL: Decimal("6.825")}
    four = {**values, "electricity.energy.active.consumed.t3": Decimal(1)}
    assert derive_totals(four, set()) == {TOTAL: Decimal("7.825")}


def test_totals_are_not_derived_from_part_of_the_registers() -> None:
    assert derive_totals({T1: Decimal(1)}, set()) == {}  # t2 missing
    t3 = "electricity.energy.active.consumed.t3"
    assert derive_totals({T1: Decimal(1), T2: Decimal(2)}, {t3}) == {}  # a tariff line refused
    assert derive_totals({T1: Decimal(1), T2: Decimal(2), TOTAL: Decimal(9)}, set()) == {}


# --- meter time ----------------------------------------------------------------------------------


def test_the_summer_winter_flag_picks_the_hour_that_happens_twice() -> None:
    naive = datetime(2023, 10, 29, 2, 30)  # clocks go back 03:00 CEST → 02:00 CET
    summer = resolve_local_time(naive, AMS, "S")
    winter = resolve_local_time(naive, AMS, "W")
    assert summer.isoformat() == "2023-10-29T02:30:00+02:00"
    assert winter.isoformat() == "2023-10-29T02:30:00+01:00"
    assert winter.astimezone(UTC) - summer.astimezone(UTC) == timedelta(hours=1)


def test_an_ordinary_time_agrees_with_its_flag() -> None:
    assert resolve_local_time(datetime(2017, 1, 2, 19, 20, 2), AMS, "W").utcoffset() == timedelta(
        hours=1
    )
    assert resolve_local_time(datetime(2020, 5, 12, 13, 54), AMS, "S").utcoffset() == timedelta(
        hours=2
    )
    assert resolve_local_time(datetime(2020, 5, 12, 13, 54), AMS, None).utcoffset() == timedelta(
        hours=2
    )


@pytest.mark.parametrize(
    ("naive", "flag", "message"),
    [
        (datetime(2020, 5, 12, 13, 54), "W", "flagged winter time"),
        (datetime(2017, 1, 2, 19, 20), "S", "flagged summer time"),
        (datetime(2023, 3, 26, 2, 30), "W", "does not exist"),
        (datetime(2023, 10, 29, 2, 30), None, "happens twice"),
    ],
)
def test_a_time_the_zone_cannot_mean_is_refused(
    naive: datetime, flag: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_local_time(naive, AMS, flag)


def test_a_zone_without_dst_ignores_the_flag() -> None:
    # Swedish meters keep UTC+1 all year and still send S in summer.
    moment = resolve_local_time(datetime(2021, 7, 17, 18, 40, 19), ZoneInfo("Etc/GMT-1"), "S")
    assert moment.isoformat() == "2021-07-17T18:40:19+01:00"


# --- ids and messages ----------------------------------------------------------------------------


def test_equipment_ids_are_hex_decoded_when_dsmr_encodes_them() -> None:
    assert equipment_id("4B384547303034303436333935353037", hex_encoded=True) == "K8EG004046395507"
    assert equipment_id("00000000000000", hex_encoded=True) == "00000000000000"  # DSMR 2.2
    assert equipment_id("AUX1030303218166", hex_encoded=True) == "AUX1030303218166"
    assert equipment_id("31323334", hex_encoded=False) == "31323334"  # IEC: plain
    assert equipment_id("", hex_encoded=True) is None
    assert equipment_id("has space", hex_encoded=False) is None
    assert equipment_id("2020", hex_encoded=True) == "2020"  # decodes to "  ": kept as sent


def test_make_message_is_a_live_canonical_message() -> None:
    message = make_message("m1", {T1: Decimal("4.426")}, "2017-01-02T19:20:02+01:00")
    decoded = decode(message.payload)
    assert isinstance(decoded, DeviceMeasurements)
    assert decoded.hardwareId == message.hardware_id == "m1"
    assert decoded.request.measurements == {T1: 4.426}
    assert decoded.request.updateState is True
    assert decoded.request.eventDate == "2017-01-02T19:20:02+01:00"
