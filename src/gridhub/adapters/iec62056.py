"""IEC 62056-21 data readouts → canonical messages (P2).

Meters without a P1 push port are read through their optical (D0) port in mode C: the meter
answers with an identification line ``/XXXZ<ident>`` CR LF, then a data message ``STX``, data
lines such as ``1.8.0(001234.5*kWh)`` — one or more data sets per line, codes usually reduced
to ``C.D.E`` — ``!`` CR LF, ``ETX`` and a block check character (BCC, the XOR of every byte after
``STX`` up to and including ``ETX``). This adapter turns one captured readout, as bytes, into a
canonical ``DeviceMeasurements`` message through the same OBIS table as DSMR
(:data:`gridhub.adapters.obis.OBIS_TABLE`; a reduced code ``1.8.0`` is ``1-0:1.8.0``). Talking
to the meter (request, baud-rate switch, timing) is the caller's.

Every data set has an outcome, as in :mod:`gridhub.adapters.dsmr_p1`: mapped into the message,
listed in :attr:`IecResult.unmapped` (valid OBIS data the table does not map, e.g. ``F.F`` error
registers or billing-period values ``1.8.0*01``), rejected with its line, or — clock and id
data sets — used to stamp and name the message. A wrong BCC rejects the whole readout with
``bad_checksum``.

The message is stamped with the meter's own clock, ``0.9.1`` (time ``hhmmss``) and ``0.9.2``
(date ``YYMMDD``), read as local time in ``zone``: IEC readouts carry no DST flag, so a meter
that stays on standard time all year is read with a fixed zone such as ``Etc/GMT-1``. Without
both lines the message takes ``received_at``, or no ``eventDate`` at all (the receive time, P1).
The device is named by ``0.0.0`` (device address), else ``C.1.0``/``96.1.0`` (serial number),
else — a last resort, as it may name the model rather than the unit — the identification line.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

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
from gridhub.domain.validation import ID_PATTERN, MAX_HARDWARE_ID_LENGTH, check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage

__all__ = ["ETX", "MAX_READOUT_BYTES", "STX", "IecResult", "bcc", "parse_readout"]

STX = 0x02
ETX = 0x03
MAX_READOUT_BYTES = 64 * 1024
"""Largest readout accepted (N3): a full register dump is a few KiB."""

_IDENT_RE = re.compile(r"([A-Za-z]{3})([0-9A-Za-z])([\x20-\x7e]{1,64})")
_DATASET_RE = re.compile(
    r"(?P<address>[0-9A-Z:.*&-]{1,32})(?P<values>(?:\([^()\x00-\x1f\x7f]*\))+)"
)
_GROUP_RE = re.compile(r"\(([^()]*)\)")
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?")
_TIME_RE = re.compile(r"(\d\d):?(\d\d):?(\d\d)")
_DATE_RE = re.compile(r"(\d\d)-?(\d\d)-?(\d\d)")

_TIME, _DATE = (0, 9, 1), (0, 9, 2)
_ADDRESS, _SERIAL = (0, 0, 0), (96, 1, 0)


class IecResult(NamedTuple):
    """What one readout became. ``identification`` is the ident line without ``/`` and CR LF."""

    messages: list[ObisMessage]
    rejections: list[ObisRejection]
    unmapped: list[str]
    identification: str | None


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _DataSet(NamedTuple):
    line: int  # 1-based line of the data block
    text: str
    code: ObisCode
    groups: tuple[str, ...]


def bcc(data: bytes) -> int:
    """The block check character of IEC 62056-21: XOR of ``data`` (after STX, through ETX)."""
    check = 0
    for byte in data:
        check ^= byte
    return check


def parse_readout(
    raw: bytes,
    *,
    hardware_id: str | None = None,
    zone: str = "Europe/Amsterdam",
    received_at: datetime | None = None,
) -> IecResult:
    """Turn one mode C data readout into a canonical message, rejections and unmapped data sets.

    ``hardware_id`` overrides the ids the readout carries. A bad ``zone``, ``hardware_id`` or a
    naive ``received_at`` is the caller's error: :class:`~gridhub.errors.InvalidRequest`.
    """
    tz = ZoneInfo(check_timezone(zone))
    if hardware_id is not None:
        try:
            check_hardware_id(hardware_id)
        except RejectedMessage as exc:
            raise InvalidRequest(exc.detail) from None
    if received_at is not None and received_at.utcoffset() is None:
        raise InvalidRequest("received_at must be an aware datetime")
    identification: str | None = None
    try:
        identification, rest = _identification(raw)
        return _read(_data_block(rest), identification, hardware_id, tz, received_at)
    except _Refused as exc:
        rejection = ObisRejection("rejected", None, raw[:MAX_READOUT_BYTES], exc.reason, exc.detail)
        return IecResult([], [rejection], [], identification)


def _identification(raw: bytes) -> tuple[str | None, bytes]:
    """(identification line or ``None``, the bytes after it)."""
    if len(raw) > MAX_READOUT_BYTES:
        raise _Refused(
            RejectReason.OVERSIZED_PAYLOAD,
            f"readout of {len(raw)} bytes; at most {MAX_READOUT_BYTES}",
        )
    rest = raw.lstrip(b" \t\r\n")
    if rest[:1] != b"/":
        return None, rest
    end = rest.find(b"\r\n")
    ident = rest[1:end].decode("latin-1") if end > 0 else ""
    if not _IDENT_RE.fullmatch(ident):
        raise _Refused(MALFORMED_TELEGRAM, f"bad identification line {ident[:64]!r}")
    return ident, rest[end + 2 :]


def _data_block(rest: bytes) -> str:
    """The data lines of a data message ``STX ... ! CR LF ETX BCC`` whose BCC matches."""
    if rest[:1] != bytes([STX]):
        raise _Refused(
            MALFORMED_TELEGRAM, f"the data message starts with STX, this with {rest[:8]!r}"
        )
    etx = rest.find(ETX)
    if etx < 0 or etx + 1 >= len(rest):
        raise _Refused(MALFORMED_TELEGRAM, "no ETX and BCC: the readout is incomplete")
    expected, received = bcc(rest[1 : etx + 1]), rest[etx + 1]
    if expected != received:
        raise _Refused(
            BAD_CHECKSUM,
            f"BCC of the data block is 0x{expected:02X}, the readout says 0x{received:02X}",
        )
    if rest[etx + 2 :].strip(b" \t\r\n"):
        raise _Refused(MALFORMED_TELEGRAM, "data after the BCC: one readout at a time")
    block = rest[1:etx]
    if not block.endswith(b"!\r\n"):
        raise _Refused(MALFORMED_TELEGRAM, "the data block does not end with '!' CR LF")
    return block[:-3].decode("latin-1")


def _data_sets(block: str, rejections: list[ObisRejection]) -> list[_DataSet]:
    """The data sets of the block, several per line allowed; what is not one is rejected."""
    sets: list[_DataSet] = []
    for number, line in enumerate(block.split("\r\n"), start=1):
        position = 0
        while position < len(line.rstrip()):
            match = _DATASET_RE.match(line, position)
            code = parse_code(match["address"]) if match else None
            if match is None or code is None:
                text = line[position:]
                rejections.append(_rejection(number, text, MALFORMED_TELEGRAM, "not OBIS data"))
                break
            groups = tuple(_GROUP_RE.findall(match["values"]))
            sets.append(_DataSet(number, match.group(0), code, groups))
            position = match.end()
    return sets


def _rejection(line: int, text: str, reason: str, why: str) -> ObisRejection:
    detail = f"line {line} {text[:80]!r}: {why}"
    return ObisRejection("rejected", line, text.encode("latin-1"), reason, detail)


def _read(
    block: str,
    identification: str | None,
    given_id: str | None,
    tz: ZoneInfo,
    received_at: datetime | None,
) -> IecResult:
    rejections: list[ObisRejection] = []
    unmapped: list[str] = []
    structure: dict[tuple[int, int, int], _DataSet] = {}
    readings: list[_DataSet] = []
    seen: set[str] = set()
    for data_set in _data_sets(block, rejections):
        code = data_set.code
        kind = (code.c, code.d, code.e)
        if code.canonical in seen:
            why = "the code appears twice in the readout"
            rejections.append(_rejection(data_set.line, data_set.text, MALFORMED_TELEGRAM, why))
        elif code.a in (None, 0, 1) and kind in (_TIME, _DATE, _ADDRESS, _SERIAL):
            structure[kind] = data_set
        else:
            readings.append(data_set)
        seen.add(code.canonical)

    device = given_id or _device_id(structure, identification)
    event_date = _event_date(structure, unmapped, tz)
    if event_date is None and received_at is not None:
        event_date = received_at.isoformat()

    values: dict[str, Decimal] = {}
    refused: set[str] = set()
    for data_set in readings:
        mapping = lookup(data_set.code)
        if mapping is None or not any(data_set.groups):
            unmapped.append(data_set.text)
            continue
        try:
            values[mapping.identifier] = convert(*_value(data_set.groups), mapping)
        except _Refused as exc:
            rejections.append(_rejection(data_set.line, data_set.text, exc.reason, exc.detail))
            refused.add(mapping.identifier)
        except ValueError as exc:
            rejections.append(
                _rejection(data_set.line, data_set.text, MALFORMED_TELEGRAM, str(exc))
            )
            refused.add(mapping.identifier)
    values.update(derive_totals(values, refused))
    messages = [make_message(device, values, event_date)] if values else []
    return IecResult(messages, rejections, unmapped, identification)


def _value(groups: tuple[str, ...]) -> tuple[Decimal, str | None]:
    if len(groups) != 1:
        raise _Refused(MALFORMED_TELEGRAM, f"{len(groups)} values where the register has one")
    number, _, unit = groups[0].partition("*")
    if not _NUMBER_RE.fullmatch(number):
        raise _Refused(MALFORMED_TELEGRAM, f"{number[:32]!r} is not a number")
    return Decimal(number), unit or None


def _device_id(structure: dict[tuple[int, int, int], _DataSet], identification: str | None) -> str:
    for kind in (_ADDRESS, _SERIAL):
        data_set = structure.get(kind)
        if data_set is not None and data_set.groups:
            found = equipment_id(data_set.groups[0], hex_encoded=False)
            if found is not None:
                return found
    if identification is not None:
        match = _IDENT_RE.fullmatch(identification)
        if match is not None:
            # "\W" pairs announce protocol capabilities, not identity; the rest may hold spaces
            ident = re.sub(r"\\.", "", match.group(3)).strip()
            candidate = re.sub(r"[^A-Za-z0-9._:@-]+", "-", f"{match.group(1)}-{ident}").strip("-")
            if len(candidate) <= MAX_HARDWARE_ID_LENGTH and ID_PATTERN.fullmatch(candidate):
                return candidate
    raise _Refused(
        RejectReason.INVALID_MESSAGE,
        "the readout names no usable device (0.0.0, C.1.0, identification); pass its hardware_id",
    )


def _event_date(
    structure: dict[tuple[int, int, int], _DataSet], unmapped: list[str], tz: ZoneInfo
) -> str | None:
    """The meter clock (``0.9.2`` date and ``0.9.1`` time) as ISO 8601 with offset, if both."""
    time, date = structure.get(_TIME), structure.get(_DATE)
    if time is None or date is None:
        unmapped.extend(d.text for d in (time, date) if d is not None)
        return None
    time_match = _TIME_RE.fullmatch(time.groups[0]) if len(time.groups) == 1 else None
    date_match = _DATE_RE.fullmatch(date.groups[0]) if len(date.groups) == 1 else None
    if time_match is None or date_match is None:
        detail = f"meter clock {date.text} {time.text} is not YYMMDD and hhmmss"
        raise _Refused(RejectReason.BAD_DATE, detail)
    try:
        year, month, day = (int(g) for g in date_match.groups())
        hour, minute, second = (int(g) for g in time_match.groups())
        naive = datetime(2000 + year, month, day, hour, minute, second)
        return resolve_local_time(naive, tz, None).isoformat()
    except ValueError as exc:
        raise _Refused(
            RejectReason.BAD_DATE, f"meter clock {date.text} {time.text}: {exc}"
        ) from None
