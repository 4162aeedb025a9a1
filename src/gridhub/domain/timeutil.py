"""Time rules: resolutions, aggregate functions and calendar days in a tenant's time zone.

Everything is stored in UTC. Days, and the hours of zones with half-hour offsets, follow the
tenant's time zone, so a day is the span between two local midnights: 92 quarter-hours on the
spring DST day, 100 on the autumn one.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from gridhub.errors import InvalidRequest


class Resolution(StrEnum):
    RAW = "raw"
    QUARTER_HOUR = "15m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def rollup_table(self) -> str | None:
        return {"15m": "rollup_15m", "1h": "rollup_1h", "1d": "rollup_1d"}.get(self.value)


class Function(StrEnum):
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"


ROLLUP_RESOLUTIONS = (Resolution.QUARTER_HOUR, Resolution.HOUR, Resolution.DAY)
MIN_YEAR, MAX_YEAR = 1970, 9998  # beyond, local day bounds and day arithmetic overflow datetime


def checked_day(day: date, what: str = "day") -> date:
    """``day`` if calendar arithmetic in any time zone stays within ``datetime``'s range;
    :class:`InvalidRequest` otherwise (0001-01-01 or 9999-12-31 overflow, a 500 unchecked)."""
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise InvalidRequest(f"{what} must lie in the years {MIN_YEAR}..{MAX_YEAR}")
    return day


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in ``zone``, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def quarter_hours_in_day(day: date, zone: ZoneInfo) -> int:
    """How many quarter-hours a local day has (96, or 92/100 on DST change days)."""
    start, end = day_bounds(day, zone)
    return int((end.timestamp() - start.timestamp()) // 900)


def expected_readings(day: date, zone: ZoneInfo, interval_s: int) -> int:
    """How many readings a device reporting every ``interval_s`` seconds should send that day."""
    start, end = day_bounds(day, zone)
    return int((end.timestamp() - start.timestamp()) // interval_s)
