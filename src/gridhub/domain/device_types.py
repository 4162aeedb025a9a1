"""Device types (P6): what a kind of device is expected to report, and how often.

A device type names the series (identifiers of :mod:`gridhub.domain.identifiers`) a device of
that kind sends and its reporting interval. Completeness reports (how much of a day's data
arrived) need the expected count, which is :func:`expected_per_day`: the number of readings one
series of the device should have on one local calendar day. It is DST-aware: a 15-minute series
has 96 readings on an ordinary day, 92 on the spring-forward day and 100 on the fall-back day
in Europe, because a local day is 23 or 25 hours long then.

The built-ins are one declarative table; a tenant can define more types (validated by
:func:`validate_custom_type`), stored next to the built-ins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gridhub.domain.timeutil import checked_day
from gridhub.errors import Conflict, InvalidRequest

__all__ = [
    "BUILTIN_DEVICE_TYPES",
    "MAX_EXPECTED_SERIES",
    "DeviceType",
    "day_seconds",
    "expected_per_day",
    "validate_custom_type",
]

_E = "electricity"


@dataclass(frozen=True, slots=True)
class DeviceType:
    """A kind of device: the identifiers it reports and every how many seconds.

    ``interval_s`` is ``None`` for a device that reports no regular series (a gateway, a device
    whose type is not known yet): completeness expects nothing of it.
    """

    name: str
    description: str = ""
    identifiers: tuple[str, ...] = ()
    interval_s: int | None = None
    builtin: bool = True


def _t(name: str, description: str, interval_s: int | None, *ids: str) -> DeviceType:
    return DeviceType(name, description, tuple(ids), interval_s)


#: The built-in types. Intervals are what such devices send in the pilots the seeds describe:
#: billing meters and plugs every 15 minutes, P1 ports every 10 s (DSMR 2.2-4) or 1 s (DSMR 5),
#: appliances every minute.
BUILTIN_DEVICE_TYPES: dict[str, DeviceType] = {
    t.name: t
    for t in (
        _t(
            "smart-meter",
            "electricity billing meter, 15-minute register readings",
            900,
            f"{_E}.energy.active.consumed.total",
            f"{_E}.energy.active.injected.total",
        ),
        _t(
            "dsmr-p1-meter",
            "DSMR 2.2-4 meter read on its P1 port (a telegram every 10 s)",
            10,
            f"{_E}.energy.active.consumed.total",
            f"{_E}.energy.active.injected.total",
            f"{_E}.power.active.consumed.total",
            f"{_E}.power.active.injected.total",
        ),
        _t(
            "dsmr5-p1-meter",
            "DSMR 5 meter read on its P1 port (a telegram every second)",
            1,
            f"{_E}.energy.active.consumed.total",
            f"{_E}.energy.active.injected.total",
            f"{_E}.power.active.consumed.total",
            f"{_E}.power.active.injected.total",
        ),
        _t(
            "iec62056-meter",
            "meter read through its optical port, IEC 62056-21 mode C, every 15 minutes",
            900,
            f"{_E}.energy.active.consumed.total",
        ),
        _t(
            "smart-plug",
            "metering plug in front of one appliance, quarter-hour values (seed 000's pilot)",
            900,
            f"{_E}.power.active.consumed.total",
            f"{_E}.energy.active.consumed.total",
        ),
        _t(
            "whitegood",
            "connected appliance (washing machine, dishwasher, dryer), every minute",
            60,
            f"{_E}.power.active.consumed.total",
            f"{_E}.energy.active.consumed.total",
        ),
        _t(
            "boiler",
            "electric or heat-pump boiler, every 15 minutes",
            900,
            f"{_E}.power.active.consumed.total",
            f"{_E}.energy.active.consumed.total",
            "heating.temp.primary.outlet",
        ),
        _t(
            "pv-inverter",
            "photovoltaic inverter, every 5 minutes",
            300,
            f"{_E}.power.active.injected.total",
            f"{_E}.energy.active.injected.total",
        ),
        _t("heat-meter", "district heating meter, hourly", 3600, "heating.energy"),
        _t("gas-meter", "gas meter, hourly (M-Bus behind a P1 meter)", 3600, "gas.volume"),
        _t("water-meter", "water meter, hourly", 3600, "water.volume"),
        _t(
            "lv-sensor",
            "LV feeder sensor on a topology node: fault-current alarms (fault.current.detected)"
            " and voltage/current polled every 10 s (fault location, G2)",
            10,
            *(f"{_E}.{q}.rms.{p}" for q in ("voltage", "current") for p in ("l1", "l2", "l3")),
        ),
        _t(
            "pl-sensor",
            "public-lighting sensor on a topology node: voltage, current and power-factor angle"
            " of the lighting circuit every minute while lit (fused luminaires, G3)",
            60,
            f"{_E}.voltage.rms.l1",
            f"{_E}.current.rms.l1",
            f"{_E}.powerFactor.l1",
        ),
        _t("gateway", "data concentrator or P1 gateway: forwards, reports no series", None),
        _t("grid-node", "a topology node's results from the grid services (grid:<node>)", None),
        _t("unknown", "type not stated at registration", None),
        _t("auto-registered", "registered on first contact (tenant policy)", None),
    )
}

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_EXPECTED_SERIES = 64
MAX_DESCRIPTION_LENGTH = 500
#: Shortest reporting interval a type may declare, and the longest (a week).
MIN_INTERVAL_S, MAX_INTERVAL_S = 1, 7 * 86_400


def validate_custom_type(
    name: str,
    description: str,
    identifiers: Iterable[str],
    interval_s: int | None,
    known_identifiers: Mapping[str, object] | frozenset[str] | set[str],
) -> DeviceType:
    """Check a tenant-defined type: slug name, no clash with a built-in, known identifiers."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"device type {name[:80]!r} must be 1..64 lowercase letters, digits, '-' or '_'"
        )
    if name in BUILTIN_DEVICE_TYPES:
        raise Conflict(f"device type {name!r} is built in")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(f"description longer than {MAX_DESCRIPTION_LENGTH} characters")
    ids = tuple(dict.fromkeys(identifiers))
    if len(ids) > MAX_EXPECTED_SERIES:
        raise InvalidRequest(f"more than {MAX_EXPECTED_SERIES} expected identifiers")
    unknown = [i for i in ids if i not in known_identifiers]
    if unknown:
        raise InvalidRequest(
            f"unknown identifier(s) {', '.join(repr(i[:80]) for i in unknown[:5])}; "
            "register them first"
        )
    if interval_s is not None and not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise InvalidRequest(f"interval_s must be {MIN_INTERVAL_S}..{MAX_INTERVAL_S} seconds")
    if ids and interval_s is None:
        raise InvalidRequest("a type with expected identifiers needs an interval_s")
    return DeviceType(name, description, ids, interval_s, builtin=False)


def day_seconds(day: date, zone: ZoneInfo) -> int:
    """Length of the local calendar ``day`` in ``zone``, in seconds (82 800 / 86 400 / 90 000)."""
    # Through UTC: Python subtracts two datetimes that share a tzinfo as wall-clock times, which
    # would make every day 24 hours long.
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    return int((end - start).total_seconds())


def expected_per_day(device_type: DeviceType, day: date, zone: ZoneInfo | str) -> int:
    """Readings one expected series of ``device_type`` should have on local ``day`` in ``zone``.

    0 for a type that reports no regular series. A day whose length is not a multiple of the
    interval counts whole intervals only (readings aligned to local midnight).
    """
    checked_day(day)
    if device_type.interval_s is None or not device_type.identifiers:
        return 0
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    return day_seconds(day, tz) // device_type.interval_s
