"""DSMR P1 adapter: real telegrams of each version, CRC, faults, M-Bus series, DST, round trip.

The telegrams are in ``tests/data/dsmr/`` (origins in its README). Variants are built here from
them, with the CRC recomputed by dsmr-parser's ``crc16`` so that only the intended fault remains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dsmr_parser.parsers import TelegramParser

from gridhub.adapters.dsmr_p1 import (
    MAX_TELEGRAM_BYTES,
    P1Result,
    detect_specification,
    parse_telegram,
)
from gridhub.adapters.obis import OBIS_CUSTOM_IDENTIFIERS, ObisMessage
from gridhub.domain.identifiers import IdentifierRegistry, validate_custom
from gridhub.domain.messages import DeviceMeasurements, decode
from gridhub.domain.validation import measurement_readings, to_us
from gridhub.errors import InvalidRequest

DATA = Path(__file__).resolve().parents[1] / "data" / "dsmr"
FAR_FUTURE_US = to_us(datetime(2100, 1, 1, tzinfo=UTC))
CONSUMED = "electricity.energy.active.consumed"
INJECTED = "electricity.energy.active.injected"
POWER = "electricity.power.active.consumed"


def telegram(name: str) -> bytes:
    return (DATA / name).read_bytes()


def with_crc(text: str) -> bytes:
    """A telegram (``/`` through ``!``) with its correct CRC appended."""
    return f"{text}{TelegramParser.crc16(text):04X}\r\n".encode("latin-1")


def edit(name: str, old: str, new: str) -> bytes:
    """A real telegram with one edit, re-signed with a correct CRC."""
    text = telegram(name).decode("latin-1")
    assert old in text
    text = text.replace(old, new)
    return with_crc(text[: text.index("!") + 1])


def decoded(message: ObisMessage) -> DeviceMeasurements:
    result = decode(message.payload)
    assert isinstance(result, DeviceMeasurements)
    assert result.hardwareId == message.hardware_id
    return result


def by_device(result: P1Result) -> dict[str, DeviceMeasurements]:
    devices = {m.hardware_id: decoded(m) for m in result.messages}
    assert len(devices) == len(result.messages)
    return devices


def clean(result: P1Result) -> dict[str, DeviceMeasurements]:
    assert result.rejections == []
    return by_device(result)


# --- each version, values and units --------------------------------------------------------------


def test_dsmr_2_2_without_timestamp_or_crc() -> None:
    result = parse_telegram(telegram("dsmr_2_2_iskra.txt"))
    assert result.specification == "V2_2"
    devices = clean(result)
    meter = devices["00000000000000"].request
    assert meter.eventDate is None  # no 0-0:1.0.0 in DSMR 2.2: the pipeline stamps receive time
    assert meter.updateState is True
    assert meter.measurements == {
        f"{CONSUMED}.t1": 1.001,
        f"{CONSUMED}.t2": 1.001,
        f"{INJECTED}.t1": 1.001,
        f"{INJECTED}.t2": 1.001,
        f"{CONSUMED}.total": 2.002,
        f"{INJECTED}.total": 2.002,
        f"{POWER}.total": 1.01,
        "electricity.power.active.injected.total": 0.0,
    }
    # gas on 0-1:24.3.0 with its value on the next line; capture time without S/W flag
    gas = devices["000000000000"].request
    assert gas.measurements == {"gas.volume": 1.001}
    assert gas.eventDate == "2016-11-07T19:00:00+01:00"
    assert "0-1:24.4.0(1)" in result.unmapped  # valve position: valid, not a series


def test_dsmr_2_2_takes_received_at_when_given() -> None:
    received = datetime(2016, 11, 7, 19, 0, 5, tzinfo=UTC)
    result = parse_telegram(telegram("dsmr_2_2_iskra.txt"), received_at=received)
    assert by_device(result)["00000000000000"].request.eventDate == "2016-11-07T19:00:05+00:00"


def test_dsmr_3_decodes_hex_equipment_ids() -> None:
    result = parse_telegram(telegram("dsmr_3_iskra.txt"))
    assert result.specification == "V2_2"
    devices = clean(result)
    assert devices["K8EG004046395507"].request.measurements[f"{CONSUMED}.t1"] == 12345.678
    assert devices["K8EG004046395507"].request.measurements[f"{CONSUMED}.total"] == 24691.356
    assert devices["2222ABCD123456789"].request.measurements == {"gas.volume": 1.001}
    assert devices["2222ABCD123456789"].request.eventDate == "2009-02-12T16:00:00+01:00"


def test_dsmr_4_2() -> None:
    result = parse_telegram(telegram("dsmr_4_2_kaifa.txt"))
    assert result.specification == "V4"
    devices = clean(result)
    meter = devices["3960221976967177082151037881335713"].request
    assert meter.eventDate == "2016-11-13T20:57:57+01:00"
    values = meter.measurements
    assert values[f"{CONSUMED}.t1"] == 1581.123
    assert values[f"{CONSUMED}.t2"] == 1435.706
    assert values[f"{CONSUMED}.total"] == 3016.829  # derived, exact in decimal
    assert values[f"{POWER}.total"] == 2.027
    assert [values[f"{POWER}.l{n}"] for n in (1, 2, 3)] == [0.17, 1.247, 0.209]
    assert [values[f"electricity.current.rms.l{n}"] for n in (1, 2, 3)] == [0.0, 6.0, 2.0]
    gas = devices["4819243993373755377509728609491464"].request
    assert gas.measurements == {"gas.volume": 981.443}
    assert gas.eventDate == "2016-11-29T20:00:00+01:00"  # its own capture time, not the telegram's
    assert "0-0:96.14.0(0002)" in result.unmapped
    assert any(line.startswith("1-0:99.97.0(3)") for line in result.unmapped)


def test_dsmr_5_0() -> None:
    result = parse_telegram(telegram("dsmr_5_0_iskra.txt"))
    assert result.specification == "V5"
    devices = clean(result)
    assert set(devices) == {"K8EG004046395507", "2222ABCD123456789"}  # channel 2 has no reading
    meter = devices["K8EG004046395507"].request
    assert meter.eventDate == "2017-01-02T19:20:02+01:00"
    values = meter.measurements
    assert [values[f"electricity.voltage.rms.l{n}"] for n in (1, 2, 3)] == [230.0, 230.0, 229.0]
    assert [values[f"electricity.current.rms.l{n}"] for n in (1, 2, 3)] == [0.48, 0.44, 0.86]
    assert values[f"{CONSUMED}.total"] == 6.825
    assert values[f"{INJECTED}.total"] == 2.444
    assert devices["2222ABCD123456789"].request.measurements == {"gas.volume": 0.107}


def test_belgian_gas_and_water_channels_are_their_own_series() -> None:
    result = parse_telegram(telegram("emucs_1_7_1_fluvius_belgium.txt"), zone="Europe/Brussels")
    assert result.specification == "BELGIUM_FLUVIUS"
    devices = clean(result)
    assert set(devices) == {"1SAG3101021605", "7FLO2119033733", "8SAG1234567890"}
    meter = devices["1SAG3101021605"].request
    assert meter.eventDate == "2020-05-12T13:54:09+02:00"  # S: summer time
    assert meter.measurements[f"{CONSUMED}.t2"] == 15.758
    assert meter.measurements[f"{INJECTED}.total"] == 0.011
    assert "gas.volume" not in meter.measurements
    gas = devices["7FLO2119033733"].request  # 0-1:24.2.3, device type 003
    assert gas.measurements == {"gas.volume": 112.384}
    assert gas.eventDate == "2020-05-12T13:45:58+02:00"
    water = devices["8SAG1234567890"].request  # 0-2:24.2.1, device type 007
    assert water.measurements == {"water.volume": 872.234}
    assert water.eventDate == "2020-05-12T13:45:58+02:00"
    assert "1-0:1.4.0(02.351*kW)" in result.unmapped  # capacity-tariff average demand
    assert any(line.startswith("0-0:98.1.0(3)") for line in result.unmapped)


def test_luxembourg_smarty_decrypted() -> None:
    result = parse_telegram(telegram("smarty_luxembourg_decrypted.txt"), zone="Europe/Luxembourg")
    assert result.specification == "LUXEMBOURG_SMARTY"
    devices = clean(result)
    values = devices["SAG1030700012701"].request.measurements  # from 0-0:42.0.0
    assert values[f"{CONSUMED}.total"] == 273.764  # 1.8.0 sent, nothing derived
    assert values[f"{INJECTED}.total"] == 112743.03
    assert values["electricity.energy.reactive.injected.total"] == 7109.23  # kvarh → kVARh
    assert values["electricity.power.reactive.injected.l1"] == 0.046
    assert not any(name.endswith((".t1", ".t2")) for name in values)
    assert devices["FLO182370120350"].request.measurements == {"gas.volume": 14239.771}


def test_sweden_needs_a_hardware_id_and_a_fixed_zone() -> None:
    raw = telegram("sweden_branschrekommendation.txt")
    refused = parse_telegram(raw)
    assert refused.specification == "SWEDEN"
    assert [r.reason for r in refused.rejections] == ["invalid_message"]
    assert "hardware_id" in refused.rejections[0].detail
    result = parse_telegram(raw, hardware_id="se-meter-1", zone="Etc/GMT-1")
    meter = clean(result)["se-meter-1"].request
    assert meter.eventDate == "2021-02-17T18:40:19+01:00"
    assert meter.measurements[f"{CONSUMED}.total"] == 6678.394
    assert meter.measurements["electricity.energy.reactive.injected.total"] == 1020.971
    assert meter.measurements["electricity.current.rms.l1"] == 4.2


def test_watt_units_are_converted_to_kilo() -> None:
    raw = telegram("dsmr_5_sagemcom_t210_austria.txt")
    result = parse_telegram(raw, hardware_id="at-meter-1", zone="Europe/Vienna")
    values = clean(result)["at-meter-1"].request.measurements
    assert values[f"{CONSUMED}.total"] == 6545.766  # 006545766*Wh
    assert values[f"{CONSUMED}.t1"] == 5017.12
    assert values[f"{POWER}.total"] == 0.286  # 000000286*W
    assert values["electricity.energy.reactive.injected.total"] == 3897.726  # varh
    assert values["electricity.power.reactive.injected.total"] == 0.166  # var


def test_hungarian_layout_with_four_tariffs() -> None:
    # Synthetic, in the layout of E.ON Hungary's P1 description (no version line, meter named on
    # 0-0:42.0.0, four tariffs, frequency, power factors).
    lines = [
        "/AUX59903218166",
        "",
        "0-0:1.0.0(230817171430S)",
        "0-0:42.0.0(AUX1030303218166)",
        "0-0:96.1.0(9903218166)",
        "1-0:1.8.0(000812.421*kWh)",
        *(f"1-0:1.8.{n}({v}*kWh)" for n, v in enumerate(["000470.111", "000342.310"], 1)),
        "1-0:1.8.3(000000.000*kWh)",
        "1-0:1.8.4(000000.000*kWh)",
        "1-0:13.7.0(0.336)",
        "1-0:14.7.0(49.99*Hz)",
        "!",
    ]
    result = parse_telegram(with_crc("\r\n".join(lines)), zone="Europe/Budapest")
    assert result.specification == "EON_HUNGARY"
    values = clean(result)["AUX1030303218166"].request.measurements
    assert values[f"{CONSUMED}.total"] == 812.421
    assert values[f"{CONSUMED}.t4"] == 0.0
    assert values["electricity.frequency"] == 49.99
    assert result.unmapped == ["1-0:13.7.0(0.336)"]  # a power factor is not Table 2 "rad"


@pytest.mark.parametrize(
    ("lines", "has_crc", "expected"),
    [
        (["1-3:0.2.8(42)"], True, "V4"),
        (["1-3:0.2.8(50)"], True, "V5"),
        (["0-0:96.1.4(50217)"], True, "BELGIUM_FLUVIUS"),
        (["1-3:0.2.8(42)", "0-0:42.0.0(53)"], True, "LUXEMBOURG_SMARTY"),
        (["0-0:42.0.0(AUX1)"], True, "EON_HUNGARY"),
        (["1-0:1.8.0(1*kWh)"], True, "SWEDEN"),
        (["1-0:1.8.1(1*kWh)"], False, "V2_2"),
    ],
)
def test_detect_specification(lines: list[str], has_crc: bool, expected: str) -> None:
    text = "\r\n".join(["/XXX5 test", "", *lines, "!"])
    assert detect_specification(text, has_crc=has_crc) == expected


# --- checksums and faults ------------------------------------------------------------------------

CRC_TELEGRAMS = [
    "dsmr_4_2_kaifa.txt",
    "dsmr_5_0_iskra.txt",
    "dsmr_5_sagemcom_t210_austria.txt",
    "emucs_1_7_1_fluvius_belgium.txt",
    "smarty_luxembourg_decrypted.txt",
    "sweden_branschrekommendation.txt",
]


@pytest.mark.parametrize("name", CRC_TELEGRAMS)
def test_a_corrupted_telegram_is_rejected_whole_with_bad_checksum(name: str) -> None:
    good = telegram(name)
    position = good.index(b"1-0:1.8.") + 12  # a digit of an energy register
    corrupted = good[:position] + (b"7" if good[position : position + 1] != b"7" else b"8")
    corrupted += good[position + 1 :]
    result = parse_telegram(corrupted, hardware_id="given")
    assert result.messages == [] and result.unmapped == []
    [rejection] = result.rejections
    assert (rejection.reason, rejection.line, rejection.raw) == ("bad_checksum", None, corrupted)
    assert "CRC16" in rejection.detail


def test_a_wrong_crc_value_is_a_bad_checksum() -> None:
    raw = telegram("dsmr_5_0_iskra.txt").replace(b"!6EEE", b"!6EEF")
    assert [r.reason for r in parse_telegram(raw).rejections] == ["bad_checksum"]


def test_a_dsmr_5_telegram_without_crc_is_malformed() -> None:
    raw = telegram("dsmr_5_0_iskra.txt").replace(b"!6EEE", b"!")
    [rejection] = parse_telegram(raw).rejections
    assert rejection.reason == "malformed_telegram"
    assert "must end with a CRC" in rejection.detail


def test_garbage_lines_are_rejected_precisely_and_the_rest_kept() -> None:
    result = parse_telegram(telegram("dsmr_5_0_iskra_garbage_line.txt"))
    assert [(r.line, r.reason, r.raw) for r in result.rejections] == [
        (24, "malformed_telegram", b"1-0:52.7.0 garbage 0230.0*V"),
        (28, "malformed_telegram", b"1-0:51.7.0(0.4x4*A)"),
    ]
    assert "line 24" in result.rejections[0].detail
    values = by_device(result)["K8EG004046395507"].request.measurements
    assert "electricity.current.rms.l2" not in values
    assert values["electricity.voltage.rms.l2"] == 230.0  # the real 52.7.0 line is intact
    assert values["electricity.current.rms.l3"] == 0.86


def test_total_is_not_derived_when_a_tariff_line_is_refused() -> None:
    raw = edit("dsmr_5_0_iskra.txt", "1-0:1.8.2(000002.399*kWh)", "1-0:1.8.2(0000x2.399*kWh)")
    result = parse_telegram(raw)
    assert [r.line for r in result.rejections] == [7]
    values = by_device(result)["K8EG004046395507"].request.measurements
    assert f"{CONSUMED}.total" not in values and values[f"{CONSUMED}.t1"] == 4.426
    assert values[f"{INJECTED}.total"] == 2.444  # the other direction is whole


@pytest.mark.parametrize(
    ("old", "new", "reason", "message"),
    [
        ("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(NaN*kW)", "non_finite_value", "finite"),
        ("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.244)", "malformed_telegram", "no unit"),
        ("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.244*MW)", "malformed_telegram", "'MW'"),
        ("1-0:1.7.0(00.244*kW)", "1-0:1.7.0(00.244*kW)(1)", "malformed_telegram", "number"),
        ("0-1:24.2.1(170102161005W)", "0-1:24.2.1(170102161005X)", "bad_date", "capture time"),
        ("0-1:24.1.0(003)", "0-1:24.1.0(gas)", "malformed_telegram", "device type"),
        ("1-0:2.7.0(00.000*kW)", "1-0:1.7.0(00.000*kW)", "malformed_telegram", "twice"),
    ],
)
def test_a_bad_line_is_rejected_with_its_reason(
    old: str, new: str, reason: str, message: str
) -> None:
    result = parse_telegram(edit("dsmr_5_0_iskra.txt", old, new))
    [rejection] = result.rejections
    assert rejection.reason == reason
    assert message in rejection.detail
    assert rejection.raw.startswith(new.encode())
    assert result.messages  # the rest of the telegram still arrives


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (b"", "malformed_telegram", "starts with '/'"),
        (b"\xdb\x08SAG\x00" + bytes(200), "malformed_telegram", "encrypted"),
        (b"DB08" + b"A1" * 60, "malformed_telegram", "encrypted"),
        (b"/ISk5\\2MT382-1000\r\n\r\n1-3:0.2.8(50)\r\n", "malformed_telegram", "incomplete"),
        (b"/\r\n!\r\n", "malformed_telegram", "identification line"),
        (b"/ISk5\\2MT382\r\n!12\r\n", "malformed_telegram", "end line"),
        (b"x" * (MAX_TELEGRAM_BYTES + 1), "oversized_payload", "at most"),
    ],
)
def test_what_is_not_a_telegram_is_rejected_whole(raw: bytes, reason: str, message: str) -> None:
    [rejection] = parse_telegram(raw).rejections
    assert (rejection.reason, rejection.line) == (reason, None)
    assert message in rejection.detail


def test_two_telegrams_at_once_are_refused() -> None:
    raw = telegram("dsmr_4_2_kaifa.txt") * 2
    [rejection] = parse_telegram(raw).rejections
    assert "one telegram at a time" in rejection.detail


def test_line_endings_stripped_of_cr_are_restored_before_the_crc() -> None:
    raw = telegram("dsmr_5_0_iskra.txt")
    assert by_device(parse_telegram(raw.replace(b"\r\n", b"\n"))) == by_device(parse_telegram(raw))


def test_a_bad_telegram_time_rejects_the_telegram() -> None:
    raw = edit("dsmr_5_0_iskra.txt", "0-0:1.0.0(170102192002W)", "0-0:1.0.0(170132192002W)")
    [rejection] = parse_telegram(raw).rejections
    assert (rejection.reason, rejection.line) == ("bad_date", None)


# --- time, ids and M-Bus -------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "offset"), [("S", "+02:00"), ("W", "+01:00")])
def test_the_flag_tells_the_hour_that_happens_twice(flag: str, offset: str) -> None:
    raw = edit("dsmr_5_0_iskra.txt", "0-0:1.0.0(170102192002W)", f"0-0:1.0.0(231029023000{flag})")
    meter = by_device(parse_telegram(raw))["K8EG004046395507"].request
    assert meter.eventDate == f"2023-10-29T02:30:00{offset}"


def test_a_flag_contradicting_the_zone_rejects_the_telegram() -> None:
    raw = edit("dsmr_5_0_iskra.txt", "0-0:1.0.0(170102192002W)", "0-0:1.0.0(170102192002S)")
    [rejection] = parse_telegram(raw).rejections
    assert rejection.reason == "bad_date" and "summer" in rejection.detail


def test_an_mbus_channel_without_equipment_id_is_named_after_the_meter() -> None:
    raw = edit(
        "dsmr_5_0_iskra.txt",
        "0-1:96.1.0(3232323241424344313233343536373839)",
        "0-1:96.1.0()",
    )
    devices = by_device(parse_telegram(raw))
    assert devices["K8EG004046395507-mbus1"].request.measurements == {"gas.volume": 0.107}


def test_an_mbus_medium_without_a_series_stays_unmapped() -> None:
    raw = edit("dsmr_5_0_iskra.txt", "0-1:24.1.0(003)", "0-1:24.1.0(004)")  # heat
    result = parse_telegram(raw)
    assert "0-1:24.2.1(170102161005W)(00000.107*m3)" in result.unmapped
    assert set(by_device(result)) == {"K8EG004046395507"}


def test_hardware_id_overrides_the_meter_id_but_not_mbus_ids() -> None:
    devices = by_device(parse_telegram(telegram("dsmr_5_0_iskra.txt"), hardware_id="house-7"))
    assert set(devices) == {"house-7", "2222ABCD123456789"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"zone": "Mars/Olympus"},
        {"hardware_id": "has space"},
        {"received_at": datetime(2024, 1, 1)},
    ],
)
def test_caller_errors_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        parse_telegram(telegram("dsmr_5_0_iskra.txt"), **kwargs)


# --- round trip ----------------------------------------------------------------------------------

ALL = sorted(path.name for path in DATA.glob("*.txt"))


@pytest.mark.parametrize("name", ALL)
def test_every_message_decodes_and_validates_once_the_tariff_identifiers_are_registered(
    name: str,
) -> None:
    registry = IdentifierRegistry()
    for identifier, unit in OBIS_CUSTOM_IDENTIFIERS:
        registry.add(validate_custom(identifier, unit))
    zone = "Etc/GMT-1" if name.startswith("sweden") else "Europe/Amsterdam"
    result = parse_telegram(telegram(name), hardware_id="given", zone=zone)
    assert result.messages
    for message in result.messages:
        readings = measurement_readings(decoded(message), registry, FAR_FUTURE_US)
        assert readings
