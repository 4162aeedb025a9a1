"""Historical readings from CSV (P2): a DSO's meter history, turned into canonical messages.

Linear imported the reference measurements of its households straight from the grid operator
(seed 000 §III). Here such a file enters through the same door as live data: rows become
canonical ``DeviceMeasurements`` messages (P1), and the inbound pipeline validates, deduplicates
and dead-letters them exactly as it does for MQTT or HTTP. That is why this module checks only
what it alone can see (CSV syntax, numbers, dates) and leaves identifiers to the registry.

Two layouts are recognised from the header, because DSO exports come in both:

* long: ``hardwareId,identifier,timestamp,value`` (one reading per row; other columns ignored);
* wide: ``hardwareId,timestamp,<identifier>,<identifier>,...`` (one column per identifier; an
  empty cell means "no reading" there).

The file is read one line at a time and no line is held beyond 64 KiB, so a history of any size
streams in bounded memory. One physical line is one record: a quoted field may hold the
delimiter but not a line break, which keeps line numbers and the raw bytes kept for a rejected
row exact. That reading is shared with the registry import: :mod:`gridhub.adapters.csv_lines`.

Files straight from a DSO's portal name their columns in their own language and count in their
own units (``EAN;Datum;Meterstand (Wh)``). Rather than make every operator rewrite such a file,
``parse_history`` takes a column mapping (the file's names → gridhub's, which also selects the
columns to read) and units per identifier, converted through one declarative table of factors
(:data:`UNIT_CONVERSIONS`, also used by the Green Button import). Conversion is done in decimal
arithmetic, so ``1234`` Wh is exactly the float nearest ``1.234`` kWh.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, NamedTuple, TextIO
from zoneinfo import ZoneInfo

from gridhub.adapters.csv_lines import (
    MAX_LINE_BYTES,
    CsvLine,
    LineSplitter,
    column_key,
    read_header,
    read_lines,
    sniff_delimiter,
)
from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, encode
from gridhub.domain.registry import check_timezone
from gridhub.domain.rejections import RejectReason
from gridhub.domain.units import UNIT_CONVERSIONS, unit_factor
from gridhub.domain.validation import MAX_MEASUREMENTS_PER_MESSAGE, check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage

__all__ = [
    "MAX_LINE_BYTES",
    "UNIT_CONVERSIONS",
    "CsvLine",
    "HistoryItem",
    "HistoryMessage",
    "HistoryRejection",
    "LineSplitter",
    "UnitSpec",
    "column_key",
    "parse_history",
    "read_header",
    "read_lines",
    "sniff_delimiter",
    "unit_factor",
]


class HistoryMessage(NamedTuple):
    """A canonical ``DeviceMeasurements`` message built from one or more consecutive rows."""

    kind: Literal["message"]
    hardware_id: str
    payload: bytes


class HistoryRejection(NamedTuple):
    """A row that cannot become a message, kept whole for the dead-letter store."""

    kind: Literal["rejected"]
    line: int
    raw: bytes
    reason: RejectReason
    detail: str


HistoryItem = HistoryMessage | HistoryRejection


# --- units -------------------------------------------------------------------------------------

UnitSpec = str | tuple[str, float]
"""The unit of a column: a unit name converted through :data:`UNIT_CONVERSIONS` to the
identifier's Table 2 unit, or ``(name, factor)`` for anything else (a tenant identifier)."""


def _factors(units: Mapping[str, UnitSpec] | None) -> dict[str, Decimal]:
    factors: dict[str, Decimal] = {}
    for identifier, spec in (units or {}).items():
        if isinstance(spec, str):
            known = BUILTIN_IDENTIFIERS.get(identifier)
            if known is None:
                raise InvalidRequest(
                    f"units: {identifier!r} is not in Table 2, so its unit is not known here; "
                    "give (unit, factor)"
                )
            try:
                factor = unit_factor(spec, known.unit)
            except InvalidRequest as exc:
                raise InvalidRequest(f"units: {identifier}: {exc}") from None
        else:
            try:
                factor = Decimal(str(spec[1])) if len(spec) == 2 else Decimal(0)
            except (TypeError, ValueError, InvalidOperation):
                factor = Decimal(0)
            if not factor.is_finite() or factor == 0:
                raise InvalidRequest(f"units: {identifier}: give a unit or (unit, factor ≠ 0)")
        if factor != 1:
            factors[identifier] = factor
    return factors


def _select(names: list[str], columns: Mapping[str, str] | None) -> list[str | None]:
    """Header names after the mapping; ``None`` for a column the mapping leaves out."""
    if columns is None:
        return list(names)
    mapping: dict[str, str] = {}
    for source, target in columns.items():
        if source.strip() not in names:
            raise InvalidRequest(
                f"columns names {source!r}, which the header lacks; it has {', '.join(names)[:200]}"
            )
        if not isinstance(target, str) or not target.strip():
            raise InvalidRequest(f"columns maps {source!r} to no gridhub name")
        mapping[source.strip()] = target.strip()
    return [mapping.get(name) for name in names]


# --- the history layouts -----------------------------------------------------------------------

_HARDWARE_ID = "hardwareid"
_TIMESTAMP = "timestamp"
_IDENTIFIER = "identifier"
_VALUE = "value"


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int
    hardware_id: int
    timestamp: int
    identifier: int | None  # long layout: the columns holding the identifier and the value
    value: int | None
    wide: tuple[tuple[int, str], ...]  # wide layout: (column, identifier) pairs


def _layout(names: list[str | None]) -> _Layout:
    """Where each column goes; a ``None`` name is a column left out by the mapping."""
    keys = [None if name is None else column_key(name) for name in names]
    for position, name in enumerate(names):
        if name == "":
            raise InvalidRequest(f"header column {position + 1} has no name")
    if _HARDWARE_ID not in keys or _TIMESTAMP not in keys:
        read = ", ".join(name for name in names if name is not None)[:200]
        raise InvalidRequest(f"header needs a hardwareId and a timestamp column; it has {read}")
    for key in (_HARDWARE_ID, _TIMESTAMP, _IDENTIFIER, _VALUE):
        if keys.count(key) > 1:
            raise InvalidRequest(f"header names column {key!r} more than once")
    has_identifier, has_value = _IDENTIFIER in keys, _VALUE in keys
    if has_identifier and has_value:
        return _Layout(
            len(names),
            keys.index(_HARDWARE_ID),
            keys.index(_TIMESTAMP),
            keys.index(_IDENTIFIER),
            keys.index(_VALUE),
            (),
        )
    if has_identifier or has_value:
        raise InvalidRequest(
            "a long-layout header needs both 'identifier' and 'value' columns; "
            "a wide one names an identifier per column instead"
        )
    wide = tuple(
        (position, name)
        for position, (name, key) in enumerate(zip(names, keys, strict=True))
        if name is not None and key not in (_HARDWARE_ID, _TIMESTAMP)
    )
    if not wide:
        raise InvalidRequest("a wide-layout header needs at least one identifier column")
    seen: set[str] = set()
    for _, name in wide:
        if name in seen:
            raise InvalidRequest(f"header names identifier {name!r} more than once")
        seen.add(name)
    return _Layout(len(names), keys.index(_HARDWARE_ID), keys.index(_TIMESTAMP), None, None, wide)


_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _number(cell: str, name: str, decimal_comma: bool, factor: Decimal | None = None) -> float:
    text = cell.strip()
    if not text:
        raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, f"{name}: empty value")
    if decimal_comma and text.count(",") == 1:
        text = text.replace(",", ".")  # "0,25" in a ';'-separated file is a decimal comma
    if not _NUMBER_RE.fullmatch(text):
        raise RejectedMessage(
            RejectReason.WRONG_VALUE_TYPE, f"{name}: {cell.strip()[:32]!r} is not a number"
        )
    try:
        value = float(text) if factor is None else float(Decimal(text) * factor)
    except ArithmeticError:  # decimal overflow of a huge exponent
        value = math.inf
    if not math.isfinite(value):
        scaled = "" if factor is None else f" × {factor}"
        raise RejectedMessage(
            RejectReason.NON_FINITE_VALUE,
            f"{name}: {text[:32]!r}{scaled} is beyond the float range",
        )
    return value


class _Clock:
    """Turns timestamp cells into aware datetimes, remembering the last one.

    Rows of one device and moment share their timestamp text, so the cache spares most parses.
    """

    __slots__ = ("_last", "_zone", "_zone_name")

    def __init__(self, zone_name: str | None) -> None:
        self._zone_name = zone_name
        self._zone = ZoneInfo(zone_name) if zone_name is not None else None
        self._last: tuple[str, datetime, str] | None = None

    def resolve(self, cell: str) -> tuple[datetime, str]:
        """(moment, eventDate with offset) of a timestamp cell, or a rejection."""
        last = self._last
        if last is not None and last[0] == cell:
            return last[1], last[2]
        text = cell.strip()
        if not text:
            raise RejectedMessage(RejectReason.BAD_DATE, "timestamp is empty")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RejectedMessage(
                RejectReason.BAD_DATE, f"timestamp {text[:64]!r} is not an ISO 8601 date-time"
            ) from None
        if moment.tzinfo is None:
            moment = self._localise(moment, text)
        result = (moment, moment.isoformat())
        self._last = (cell, *result)
        return result

    def _localise(self, naive: datetime, text: str) -> datetime:
        zone = self._zone
        if zone is None:
            raise RejectedMessage(
                RejectReason.MISSING_OFFSET,
                f"timestamp {text[:64]!r} has no UTC offset and no default zone was given",
            )
        early, late = naive.replace(tzinfo=zone), naive.replace(tzinfo=zone, fold=1)
        if early.utcoffset() == late.utcoffset():
            return early
        # A DST change: the wall-clock time either never happened or happened twice. Guessing
        # would shift a reading by an hour, so the row is refused and its raw line kept.
        if early.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
            raise RejectedMessage(
                RejectReason.BAD_DATE,
                f"timestamp {text[:64]!r} does not exist in {self._zone_name} "
                "(clocks skip that hour); give it with its UTC offset",
            )
        raise RejectedMessage(
            RejectReason.MISSING_OFFSET,
            f"timestamp {text[:64]!r} is ambiguous in {self._zone_name} (clocks go back, it "
            "happens twice); give it with its UTC offset",
        )


def parse_history(
    data: Iterable[str] | TextIO,
    *,
    default_zone: str | None = None,
    max_rows: int = 10_000_000,
    columns: Mapping[str, str] | None = None,
    units: Mapping[str, UnitSpec] | None = None,
) -> Iterator[HistoryItem]:
    """Stream a history CSV as canonical messages and rejected rows, in file order.

    Consecutive rows of the same device and moment become one ``DeviceMeasurements`` message
    (``updateState`` false: history must not overwrite a device's live state), so the pipeline
    handles a history file like a burst of ordinary messages. A row that cannot be read becomes
    a :class:`HistoryRejection` holding its line number and raw bytes; the other rows go on.

    Naive timestamps are read in ``default_zone`` (an IANA name) when given, else refused.

    ``columns`` maps the file's header names (exactly as written) to gridhub's: ``hardwareId``,
    ``timestamp``, ``identifier``, ``value``, or an identifier for a wide file, e.g.
    ``{"EAN": "hardwareId", "Datum": "timestamp", "Meterstand (Wh)": E}`` with ``E`` the
    register ``electricity.energy.active.consumed.total``. Given a mapping, only the columns it
    names are read: exports carry status and unit columns that are no identifiers. ``units``
    gives, per identifier, the unit its values are in (``{E: "Wh"}``): converted to the
    identifier's Table 2 unit through :data:`UNIT_CONVERSIONS`, or ``(name, factor)`` for units
    or identifiers outside them. Without either, the file is read as it is.

    The header is read at once, so an unusable file (no header, unknown layout) raises
    :class:`~gridhub.errors.InvalidRequest` before any row; so does a ``default_zone`` that is
    not a time zone, a mapping naming a column the header lacks, or a unit that cannot be
    converted. Past ``max_rows`` data rows the generator raises ``InvalidRequest`` after
    yielding everything before that row.
    """
    if default_zone is not None:
        check_timezone(default_zone)
    if max_rows < 1:
        raise InvalidRequest("max_rows must be at least 1")
    factors = _factors(units)
    lines = read_lines(data)
    names, splitter = read_header(lines)
    layout = _layout(_select(names, columns))
    return _items(lines, layout, splitter, _Clock(default_zone), max_rows, factors)


def _readings(
    fields: list[str], layout: _Layout, decimal_comma: bool, factors: dict[str, Decimal]
) -> list[tuple[str, float]]:
    if layout.identifier is not None and layout.value is not None:
        identifier = fields[layout.identifier].strip()
        if not identifier:
            raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, "identifier is empty")
        factor = factors.get(identifier)
        return [(identifier, _number(fields[layout.value], identifier, decimal_comma, factor))]
    readings = [
        (identifier, _number(fields[column], identifier, decimal_comma, factors.get(identifier)))
        for column, identifier in layout.wide
        if fields[column].strip()
    ]
    if not readings:
        raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, "row has no value in any column")
    return readings


def _message(hardware_id: str, event_date: str, values: dict[str, float]) -> HistoryMessage:
    request = MeasurementsRequest(measurements=values, updateState=False, eventDate=event_date)
    payload = encode(DeviceMeasurements(hardwareId=hardware_id, request=request))
    return HistoryMessage("message", hardware_id, payload)


def _items(
    lines: Iterator[CsvLine],
    layout: _Layout,
    splitter: LineSplitter,
    clock: _Clock,
    max_rows: int,
    factors: dict[str, Decimal],
) -> Iterator[HistoryItem]:
    decimal_comma = splitter.delimiter == ";"
    # The open group: rows of one device and moment not yet emitted as a message.
    group: tuple[str, datetime, str] | None = None
    values: dict[str, float] = {}
    known_hardware_id = ""  # the last hardwareId that passed its check
    rows = 0
    for line in lines:
        if splitter.is_blank(line):
            continue
        rows += 1
        if rows > max_rows:
            if group is not None:
                yield _message(group[0], group[2], values)
            raise InvalidRequest(
                f"more than {max_rows} data rows; line {line.number} and after were not read"
            )
        try:
            fields = _fields(line, splitter, layout.width)
            hardware_id = fields[layout.hardware_id].strip()
            if not hardware_id:
                raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, "hardwareId is empty")
            if hardware_id != known_hardware_id:
                known_hardware_id = check_hardware_id(hardware_id)
            moment, event_date = clock.resolve(fields[layout.timestamp])
            readings = _readings(fields, layout, decimal_comma, factors)
        except RejectedMessage as exc:
            yield HistoryRejection("rejected", line.number, line.raw, exc.reason, exc.detail)
            continue
        if group is not None and (group[0] != hardware_id or group[1] != moment):
            yield _message(group[0], group[2], values)
            group = None
        if group is None:
            group, values = (hardware_id, moment, event_date), {}
        for identifier, value in readings:
            # A repeated identifier starts a new message rather than overwrite a value: the
            # pipeline then decides (a redelivery is dropped there, by the same rule as live data).
            if identifier in values or len(values) >= MAX_MEASUREMENTS_PER_MESSAGE:
                yield _message(hardware_id, group[2], values)
                values = {}
            values[identifier] = value
    if group is not None:
        yield _message(group[0], group[2], values)


def _fields(line: CsvLine, splitter: LineSplitter, width: int) -> list[str]:
    if line.oversized:
        raise RejectedMessage(
            RejectReason.OVERSIZED_PAYLOAD,
            f"line is longer than {MAX_LINE_BYTES} bytes; only its start is kept",
        )
    try:
        fields = splitter.split(line.text)
    except csv.Error as exc:
        raise RejectedMessage(RejectReason.INVALID_MESSAGE, f"not valid CSV: {exc}") from None
    if len(fields) != width:
        raise RejectedMessage(
            RejectReason.WRONG_VALUE_TYPE, f"row has {len(fields)} columns, the header {width}"
        )
    return fields
