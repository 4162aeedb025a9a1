"""Queries (Q1, Q2): series at a resolution with a function, latest state, alerts.

Time handling lives here, once: callers give instants with offsets, or a local calendar day; the
tenant's time zone turns a day into its [start, end) instants (so a DST day has 92 or 100
quarter-hours) and the answer is given back in the tenant's local time with its offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from gridhub.domain.timeutil import Function, Resolution, day_bounds
from gridhub.errors import InvalidRequest, NotFound
from gridhub.storage.base import (
    AlertQuery,
    Point,
    SeriesQuery,
    StateValue,
    Store,
    StoredAlert,
    StoredDeadLetter,
)
from gridhub.storage.registry import Registry

MAX_POINTS = 100_000
MIN_YEAR, MAX_YEAR = 1970, 9998  # beyond, offsets and day arithmetic overflow datetime


@dataclass(frozen=True, slots=True)
class SeriesResult:
    tenant: str
    device: str
    identifier: str
    unit: str
    start: datetime
    end: datetime
    resolution: Resolution
    function: Function
    timezone: str
    points: list[Point]


class QueryService:
    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        self._registry = registry

    def _device(self, tenant: str, device: str) -> None:
        self._registry.tenant(tenant)
        if self._registry.device(tenant, device) is None:
            raise NotFound(f"device {device!r} not found in tenant {tenant!r}")

    def time_range(
        self, tenant: str, start: datetime | None, end: datetime | None, day: date | None
    ) -> tuple[datetime, datetime]:
        """Resolve ``day`` (a local calendar day) or ``start``/``end`` (with offsets)."""
        zone = self._registry.tenant(tenant).zone
        for name, moment in (("day", day), ("from", start), ("to", end)):
            if moment is not None and not MIN_YEAR <= moment.year <= MAX_YEAR:
                raise InvalidRequest(f"{name} must lie in the years {MIN_YEAR}..{MAX_YEAR}")
        if day is not None:
            if start is not None or end is not None:
                raise InvalidRequest("give either day or from/to, not both")
            return day_bounds(day, zone)
        if start is None or end is None:
            raise InvalidRequest("give day=YYYY-MM-DD, or both from and to")
        for name, moment in (("from", start), ("to", end)):
            if moment.tzinfo is None:
                raise InvalidRequest(f"{name} needs a UTC offset (e.g. 'Z' or '+01:00')")
        if end <= start:
            raise InvalidRequest("to must be after from")
        return start, end

    def series(
        self,
        tenant: str,
        device: str,
        identifier: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        day: date | None = None,
        resolution: Resolution = Resolution.RAW,
        function: Function = Function.AVG,
        limit: int = MAX_POINTS,
    ) -> SeriesResult:
        self._device(tenant, device)
        known = self._registry.identifiers(tenant).get(identifier)
        if known is None:
            raise NotFound(f"identifier {identifier!r} unknown in tenant {tenant!r}")
        if not 1 <= limit <= MAX_POINTS:
            raise InvalidRequest(f"limit must be 1..{MAX_POINTS}")
        lo, hi = self.time_range(tenant, start, end, day)
        tz = self._registry.tenant(tenant).timezone
        points = self._store.series(
            SeriesQuery(tenant, device, identifier, lo, hi, resolution, function, limit), tz
        )
        zone = self._registry.tenant(tenant).zone
        local = [Point(p.ts.astimezone(zone), p.value) for p in points]
        return SeriesResult(
            tenant,
            device,
            identifier,
            known.unit,
            lo.astimezone(zone),
            hi.astimezone(zone),
            resolution,
            function,
            tz,
            local,
        )

    def latest(self, tenant: str, device: str) -> list[StateValue]:
        self._device(tenant, device)
        zone = self._registry.tenant(tenant).zone
        return [
            StateValue(s.identifier, s.ts.astimezone(zone), s.value, s.received.astimezone(zone))
            for s in self._store.latest(tenant, device)
        ]

    def alerts(
        self,
        tenant: str,
        *,
        device: str | None = None,
        level: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 1000,
    ) -> list[StoredAlert]:
        self._registry.tenant(tenant)
        if device is not None:
            self._device(tenant, device)
        for name, moment in (("from", start), ("to", end)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidRequest(f"{name} needs a UTC offset")
            if moment is not None and not MIN_YEAR <= moment.year <= MAX_YEAR:
                raise InvalidRequest(f"{name} must lie in the years {MIN_YEAR}..{MAX_YEAR}")
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be 1..10000")
        return self._store.alerts(AlertQuery(tenant, device, level, start, end, limit))

    def dead_letters(
        self, tenant: str | None, *, reason: str | None = None, limit: int = 100
    ) -> list[StoredDeadLetter]:
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be 1..10000")
        return self._store.dead_letters(tenant, limit=limit, reason=reason)
