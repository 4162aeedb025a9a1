"""DSMR P1 telegrams → canonical messages (P2): Dutch, Belgian, Luxembourg, Swedish, Hungarian.

A P1 port pushes a telegram every 1–10 s: an identification line ``/XXX5...``, OBIS data lines
and ``!`` with a CRC16 (DSMR 4 and later). This adapter turns one telegram, as bytes, into
canonical ``DeviceMeasurements`` messages through :data:`gridhub.adapters.obis.OBIS_TABLE`; the
reading (serial port, TCP gateway, HTTP ``POST``) is the caller's, so the rules are unit-tested
on real telegrams without any I/O.

``dsmr-parser`` does the DSMR work: its telegram specifications (chosen per telegram, see
:func:`detect_specification`), its CRC16, and its value parsers for each line. It is used line by
line rather than through ``TelegramParser.parse`` because that call skips lines it does not know
and logs and drops lines it cannot parse; here every line has an outcome:

* mapped — a value in a message (electricity: one message per telegram, stamped with the
  telegram's ``0-0:1.0.0``; each M-Bus gas or water reading: its own series and message, under
  the M-Bus equipment id, stamped with its own capture time);
* unmapped — valid OBIS data the table has no series for (tariff indicator, failure log, text
  messages, ...), returned in :attr:`P1Result.unmapped`;
* rejected — a line that is not OBIS data or whose value cannot be read, with the line itself;
* used — version, clock and equipment-id lines, M-Bus device types and ids, which stamp, name
  and route the messages.

A wrong CRC rejects the whole telegram with ``bad_checksum``: any of its values may be corrupt.
Telegrams without a CRC (DSMR 2.2 and 3) are read line by line, the grammar being the only check.
Timestamps ``YYMMDDhhmmssX`` are local time in ``zone``, ``X`` being ``S`` (summer) or ``W``.
Encrypted telegrams (Luxembourg Smarty on the wire) must be decrypted first; the decrypted
telegram is an ordinary DSMR 5 one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dsmr_parser import telegram_specifications
from dsmr_parser.exceptions import ParseError
from dsmr_parser.parsers import CosemParser, MBusParser, TelegramParser, ValueParser
from dsmr_parser.value_types import timestamp

from gridhub.adapters.obis import (
    BAD_CHECKSUM,
    MALFORMED_TELEGRAM,
    ObisCode,
    ObisMessage,
    ObisRejection,
    convert,
    derive_totals,
    equipment_id,
    lookup,
    make_message,
    parse_code,
    resolve_local_time,
)
from gridhub.domain.registry import check_timezone
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage

__all__ = [
    "MAX_TELEGRAM_BYTES",
    "SPECIFICATIONS",
    "P1Result",
    "detect_specification",
    "parse_telegram",
]

MAX_TELEGRAM_BYTES = 16 * 1024
"""Largest telegram accepted (N3). Real ones are 0.5–3 KiB, text messages included."""

SPECIFICATIONS: tuple[str, ...] = (
    "V2_2",  # also DSMR 3 (dsmr-parser: V3 = V2_2)
    "V4",
    "V5",
    "BELGIUM_FLUVIUS",
    "LUXEMBOURG_SMARTY",
    "SWEDEN",
    "EON_HUNGARY",
)
"""The ``dsmr_parser.telegram_specifications`` this adapter chooses from."""


class P1Result(NamedTuple):
    """What one telegram became.

    ``specification`` is the dsmr-parser specification it was read with (see
    :data:`SPECIFICATIONS`), ``None`` when it could not even be framed.
    """

    messages: list[ObisMessage]
    rejections: list[ObisRejection]
    unmapped: list[str]
    specification: str | None


@dataclass(frozen=True, slots=True)
class _Line:
    number: int  # 1-based line of the telegram, the identification line being 1
    text: str  # as received; a DSMR 2.2 continuation line is joined with "\r\n"
    code: ObisCode
    groups: tuple[str, ...]

    @property
    def block(self) -> str:
        return self.text + "\r\n"  # what dsmr-parser's line patterns expect


class _Refused(Exception):
    """A rejection: of the whole telegram, or of one line where :func:`_read` maps lines."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_HEADER_RE = re.compile(r"/[A-Za-z]{3}[0-9A-Za-z][\x20-\x7e]{0,96}")
_END_RE = re.compile(r"!([0-9A-Fa-f]{4})?")
_LINE_RE = re.compile(
    r"(?P<code>\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}(?:\*\d{1,3})?)"
    r"(?P<groups>(?:\([^()\x00-\x1f\x7f]*\))+)"
)
_GROUP_RE = re.compile(r"\(([^()]*)\)")
_TIMESTAMP_RE = re.compile(r"(\d{12})([SW]?)")
_CIPHER_RE = re.compile(r"(?i)db[0-9a-f]{40,}")

_METER_IDS = ("0-0:96.1.1", "0-0:42.0.0", "0-0:96.1.0")  # NL/BE, LU/HU logical name, HU serial
_STRUCTURE = frozenset({"1-3:0.2.8", "0-0:96.1.4", "0-0:1.0.0", *_METER_IDS})
_GENERIC_COSEM = CosemParser(ValueParser(Decimal))
_GENERIC_MBUS = MBusParser(ValueParser(timestamp), ValueParser(Decimal))


def detect_specification(telegram: str, *, has_crc: bool) -> str:
    """The dsmr-parser specification for a telegram, told by the lines only some versions send.

    Belgian e-MUCS meters announce their version on ``0-0:96.1.4``; Luxembourg (with a DSMR
    version line) and Hungary (without) name the meter on ``0-0:42.0.0``; Dutch meters give
    ``1-3:0.2.8`` (``4x`` or ``5x``). Of the rest, a CRC means the Swedish profile, none DSMR 2.2/3.
    """
    if re.search(r"^0-0:96\.1\.4\(", telegram, re.MULTILINE):
        return "BELGIUM_FLUVIUS"
    version = re.search(r"^1-3:0\.2\.8\(([^)]*)\)", telegram, re.MULTILINE)
    if re.search(r"^0-0:42\.0\.0\(", telegram, re.MULTILINE):
        return "LUXEMBOURG_SMARTY" if version else "EON_HUNGARY"
    if version:
        return "V4" if version.group(1).startswith("4") else "V5"
    return "SWEDEN" if has_crc else "V2_2"


@functools.cache
def _parser(name: str) -> Any:
    return TelegramParser(getattr(telegram_specifications, name))


def parse_telegram(
    raw: bytes,
    *,
    hardware_id: str | None = None,
    zone: str = "Europe/Amsterdam",
    received_at: datetime | None = None,
) -> P1Result:
    """Turn one P1 telegram into canonical messages, rejections and unmapped lines.

    ``hardware_id`` overrides the meter's ``0-0:96.1.1`` (needed for Swedish meters, which send
    no id); M-Bus devices keep their own ids. ``received_at`` (aware) stamps telegrams without a
    ``0-0:1.0.0`` (DSMR 2.2/3); without it their messages carry no ``eventDate`` and the pipeline
    uses the receive time (P1). A bad ``zone``, ``hardware_id`` or naive ``received_at`` is the
    caller's error and raises :class:`~gridhub.errors.InvalidRequest`.
    """
    tz = ZoneInfo(check_timezone(zone))
    if hardware_id is not None:
        try:
            check_hardware_id(hardware_id)
        except RejectedMessage as exc:
            raise InvalidRequest(exc.detail) from None
    if received_at is not None and received_at.utcoffset() is None:
        raise InvalidRequest("received_at must be an aware datetime")
    specification: str | None = None
    try:
        signed, body, crc = _frame(raw)
        specification = detect_specification(signed, has_crc=crc is not None)
        _check_crc(signed, crc, specification)
        return _read(body, specification, hardware_id, tz, received_at)
    except _Refused as exc:
        rejection = ObisRejection(
            "rejected", None, raw[:MAX_TELEGRAM_BYTES], exc.reason, exc.detail
        )
        return P1Result([], [rejection], [], specification)


def _frame(raw: bytes) -> tuple[str, list[tuple[int, str]], str | None]:
    """(text from ``/`` through the ``!`` line, numbered data lines, CRC or ``None``)."""
    if len(raw) > MAX_TELEGRAM_BYTES:
        raise _Refused(
            RejectReason.OVERSIZED_PAYLOAD,
            f"telegram of {len(raw)} bytes; at most {MAX_TELEGRAM_BYTES}",
        )
    # Latin-1 maps every byte to one character, so the CRC below runs over the bytes received.
    text = raw.decode("latin-1").lstrip(" \t\r\n")
    if not text.startswith("/"):
        if raw[:1] == b"\xdb" or _CIPHER_RE.fullmatch(text.strip()):
            detail = "an encrypted (DLMS general-global-cipher) telegram: decrypt it first"
        else:
            detail = f"a telegram starts with '/', this with {text[:16]!r}"
        raise _Refused(MALFORMED_TELEGRAM, detail)
    if "\r" not in text:
        text = text.replace("\n", "\r\n")  # a reader stripped the CRs; the meter sent CRLF
    lines = text.split("\r\n")
    if not _HEADER_RE.fullmatch(lines[0]):
        raise _Refused(MALFORMED_TELEGRAM, f"bad identification line {lines[0][:64]!r}")
    end = next((i for i, line in enumerate(lines) if line.startswith("!")), None)
    if end is None:
        raise _Refused(MALFORMED_TELEGRAM, "no end line '!': the telegram is incomplete")
    match = _END_RE.fullmatch(lines[end])
    if match is None:
        raise _Refused(MALFORMED_TELEGRAM, f"bad end line {lines[end][:16]!r}")
    if any(line.strip() for line in lines[end + 1 :]):
        raise _Refused(MALFORMED_TELEGRAM, "data after the end line '!': one telegram at a time")
    body = [(number, line) for number, line in enumerate(lines[1:end], start=2)]
    return "\r\n".join(lines[:end]) + "\r\n!", body, match.group(1)


def _check_crc(signed: str, crc: str | None, specification: str) -> None:
    if crc is None:
        if _parser(specification).telegram_specification["checksum_support"]:
            raise _Refused(MALFORMED_TELEGRAM, f"a {specification} telegram must end with a CRC")
        return
    calculated = TelegramParser.crc16(signed)
    if calculated != int(crc, 16):
        raise _Refused(
            BAD_CHECKSUM,
            f"CRC16 of the telegram is {calculated:04X}, the telegram says {crc.upper()}",
        )


def _logical_lines(body: list[tuple[int, str]], rejections: list[ObisRejection]) -> list[_Line]:
    """OBIS lines, a DSMR 2.2/3 ``(value)`` continuation joined to the line it continues."""
    pieces: list[tuple[int, list[str]]] = []
    for number, text in body:
        if not text.strip():
            continue
        if text.startswith("(") and pieces:
            pieces[-1][1].append(text)
        else:
            pieces.append((number, [text]))
    lines: list[_Line] = []
    for number, parts in pieces:
        text = "\r\n".join(parts)
        match = _LINE_RE.fullmatch("".join(parts))
        code = parse_code(match["code"]) if match else None
        if match is None or code is None:
            rejections.append(_line_rejection(number, text, MALFORMED_TELEGRAM, "not OBIS data"))
            continue
        groups = tuple(_GROUP_RE.findall(match["groups"]))
        lines.append(_Line(number, text, code, groups))
    return lines


def _line_rejection(number: int, text: str, reason: str, why: str) -> ObisRejection:
    shown = text.replace("\r\n", " ")[:80]
    raw = text.encode("latin-1")
    return ObisRejection("rejected", number, raw, reason, f"line {number} {shown!r}: {why}")


def _read(
    body: list[tuple[int, str]],
    specification: str,
    given_id: str | None,
    tz: ZoneInfo,
    received_at: datetime | None,
) -> P1Result:
    """Lines of a framed, CRC-checked telegram → messages; raises :class:`_Refused` for all."""
    rejections: list[ObisRejection] = []
    structure: dict[str, str] = {}
    mbus_types: dict[int, int] = {}
    mbus_ids: dict[int, str] = {}
    readings: list[_Line] = []
    seen: set[str] = set()
    for line in _logical_lines(body, rejections):
        name, channel, first = line.code.key, line.code.mbus_channel, line.groups[0]
        if line.code.canonical in seen:
            why = "the code appears twice in the telegram"
            rejections.append(_line_rejection(line.number, line.text, MALFORMED_TELEGRAM, why))
        elif name in _STRUCTURE:
            structure[name] = first
        elif channel is not None and name.endswith(":24.1.0"):
            if first.isdigit():
                mbus_types[channel] = int(first)
            else:
                why = "the M-Bus device type is not a number"
                rejections.append(_line_rejection(line.number, line.text, MALFORMED_TELEGRAM, why))
        elif channel is not None and name.endswith((":96.1.0", ":96.1.1")):
            mbus_ids[channel] = first
        else:
            readings.append(line)
        seen.add(line.code.canonical)

    meter_id = given_id or _meter_id(structure)
    clock = structure.get("0-0:1.0.0")
    if clock is not None:
        try:
            event_date: str | None = _dsmr_time(clock, tz).isoformat()
        except ValueError as exc:
            raise _Refused(RejectReason.BAD_DATE, f"telegram time 0-0:1.0.0: {exc}") from None
    else:
        event_date = received_at.isoformat() if received_at is not None else None

    parser = _parser(specification)
    values: dict[str, Decimal] = {}
    refused: set[str] = set()
    unmapped: list[str] = []
    mbus_messages: list[ObisMessage] = []
    for line in readings:
        channel = line.code.mbus_channel
        mapping = lookup(line.code, mbus_types.get(channel) if channel else None)
        if mapping is None or not any(line.groups):
            unmapped.append(line.text)
            continue
        try:
            value, unit = _library_value(parser, line, mbus=channel is not None)
            converted = convert(value, unit, mapping)
            capture = _capture_time(line, tz) if channel else None
        except _Refused as exc:
            rejections.append(_line_rejection(line.number, line.text, exc.reason, exc.detail))
            refused.add(mapping.identifier)
            continue
        except ValueError as exc:
            rejections.append(_line_rejection(line.number, line.text, MALFORMED_TELEGRAM, str(exc)))
            refused.add(mapping.identifier)
            continue
        if channel is None:
            values[mapping.identifier] = converted
            continue
        device = equipment_id(mbus_ids.get(channel, ""), hex_encoded=True)
        device = device or f"{meter_id[:120]}-mbus{channel}"
        mbus_messages.append(make_message(device, {mapping.identifier: converted}, capture))

    values.update(derive_totals(values, refused))
    messages = [make_message(meter_id, values, event_date)] if values else []
    return P1Result([*messages, *mbus_messages], rejections, unmapped, specification)


def _meter_id(structure: dict[str, str]) -> str:
    for key in _METER_IDS:
        found = equipment_id(structure.get(key, ""), hex_encoded=True)
        if found is not None:
            return found
    raise _Refused(
        RejectReason.INVALID_MESSAGE,
        "the telegram names no usable meter id (0-0:96.1.1, 0-0:42.0.0); pass its hardware_id",
    )


def _capture_time(line: _Line, tz: ZoneInfo) -> str:
    """An M-Bus reading's own capture time: its first value group."""
    try:
        return _dsmr_time(line.groups[0], tz).isoformat()
    except ValueError as exc:
        raise _Refused(RejectReason.BAD_DATE, f"capture time: {exc}") from None


def _library_value(parser: Any, line: _Line, mbus: bool) -> tuple[Decimal, str | None]:
    """The value and unit dsmr-parser reads from a line, with the specification's own parser."""
    spec = parser.telegram_specification
    value_parser = _GENERIC_MBUS if mbus else _GENERIC_COSEM
    for item in spec["objects"]:
        if parser.telegram_specification_regexes[item["obis_reference"]].match(line.block):
            value_parser = item["value_parser"]
            break
    try:
        parsed = value_parser.parse(line.block)
        value, unit = parsed.value, parsed.unit
    except (ParseError, ArithmeticError, ValueError, IndexError, TypeError, AttributeError):
        value, unit = None, None
    if not isinstance(value, Decimal):
        raise _Refused(MALFORMED_TELEGRAM, "the value is not a number")
    if not value.is_finite():
        raise _Refused(RejectReason.NON_FINITE_VALUE, f"{value} is not a finite number")
    return value, unit if isinstance(unit, str) else None


def _dsmr_time(text: str, tz: ZoneInfo) -> datetime:
    """``YYMMDDhhmmss`` plus the ``S``/``W`` flag, as an aware datetime in the meter's zone."""
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not YYMMDDhhmmss with S or W")
    try:
        naive = datetime.strptime(match.group(1), "%y%m%d%H%M%S")
    except ValueError:
        raise ValueError(f"time {text!r} is not a valid date and time") from None
    return resolve_local_time(naive, tz, match.group(2) or None)
