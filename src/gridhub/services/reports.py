"""Reports (R1–R4): household days, device timelines, aggregates, completeness, fleet overview.

Every report is computed from the stored readings on request, through the same registry and
query service the API uses, so a dashboard page shows exactly what the JSON API returns. Days are
calendar days in the tenant's zone: a DST day has 92 or 100 quarter-hours, and completeness
expects that many. A device is expected to report every ``interval_of(tenant, device)`` seconds
(default :data:`DEFAULT_INTERVAL_S`, what every simulated and Linear device does); today
counts only the slots already begun.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gridhub.access.scope import ReadScope, inside
from gridhub.domain.registry import Device, Site
from gridhub.domain.timeutil import day_bounds
from gridhub.domain.validation import from_us, to_us
from gridhub.errors import Forbidden, InvalidRequest, NotFound
from gridhub.ingest.metrics import IngestMetrics
from gridhub.services.report_types import (
    AggregateRow,
    Aggregates,
    Alert,
    Completeness,
    DeviceCompleteness,
    DeviceSeries,
    FleetOverview,
    HouseholdView,
    IngestRate,
    Missing,
    Run,
    Timelines,
    Whitegood,
)
from gridhub.services.whitegood_cycles import CYCLE_REPORTS, device_cycles
from gridhub.storage.base import AlertQuery, Store
from gridhub.storage.registry import Registry
from gridhub.storage.reports import ReportStore

__all__ = ["DEFAULT_INTERVAL_S", "MAX_RANGE_DAYS", "IntervalOf", "ReportService"]

DEFAULT_INTERVAL_S = 900
MAX_MISSING = 5000  # missing slots listed per device-day (a 1 s device has 86,400 a day)
# (tenant, device) -> seconds between the device's readings, None if it sends no regular series
IntervalOf = Callable[[str, Device], int | None]
MAX_RANGE_DAYS = 92
POWER = "electricity.power.active.consumed.total"
INJECTED = "electricity.power.active.injected.total"
SOC, TEMPERATURE = "boiler.stateOfCharge", "boiler.temperature"
GROUP_ATTRIBUTES = ("location", "pilot_phase", "experiment", "has_pv")
RUN_THRESHOLD_KW = 0.05  # a whitegood "runs" while its plug draws more than this
INGEST_WINDOW_S = 900
_UNIT_TO_KWH = {"kW": 1.0, "W": 0.001, "MW": 1000.0}


@dataclass
class _RateSampler:
    """The pipeline's stored-readings counter sampled over the last minute: a live rate."""

    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rate(self, stored: int) -> float | None:
        now = time.monotonic()
        with self.lock:
            self.samples.append((now, stored))
            while len(self.samples) > 1 and now - self.samples[0][0] > 60:
                self.samples.popleft()
            t0, s0 = self.samples[0]
        return (stored - s0) / (now - t0) if now - t0 >= 1 else None


def appliance_of(device: Device) -> str:
    """The appliance type a device measures: a plug named ``<site>-plug-<x>`` measures ``x``."""
    if device.device_type == "smart-plug" and "-plug-" in device.hardware_id:
        return "plug:" + device.hardware_id.rsplit("-plug-", 1)[1]
    return device.device_type


class ReportService:
    def __init__(
        self,
        store: Store,
        reports: ReportStore,
        registry: Registry,
        metrics: IngestMetrics,
        interval_of: IntervalOf | None = None,
    ) -> None:
        self._store = store
        self._reports = reports
        self._registry = registry
        self._metrics = metrics
        self._sampler = _RateSampler()
        # a device's reporting interval; by default every device reports every 15 minutes
        self._interval_of = interval_of

    # -- time -----------------------------------------------------------------------------------

    def days(self, tenant: str, first: date | None, last: date | None, default: int) -> list[date]:
        """Local days ``first..last`` (inclusive); without them the last ``default`` days."""
        zone = self._registry.tenant(tenant).zone
        today = datetime.now(zone).date()
        last = _checked(last or today)
        first = _checked(first or last - timedelta(days=default - 1))
        if last < first:
            raise InvalidRequest("to must not be before from")
        if (last - first).days + 1 > MAX_RANGE_DAYS:
            raise InvalidRequest(f"a range spans at most {MAX_RANGE_DAYS} days")
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def _slots(self, tenant: str, day: date, interval_s: int) -> list[int]:
        """Slot starts (µs) of a local day that have begun by now."""
        lo, hi = day_bounds(day, self._registry.tenant(tenant).zone)
        step = interval_s * 1_000_000
        end = min(to_us(hi), to_us(datetime.now(UTC)))
        return list(range(to_us(lo), end, step))

    # -- R1: a household's day or week -----------------------------------------------------------

    def household(
        self,
        tenant: str,
        site_id: str,
        day: date,
        days: int = 1,
        scope: ReadScope | None = None,
    ) -> HouseholdView:
        if not 1 <= days <= 31:
            raise InvalidRequest("days must be 1..31")
        _checked(day)
        site = self._registry.site(tenant, site_id)
        zone = self._registry.tenant(tenant).zone
        start, _ = day_bounds(day, zone)
        _, end = day_bounds(day + timedelta(days=days - 1), zone)
        grid = list(range(to_us(start), to_us(end), 900_000_000))
        wanted = [
            (device, identifier)
            for device in self._registry.devices(tenant, site.id)
            for identifier in (
                [POWER, INJECTED] if device.device_type == "smart-meter" else [POWER]
            )
        ]
        series = self._aligned_many(tenant, wanted, start, end, grid, scope)
        return HouseholdView(
            tenant=tenant,
            site=site,
            timezone=zone.key,
            start=start,
            end=end,
            slots=[from_us(t).astimezone(zone) for t in grid],
            series=series,
        )

    def _aligned_many(
        self,
        tenant: str,
        wanted: list[tuple[Device, str]],
        start: datetime,
        end: datetime,
        grid: list[int],
        scope: ReadScope | None = None,
    ) -> list[DeviceSeries]:
        """Several series on the quarter-hour grid from one store read (the day view's path).

        With a ``scope``, a series the caller may not read is left out, and a quarter-hour is
        shown only if it lies wholly inside what the caller may read (403 if nothing is left).
        """
        windows: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
        if scope is not None and wanted:
            for device, identifier in wanted:
                windows[(device.hardware_id, identifier)] = scope.windows(
                    device.hardware_id, identifier, start, end
                )
            wanted = [(d, i) for d, i in wanted if windows[(d.hardware_id, i)]]
            if not wanted:
                raise Forbidden("no read access to these devices' series in that time range")
        known = self._registry.identifiers(tenant)
        means = self._reports.quarter_hour_means(
            tenant,
            sorted({d.hardware_id for d, _ in wanted}),
            sorted({i for _, i in wanted}),
            start,
            end,
        )
        out = []
        for device, identifier in wanted:
            entry = known.get(identifier)
            by_slot = means.get((device.hardware_id, identifier), {})
            if scope is not None:
                allowed = windows[(device.hardware_id, identifier)]
                by_slot = {
                    t: v
                    for t, v in by_slot.items()
                    if inside(allowed, from_us(t), from_us(t + 900_000_000))
                }
            out.append(
                DeviceSeries(
                    device.hardware_id,
                    appliance_of(device),
                    identifier,
                    entry.unit if entry is not None else "",
                    [by_slot.get(t) for t in grid],
                )
            )
        return out

    # -- R2: device state timelines --------------------------------------------------------------

    def timelines(
        self, tenant: str, site_id: str, day: date, scope: ReadScope | None = None
    ) -> Timelines:
        _checked(day)
        site = self._registry.site(tenant, site_id)
        zone = self._registry.tenant(tenant).zone
        start, end = day_bounds(day, zone)
        grid = list(range(to_us(start), to_us(end), 900_000_000))
        devices = self._registry.devices(tenant, site.id)
        boiler_ids = [
            (d, i) for d in devices if d.device_type == "boiler" for i in (SOC, TEMPERATURE)
        ]
        plugs = [(d, POWER) for d in devices if d.device_type == "smart-plug"]
        found = self._aligned_many(tenant, boiler_ids + plugs, start, end, grid, scope)
        boilers = [s for s in found if s.identifier != POWER]
        whitegoods = []
        for s in (s for s in found if s.identifier == POWER):
            runs = _runs(grid, s.values, zone.key)
            cycles = device_cycles(self._store, tenant, s.device, start, end, zone, runs, scope)
            whitegoods.append(Whitegood(s.device, s.appliance, runs, cycles))
        return Timelines(
            tenant=tenant,
            site=site.id,
            timezone=zone.key,
            start=start,
            end=end,
            slots=[from_us(t).astimezone(zone) for t in grid],
            boilers=boilers,
            whitegoods=whitegoods,
        )

    # -- R3: aggregates --------------------------------------------------------------------------

    def aggregates(
        self,
        tenant: str,
        first: date | None,
        last: date | None,
        scope: ReadScope | None = None,
    ) -> Aggregates:
        """Energy over local days ``first..last`` (default: the last 7 days, today included).

        With a ``scope``, a device counts only if the caller may read it over the whole range.
        """
        days = self.days(tenant, first, last, 7)
        zone = self._registry.tenant(tenant).zone
        start, _ = day_bounds(days[0], zone)
        _, end = day_bounds(days[-1], zone)
        factor = {i: self._kwh_per_value(tenant, i) for i in (POWER, INJECTED)}
        devices = {d.hardware_id: d for d in self._registry.devices(tenant)}
        sites = {s.id: s for s in self._registry.sites(tenant)}
        energy: dict[tuple[str, str], float] = {}
        for sums in self._reports.sums(tenant, (POWER, INJECTED), start, end):
            energy[(sums.device, sums.identifier)] = sums.total * factor[sums.identifier]
        if scope is not None:
            devices = {hw: d for hw, d in devices.items() if scope.sees(hw, start, end)}
            energy = {
                key: kwh
                for key, kwh in energy.items()
                if key[0] in devices and scope.covers(key[0], key[1], start, end)
            }
        by_type: dict[str, AggregateRow] = {}
        for hw, device in devices.items():
            key = appliance_of(device)
            row = by_type.setdefault(key, AggregateRow("appliance", key))
            row.devices += 1
            row.consumed_kwh += energy.get((hw, POWER), 0.0)
            row.injected_kwh += energy.get((hw, INJECTED), 0.0)
        groups: list[AggregateRow] = []
        for attribute in GROUP_ATTRIBUTES:
            rows: dict[str, AggregateRow] = {}
            for site in sites.values():
                value = str(getattr(site, attribute)).lower()
                row = rows.setdefault(value, AggregateRow(attribute, value))
                row.households += 1
            for hw, device in devices.items():
                if device.device_type != "smart-meter" or device.site not in sites:
                    continue
                value = str(getattr(sites[device.site], attribute)).lower()
                rows[value].devices += 1
                rows[value].consumed_kwh += energy.get((hw, POWER), 0.0)
                rows[value].injected_kwh += energy.get((hw, INJECTED), 0.0)
            groups.extend(sorted(rows.values(), key=lambda r: r.value))
        return Aggregates(
            tenant=tenant,
            timezone=zone.key,
            first=days[0],
            last=days[-1],
            by_appliance=sorted(by_type.values(), key=lambda r: r.value),
            by_group=groups,
        )

    def _kwh_per_value(self, tenant: str, identifier: str) -> float:
        """Energy of one mean-power reading over its slot, in kWh (readings in kW, W or MW)."""
        known = self._registry.identifiers(tenant).get(identifier)
        unit = known.unit if known is not None else "kW"
        return _UNIT_TO_KWH.get(unit, 1.0) * DEFAULT_INTERVAL_S / 3600

    # -- R4: completeness ------------------------------------------------------------------------

    def completeness(
        self,
        tenant: str,
        first: date | None,
        last: date | None,
        threshold: float = 0.9,
        site: str | None = None,
        scope: ReadScope | None = None,
    ) -> Completeness:
        if not 0 <= threshold <= 1:
            raise InvalidRequest("threshold must be 0..1")
        days = self.days(tenant, first, last, 7)
        zone = self._registry.tenant(tenant).zone
        start, _ = day_bounds(days[0], zone)
        _, end = day_bounds(days[-1], zone)
        index = {d: i for i, d in enumerate(days)}
        by_interval: dict[int, list[Device]] = {}
        for device in self._registry.devices(tenant, site):
            if scope is not None and not scope.sees(device.hardware_id, start, end):
                continue  # only the devices the caller may read something of
            interval = self._interval(tenant, device)
            if interval is not None:  # a device with no regular series is expected to send none
                by_interval.setdefault(interval, []).append(device)
        devices: list[DeviceCompleteness] = []
        for interval, members in sorted(by_interval.items()):
            expected = [len(self._slots(tenant, d, interval)) for d in days]
            counts: dict[str, list[int]] = {}
            for c in self._reports.slot_counts(tenant, start, end, zone.key, interval):
                if c.day in index:
                    counts.setdefault(c.device, [0] * len(days))[index[c.day]] = c.slots
            for device in members:
                got = counts.get(device.hardware_id, [0] * len(days))
                received = [min(r, e) for r, e in zip(got, expected, strict=True)]
                low = [
                    d
                    for d, r, e in zip(days, received, expected, strict=True)
                    if e and r / e < threshold
                ]
                devices.append(
                    DeviceCompleteness(
                        device=device.hardware_id,
                        site=device.site,
                        device_type=device.device_type,
                        interval_s=interval,
                        received=received,
                        expected=expected,
                        ratio=sum(received) / sum(expected) if sum(expected) else 1.0,
                        warning_days=low,
                    )
                )
        devices.sort(key=lambda d: d.device)
        return Completeness(
            tenant=tenant,
            timezone=zone.key,
            threshold=threshold,
            days=days,
            devices=devices,
            warnings=[d.device for d in devices if d.warning_days],
            received_total=sum(sum(d.received) for d in devices),
            expected_total=sum(sum(d.expected) for d in devices),
        )

    def missing(
        self, tenant: str, device_id: str, day: date, scope: ReadScope | None = None
    ) -> Missing:
        device = self._registry.device(tenant, device_id)
        if device is None:
            raise NotFound(f"device {device_id!r} not found in tenant {tenant!r}")
        self.days(tenant, day, day, 1)
        zone = self._registry.tenant(tenant).zone
        start, end = day_bounds(day, zone)
        if scope is not None and not scope.sees(device_id, start, end):
            raise Forbidden(f"no read access to device {device_id!r} on {day}")
        interval = self._interval(tenant, device)
        expected = self._slots(tenant, day, interval) if interval is not None else []
        present = (
            set(self._reports.slots(tenant, device_id, start, end, interval))
            if interval is not None
            else set()
        )
        gaps = [t for t in expected if t not in present]
        return Missing(
            tenant=tenant,
            device=device_id,
            day=day,
            timezone=zone.key,
            interval_s=interval,
            expected=len(expected),
            received=len(expected) - len(gaps),
            missing=[from_us(t).astimezone(zone) for t in gaps[:MAX_MISSING]],
            truncated=len(gaps) > MAX_MISSING,
        )

    def _interval(self, tenant: str, device: Device) -> int | None:
        """Seconds between a device's readings (None: it sends no regular series)."""
        if self._interval_of is None:
            return DEFAULT_INTERVAL_S
        return self._interval_of(tenant, device)

    # -- fleet overview --------------------------------------------------------------------------

    def overview(
        self, tenant: str, installation_admin: bool = False, scope: ReadScope | None = None
    ) -> FleetOverview:
        zone = self._registry.tenant(tenant).zone
        sites = self._registry.sites(tenant)
        groups = {
            attribute: dict(
                sorted(Counter(str(getattr(s, attribute)).lower() for s in sites).items())
            )
            for attribute in GROUP_ATTRIBUTES
        }
        alerts = self._store.alerts(AlertQuery(tenant, limit=200))
        if scope is not None:
            alerts = scope.alerts(alerts)
        alerts = [a for a in alerts if a.type not in CYCLE_REPORTS][:20]  # status, not alarms
        now = datetime.now(UTC)
        recent = self._reports.readings_since(tenant, now - timedelta(seconds=INGEST_WINDOW_S))
        pipeline = None
        if installation_admin:  # the pipeline's counters are the whole installation's
            pipeline = self._sampler.rate(self._metrics.stored_readings)
        return FleetOverview(
            tenant=tenant,
            timezone=zone.key,
            households=len(sites),
            devices=Counter(d.device_type for d in self._registry.devices(tenant)),
            groups=groups,
            recent_alerts=[
                Alert(a.device, a.ts.astimezone(zone), a.type, a.level, a.message) for a in alerts
            ],
            ingest=IngestRate(
                window_s=INGEST_WINDOW_S,
                readings=recent,
                per_second=recent / INGEST_WINDOW_S,
                pipeline_per_second=pipeline,
            ),
        )


def _checked(day: date) -> date:
    """Refuse days where offsets and day arithmetic would overflow ``datetime``."""
    if not 1970 <= day.year <= 9998:
        raise InvalidRequest("days must lie in the years 1970..9998")
    return day


def _runs(grid: list[int], values: list[float | None], zone: str) -> list[Run]:
    """Contiguous quarter-hours above :data:`RUN_THRESHOLD_KW`: one appliance run each."""
    runs: list[Run] = []
    begin: int | None = None
    energy = peak = 0.0
    for t, v in zip([*grid, None], [*values, None], strict=True):
        on = v is not None and v > RUN_THRESHOLD_KW
        if on and begin is None:
            begin, energy, peak = t, 0.0, 0.0
        if on:
            assert v is not None
            energy += v * 0.25
            peak = max(peak, v)
        elif begin is not None:
            stop = t if t is not None else grid[-1] + 900_000_000
            runs.append(Run(_local(begin, zone), _local(stop, zone), round(energy, 3), peak))
            begin = None
    return runs


def _local(us: int, zone: str) -> datetime:
    return from_us(us).astimezone(ZoneInfo(zone))


def site_row(site: Site) -> dict[str, Any]:
    return {
        "id": site.id,
        "name": site.name,
        "location": site.location,
        "pilot_phase": site.pilot_phase,
        "experiment": site.experiment,
        "appliance_types": list(site.appliance_types),
        "has_pv": site.has_pv,
    }
