"""What the on-demand grid services read from the store: a tenant's meters over a period.

The solvers of ``grid/`` take plain typed inputs; :class:`GridData` gathers them for one tenant
from the :class:`~gridhub.storage.base.Store` and the registry:

* **site meters**: devices of a registered site whose type is an electricity meter
  (:data:`~gridhub.grid.outage_monitor.METER_TYPES`), summed per site (a site with two meters —
  a main meter and a PV meter — is their sum);
* **node meters**: devices attached to a topology node (``topology.devices``), e.g. the
  secondary substation's meter on its LV busbar or a feeder-head meter.

Energies come from the quarter-hour average of the active power (consumed − injected): a
quarter with no reading is not counted, and the period's energy is the mean over the quarters
that have one × the period's length, so a few lost messages do not look like a theft. A meter
with readings in fewer than ``min_coverage`` of the quarters is *missing*, not estimated: the
services report it as such rather than balance on a guess.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gridhub.domain.timeutil import Function, Resolution
from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.outage_monitor import METER_TYPES
from gridhub.storage.base import Point, SeriesQuery, Store
from gridhub.storage.registry import Registry

__all__ = [
    "INJECTED",
    "POWER",
    "QUARTER",
    "VOLTAGES",
    "GridData",
    "MeterEnergy",
    "Period",
]

POWER = "electricity.power.active.consumed.total"  # kW, mean over the reading's interval
INJECTED = "electricity.power.active.injected.total"
VOLTAGES = tuple(f"electricity.voltage.rms.l{phase}" for phase in (1, 2, 3))
QUARTER = timedelta(minutes=15)
MAX_PERIOD = timedelta(days=31)
MAX_QUERY_POINTS = 100_000


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)``, aware, quarter-hour aligned, at most :data:`MAX_PERIOD`."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidRequest("period start and end need a UTC offset")
        if self.end <= self.start:
            raise InvalidRequest("period end must be after its start")
        if self.end - self.start > MAX_PERIOD:
            raise InvalidRequest(f"a period is at most {MAX_PERIOD.days} days")
        for name, moment in (("start", self.start), ("end", self.end)):
            if moment.timestamp() % 900:
                raise InvalidRequest(f"period {name} must be on a quarter-hour")

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0

    @property
    def quarters(self) -> int:
        return int((self.end - self.start) / QUARTER)


@dataclass(frozen=True, slots=True)
class MeterEnergy:
    """One site's (or node meter's) period: net energy, mean net power, its quarter-hour
    profile (kW, NaN where no reading), and the mean voltage in p.u. if the meter reports it."""

    energy_kwh: float
    mean_kw: float
    coverage: float
    profile_kw: tuple[float, ...]
    voltage_pu: float | None


class GridData:
    """Read access to one tenant's meters for the grid services (see the module doc)."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        tenant: str,
        *,
        min_coverage: float = 0.8,
        nominal_v: float = 230.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self.tenant = tenant
        self.zone = registry.tenant(tenant).timezone
        self.min_coverage = min_coverage
        self.nominal_v = nominal_v

    def site_meters(self, sites: Iterable[str] | None = None) -> dict[str, list[str]]:
        """``site → meter hardwareIds`` of the registered electricity meters (of ``sites``)."""
        wanted = set(sites) if sites is not None else None
        meters: dict[str, list[str]] = defaultdict(list)
        for device in self._registry.devices(self.tenant):
            if device.site is None or device.device_type not in METER_TYPES:
                continue
            if wanted is None or device.site in wanted:
                meters[device.site].append(device.hardware_id)
        return dict(meters)

    def site_devices(self, site: str) -> list[tuple[str, str]]:
        """``(hardwareId, device type)`` of every device of a site."""
        return [(d.hardware_id, d.device_type) for d in self._registry.devices(self.tenant, site)]

    @staticmethod
    def node_meters(topology: Topology, node: str) -> list[str]:
        """Devices attached to ``node`` in the topology (a substation or feeder-head meter)."""
        return [d.hardware_id for d in topology.devices if d.node == node]

    def points(
        self,
        device: str,
        identifier: str,
        start: datetime,
        end: datetime,
        resolution: Resolution = Resolution.QUARTER_HOUR,
    ) -> list[Point]:
        query = SeriesQuery(
            self.tenant, device, identifier, start, end, resolution, Function.AVG, MAX_QUERY_POINTS
        )
        return self._store.series(query, self.zone)

    def _profile(self, device: str, identifier: str, period: Period) -> list[float]:
        values = [math.nan] * period.quarters
        for point in self.points(device, identifier, period.start, period.end):
            i = int((point.ts - period.start) / QUARTER)
            if 0 <= i < len(values) and math.isfinite(point.value):
                values[i] = point.value
        return values

    def net_profile(self, devices: Iterable[str], period: Period) -> list[float]:
        """Summed consumed − injected kW per quarter of ``devices``; NaN where any is silent."""
        total = [0.0] * period.quarters
        for device in devices:
            consumed = self._profile(device, POWER, period)
            injected = self._profile(device, INJECTED, period)
            for i, (c, e) in enumerate(zip(consumed, injected, strict=True)):
                total[i] += c - (0.0 if math.isnan(e) else e)  # NaN consumed: silent
        return total

    def voltage_pu(self, devices: Iterable[str], period: Period) -> float | None:
        """Mean phase voltage of ``devices`` over the period, in p.u. of ``nominal_v``."""
        values: list[float] = []
        for device in devices:
            for identifier in VOLTAGES:
                values.extend(
                    p.value
                    for p in self.points(device, identifier, period.start, period.end)
                    if math.isfinite(p.value)
                )
        return sum(values) / len(values) / self.nominal_v if values else None

    def energy(
        self, devices: list[str], period: Period, *, voltages: bool = False
    ) -> MeterEnergy | None:
        """The devices' period (see the module doc), or None when they cover too little."""
        if not devices:
            return None
        profile = self.net_profile(devices, period)
        present = [v for v in profile if not math.isnan(v)]
        coverage = len(present) / len(profile)
        if coverage < self.min_coverage:
            return None
        mean = sum(present) / len(present)
        voltage = self.voltage_pu(devices, period) if voltages else None
        return MeterEnergy(mean * period.hours, mean, coverage, tuple(profile), voltage)

    def site_energies(
        self, sites: Iterable[str], period: Period, *, voltages: bool = False
    ) -> tuple[dict[str, MeterEnergy], list[str]]:
        """Each site's period, and the sites without (enough) readings, by id."""
        meters = self.site_meters(sites)
        found: dict[str, MeterEnergy] = {}
        missing: list[str] = []
        for site in sorted(set(sites)):
            energy = self.energy(meters.get(site, []), period, voltages=voltages)
            if energy is None:
                missing.append(site)
            else:
                found[site] = energy
        return found, missing

    def latest_power(self, devices: Iterable[str], identifier: str = POWER) -> dict[str, float]:
        """The last stored value of ``identifier`` of each device that has one."""
        out: dict[str, float] = {}
        for device in devices:
            for state in self._store.latest(self.tenant, device):
                if state.identifier == identifier and math.isfinite(state.value):
                    out[device] = state.value
        return out
