"""OBIS codes → gridhub identifiers: the one table every meter adapter reads (P2).

DSMR P1 telegrams (:mod:`gridhub.adapters.dsmr_p1`) and IEC 62056-21 readouts
(:mod:`gridhub.adapters.iec62056`) both name their values with OBIS codes (IEC 62056-61,
``A-B:C.D.E*F``). Both adapters map them through :data:`OBIS_TABLE`, so a register means the same
series whichever port it was read from, and adding a code is one row here, not a code change.

Decisions the table encodes:

* **Tariff registers are their own series.** ``1-0:1.8.1``/``1.8.2`` (and 3, 4 on Hungarian
  meters) are billing registers; summing them into ``...consumed.total`` alone would lose what
  a retailer bills on. They become ``electricity.energy.active.consumed.t1`` ... — identifiers
  outside seed 002 Table 2, listed in :data:`OBIS_CUSTOM_IDENTIFIERS` for a tenant to register.
  The Table 2 ``.total`` is still produced: from ``1.8.0`` when the meter sends it, else derived
  as the sum of the tariff registers (:func:`derive_totals`) when both t1 and t2 were read.
* **Units are converted to the identifier's unit** with exact decimal factors (W→kW, Wh→kWh,
  var→kVAR); a value without a unit or with an unknown one is refused, never guessed: a meter
  counting in Wh read as kWh would be off by a factor 1000.
* **M-Bus channels** (``0-n:24.2.1``, Belgian ``0-n:24.2.3``, DSMR 2.2/3 ``0-n:24.3.0``) map by
  the channel's device type ``0-n:24.1.0`` (EN 13757-3 medium: 3 gas, 7 water). A channel that
  announces no type is gas, as the DSMR P1 companion standards define ``24.2.1``.
* Only current values map: a code with a billing-period suffix (``F`` other than 255, e.g.
  ``1.8.0*01``) is a historical value and stays unmapped.

The rest of the module is what both adapters share: the result records they return, the reject
reasons they add, local meter time with the DSMR summer/winter flag, and equipment identifiers.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, encode
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import ID_PATTERN, MAX_HARDWARE_ID_LENGTH

__all__ = [
    "BAD_CHECKSUM",
    "MALFORMED_TELEGRAM",
    "MBUS_DEFAULT_DEVICE_TYPE",
    "OBIS_CUSTOM_IDENTIFIERS",
    "OBIS_TABLE",
    "UNIT_FACTORS",
    "ObisCode",
    "ObisMapping",
    "ObisMessage",
    "ObisRejection",
    "convert",
    "derive_totals",
    "equipment_id",
    "lookup",
    "make_message",
    "parse_code",
    "resolve_local_time",
]

BAD_CHECKSUM = RejectReason.BAD_CHECKSUM.value
"""A telegram whose CRC or BCC fails."""
MALFORMED_TELEGRAM = RejectReason.MALFORMED_TELEGRAM.value
"""Reject reason: a telegram, readout or line that cannot be read as OBIS data."""


@dataclass(frozen=True, slots=True)
class ObisMapping:
    """One row: an OBIS code (``n`` = any M-Bus channel 1..4) and the series it feeds."""

    obis: str
    identifier: str
    unit: str
    meaning: str
    device_type: int | None = None  # M-Bus rows: the EN 13757-3 medium the row applies to
    part_of: str | None = None  # tariff rows: the total they add up to


_CONSUMED = "electricity.energy.active.consumed"
_INJECTED = "electricity.energy.active.injected"


def _tariffs(register: str, base: str, direction: str) -> tuple[ObisMapping, ...]:
    return tuple(
        ObisMapping(
            f"1-0:{register}.{n}",
            f"{base}.t{n}",
            "kWh",
            f"active energy {direction}, tariff {n}",
            part_of=f"{base}.total",
        )
        for n in (1, 2, 3, 4)
    )


def _phases(
    codes: tuple[int, int, int], base: str, unit: str, meaning: str
) -> tuple[ObisMapping, ...]:
    return tuple(
        ObisMapping(f"1-0:{c}.7.0", f"{base}.l{n}", unit, f"{meaning}, L{n}")
        for n, c in enumerate(codes, start=1)
    )


# fmt: off
OBIS_TABLE: tuple[ObisMapping, ...] = (
    ObisMapping("1-0:1.8.0", f"{_CONSUMED}.total", "kWh", "active energy imported, all tariffs"),
    ObisMapping("1-0:2.8.0", f"{_INJECTED}.total", "kWh", "active energy exported, all tariffs"),
    *_tariffs("1.8", _CONSUMED, "imported"),
    *_tariffs("2.8", _INJECTED, "exported"),
    ObisMapping("1-0:3.8.0", "electricity.energy.reactive.consumed.total", "kVARh",
                "reactive energy imported (+R)"),
    ObisMapping("1-0:4.8.0", "electricity.energy.reactive.injected.total", "kVARh",
                "reactive energy exported (-R)"),
    ObisMapping("1-0:1.7.0", "electricity.power.active.consumed.total", "kW",
                "active power imported (+P)"),
    ObisMapping("1-0:2.7.0", "electricity.power.active.injected.total", "kW",
                "active power exported (-P)"),
    ObisMapping("1-0:3.7.0", "electricity.power.reactive.consumed.total", "kVAR",
                "reactive power imported (+Q)"),
    ObisMapping("1-0:4.7.0", "electricity.power.reactive.injected.total", "kVAR",
                "reactive power exported (-Q)"),
    *_phases((21, 41, 61), "electricity.power.active.consumed", "kW", "active power imported"),
    *_phases((22, 42, 62), "electricity.power.active.injected", "kW", "active power exported"),
    *_phases((23, 43, 63), "electricity.power.reactive.consumed", "kVAR",
             "reactive power imported"),
    *_phases((24, 44, 64), "electricity.power.reactive.injected", "kVAR",
             "reactive power exported"),
    *_phases((32, 52, 72), "electricity.voltage.rms", "Vrms", "voltage"),
    *_phases((31, 51, 71), "electricity.current.rms", "Arms", "current"),
    ObisMapping("1-0:14.7.0", "electricity.frequency", "HZ", "supply frequency"),
    ObisMapping("0-n:24.2.1", "gas.volume", "m3", "M-Bus gas meter reading", device_type=3),
    ObisMapping("0-n:24.2.1", "water.volume", "m3", "M-Bus water meter reading", device_type=7),
    ObisMapping("0-n:24.2.3", "gas.volume", "m3",
                "M-Bus gas meter reading, not temperature corrected (Belgium)", device_type=3),
    ObisMapping("0-n:24.2.3", "water.volume", "m3", "M-Bus water meter reading", device_type=7),
    ObisMapping("0-n:24.3.0", "gas.volume", "m3", "M-Bus gas meter reading (DSMR 2.2/3)",
                device_type=3),
    ObisMapping("0-n:24.3.0", "water.volume", "m3", "M-Bus water meter reading (DSMR 2.2/3)",
                device_type=7),
)
# fmt: on

MBUS_DEFAULT_DEVICE_TYPE = 3
"""The medium of an M-Bus channel that sends no ``0-n:24.1.0``: gas, as DSMR defines 24.2.1."""

UNIT_FACTORS: Mapping[str, Mapping[str, Decimal]] = {
    # gridhub unit → {unit as the meter writes it, case-folded: factor}
    "kWh": {"kwh": Decimal(1), "wh": Decimal("0.001")},
    "kW": {"kw": Decimal(1), "w": Decimal("0.001")},
    "kVARh": {"kvarh": Decimal(1), "varh": Decimal("0.001")},
    "kVAR": {"kvar": Decimal(1), "var": Decimal("0.001")},
    "Vrms": {"v": Decimal(1)},
    "Arms": {"a": Decimal(1)},
    "HZ": {"hz": Decimal(1)},
    "m3": {"m3": Decimal(1), "dm3": Decimal("0.001")},
}

OBIS_CUSTOM_IDENTIFIERS: tuple[tuple[str, str], ...] = tuple(
    sorted({(m.identifier, m.unit) for m in OBIS_TABLE if m.identifier not in BUILTIN_IDENTIFIERS})
)
"""(name, unit) of the identifiers the table produces beyond Table 2: register them per tenant."""

_BY_KEY: dict[tuple[str, int | None], ObisMapping] = {
    (m.obis, m.device_type): m for m in OBIS_TABLE
}
_PARTS: dict[str, tuple[str, ...]] = {}
for _row in OBIS_TABLE:
    if _row.part_of is not None:
        _PARTS[_row.part_of] = (*_PARTS.get(_row.part_of, ()), _row.identifier)


# --- codes ---------------------------------------------------------------------------------------


class ObisCode(NamedTuple):
    """An OBIS code as written: ``a``/``b`` absent in reduced IEC codes, ``f`` when suffixed."""

    a: int | None
    b: int | None
    c: int
    d: int
    e: int
    f: int | None

    @property
    def key(self) -> str:
        """``A-B:C.D.E`` with reduced codes read as electricity (``1-0``), as IEC 62056-21 does."""
        a = 1 if self.a is None else self.a
        b = 0 if self.b is None else self.b
        return f"{a}-{b}:{self.c}.{self.d}.{self.e}"

    @property
    def canonical(self) -> str:
        """:attr:`key` plus a billing period: ``1.8.0`` and ``1-0:1.8.0*255`` are one register."""
        return self.key if self.f is None or self.f == 255 else f"{self.key}*{self.f}"

    @property
    def mbus_channel(self) -> int | None:
        """The M-Bus channel (1..4) of an ``0-n:`` code, else ``None``."""
        return self.b if self.a == 0 and self.b is not None and 1 <= self.b <= 4 else None


_CODE_RE = re.compile(
    r"(?:(\d{1,3})-(\d{1,3}):)?([0-9CFLP]{1,3})\.([0-9CFLP]{1,3})(?:\.(\d{1,3}))?(?:[*&](\d{1,3}))?"
)
# IEC 62056-61 letters standing for C or D values in reduced codes ("C.1.0", "F.F").
_LETTERS = {"C": 96, "F": 97, "L": 98, "P": 99}


def _group(text: str) -> int:
    value = _LETTERS.get(text)
    if value is None:
        if not text.isdigit():
            raise ValueError(text)
        value = int(text)
    if value > 255:
        raise ValueError(text)
    return value


def parse_code(text: str) -> ObisCode | None:
    """The OBIS code in ``text`` (full, reduced or lettered), or ``None`` if it is not one."""
    match = _CODE_RE.fullmatch(text)
    if match is None:
        return None
    a, b, c, d, e, f = match.groups()
    if e is None and a is not None:
        return None  # only reduced codes ("F.F") may leave out E
    try:
        return ObisCode(
            None if a is None else _group(a),
            None if b is None else _group(b),
            _group(c),
            _group(d),
            0 if e is None else _group(e),
            None if f is None else _group(f),
        )
    except ValueError:
        return None


def lookup(code: ObisCode, device_type: int | None = None) -> ObisMapping | None:
    """The table row for a code (M-Bus codes: for the channel's medium), or ``None``."""
    if code.f is not None and code.f != 255:
        return None  # a billing-period (historical) value, not the current one
    channel = code.mbus_channel
    if channel is None:
        return _BY_KEY.get((code.key, None))
    medium = MBUS_DEFAULT_DEVICE_TYPE if device_type is None else device_type
    return _BY_KEY.get((f"0-n:{code.c}.{code.d}.{code.e}", medium))


def convert(value: Decimal, unit: str | None, mapping: ObisMapping) -> Decimal:
    """``value`` in ``unit`` expressed in the mapping's unit; ``ValueError`` says why not."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if not unit:
        raise ValueError(f"no unit: cannot tell what {mapping.unit} the value is in")
    factor = UNIT_FACTORS[mapping.unit].get(unit.casefold())
    if factor is None:
        raise ValueError(f"unit {unit!r} cannot be converted to {mapping.unit}")
    return value * factor


def derive_totals(values: Mapping[str, Decimal], refused: set[str]) -> dict[str, Decimal]:
    """Table 2 totals the meter did not send, as the sum of its tariff registers.

    Only when tariffs 1 and 2 were both read and no tariff line of that total was refused: a sum
    over some of the registers would be a plausible but wrong meter reading.
    """
    totals: dict[str, Decimal] = {}
    for total, parts in _PARTS.items():
        if total in values or any(part in refused for part in parts):
            continue
        if parts[0] in values and parts[1] in values:
            totals[total] = sum((values[p] for p in parts if p in values), Decimal(0))
    return totals


# --- what the meter adapters return --------------------------------------------------------------


class ObisMessage(NamedTuple):
    """A canonical ``DeviceMeasurements`` message (JSON bytes) for one device and moment."""

    kind: Literal["message"]
    hardware_id: str
    payload: bytes


class ObisRejection(NamedTuple):
    """What could not become a message, kept whole for the dead-letter store.

    ``line`` is the 1-based line of the DSMR telegram (its identification line being 1) or of
    the IEC data block, ``None`` when the whole input is refused (then ``raw`` is the input as
    received); otherwise ``raw`` is the refused line or data set.
    """

    kind: Literal["rejected"]
    line: int | None
    raw: bytes
    reason: str
    detail: str


def make_message(
    hardware_id: str, values: Mapping[str, Decimal], event_date: str | None
) -> ObisMessage:
    """A live reading: ``updateState`` true, since a meter port reports the current state."""
    measurements = {name: float(value) for name, value in values.items()}
    request = MeasurementsRequest(measurements=measurements, updateState=True, eventDate=event_date)
    payload = encode(DeviceMeasurements(hardwareId=hardware_id, request=request))
    return ObisMessage("message", hardware_id, payload)


# --- meter time and identity ---------------------------------------------------------------------


def _observes_dst(zone: ZoneInfo, year: int) -> bool:
    winter = datetime(year, 1, 15, tzinfo=zone).utcoffset()
    summer = datetime(year, 7, 15, tzinfo=zone).utcoffset()
    return winter != summer


def resolve_local_time(naive: datetime, zone: ZoneInfo, flag: str | None) -> datetime:
    """The moment a meter's local wall-clock time means, or ``ValueError`` saying why not.

    ``flag`` is the DSMR suffix: ``S`` summer (DST) time, ``W`` winter time. It picks the hour
    that happens twice when clocks go back, and must agree with ``zone`` otherwise — a meter
    whose flag contradicts its zone has a clock or configuration fault, and guessing would shift
    its readings by an hour. Zones without DST ignore the flag: Swedish meters keep UTC+1 all
    year and set the flag anyway, so they are read with e.g. ``Etc/GMT-1``.
    """
    early, late = naive.replace(tzinfo=zone), naive.replace(tzinfo=zone, fold=1)
    if early.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise ValueError(f"{naive.isoformat()} does not exist in {zone} (clocks skip it)")
    if flag is None or not _observes_dst(zone, naive.year):
        if early.utcoffset() != late.utcoffset():
            raise ValueError(f"{naive.isoformat()} happens twice in {zone} and has no S/W flag")
        return early
    for moment in (early, late):
        if bool(moment.dst()) == (flag == "S"):
            return moment
    season = "summer" if flag == "S" else "winter"
    raise ValueError(f"{naive.isoformat()} is flagged {season} time but is not in {zone}")


def equipment_id(text: str, *, hex_encoded: bool) -> str | None:
    """A device id from an equipment identifier, or ``None`` if it is not a usable hardwareId.

    DSMR sends ``0-0:96.1.1`` as the hex of the printed serial (``4B3845...`` = ``K8E...``), so
    ``hex_encoded`` ids are decoded when they decode to a valid id, else kept as sent (DSMR 2.2
    meters send ``00000000000000``); IEC 62056-21 readouts send ids plain.
    """
    candidates = [text]
    if hex_encoded and text and len(text) % 2 == 0:
        try:
            decoded = binascii.unhexlify(text).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            pass
        else:
            candidates.insert(0, decoded)
    for candidate in candidates:
        if len(candidate) <= MAX_HARDWARE_ID_LENGTH and ID_PATTERN.fullmatch(candidate):
            return candidate
    return None
