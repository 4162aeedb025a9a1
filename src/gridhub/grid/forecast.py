"""Day-ahead forecasts (G10, seed 004 §4.3.1.2-3): consumption and PV per site and per node.

Two small models that an operator can explain and that need nothing but the hub's own history:

* **consumption**: per quarter-hour of the local day, the same weekday of the last ``weeks``
  weeks, exponentially weighted (weight ``α(1−α)ᵏ`` for the week k+1 back, renormalised over the
  weeks present), blended with the mean profile of the last 7 days (``recent_weight``): the
  weekday term carries the weekly rhythm, the recent term follows the season and the level. A
  household's load is mostly noise at quarter-hour scale; averaging several days is what beats
  persistence;
* **PV**: pvlib's clear-sky irradiance on the array's plane (Ineichen with the climatological
  Linke turbidity pvlib ships, Perez-free isotropic transposition) times a *clear-sky index*
  fitted on the last ``days`` days, ``k = Σ measured / Σ clear-sky``. ``k`` absorbs the array's
  size, efficiency and shading and the recent weather, so a site needs only its position
  (latitude, longitude, tilt, azimuth), not its kWp. Without a weather forecast a cloudy day
  after a sunny spell is over-forecast: that is the model's honest limit.

Baselines to compare with: *persistence* (tomorrow = today) for both. :func:`forecast_error`
gives MAE, nMAE (MAE over the mean absolute actual) and the skill ``1 − MAE/MAE_baseline``.

Per node: :func:`node_forecasts` sums the forecasts of the sites fed through each node of the
hierarchy (connection point … primary substation), as the LV and MV management units need.
Times are tz-aware; days are local days in ``tz`` (23 or 25 hours at a DST change).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from gridhub.domain.topology import HIERARCHY, Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "Forecast",
    "ForecastError",
    "PvSystem",
    "forecast_consumption",
    "forecast_error",
    "forecast_pv",
    "node_forecasts",
    "node_powers_at",
    "persistence",
]

Kind = Literal["consumption", "pv"]
MAX_POINTS = 2_000_000
DEFAULT_TZ = "Europe/Brussels"


@dataclass(frozen=True, slots=True)
class PvSystem:
    latitude: float
    longitude: float
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0  # south

    def __post_init__(self) -> None:
        checks = (
            (-90.0 <= self.latitude <= 90.0, "latitude"),
            (-180.0 <= self.longitude <= 180.0, "longitude"),
            (0.0 <= self.tilt_deg <= 90.0, "tilt_deg"),
            (0.0 <= self.azimuth_deg <= 360.0, "azimuth_deg"),
        )
        for ok, name in checks:
            if not ok:
                raise InvalidRequest(f"PV system {name} is out of range")


@dataclass(frozen=True)
class Forecast:
    """Mean power (kW) per step of one local day, indexed by the steps' UTC start times."""

    target: str
    kind: Kind
    day: date
    values_kw: pd.Series
    method: str

    @property
    def energy_kwh(self) -> float:
        step_h = _step(self.values_kw.index).total_seconds() / 3600.0
        return float(self.values_kw.sum() * step_h)


@dataclass(frozen=True, slots=True)
class ForecastError:
    mae_kw: float
    nmae: float  # MAE / mean |actual|
    rmse_kw: float
    baseline_mae_kw: float
    baseline_nmae: float
    skill: float  # 1 − MAE/baseline MAE: > 0 beats the baseline


def _step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        return pd.Timedelta(minutes=15)
    return pd.Timedelta(index[1] - index[0])


def _checked(history: pd.Series, step: str) -> pd.Series:
    if not isinstance(history.index, pd.DatetimeIndex) or history.index.tz is None:
        raise InvalidRequest("history needs a tz-aware DatetimeIndex")
    if len(history) > MAX_POINTS:
        raise InvalidRequest(f"at most {MAX_POINTS} history points per forecast")
    values = pd.to_numeric(history, errors="coerce").astype(float)
    values = values[np.isfinite(values.to_numpy())]
    if values.empty:
        raise InvalidRequest("history holds no finite value")
    return values.sort_index().resample(step).mean()


def _day_index(day: date, tz: str, step: str) -> pd.DatetimeIndex:
    start = pd.Timestamp(day).tz_localize(tz)
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(tz)
    return pd.date_range(start, end, freq=step, inclusive="left").tz_convert("UTC")


def _by_local_day(series: pd.Series, tz: str) -> pd.DataFrame:
    """Rows: local dates; columns: local time of day (seconds); the DST fall-back hour's two
    values are averaged, the spring-forward hour is missing."""
    local = series.tz_convert(tz)
    idx = local.index
    seconds = idx.hour * 3600 + idx.minute * 60 + idx.second
    frame = pd.DataFrame({"day": idx.date, "tod": seconds, "value": local.to_numpy()})
    return frame.pivot_table(index="day", columns="tod", values="value", aggfunc="mean")


def _tod(index: pd.DatetimeIndex, tz: str) -> Any:
    local = index.tz_convert(tz)
    return local.hour * 3600 + local.minute * 60 + local.second


def forecast_consumption(
    history: pd.Series,
    day: date,
    *,
    target: str = "",
    tz: str = DEFAULT_TZ,
    step: str = "15min",
    weeks: int = 4,
    alpha: float = 0.5,
    recent_weight: float = 0.5,
) -> Forecast:
    """Consumption (kW) of ``day`` from ``history`` (kW, before ``day``); see the module doc."""
    if not (1 <= weeks <= 52 and 0.0 < alpha <= 1.0 and 0.0 <= recent_weight <= 1.0):
        raise InvalidRequest("weeks must be 1..52, alpha in (0, 1], recent_weight in [0, 1]")
    table = _by_local_day(_checked(history, step), tz)
    table = table[table.index < day]
    index = _day_index(day, tz, step)
    tod = _tod(index, tz)
    weekly = np.zeros(len(index))
    weights = np.zeros(len(index))
    for k in range(weeks):
        past = day - timedelta(days=7 * (k + 1))
        if past in table.index:
            row = table.loc[past].reindex(tod).to_numpy(dtype=float)
            w = alpha * (1 - alpha) ** k
            present = np.isfinite(row)
            weekly[present] += w * row[present]
            weights[present] += w
    recent_rows = [table.loc[d] for d in (day - timedelta(days=i) for i in range(1, 8))
                   if d in table.index]  # fmt: skip
    if not recent_rows and not weights.any():
        raise InvalidRequest("no history in the 4 weeks before the forecast day")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots
        recent = np.nanmean([r.reindex(tod).to_numpy(dtype=float) for r in recent_rows], axis=0) \
            if recent_rows else np.full(len(index), np.nan)  # fmt: skip
        weekday = np.where(weights > 0, weekly / np.where(weights > 0, weights, 1.0), np.nan)
    blend = recent_weight * recent + (1 - recent_weight) * weekday
    values = np.where(np.isnan(weekday), recent, np.where(np.isnan(recent), weekday, blend))
    values = pd.Series(values, index=index).interpolate(limit_direction="both").fillna(0.0)
    method = f"weekday×{weeks} α={alpha} + recent 7 days ×{recent_weight}"
    return Forecast(target, "consumption", day, values, method)


def persistence(
    history: pd.Series, day: date, *, kind: Kind, target: str = "", tz: str = DEFAULT_TZ,
    step: str = "15min",
) -> Forecast:  # fmt: skip
    """The naive baseline: the day before, slot by slot."""
    table = _by_local_day(_checked(history, step), tz)
    previous = day - timedelta(days=1)
    if previous not in table.index:
        raise InvalidRequest(f"no history on {previous}")
    index = _day_index(day, tz, step)
    values = table.loc[previous].reindex(_tod(index, tz)).to_numpy(dtype=float)
    series = pd.Series(values, index=index).interpolate(limit_direction="both").fillna(0.0)
    return Forecast(target, kind, day, series, "persistence")


def clear_sky_kw_per_kw(index: pd.DatetimeIndex, system: PvSystem) -> pd.Series:
    """Clear-sky plane-of-array irradiance / 1000 W/m² at ``index`` (the step's middle):
    the output of a 1 kW array with no losses under a clear sky."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pvlib

        middle = index + _step(index) / 2
        location = pvlib.location.Location(system.latitude, system.longitude)
        sky = location.get_clearsky(middle, model="ineichen")
        sun = location.get_solarposition(middle)
        poa = pvlib.irradiance.get_total_irradiance(
            system.tilt_deg, system.azimuth_deg, sun["apparent_zenith"], sun["azimuth"],
            sky["dni"], sky["ghi"], sky["dhi"], albedo=0.2,
        )["poa_global"]  # fmt: skip
    values = np.clip(np.nan_to_num(poa.to_numpy(dtype=float)) / 1000.0, 0.0, None)
    return pd.Series(values, index=index)


def forecast_pv(
    history: pd.Series,
    day: date,
    system: PvSystem,
    *,
    target: str = "",
    tz: str = DEFAULT_TZ,
    step: str = "15min",
    days: int = 3,
) -> Forecast:
    """PV production (kW) of ``day``: clear sky × the clear-sky index of the last ``days``."""
    if not 1 <= days <= 60:
        raise InvalidRequest("days must be 1..60")
    measured = _checked(history, step).clip(lower=0.0)
    start = pd.Timestamp(day - timedelta(days=days)).tz_localize(tz).tz_convert("UTC")
    end = pd.Timestamp(day).tz_localize(tz).tz_convert("UTC")
    window = measured[(measured.index >= start) & (measured.index < end)].dropna()
    if window.empty:
        raise InvalidRequest(f"no PV history in the {days} days before {day}")
    clear = clear_sky_kw_per_kw(pd.DatetimeIndex(window.index), system)
    total = float(clear.sum())
    index = clear_sky_kw_per_kw(_day_index(day, tz, step), system)
    k = float(window.sum()) / total if total > 0 else 0.0
    return Forecast(target, "pv", day, index * k, f"clear sky × index {k:.3f} ({days} days)")


def forecast_error(forecast: Forecast, actual: pd.Series, baseline: Forecast) -> ForecastError:
    """Errors of ``forecast`` and ``baseline`` against ``actual`` (resampled to the forecast's
    steps, compared where all three have a value)."""
    step = _step(forecast.values_kw.index)
    truth = _checked(actual, f"{int(step.total_seconds())}s")
    frame = pd.concat([forecast.values_kw, baseline.values_kw, truth], axis=1, join="inner")
    frame = frame.dropna()
    if frame.empty:
        raise InvalidRequest("no actual values in the forecast day")
    f, b, a = (frame.iloc[:, i].to_numpy() for i in range(3))
    scale = float(np.mean(np.abs(a))) or math.nan
    mae, base_mae = float(np.mean(np.abs(f - a))), float(np.mean(np.abs(b - a)))
    skill = 1.0 - mae / base_mae if base_mae > 0 else 0.0
    rmse = float(np.sqrt(np.mean((f - a) ** 2)))
    return ForecastError(mae, mae / scale, rmse, base_mae, base_mae / scale, skill)


def node_forecasts(topology: Topology, sites: Mapping[str, Forecast]) -> dict[str, Forecast]:
    """Per node of the hierarchy with sites below it: the sum of those sites' forecasts (one
    kind and one day at a time)."""
    kinds = {f.kind for f in sites.values()}
    days = {f.day for f in sites.values()}
    if len(kinds) > 1 or len(days) > 1:
        raise InvalidRequest("node forecasts sum forecasts of one kind and one day")
    out: dict[str, Forecast] = {}
    for node in topology.nodes:
        if node.kind not in HIERARCHY:
            continue
        below = [sites[s] for s in topology.sites_downstream(node.id) if s in sites]
        if below:
            total = sum((f.values_kw for f in below[1:]), below[0].values_kw)
            first = below[0]
            method = f"sum of {len(below)} sites ({first.method})"
            out[node.id] = Forecast(node.id, first.kind, first.day, total, method)
    return out


def _at(forecast: Forecast, at: pd.Timestamp) -> float:
    index = forecast.values_kw.index
    if at.tzinfo is None or len(index) == 0 or not index[0] <= at < index[-1] + _step(index):
        raise InvalidRequest(f"{at} is not a tz-aware time within the forecast of {forecast.day}")
    return float(forecast.values_kw[index <= at].iloc[-1])


def node_powers_at(
    topology: Topology,
    at: pd.Timestamp,
    consumption: Mapping[str, Forecast],
    pv: Mapping[str, Forecast] | None = None,
    *,
    power_factor: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """{node: (p_mw, q_mvar)} at time ``at`` from per-site forecasts, summed at the node each
    site is attached to: the ``forecasts`` argument of the state estimate's pseudo-measurements
    (:func:`gridhub.grid.estimation_inputs.pseudo_measurements`). Consumption has Q at
    ``power_factor``; PV feeds at unity power factor and counts negative."""
    if not 0.0 < power_factor <= 1.0:
        raise InvalidRequest("power_factor must lie in (0, 1]")
    tan_phi = math.tan(math.acos(power_factor))
    out: dict[str, tuple[float, float]] = {}
    for sign, forecasts in ((1.0, consumption), (-1.0, pv or {})):
        for site, forecast in forecasts.items():
            node = topology.site_node(site)
            kw = _at(forecast, at)
            p, q = out.get(node, (0.0, 0.0))
            q_add = kw * tan_phi / 1000.0 if sign > 0 else 0.0
            out[node] = (p + sign * kw / 1000.0, q + q_add)
    return out
