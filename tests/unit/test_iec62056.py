"""IEC 62056-21 mode C readouts: BCC, data sets, OBIS mapping, meter clock, ids, round trip.

The readouts are in ``tests/data/iec62056/`` (hand-written, see its README); variants are built
here with :func:`readout`, which computes the BCC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gridhub.adapters.iec62056 import ETX, MAX_READOUT_BYTES, STX, IecResult, bcc, parse_readout
from gridhub.adapters.obis import OBIS_CUSTOM_IDENTIFIERS
from gridhub.domain.identifiers import IdentifierRegistry, validate_custom
from gridhub.domain.messages import DeviceMeasurements, decode
from gridhub.domain.validation import measurement_readings, to_us
from gridhub.errors import InvalidRequest

DATA = Path(__file__).resolve().parents[1] / "data" / "iec62056"
CONSUMED = "electricity.energy.active.consumed"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def readout(lines: list[str], ident: str | None = "ISk5ME162-0033") -> bytes:
    block = "".join(f"{line}\r\n" for line in lines).encode("latin-1") + b"!\r\n" + bytes([ETX])
    head = f"/{ident}\r\n".encode() if ident is not None else b""
    return head + bytes([STX]) + block + bytes([bcc(block)])


def only_message(result: IecResult) -> DeviceMeasurements:
    [message] = result.messages
    decoded = decode(message.payload)
    assert isinstance(decoded, DeviceMeasurements)
    assert decoded.hardwareId == message.hardware_id
    return decoded


def test_bcc_is_the_xor_after_stx_through_etx() -> None:
    assert bcc(b"") == 0
    assert bcc(b"!\r\n\x03") == 0x21 ^ 0x0D ^ 0x0A ^ 0x03
    good = load("iskra_me162_mode_c.bin")
    assert good[-1] == bcc(good[good.index(bytes([STX])) + 1 : -1])


def test_a_good_readout() -> None:
    result = parse_readout(load("iskra_me162_mode_c.bin"))
    assert result.rejections == []
    assert result.identification == "ISk5ME162-0033"
    message = only_message(result)
    assert message.hardwareId == "71234567"  # 0.0.0 comes before C.1.0
    assert message.request.eventDate == "2024-03-15T13:45:12+01:00"  # 0.9.2 + 0.9.1, local
    assert message.request.updateState is True
    assert message.request.measurements == {
        f"{CONSUMED}.total": 12345.678,  # sent as 1.8.0, not derived
        f"{CONSUMED}.t1": 8123.456,
        f"{CONSUMED}.t2": 4222.222,
        "electricity.energy.active.injected.total": 120.5,
        "electricity.voltage.rms.l1": 231.4,  # two data sets on one line
        "electricity.current.rms.l1": 1.25,
        "electricity.power.active.consumed.total": 0.452,  # a full code, 1-0:1.7.0
    }
    assert result.unmapped == ["F.F(0000000)", "1.8.0*01(0011987.001*kWh)", "C.7.0(0003)"]


def test_serial_number_units_in_watts_and_no_clock() -> None:
    result = parse_readout(load("landis_gyr_zmd_mode_c.bin"))
    assert result.rejections == []
    assert result.identification == "LGZ5\\2ZMD3104407.B32"
    message = only_message(result)
    assert message.hardwareId == "94523817"  # C.1.0
    assert message.request.eventDate is None  # no meter clock: the pipeline stamps receive time
    values = message.request.measurements
    assert values["electricity.power.active.consumed.total"] == 1.482  # 1482*W
    assert values["electricity.power.active.consumed.l3"] == 0.515
    assert values[f"{CONSUMED}.total"] == 4748.92  # t1 + t2
    assert "1.6.1(02.154*kW)(2403121915)" in result.unmapped  # a timestamped maximum demand


def test_received_at_stamps_a_readout_without_clock() -> None:
    at = datetime(2024, 3, 15, 12, 45, 30, tzinfo=UTC)
    result = parse_readout(load("landis_gyr_zmd_mode_c.bin"), received_at=at)
    assert only_message(result).request.eventDate == "2024-03-15T12:45:30+00:00"


def test_a_bad_bcc_rejects_the_whole_readout() -> None:
    raw = load("iskra_me162_mode_c_bad_bcc.bin")
    result = parse_readout(raw)
    assert result.messages == [] and result.unmapped == []
    [rejection] = result.rejections
    assert (rejection.reason, rejection.line, rejection.raw) == ("bad_checksum", None, raw)
    assert "BCC" in rejection.detail
    assert result.identification == "ISk5ME162-0033"


@pytest.mark.parametrize("name", ["iskra_me162_mode_c.bin", "landis_gyr_zmd_mode_c.bin"])
def test_any_flipped_byte_or_bcc_is_a_bad_checksum(name: str) -> None:
    good = load(name)
    start = good.index(bytes([STX])) + 1
    for position in (start, start + 7, len(good) - 1):
        bad = bytearray(good)
        bad[position] ^= 0x01
        assert [r.reason for r in parse_readout(bytes(bad)).rejections] == ["bad_checksum"]


def test_garbage_lines_are_rejected_precisely_and_the_rest_kept() -> None:
    result = parse_readout(load("iskra_me162_mode_c_garbage_line.bin"))
    assert [(r.line, r.reason, r.raw) for r in result.rejections] == [
        (6, "malformed_telegram", b"#~ line noise ~#"),
        (7, "malformed_telegram", b"2.8.0(0000120.5x0*kWh)"),
    ]
    values = only_message(result).request.measurements
    assert values[f"{CONSUMED}.total"] == 12345.678  # derived from t1 and t2
    assert "electricity.energy.active.injected.total" not in values


def test_a_line_with_a_good_and_a_bad_data_set_keeps_the_good_one() -> None:
    raw = readout(["0.0.0(1)", "32.7.0(231.4*V)?31.7.0(001.25*A)"])
    result = parse_readout(raw)
    assert [(r.line, r.raw) for r in result.rejections] == [(2, b"?31.7.0(001.25*A)")]
    assert only_message(result).request.measurements == {"electricity.voltage.rms.l1": 231.4}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1.8.1(0008123.456)", "no unit"),
        ("1.8.1(0008123.456*MWh)", "'MWh'"),
        ("1.8.1(8123.456*kWh)(2403151200)", "2 values"),
        ("1.8.1(8,123*kWh)", "not a number"),
    ],
)
def test_a_register_that_cannot_be_read_is_rejected(line: str, message: str) -> None:
    result = parse_readout(readout(["0.0.0(1)", line, "1.8.2(1*kWh)"]))
    [rejection] = result.rejections
    assert (rejection.line, rejection.reason) == (2, "malformed_telegram")
    assert message in rejection.detail
    assert only_message(result).request.measurements == {f"{CONSUMED}.t2": 1.0}


@pytest.mark.parametrize("again", ["1.8.1(2*kWh)", "1-0:1.8.1*255(2*kWh)"])
def test_a_repeated_code_is_rejected(again: str) -> None:
    result = parse_readout(readout(["0.0.0(1)", "1.8.1(1*kWh)", again]))
    assert [r.line for r in result.rejections] == [3]
    assert only_message(result).request.measurements == {f"{CONSUMED}.t1": 1.0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "starts with STX"),
        (b"/ISk5ME162-0033\r\n1.8.0(1*kWh)\r\n!\r\n", "starts with STX"),
        (b"/?!\r\n\x02x", "identification line"),
        (b"\x021.8.0(1*kWh)\r\n!\r\n", "incomplete"),
        (b"\x021.8.0(1*kWh)\r\n!\r\n\x03", "incomplete"),
        (b"\x021.8.0(1*kWh)\r\n\x03" + bytes([bcc(b"1.8.0(1*kWh)\r\n\x03")]), "'!'"),
        (readout(["0.0.0(1)"]) + b"/ISk5", "one readout at a time"),
        (b"/" + b"x" * MAX_READOUT_BYTES, "at most"),
    ],
)
def test_what_is_not_a_readout_is_rejected_whole(raw: bytes, message: str) -> None:
    [rejection] = parse_readout(raw).rejections
    assert rejection.line is None
    assert message in rejection.detail


def test_a_readout_without_identification_line() -> None:
    result = parse_readout(readout(["0.0.0(55)", "1.8.1(1*kWh)"], ident=None))
    assert result.identification is None
    assert only_message(result).hardwareId == "55"


def test_the_identification_line_names_the_device_as_a_last_resort() -> None:
    iskra = parse_readout(readout(["1.8.1(1*kWh)"]))
    assert only_message(iskra).hardwareId == "ISk-ME162-0033"
    lgz = parse_readout(readout(["1.8.1(1*kWh)"], ident="LGZ5\\2ZMD3104407.B32"))
    assert only_message(lgz).hardwareId == "LGZ-ZMD3104407.B32"  # "\2" is a capability flag
    given = parse_readout(readout(["1.8.1(1*kWh)"]), hardware_id="flat-3")
    assert only_message(given).hardwareId == "flat-3"


def test_no_device_id_at_all_is_refused() -> None:
    [rejection] = parse_readout(readout(["1.8.1(1*kWh)"], ident=None)).rejections
    assert rejection.reason == "invalid_message"
    assert "hardware_id" in rejection.detail


@pytest.mark.parametrize(
    ("time", "date"),
    [
        ("0.9.1(251200)", "0.9.2(240315)"),
        ("0.9.1(121200)", "0.9.2(240230)"),
        ("0.9.1(12)", "0.9.2(240315)"),
    ],
)
def test_an_unreadable_meter_clock_rejects_the_readout(time: str, date: str) -> None:
    [rejection] = parse_readout(readout(["0.0.0(1)", time, date, "1.8.1(1*kWh)"])).rejections
    assert (rejection.reason, rejection.line) == ("bad_date", None)


def test_half_a_clock_is_unmapped_and_the_receive_time_used() -> None:
    at = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
    result = parse_readout(readout(["0.0.0(1)", "0.9.1(134512)", "1.8.1(1*kWh)"]), received_at=at)
    assert result.unmapped == ["0.9.1(134512)"]
    assert only_message(result).request.eventDate == "2024-03-15T12:00:00+00:00"


def test_clock_separators_and_a_fixed_zone() -> None:
    lines = ["0.0.0(1)", "0.9.1(13:45:12)", "0.9.2(24-07-15)", "1.8.1(1*kWh)"]
    result = parse_readout(readout(lines), zone="Etc/GMT-1")  # a meter on standard time all year
    assert only_message(result).request.eventDate == "2024-07-15T13:45:12+01:00"


def test_an_ambiguous_meter_clock_is_refused() -> None:
    lines = ["0.0.0(1)", "0.9.1(023000)", "0.9.2(231029)", "1.8.1(1*kWh)"]
    [rejection] = parse_readout(readout(lines)).rejections  # 02:30 happens twice that night
    assert rejection.reason == "bad_date" and "twice" in rejection.detail


@pytest.mark.parametrize(
    "kwargs",
    [{"zone": "Nowhere/Town"}, {"hardware_id": "a/b"}, {"received_at": datetime(2024, 1, 1)}],
)
def test_caller_errors_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        parse_readout(load("iskra_me162_mode_c.bin"), **kwargs)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.bin")))
def test_every_message_decodes_and_validates(name: str) -> None:
    registry = IdentifierRegistry()
    for identifier, unit in OBIS_CUSTOM_IDENTIFIERS:
        registry.add(validate_custom(identifier, unit))
    result = parse_readout(load(name))
    for message in result.messages:
        decoded = decode(message.payload)
        assert isinstance(decoded, DeviceMeasurements)
        assert measurement_readings(decoded, registry, to_us(datetime(2100, 1, 1, tzinfo=UTC)))
