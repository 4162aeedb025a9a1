"""The shapes reports return: plain dataclasses, serialised by the API as they are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from gridhub.domain.registry import Site

__all__ = [
    "AggregateRow",
    "Aggregates",
    "Alert",
    "Completeness",
    "DeviceCompleteness",
    "DeviceSeries",
    "FleetOverview",
    "HouseholdView",
    "IngestRate",
    "Missing",
    "Run",
    "Timelines",
    "Whitegood",
    "WhitegoodCycle",
]


@dataclass(frozen=True, slots=True)
class DeviceSeries:
    """One device's identifier on the view's quarter-hour grid (``None``: no reading)."""

    device: str
    appliance: str
    identifier: str
    unit: str
    values: list[float | None]


@dataclass(frozen=True, slots=True)
class HouseholdView:
    tenant: str
    site: Site
    timezone: str
    start: datetime
    end: datetime
    slots: list[datetime]
    series: list[DeviceSeries]


@dataclass(frozen=True, slots=True)
class Run:
    """A whitegood run, from its plug's power: start, end, energy (kWh) and peak power (kW)."""

    start: datetime
    end: datetime
    energy_kwh: float
    peak_kw: float


@dataclass(frozen=True, slots=True)
class WhitegoodCycle:
    """One cycle as the smart appliance reported it (seed 000 §IV), with the run it caused.

    ``configured_at``, ``deadline`` and ``program`` come from the ``whitegood.configured`` alert
    (or the start's copy of them), ``started_at`` from ``whitegood.started``; any may be ``None``
    when that alert was lost or the cycle has not started yet. ``run`` is the run found in the
    plug's power that the start began, if any.
    """

    configured_at: datetime | None
    deadline: datetime | None
    program: str | None
    started_at: datetime | None
    run: Run | None


@dataclass(frozen=True, slots=True)
class Whitegood:
    device: str
    appliance: str
    runs: list[Run]
    cycles: list[WhitegoodCycle]


@dataclass(frozen=True, slots=True)
class Timelines:
    tenant: str
    site: str
    timezone: str
    start: datetime
    end: datetime
    slots: list[datetime]
    boilers: list[DeviceSeries]
    whitegoods: list[Whitegood]


@dataclass(slots=True)
class AggregateRow:
    """Energy of a group over the range: an appliance type, or a value of a site attribute."""

    group: str
    value: str
    households: int = 0
    devices: int = 0
    consumed_kwh: float = 0.0
    injected_kwh: float = 0.0


@dataclass(frozen=True, slots=True)
class Aggregates:
    tenant: str
    timezone: str
    first: date
    last: date
    by_appliance: list[AggregateRow]
    by_group: list[AggregateRow]


@dataclass(frozen=True, slots=True)
class DeviceCompleteness:
    device: str
    site: str | None
    device_type: str
    interval_s: int  # seconds between the device's readings: a slot
    received: list[int]  # slots with a reading, per day of Completeness.days
    expected: list[int]  # per day: 96, or 92/100 on DST days at 15 min; today: slots begun
    ratio: float
    warning_days: list[date]


@dataclass(frozen=True, slots=True)
class Completeness:
    tenant: str
    timezone: str
    threshold: float
    days: list[date]
    devices: list[DeviceCompleteness]
    warnings: list[str]
    received_total: int
    expected_total: int


@dataclass(frozen=True, slots=True)
class Missing:
    tenant: str
    device: str
    day: date
    timezone: str
    interval_s: int | None
    expected: int
    received: int
    missing: list[datetime]  # the first MAX_MISSING
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    device: str
    ts: datetime
    type: str
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class IngestRate:
    window_s: int
    readings: int  # the tenant's readings timestamped within the last window_s
    per_second: float
    pipeline_per_second: float | None = None  # installation-wide; installation admin only


@dataclass(frozen=True, slots=True)
class FleetOverview:
    tenant: str
    timezone: str
    households: int
    devices: dict[str, int]
    groups: dict[str, dict[str, int]]
    recent_alerts: list[Alert]
    ingest: IngestRate
