"""Tariffs (O2) and control signals (O3): plain types and their rules.

A day's tariff is a list of :class:`Period` that covers the local day from 00:00 to 24:00 without
gap or overlap (seed 000: "fixed time periods of the day … different from day to day", sent one
day ahead). A :class:`Target` names who receives a tariff or a signal: one household (site),
a list of households (a cluster), or a group of households sharing a site attribute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from gridhub.domain.registry import Site
from gridhub.errors import InvalidRequest

__all__ = [
    "GROUP_ATTRIBUTES",
    "MAX_PERIODS",
    "ControlSignal",
    "Direction",
    "Period",
    "Target",
    "Tariff",
    "TariffKind",
    "check_periods",
    "parse_clock",
]

MAX_PERIODS = 96  # quarter-hour resolution at most
MAX_SITES = 10_000
_CLOCK_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)|24:00")


class TariffKind(StrEnum):
    TOU = "tou"  # a retailer's or pilot's day-ahead time-of-use price
    NETWORK = "network"  # the DSO's network-use tariff calendar


class Direction(StrEnum):
    CONSUMPTION = "consumption"
    PRODUCTION = "production"


def _has_appliance(site: Site, value: str) -> bool:
    return value in site.appliance_types


# site attribute → does a site belong to the group with this value
GROUP_ATTRIBUTES = {
    "location": lambda s, v: s.location == v,
    "pilot_phase": lambda s, v: s.pilot_phase == v,
    "experiment": lambda s, v: s.experiment == v,
    "appliance_type": _has_appliance,
    "has_pv": lambda s, v: s.has_pv == (v.lower() in ("true", "1", "yes")),
}


@dataclass(frozen=True, slots=True)
class Target:
    """One site, a cluster of named sites, or a group by site attribute (exactly one)."""

    sites: tuple[str, ...] = ()
    attribute: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        if bool(self.sites) == (self.attribute is not None):
            raise InvalidRequest("target: give either sites or a group (attribute and value)")
        if len(self.sites) > MAX_SITES:
            raise InvalidRequest(f"target: at most {MAX_SITES} sites")
        if self.attribute is not None:
            if self.attribute not in GROUP_ATTRIBUTES:
                raise InvalidRequest(
                    f"target: unknown group attribute {self.attribute[:64]!r}; one of "
                    + ", ".join(GROUP_ATTRIBUTES)
                )
            if self.value is None or len(self.value) > 200:
                raise InvalidRequest("target: a group needs a value (at most 200 characters)")

    def select(self, sites: list[Site]) -> list[Site]:
        """The sites of the target among ``sites``; a named site that is missing is an error."""
        if self.attribute is not None:
            match = GROUP_ATTRIBUTES[self.attribute]
            return [s for s in sites if match(s, self.value or "")]
        by_id = {s.id: s for s in sites}
        missing = [s for s in self.sites if s not in by_id]
        if missing:
            raise InvalidRequest(f"target: site {missing[0][:128]!r} is not registered")
        return [by_id[s] for s in dict.fromkeys(self.sites)]

    def describe(self) -> str:
        if self.attribute is not None:
            return f"{self.attribute}={self.value}"
        return ",".join(self.sites)


@dataclass(frozen=True, slots=True)
class Period:
    start: str  # "HH:MM", local time of the tariff's day
    end: str  # "HH:MM" or "24:00"
    price: float
    label: str = ""


def parse_clock(text: str) -> int:
    """Minutes since midnight of ``HH:MM`` (``24:00`` is the end of the day)."""
    if not _CLOCK_RE.fullmatch(text):
        raise InvalidRequest(f"time {text[:16]!r} must be HH:MM (00:00..24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def check_periods(periods: list[Period]) -> list[Period]:
    """Refuse periods that do not tile the day 00:00–24:00 in order, or a bad price."""
    if not periods:
        raise InvalidRequest("a tariff day needs at least one period")
    if len(periods) > MAX_PERIODS:
        raise InvalidRequest(f"at most {MAX_PERIODS} periods per day")
    expected = 0
    for n, period in enumerate(periods, start=1):
        start, end = parse_clock(period.start), parse_clock(period.end)
        if start != expected:
            where = "00:00" if n == 1 else f"where period {n - 1} ends ({periods[n - 2].end})"
            raise InvalidRequest(
                f"period {n} starts at {period.start}; it must start at {where} "
                "(periods cover the day without gap or overlap)"
            )
        if end <= start:
            raise InvalidRequest(f"period {n} ends ({period.end}) before it starts")
        if not math.isfinite(period.price) or abs(period.price) > 1e6:
            raise InvalidRequest(f"period {n}: price must be a finite number (|price| ≤ 1e6)")
        if len(period.label) > 64:
            raise InvalidRequest(f"period {n}: label longer than 64 characters")
        expected = end
    if expected != 24 * 60:
        raise InvalidRequest(f"the last period ends at {periods[-1].end}; it must end at 24:00")
    return periods


@dataclass(frozen=True, slots=True)
class Tariff:
    id: str
    tenant: str
    kind: TariffKind
    day: date
    target: Target
    sites: tuple[str, ...]  # the households it was sent to (a group resolved when published)
    currency: str
    unit: str
    periods: tuple[Period, ...]
    published: datetime
    publisher: str


@dataclass(frozen=True, slots=True)
class ControlSignal:
    id: str
    tenant: str
    direction: Direction
    limit_kw: float
    start: datetime
    end: datetime | None
    target: Target
    sites: tuple[str, ...]
    created: datetime
    issuer: str
