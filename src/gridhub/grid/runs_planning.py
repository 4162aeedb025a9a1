"""Day-ahead services for a tenant: G10 forecasts and G9 balancing, from the sites' history.

Both read each attached site's quarter-hour net power (meters' consumed − injected) over the
``HISTORY`` before the forecast, forecast it per site (:mod:`gridhub.grid.forecast`), and write
per-node profiles back on ``grid:<node>`` devices (see :mod:`gridhub.grid.runs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gridhub.domain.timeutil import Resolution
from gridhub.errors import InvalidRequest
from gridhub.grid.run_inputs import INJECTED, POWER, QUARTER, GridData

if TYPE_CHECKING:
    import pandas as pd

    from gridhub.grid.runs import GridRuns, Written

__all__ = ["HISTORY", "ForecastRun", "balance", "forecast"]

HISTORY = timedelta(days=28)
MAX_DESIRED = 7 * 96


@dataclass(frozen=True)
class ForecastRun:
    """Per node with sites below: consumption and (where PV exports) production, kW per
    quarter of ``[start, end)``."""

    start: datetime
    end: datetime
    consumption: dict[str, list[float]]
    production: dict[str, list[float]]
    sites: int
    written: Written


def _history(data: GridData, meters: list[str], identifier: str, end: datetime) -> pd.Series:
    import pandas as pd

    values: dict[datetime, float] = {}
    for meter in meters:
        for p in data.points(meter, identifier, end - HISTORY, end, Resolution.QUARTER_HOUR):
            if math.isfinite(p.value):
                values[p.ts] = values.get(p.ts, 0.0) + p.value
    index = pd.DatetimeIndex(sorted(values)).tz_convert("UTC") if values else None
    return pd.Series([values[t] for t in sorted(values)], index=index, dtype=float)


def _site_forecasts(
    data: GridData, sites: Sequence[str], days: list[date], now: datetime, pv: Any
) -> tuple[dict[date, dict[str, Any]], dict[date, dict[str, Any]]]:
    """Per day: site → consumption forecast, site → PV forecast (sites that export). A site
    is in for every day or for none (its history is too old or absent)."""
    from gridhub.grid.forecast import forecast_consumption, forecast_pv

    meters = data.site_meters(sites)
    consumption: dict[date, dict[str, Any]] = {d: {} for d in days}
    production: dict[date, dict[str, Any]] = {d: {} for d in days}
    for site in sites:
        if site not in meters:
            continue
        load = _history(data, meters[site], POWER, now)
        if load.empty:
            continue
        try:  # a site without recent history is left out, not the whole run
            found = {d: forecast_consumption(load, d, target=site, tz=data.zone) for d in days}
        except InvalidRequest:
            continue
        for day, f in found.items():
            consumption[day][site] = f
        exported = _history(data, meters[site], INJECTED, now)
        if pv is None or exported.empty or float(exported.max()) <= 0:
            continue
        try:  # PV needs exports in the 3 days before each day
            solar = {d: forecast_pv(exported, d, pv, target=site, tz=data.zone) for d in days}
        except InvalidRequest:
            continue
        for day, f in solar.items():
            production[day][site] = f
    return consumption, production


def _window(now: datetime, hours: int) -> tuple[datetime, datetime]:
    start = datetime.fromtimestamp(math.ceil(now.timestamp() / 900) * 900, now.tzinfo)
    return start, start + timedelta(hours=hours)


def forecast(runs: GridRuns, tenant: str, hours: int = 24, pv: Any = None) -> ForecastRun:
    """The next ``hours`` (1..24) from the next quarter-hour, per node: sums of the sites'
    forecasts. Writes ``grid.forecast.consumption`` and ``grid.forecast.production`` (kW) on
    each node's device; PV only for sites that export, and only with a ``PvSystem``
    (``pv``; its production is the exported power, net of self-consumption)."""
    from zoneinfo import ZoneInfo

    from gridhub.grid.forecast import node_forecasts
    from gridhub.grid.runs import _now

    if not 1 <= hours <= 24:
        raise InvalidRequest("hours must be 1..24 (the hub keeps no data further ahead)")
    topology, data = runs.context(tenant)
    now = _now()
    start, end = _window(now, hours)
    zone = ZoneInfo(data.zone)
    days = sorted({start.astimezone(zone).date(), (end - QUARTER).astimezone(zone).date()})
    sites = [s.site_id for s in topology.sites]
    per_site, per_site_pv = _site_forecasts(data, sites, days, now, pv)
    if not any(per_site.values()):
        raise InvalidRequest("no attached site has history in the 28 days before: no forecast")
    consumption = _by_node(topology, per_site, start, end, node_forecasts)
    production = _by_node(topology, per_site_pv, start, end, node_forecasts)
    series = []
    for name, profiles in (
        ("grid.forecast.consumption", consumption),
        ("grid.forecast.production", production),
    ):
        for node, values in profiles.items():
            for i, value in enumerate(values):
                series.append((node, start + i * QUARTER, {name: value}))
    written = runs.write(tenant, topology, series)
    count = len({s for day in per_site.values() for s in day})
    return ForecastRun(start, end, consumption, production, count, written)


def _by_node(
    topology: Any, per_site: dict[date, dict[str, Any]], start: datetime, end: datetime, sum_: Any
) -> dict[str, list[float]]:
    import pandas as pd

    parts: dict[str, list[pd.Series]] = {}
    for sites in per_site.values():
        if sites:
            for node, f in sum_(topology, sites).items():
                parts.setdefault(node, []).append(f.values_kw)
    index = pd.date_range(start, end, freq="15min", inclusive="left", tz="UTC")
    out = {}
    for node, series in parts.items():
        joined = pd.concat(series).sort_index()
        joined = joined[~joined.index.duplicated()].reindex(index)
        out[node] = [round(float(v), 4) for v in joined.fillna(0.0)]
    return out


def balance(
    runs: GridRuns,
    tenant: str,
    day: date,
    *,
    flexibility: float = 0.2,
    desired: Sequence[float] | None = None,
) -> tuple[Any, Written]:
    """Seed 004's balancing of ``day`` (local): each site's consumption forecast is its
    prediction, with ``± flexibility`` of it as its bounds; the top's desired profile is
    ``desired`` (kW per quarter of the day) or, by default, the flat profile with the predicted
    energy (peak shaving). Writes ``grid.balancing.desired`` and ``grid.balancing.planned``
    on the device of each substation unit."""
    from zoneinfo import ZoneInfo

    from gridhub.grid.balancing import TOP, CustomerFlexibility, hierarchy_from_topology
    from gridhub.grid.balancing import balance as solve
    from gridhub.grid.runs import _now

    if not 0.0 <= flexibility <= 1.0:
        raise InvalidRequest("flexibility is a share of the prediction in [0, 1]")
    topology, data = runs.context(tenant)
    zone = ZoneInfo(data.zone)
    start = datetime.combine(day, datetime.min.time(), zone)
    now = min(_now(), start)
    sites = [s.site_id for s in topology.sites]
    per_site, _pv = _site_forecasts(data, sites, [day], now, None)
    forecasts = per_site[day]
    if not forecasts:
        raise InvalidRequest("no attached site has history in the 28 days before the day")
    customers = []
    for site, f in sorted(forecasts.items()):
        predicted = tuple(max(0.0, float(v)) for v in f.values_kw)
        customers.append(
            CustomerFlexibility(
                site,
                predicted,
                tuple(p * (1 - flexibility) for p in predicted),
                tuple(p * (1 + flexibility) for p in predicted),
            )
        )
    slots = len(customers[0].predicted)
    if desired is None:
        total = [math.fsum(c.predicted[i] for c in customers) for i in range(slots)]
        desired = [math.fsum(total) / slots] * slots
    elif len(desired) != slots:
        raise InvalidRequest(f"desired has {len(desired)} values; {day} has {slots} quarters")
    hierarchy = hierarchy_from_topology(topology, list(forecasts))
    result = solve(hierarchy, customers, desired, start=start.astimezone(zone))
    series = []
    for unit, plan in result.units.items():
        if unit == TOP or plan.level.value == "customer":
            continue
        for i, (want, got) in enumerate(zip(plan.desired, plan.planned, strict=True)):
            values = {"grid.balancing.desired": want, "grid.balancing.planned": got}
            series.append((unit, start + i * QUARTER, values))
    return result, runs.write(tenant, topology, series)
