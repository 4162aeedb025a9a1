"""Green Button (NAESB ESPI) XML → canonical messages (P2): a utility's interval history.

Utilities give their customers meter history as Green Button files ("Download My Data"), and
third parties get the same XML through "Connect My Data". It is an Atom feed whose entries hold
ESPI resources, linked to each other by URL::

    UsagePoint ─< MeterReading ─> ReadingType         what is measured, in which unit and scale
                       └─< IntervalBlock ─< IntervalReading   timePeriod (start, duration), value

The feed is read as a stream (``xml.etree`` fed 64 KiB at a time, each reading and entry dropped
once read), so a year of quarter-hours costs the memory of one reading. Readings become
canonical ``DeviceMeasurements`` messages, ``updateState`` false (history, as the CSV import).

Mapping decisions:

* **An interval delta is not a register.** Table 2's ``electricity.energy.active.consumed.total``
  is a meter register (cumulative kWh, as P1 and IEC 62056-21 send it). A Green Button delta
  (``accumulationBehaviour`` 4) is the energy of one interval; stored under the register's name
  it would make a series that jumps up and down and breaks everything that differences it. So a
  delta gives two values, stamped at the interval's start as ESPI stamps it: the interval's
  energy under ``electricity.energy.active.consumed.interval`` (kWh), a tenant identifier listed
  in :data:`GREEN_BUTTON_CUSTOM_IDENTIFIERS`, and the mean power over the interval (kWh / hours)
  under Table 2's ``electricity.power.active.consumed.total`` (kW), the series live meters feed.
  Register readings (``accumulationBehaviour`` 1 bulkQuantity, 3 cumulative) go to the Table 2
  register, stamped at the end of their period.
* ``flowDirection`` 1 is consumed, 19 injected; absent or 0 counts as forward (consumption-only
  files leave it out). Net (4) and the rest are refused: a net value cannot be split into the
  consumed and injected series without guessing.
* Units by ``uom`` code (:data:`ESPI_UNITS`: Wh, VArh, VAh, W, VAr, VA, and m³, ft³, litres, US
  gallons of gas or water), scaled by ``10**powerOfTenMultiplier`` and converted through
  :data:`gridhub.domain.units.UNIT_CONVERSIONS` in decimal arithmetic. Other codes
  (therm 169, BTU 132, ...) are refused, never guessed.
* hardwareId: the UsagePoint's id (the segment after ``UsagePoint/`` in the block's URL), or the
  caller's ``hardware_id`` for a file of one UsagePoint whose ids are no device ids (``01``).
* Costs, reading qualities, summaries and LocalTimeParameters are not imported: times are epoch
  seconds (UTC) already, and canonical messages carry no cost or quality.

The input is untrusted: a DOCTYPE is refused before its internal subset is read, so no entity is
ever declared (no "billion laughs", no external entity), and ``max_bytes`` caps the size.

Every IntervalReading has exactly one outcome, a message or a rejection holding its XML: for its
own faults (no value, not a number, no time) or its block's (unknown unit, net flow, ReadingType
missing). A ReadingType that comes after its blocks is waited for, holding up to
:data:`MAX_PENDING_READINGS` readings. A document that is not well-formed, has a DOCTYPE, is no
Atom feed or is too large is refused whole (``where`` ``None``) after the items of the part read
before the fault: a download cut short keeps what it holds.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import BinaryIO, Literal, NamedTuple

from gridhub.adapters.espi_codes import (
    ESPI_UNITS,
    GREEN_BUTTON_CUSTOM_IDENTIFIERS,
    READING_TYPE_FIELDS,
    EspiUnit,
    Series,
    series_for,
)
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, encode
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage

__all__ = [
    "ESPI_UNITS",
    "GREEN_BUTTON_CUSTOM_IDENTIFIERS",
    "MAX_GREEN_BUTTON_BYTES",
    "MAX_HELD_ELEMENTS",
    "MAX_PENDING_READINGS",
    "EspiUnit",
    "GreenButtonItem",
    "GreenButtonMessage",
    "GreenButtonRejection",
    "parse_green_button",
]

MAX_GREEN_BUTTON_BYTES = 64 * 1024 * 1024
"""Default size limit of one document (N3): years of quarter-hours of a few meters."""
MAX_PENDING_READINGS = 100_000
"""Readings held while their ReadingType has not come yet (it usually comes first)."""
MAX_HELD_ELEMENTS = 100_000
"""Elements held at once (an entry being read, the feed's own): more is no Green Button feed."""
_CHUNK_BYTES = 64 * 1024
_ESPI = "http://naesb.org/espi"


class GreenButtonMessage(NamedTuple):
    """A canonical ``DeviceMeasurements`` message (JSON bytes) for one reading."""

    kind: Literal["message"]
    hardware_id: str
    payload: bytes


class GreenButtonRejection(NamedTuple):
    """What could not become a message, kept for the dead-letter store.

    ``where`` names the IntervalBlock (its URL) and the reading's place in it, ``raw`` holds the
    reading's XML; for a refused document ``where`` is ``None`` and ``raw`` the 64 KiB piece
    being read when it was refused.
    """

    kind: Literal["rejected"]
    where: str | None
    raw: bytes
    reason: RejectReason
    detail: str


GreenButtonItem = GreenButtonMessage | GreenButtonRejection

_INT_RE = re.compile(r"[+-]?\d{1,18}", re.ASCII)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z
_MAX_DURATION = 366 * 86_400


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def _reading_type(element: ET.Element) -> dict[str, int | None] | str:
    """The ReadingType fields that decide the series (see ``espi_codes``), or what is wrong."""
    values: dict[str, int | None] = {}
    for name in READING_TYPE_FIELDS:
        text = _text(element, name)
        if text is not None and not _INT_RE.fullmatch(text):
            return f"ReadingType {name} {text[:32]!r} is not an integer"
        values[name] = None if text is None else int(text)
    if abs(values["powerOfTenMultiplier"] or 0) > 24:
        return f"ReadingType powerOfTenMultiplier {values['powerOfTenMultiplier']} is out of range"
    return values


# --- readings ------------------------------------------------------------------------------------


def _seconds(text: str | None, what: str, limit: int) -> int:
    if text is None or not _INT_RE.fullmatch(text) or not 0 <= int(text) <= limit:
        shown = "is missing" if text is None else f"{text[:32]!r} is not a time in seconds"
        raise RejectedMessage(RejectReason.BAD_DATE, f"{what} {shown}")
    return int(text)


def _finite(amount: Decimal, identifier: str) -> float:
    value = float(amount)
    if not math.isfinite(value):
        raise RejectedMessage(RejectReason.NON_FINITE_VALUE, f"{identifier}: beyond float range")
    return value


def _measurements(element: ET.Element, series: Series) -> tuple[int, dict[str, float]]:
    """(epoch second the values are stamped at, values) of one reading, or RejectedMessage."""
    period = next((child for child in element if _local(child.tag) == "timePeriod"), None)
    if period is None:
        raise RejectedMessage(RejectReason.BAD_DATE, "no timePeriod")
    start = _seconds(_text(period, "start"), "timePeriod start", _MAX_EPOCH)
    duration = _seconds(_text(period, "duration"), "timePeriod duration", _MAX_DURATION)
    text = _text(element, "value")
    if not text:
        raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, "no value")
    if len(text) > 64 or not _NUMBER_RE.fullmatch(text):
        raise RejectedMessage(RejectReason.WRONG_VALUE_TYPE, f"value {text[:32]!r} is no number")
    amount = Decimal(text) * series.factor
    values = {series.identifier: _finite(amount, series.identifier)}
    moment = start
    if series.mode == "delta" and series.rate is not None:
        if not duration:
            raise RejectedMessage(RejectReason.BAD_DATE, "a delta over a duration of 0 s")
        values[series.rate] = _finite(amount * 3600 / duration, series.rate)
    elif series.mode == "register":
        moment = start + duration  # a register is read at the end of its period
    if moment > _MAX_EPOCH:
        raise RejectedMessage(RejectReason.BAD_DATE, f"{moment} s is after the year 9999")
    return moment, values


def _message(hardware_id: str, moment: int, values: dict[str, float]) -> GreenButtonMessage:
    event_date = datetime.fromtimestamp(moment, UTC).isoformat()
    request = MeasurementsRequest(measurements=values, updateState=False, eventDate=event_date)
    payload = encode(DeviceMeasurements(hardwareId=hardware_id, request=request))
    return GreenButtonMessage("message", hardware_id, payload)


def _xml(element: ET.Element) -> bytes:
    try:
        return ET.tostring(element, encoding="utf-8", default_namespace=_ESPI)
    except ValueError:  # an element outside the ESPI namespace
        return ET.tostring(element, encoding="utf-8")


def _ids(href: str) -> dict[str, str]:
    """Resource ids in an ESPI URL: ``.../UsagePoint/5446AF3F/MeterReading/01`` gives both."""
    parts = [part for part in href.split("?")[0].split("/") if part]
    names = ("UsagePoint", "MeterReading", "ReadingType")
    return {parts[i]: parts[i + 1] for i in range(len(parts) - 1) if parts[i] in names}


# --- the feed ------------------------------------------------------------------------------------


class _Refused(Exception):
    """The whole document is refused; the message says why."""


@dataclass(slots=True, eq=False)
class _Entry:
    element: ET.Element
    number: int
    links: list[tuple[str, str]] = field(default_factory=list)
    kind: str | None = None  # UsagePoint, MeterReading, ReadingType or IntervalBlock
    reading_type: dict[str, int | None] | str | None = None
    service_kind: int | None = None
    block: ET.Element | None = None
    readings: int = 0
    closed: bool = False
    # an IntervalBlock's series and device, or why it has none; None while its type is unknown
    outcome: tuple[Series, str] | RejectedMessage | None = None

    def ids(self, *rels: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for rel, href in self.links:
            if rel in rels:
                found.update(_ids(href))
        return found

    @property
    def where(self) -> str:
        hrefs = [href[:200] for rel, href in self.links if rel == "self"]
        return f"IntervalBlock {hrefs[0] if hrefs else f'in entry {self.number}'}"


class _Import:
    """The ``XMLParser`` target: builds one entry at a time and turns it into items."""

    def __init__(self, hardware_id: str | None) -> None:
        self._builder = ET.TreeBuilder()
        self._hardware_id = hardware_id
        self._first_usage_point: str | None = None
        self._root: ET.Element | None = None
        self._entry: _Entry | None = None
        self._entries = 0
        self._service_kinds: dict[str, int] = {}
        self._meter_readings: dict[tuple[str | None, str], str] = {}  # → its ReadingType's id
        self._reading_types: dict[str, dict[str, int | None] | str] = {}
        self._held: list[tuple[_Entry, int, bytes]] = []  # readings awaiting their type
        self._live = 0  # elements built and not yet dropped
        self.blocks = 0
        self.out: list[GreenButtonItem] = []

    def start(self, tag: str, attrib: dict[str, str]) -> ET.Element:
        element = self._builder.start(tag, attrib)
        self._live += 1
        if self._live > MAX_HELD_ELEMENTS:  # junk that no entry drops: bound its memory
            raise _Refused(f"more than {MAX_HELD_ELEMENTS} elements outside IntervalReadings")
        name = _local(tag)
        if self._root is None:
            self._root = element
            if name not in ("feed", "entry"):
                raise _Refused(f"the root element is {name[:64]!r}, not an Atom feed or entry")
        if name == "entry":
            self._entries += 1
            self._entry = _Entry(element, self._entries)
        elif name == "IntervalBlock" and self._entry is not None:
            self._entry.kind, self._entry.block = name, element
            self.blocks += 1
        return element

    def end(self, tag: str) -> ET.Element:
        element = self._builder.end(tag)
        name, entry = _local(tag), self._entry
        if entry is None:
            return element
        if name == "link" and entry.element[-1] is element:
            entry.links.append((element.get("rel", "alternate"), element.get("href", "")))
        elif name == "IntervalReading" and entry.block is not None and entry.block[-1] is element:
            self._reading(entry, entry.readings, element)
            entry.readings += 1
            self._live -= sum(1 for _ in element.iter())
            del entry.block[-1]
        elif name == "ReadingType":
            entry.kind, entry.reading_type = name, _reading_type(element)
        elif name in ("UsagePoint", "MeterReading"):
            entry.kind = name
            category = next((c for c in element if _local(c.tag) == "ServiceCategory"), None)
            kind = None if category is None else _text(category, "kind")
            entry.service_kind = int(kind) if kind and _INT_RE.fullmatch(kind) else None
        elif name == "entry" and entry.element is element:
            self._end_entry(entry)
            if self._root is not None and len(self._root) and self._root[-1] is element:
                self._live -= sum(1 for _ in element.iter())
                del self._root[-1]
        return element

    def data(self, data: str) -> None:
        self._builder.data(data)

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _Refused(
            "the document has a DOCTYPE declaration; Green Button files have none, and entity "
            "declarations are refused in untrusted XML"
        )

    def close(self) -> ET.Element:
        return self._builder.close()

    def _end_entry(self, entry: _Entry) -> None:
        self._entry, entry.closed = None, True
        own = entry.ids("self")
        if entry.kind == "ReadingType" and entry.reading_type and "ReadingType" in own:
            self._reading_types[own["ReadingType"]] = entry.reading_type
        elif entry.kind == "MeterReading" and "MeterReading" in own:
            kind = entry.ids("related").get("ReadingType")
            if kind is not None:
                self._meter_readings[(own.get("UsagePoint"), own["MeterReading"])] = kind
        elif entry.kind == "UsagePoint" and "UsagePoint" in own:
            if entry.service_kind is not None:
                self._service_kinds[own["UsagePoint"]] = entry.service_kind
            self._first_usage_point = self._first_usage_point or own["UsagePoint"]
        if self._held and entry.kind in ("ReadingType", "MeterReading"):
            self.release(final=False)

    def release(self, final: bool) -> None:
        """Emit the held readings whose type is now known (at the end: all of them)."""
        held, self._held = self._held, []
        for entry, index, raw in held:
            if entry.outcome is None and self._resolve(entry, final) is None:
                self._held.append((entry, index, raw))
            else:
                self._reading(entry, index, ET.fromstring(raw), raw)

    def _reading(self, entry: _Entry, index: int, element: ET.Element, raw: bytes = b"") -> None:
        outcome = entry.outcome or self._resolve(entry, final=False)
        if outcome is None and len(self._held) < MAX_PENDING_READINGS:
            self._held.append((entry, index, raw or _xml(element)))
            return
        if outcome is None:
            detail = f"its ReadingType had not come after {MAX_PENDING_READINGS} readings held"
            outcome = RejectedMessage(RejectReason.OVERSIZED_PAYLOAD, detail)
        elif not isinstance(outcome, RejectedMessage):
            try:
                moment, values = _measurements(element, outcome[0])
            except RejectedMessage as exc:
                outcome = exc
            else:
                self.out.append(_message(outcome[1], moment, values))
                return
        # a block's refusal is shared by its readings: read, never raised again (no tracebacks)
        where, data = f"{entry.where}, reading {index + 1}", raw or _xml(element)
        self.out.append(
            GreenButtonRejection("rejected", where, data, outcome.reason, outcome.detail)
        )

    def _resolve(self, entry: _Entry, final: bool) -> tuple[Series, str] | RejectedMessage | None:
        """The block's series and device, or its refusal; None if its type may still come."""
        ids = entry.ids("self", "up")
        meter_reading, usage_point = ids.get("MeterReading"), ids.get("UsagePoint")
        kind_id = self._meter_readings.get((usage_point, meter_reading or ""))
        kind = None if kind_id is None else self._reading_types.get(kind_id)
        try:
            if kind is None:
                if not final and not (entry.closed and meter_reading is None):
                    return None  # its links, MeterReading or ReadingType may come later
                missing = (
                    "a link to its MeterReading"
                    if meter_reading is None
                    else f"MeterReading {meter_reading!r} with a ReadingType"
                    if kind_id is None
                    else f"ReadingType {kind_id!r}"
                )
                raise RejectedMessage(RejectReason.INVALID_MESSAGE, f"no {missing}: unit unknown")
            if isinstance(kind, str):
                raise RejectedMessage(RejectReason.INVALID_MESSAGE, kind)
            series = series_for(kind, self._service_kinds.get(usage_point or ""))
            entry.outcome = (series, self._device(usage_point))
        except RejectedMessage as exc:
            entry.outcome = exc
        return entry.outcome

    def _device(self, usage_point: str | None) -> str:
        if self._hardware_id is None:
            if usage_point is None:
                raise RejectedMessage(
                    RejectReason.INVALID_MESSAGE, "no UsagePoint in the block's links: give one"
                )
            return check_hardware_id(usage_point)
        first = self._first_usage_point = self._first_usage_point or usage_point
        if usage_point is not None and usage_point != first:
            raise RejectedMessage(
                RejectReason.INVALID_MESSAGE,
                f"UsagePoint {usage_point[:64]!r} is a second one after {first!r}, and "
                "hardware_id names one device: import it on its own",
            )
        return self._hardware_id

    def take(self) -> Iterator[GreenButtonItem]:
        items, self.out = self.out, []
        yield from items


# --- entry point ---------------------------------------------------------------------------------


def parse_green_button(
    data: bytes | BinaryIO,
    *,
    hardware_id: str | None = None,
    max_bytes: int = MAX_GREEN_BUTTON_BYTES,
) -> Iterator[GreenButtonItem]:
    """Stream a Green Button XML document as canonical messages and rejections.

    ``data`` is the document's bytes or a binary file, read 64 KiB at a time as items are taken.
    Each usable IntervalReading becomes one message for its UsagePoint (see the module for the
    series); ``hardware_id`` names the device instead, for a file of one UsagePoint. Arguments
    are checked at the call (:class:`~gridhub.errors.InvalidRequest`), the document as it is
    read: one over ``max_bytes`` ends with an ``oversized_payload`` rejection.
    """
    if hardware_id is not None:
        try:
            check_hardware_id(hardware_id)
        except RejectedMessage as exc:
            raise InvalidRequest(exc.detail) from None
    if max_bytes < 1:
        raise InvalidRequest("max_bytes must be at least 1")
    return _run(_Import(hardware_id), data, max_bytes)


def _chunks(data: bytes | BinaryIO, max_bytes: int) -> Iterator[bytes | memoryview]:
    if not isinstance(data, bytes | bytearray | memoryview):
        while chunk := data.read(_CHUNK_BYTES):
            yield chunk
        return
    view = memoryview(data)
    if len(view) > max_bytes:
        yield view[: max_bytes + 1]  # too large: refused before a byte of it is parsed
        return
    for offset in range(0, len(view), _CHUNK_BYTES):
        yield view[offset : offset + _CHUNK_BYTES]


def _run(importer: _Import, data: bytes | BinaryIO, max_bytes: int) -> Iterator[GreenButtonItem]:
    parser = ET.XMLParser(target=importer)
    pieces, total = _chunks(data, max_bytes), 0
    chunk: bytes | memoryview = b""
    failure: tuple[RejectReason, str] | None = None
    while failure is None:
        chunk = next(pieces, b"")
        total += len(chunk)
        try:
            if total > max_bytes:
                detail = f"the document is larger than {max_bytes} bytes; the rest was not read"
                failure = (RejectReason.OVERSIZED_PAYLOAD, detail)
            elif chunk:
                parser.feed(chunk)
            else:
                parser.close()
                break
        except ET.ParseError as exc:
            failure = (RejectReason.INVALID_MESSAGE, f"not well-formed XML: {exc}")
        except _Refused as exc:
            failure = (RejectReason.INVALID_MESSAGE, str(exc))
        yield from importer.take()
    importer.release(final=True)
    yield from importer.take()
    if failure is not None:
        reason, detail = failure
        yield GreenButtonRejection("rejected", None, bytes(chunk[:_CHUNK_BYTES]), reason, detail)
    elif not importer.blocks:
        detail = "the feed holds no IntervalBlock: nothing to import"
        yield GreenButtonRejection("rejected", None, b"", RejectReason.INVALID_MESSAGE, detail)
