"""Queries (Q1, Q2): series at a resolution with a function, latest state, alerts.

Time handling lives here, once: callers give instants with offsets, or a local calendar day; the
tenant's time zone turns a day into its [start, end) instants (so a DST day has 92 or 100
quarter-hours) and the answer is given back in the tenant's local time with its offset.

Every read goes through the enforcement point (``access/enforce.py``) with the caller's
principal: a series is read only inside the windows it returns — at a rollup resolution only the
buckets lying wholly inside a window, so an aggregate never mixes in a value the caller may not
see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal
from gridhub.domain.access import ALERTS, from_us, to_us
from gridhub.domain.timeutil import Function, Resolution, day_bounds
from gridhub.errors import Forbidden, InvalidRequest, NotFound
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
    def __init__(self, store: Store, registry: Registry, access: AccessControl) -> None:
        self._store = store
        self._registry = registry
        self.access = access

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
        who: Principal,
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
        zone = self._registry.tenant(tenant).zone
        points: list[Point] = []
        for w_lo, w_hi in self._allowed(who, tenant, device, identifier, lo, hi, resolution):
            if len(points) >= limit:
                break
            points += self._store.series(
                SeriesQuery(
                    tenant, device, identifier, w_lo, w_hi, resolution, function,
                    limit - len(points),
                ),
                tz,
            )  # fmt: skip
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

    def _allowed(
        self,
        who: Principal,
        tenant: str,
        device: str,
        identifier: str,
        lo: datetime,
        hi: datetime,
        resolution: Resolution,
    ) -> list[tuple[datetime, datetime]]:
        """The store queries that cover what ``who`` may read of ``[lo, hi)``.

        Raw reads use the enforcement point's windows as they are. At a rollup resolution the
        decision is taken over whole buckets, and a bucket is read only if it lies wholly inside
        an allowed window, so an aggregate never mixes in a value the caller may not see.
        """
        if resolution is Resolution.RAW:
            return self.access.authorize_read(who, tenant, device, identifier, lo, hi).spans()
        zone = self._registry.tenant(tenant).zone
        e_lo = _bucket_floor(lo, resolution, zone)
        e_hi = _bucket_ceil(hi, resolution, zone)
        decision = self.access.authorize_read(who, tenant, device, identifier, e_lo, e_hi)
        if decision.spans() == [(e_lo, e_hi)]:
            return [(lo, hi)]
        out = []
        for start, end in decision.spans():
            first = max(_bucket_ceil(start, resolution, zone), lo)
            last = min(_bucket_floor(end, resolution, zone), hi)
            if first < last:
                out.append((first, last))
        return out

    def latest(self, who: Principal, tenant: str, device: str) -> list[StateValue]:
        self._device(tenant, device)
        zone = self._registry.tenant(tenant).zone
        visible = self.access.filter_latest(
            who, tenant, device, self._store.latest(tenant, device), datetime.now(UTC)
        )
        return [
            StateValue(s.identifier, s.ts.astimezone(zone), s.value, s.received.astimezone(zone))
            for s in visible
        ]

    def alerts(
        self,
        who: Principal,
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
        if device is not None:
            decision = self.access.decide_read(who, tenant, device, ALERTS, start, end)
            if not decision.allowed:
                raise Forbidden(decision.reason)
        found = self._store.alerts(AlertQuery(tenant, device, level, start, end, limit))
        return self.access.filter_alerts(who, tenant, found)

    def dead_letters(
        self, who: Principal, tenant: str | None, *, reason: str | None = None, limit: int = 100
    ) -> list[StoredDeadLetter]:
        """Rejected messages with their raw bytes: admins only (they may hold anyone's data)."""
        who.require_admin(tenant)
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be 1..10000")
        return self._store.dead_letters(tenant, limit=limit, reason=reason)


def _bucket_floor(moment: datetime, resolution: Resolution, zone: ZoneInfo) -> datetime:
    if resolution is Resolution.QUARTER_HOUR:  # quarter-hours are bucketed in UTC
        return from_us(to_us(moment) // 900_000_000 * 900_000_000)
    local = moment.astimezone(zone)
    if resolution is Resolution.HOUR:
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return day_bounds(local.date(), zone)[0]


def _bucket_ceil(moment: datetime, resolution: Resolution, zone: ZoneInfo) -> datetime:
    floor = _bucket_floor(moment, resolution, zone)
    if floor == moment:
        return moment
    if resolution is Resolution.QUARTER_HOUR:
        return floor + timedelta(minutes=15)
    if resolution is Resolution.HOUR:
        return floor + timedelta(hours=1)
    return day_bounds(moment.astimezone(zone).date(), zone)[1]
