"""Shapes for the fleet simulator (S1): household load, PV, whitegood cycles, boilers, weather.

Pure functions on numpy arrays, without I/O or hidden state (the only caches are pure functions of
their arguments), so :mod:`gridhub.sim.fleet` can evaluate a whole fleet-day in a few array
operations and tests can check each shape on its own.

Why these sources:

* Household base load is the BDEW H0 standard load profile (demandlib): the profile German and
  Belgian suppliers settle small consumers with, so aggregates look like a real LV feeder (winter
  evening peak, weekend shape, Belgian public holidays as Sundays). It comes per quarter-hour of
  local wall-clock time; finer intervals interpolate it.
* PV is pvlib's Haurwitz clear sky for Flanders, decomposed with Erbs and transposed onto a roof
  (35° tilt, SE/S/SW), times a daily cloudiness: realistic timing and seasonality, and nothing
  downloaded (no TMY, no Linke turbidity file).
* Households (:func:`make_household`) get the grouping attributes reports use (location, pilot
  phase, experiment, appliances, PV) and the hidden parameters behind their curves, each from its
  own random stream, so household ``n`` is the same whatever the size of the fleet.
* Whitegoods and boilers are small physical models (seed 000, Table I: washers, dryers,
  dishwashers and domestic hot-water buffers in the Linear pilot): piecewise-constant program
  power curves, integrated exactly, and a thermostat-controlled buffer heated on the night tariff.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from gridhub.domain.registry import Site

QUARTER_S = 900
DAY_S = 86400
LATITUDE = 51.0  # Flanders
LONGITUDE = 4.4
PV_TILT_DEG = 35.0
PV_AZIMUTHS_DEG = (135.0, 180.0, 225.0)  # SE, S, SW roofs
PV_DERATE = 0.85  # inverter, wiring, soiling, temperature
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


# --- BDEW H0 -----------------------------------------------------------------------------------


def easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous algorithm): three Belgian holidays hang off it."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def belgian_holidays(year: int) -> list[date]:
    """The ten Belgian public holidays; BDEW treats them as Sundays."""
    easter = easter_sunday(year)
    fixed = [(1, 1), (5, 1), (7, 21), (8, 15), (11, 1), (11, 11), (12, 25)]
    moving = [easter + timedelta(days=n) for n in (1, 39, 50)]  # Monday, Ascension, Whit Monday
    return sorted([date(year, m, d) for m, d in fixed] + moving)


@lru_cache(maxsize=4)
def h0_year(year: int) -> np.ndarray:
    """``(days, 96)`` read-only array: kW of a household using 1 kWh a year, per local quarter.

    Computed once per year (demandlib takes about a second) and cached. The rows follow the local
    calendar: 96 wall-clock quarters even on DST days, which :func:`h0_at` maps onto real time.
    """
    with warnings.catch_warnings():
        # demandlib and pandas warn about their own internals (FutureWarning and friends); pytest
        # runs with warnings as errors, and none of them concern the numbers we take.
        warnings.simplefilter("ignore")
        from demandlib import bdew  # lazy: slow to import, and only the simulator needs it

        slp = bdew.ElecSlp(year, holidays=belgian_holidays(year))
        frame = slp.get_scaled_power_profiles({"h0": 1.0})
        values = frame["h0"].to_numpy(dtype=float)
    table = values.reshape(-1, 96).copy()
    table.setflags(write=False)
    return table


_EXT = 4  # quarters borrowed from each neighbouring day, so shifts up to an hour interpolate
_EXT_POSITIONS = (np.arange(96 + 2 * _EXT) - _EXT) * QUARTER_S + QUARTER_S / 2


def h0_at(day: date, wall_s: np.ndarray) -> np.ndarray:
    """H0 (kW per kWh/year) at local wall-clock seconds since ``day``'s midnight.

    Each quarter's value sits at the quarter's middle and values in between are linear, so the
    mean over a quarter equals the quarter's BDEW value to within the curvature. ``wall_s`` may
    reach an hour into the neighbouring days (household time shifts); the neighbour of 1 January
    is 31 December of the same year, which avoids loading a second year for a smooth edge.
    """
    table = h0_year(day.year)
    i = day.timetuple().tm_yday - 1
    n = table.shape[0]
    ext = np.concatenate([table[(i - 1) % n, -_EXT:], table[i], table[(i + 1) % n, :_EXT]])
    return np.interp(wall_s, _EXT_POSITIONS, ext)


# --- PV ----------------------------------------------------------------------------------------

_PV_GRID_S = 300


@lru_cache(maxsize=64)
def _clear_sky_day(epoch_day: int, lat: float, lon: float) -> np.ndarray:
    """``(len(PV_AZIMUTHS_DEG), 289)``: kW per kWp every 5 min over one UTC day, clear sky."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas as pd
        import pvlib

        start = pd.Timestamp(date.fromordinal(_EPOCH_ORDINAL + epoch_day), tz="UTC")
        times = pd.date_range(start, periods=DAY_S // _PV_GRID_S + 1, freq=f"{_PV_GRID_S}s")
        sun = pvlib.solarposition.get_solarposition(times, lat, lon, method="nrel_numpy")
        ghi = pvlib.clearsky.haurwitz(sun["apparent_zenith"])["ghi"]
        parts = pvlib.irradiance.erbs(ghi, sun["zenith"], times)
        rows = []
        for azimuth in PV_AZIMUTHS_DEG:
            poa = pvlib.irradiance.get_total_irradiance(
                PV_TILT_DEG,
                azimuth,
                sun["apparent_zenith"],
                sun["azimuth"],
                parts["dni"],
                ghi,
                parts["dhi"],
                albedo=0.2,
            )["poa_global"]
            rows.append(np.nan_to_num(poa.to_numpy(dtype=float)) * PV_DERATE / 1000.0)
    grid = np.clip(np.array(rows), 0.0, None)
    grid[:, ghi.to_numpy() <= 0.0] = 0.0  # no diffuse light either once the sun is down
    grid.setflags(write=False)
    return grid


def clear_sky_per_kwp(
    times_s: np.ndarray, *, lat: float = LATITUDE, lon: float = LONGITUDE
) -> np.ndarray:
    """PV output in kW per kWp under a clear sky, ``(len(PV_AZIMUTHS_DEG), len(times_s))``.

    ``times_s`` are UTC epoch seconds. The sun is computed on a 5-minute grid per UTC day (cached)
    and interpolated, so a second-resolution day costs no more than a quarter-hour one.
    """
    times_s = np.asarray(times_s, dtype=float)
    out = np.zeros((len(PV_AZIMUTHS_DEG), times_s.size))
    days = np.floor(times_s / DAY_S).astype(np.int64)
    positions = np.arange(DAY_S // _PV_GRID_S + 1) * _PV_GRID_S
    for day in np.unique(days):
        sel = days == day
        grid = _clear_sky_day(int(day), lat, lon)
        local = times_s[sel] - day * DAY_S
        for row in range(grid.shape[0]):
            out[row, sel] = np.interp(local, positions, grid[row])
    return out


def sky_transmission(rng: np.random.Generator, month: int, quarters: int) -> np.ndarray:
    """Fraction of clear-sky PV reaching the panels, per quarter-hour of one day (regional).

    A day is drawn sunny, mixed or overcast (Belgian summers are sunnier than its winters); mixed
    days flicker from quarter to quarter, overcast ones stay low. Shared by the whole fleet:
    clouds over Flanders are regional, and a real feeder sees its PV rise and fall together.
    """
    summer = month in (4, 5, 6, 7, 8, 9)
    clear = rng.beta(1.3, 0.9) if summer else rng.beta(0.7, 1.3)
    spread = 0.9 * math.sqrt(clear * (1.0 - clear))
    steps = rng.standard_normal(quarters)
    smooth = np.empty(quarters)
    level = steps[0]
    for i, step in enumerate(steps):  # AR(1) over quarters: cloud fields last an hour or so
        level = 0.7 * level + math.sqrt(1 - 0.49) * step
        smooth[i] = level
    return np.clip(0.12 + 0.88 * clear + spread * smooth, 0.08, 1.0)


# --- whitegoods --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cycle:
    """One appliance run: start (UTC epoch s) and a piecewise-constant power curve."""

    start_s: float
    durations_s: tuple[float, ...]
    power_kw: tuple[float, ...]

    @property
    def end_s(self) -> float:
        return self.start_s + sum(self.durations_s)

    @property
    def energy_kwh(self) -> float:
        return sum(d * p for d, p in zip(self.durations_s, self.power_kw, strict=True)) / 3600


def _program(rng: np.random.Generator, phases: list[tuple[float, float, float, float]]):
    """Durations (s) and powers (kW) from (min_minutes, max_minutes, min_kw, max_kw) phases."""
    durations = tuple(float(rng.uniform(a, b)) * 60 for a, b, _, _ in phases)
    powers = tuple(float(rng.uniform(lo, hi)) for _, _, lo, hi in phases)
    return durations, powers


def washer_program(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Washing machine: fill, heat the water (~2 kW, longer at 60 °C), tumble, rinse, spin."""
    temperature = int(rng.choice([30, 40, 60], p=[0.35, 0.45, 0.2]))
    heat = {30: (6, 9), 40: (13, 17), 60: (17, 21)}[temperature]
    return _program(
        rng,
        [
            (2, 4, 0.03, 0.06),
            (*heat, 1.95, 2.2),
            (35, 55, 0.12, 0.3),
            (12, 20, 0.06, 0.12),
            (8, 12, 0.3, 0.5),
        ],
    )


def dryer_program(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Tumble dryer (condenser): about 2.5 kW for 1 to 1.5 h, then a cool-down tumble."""
    return _program(rng, [(35, 50, 2.4, 2.7), (25, 40, 2.2, 2.5), (8, 15, 0.15, 0.3)])


def dishwasher_program(rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Dishwasher: prewash, heat (~1.8 kW), wash, heat for the rinse, dry."""
    return _program(
        rng,
        [
            (8, 14, 0.06, 0.12),
            (14, 20, 1.75, 2.0),
            (25, 35, 0.1, 0.18),
            (10, 15, 1.75, 2.0),
            (25, 35, 0.02, 0.06),
        ],
    )


def _clock(rng: np.random.Generator, modes: list[tuple[float, float, float]]) -> float:
    """A start time (s after local midnight) from a mixture of (weight, mean_h, sd_h) modes."""
    weights = np.array([m[0] for m in modes])
    _, mean, sd = modes[int(rng.choice(len(modes), p=weights / weights.sum()))]
    return float(np.clip(rng.normal(mean, sd), 6.0, 22.0)) * 3600


def _sequential(starts: list[float], programs: list, day_start_s: float) -> list[Cycle]:
    """Cycles of one appliance in start order, never overlapping (one machine, one program)."""
    cycles: list[Cycle] = []
    for start, (durations, powers) in sorted(
        zip(starts, programs, strict=True), key=lambda pair: pair[0]
    ):
        at = day_start_s + start
        if cycles:
            at = max(at, cycles[-1].end_s + 600)
        if at - day_start_s > 23.75 * 3600:
            break  # no room left today: skipped, so runs never reach tomorrow's first cycles
        cycles.append(Cycle(at, durations, powers))
    return cycles


def whitegood_day(
    rng: np.random.Generator,
    day_start_s: float,
    weekend: bool,
    appliances: tuple[str, ...],
    habits: dict[str, float],
    shifts_to_night: bool,
) -> dict[str, list[Cycle]]:
    """The day's cycles per appliance for one household.

    ``habits`` holds cycles per week for ``washing_machine`` and ``dishwasher``, and for
    ``dryer`` the probability that a wash is followed by a drying cycle.

    Washers run in the morning or evening on weekdays, late morning at weekends; a dryer follows
    a wash with the household's probability; dishwashers run after dinner (or lunch). Households
    in a tariff experiment (seed 000: ToU and automatic demand response) often delay the
    dishwasher into the cheap night period, which is exactly what the experiment should show.
    """
    out: dict[str, list[Cycle]] = {}
    if "washing_machine" in appliances:
        n = int(rng.poisson(habits["washing_machine"] / 7 * (1.5 if weekend else 0.8)))
        modes = (
            [(0.7, 10.5, 1.3), (0.3, 15.0, 1.5)] if weekend else [(0.4, 8.3, 0.9), (0.6, 19.0, 1.2)]
        )
        starts = [_clock(rng, modes) for _ in range(n)]
        out["washing_machine"] = _sequential(
            starts, [washer_program(rng) for _ in starts], day_start_s
        )
    if "dryer" in appliances:
        p = habits["dryer"]
        starts = [
            c.end_s - day_start_s + rng.uniform(300, 2400)
            for c in out.get("washing_machine", [])
            if rng.random() < p
        ]
        out["dryer"] = _sequential(starts, [dryer_program(rng) for _ in starts], day_start_s)
    if "dishwasher" in appliances:
        n = int(rng.poisson(habits["dishwasher"] / 7))
        starts = []
        for _ in range(n):
            at = _clock(rng, [(0.75, 20.8, 0.8), (0.25, 13.6, 0.6)])
            if shifts_to_night and rng.random() < 0.5:
                at = float(rng.uniform(22.5, 23.5)) * 3600
            starts.append(at)
        out["dishwasher"] = _sequential(
            starts, [dishwasher_program(rng) for _ in starts], day_start_s
        )
    return out


def mean_power(edges_s: np.ndarray, cycles: list[Cycle]) -> np.ndarray:
    """Mean kW over each ``[edges[i], edges[i+1])``, exactly, from non-overlapping cycles.

    The cumulative energy of a piecewise-constant curve is piecewise linear, so interpolating it
    at the interval edges and differencing gives the true mean power at any interval: a 1 s plug
    and a 15 min plug report the same energy for the same cycle.
    """
    if not cycles:
        return np.zeros(len(edges_s) - 1)
    times: list[float] = []
    energy: list[float] = []
    total = 0.0
    for cycle in sorted(cycles, key=lambda c: c.start_s):
        at = cycle.start_s
        times.append(at)
        energy.append(total)
        for duration, power in zip(cycle.durations_s, cycle.power_kw, strict=True):
            at += duration
            total += duration * power / 3600
            times.append(at)
            energy.append(total)
    cumulative = np.interp(edges_s, times, energy)
    return np.diff(cumulative) * 3600 / np.diff(edges_s)


# --- domestic hot-water boilers ----------------------------------------------------------------

BOILER_STEP_S = 60
BOILER_OFFSET_S = 5 * 3600  # a boiler day runs from 05:00, when the night tariff has filled it
BOILER_STEPS = 25 * 60  # 25 h, enough for the longest (autumn DST) day
_NIGHT = np.zeros(BOILER_STEPS, dtype=bool)
_NIGHT[18 * 60 : 24 * 60] = True  # 23:00-05:00: night tariff, heat to full
_TOP_UP = np.zeros(BOILER_STEPS, dtype=bool)
_TOP_UP[23 * 60 + 30 : 24 * 60] = True  # last half hour of the night: top up to exactly 100 %


def boiler_draws(rng: np.random.Generator, weekend: bool, scale: float) -> np.ndarray:
    """kWh of hot water drawn per minute over one boiler day (05:00 to 06:00 next day).

    Showers in the morning (later at weekends), washing up and baths in the evening, a few small
    draws in between; nothing between 23:00 and 06:00, so the tank is full at every day boundary.
    """
    draws = np.zeros(BOILER_STEPS)
    events = [
        (7.8 if weekend else 6.9, 0.8, rng.integers(1, 4), 1.0, 2.4),
        (19.5, 1.2, rng.integers(1, 3), 0.5, 2.5),
        (13.0, 3.0, rng.integers(1, 5), 0.1, 0.4),
    ]
    for mean_h, sd_h, count, lo_kwh, hi_kwh in events:
        for _ in range(int(count)):
            hour = float(np.clip(rng.normal(mean_h, sd_h), 6.0, 22.5))
            minutes = int(rng.integers(4, 13))
            first = int((hour - 5.0) * 60)
            draws[first : first + minutes] += scale * rng.uniform(lo_kwh, hi_kwh) / minutes
    return draws


def simulate_boilers(
    draws: np.ndarray, capacity_kwh: np.ndarray, element_kw: np.ndarray, loss_kw: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """State of charge (0..1) and cumulative heating kWh, ``(B, BOILER_STEPS + 1)`` each.

    Every boiler starts the day full (05:00). By night the thermostat keeps it full; by day it
    heats only when the charge falls below 25 % and then up to 60 % (the night is cheaper).
    Vectorised over boilers, stepped per minute: the thermostat has memory, so time is a loop.
    """
    count = capacity_kwh.size
    stored = capacity_kwh.astype(float).copy()
    heating = np.zeros(count, dtype=bool)
    step_h = BOILER_STEP_S / 3600
    soc = np.empty((count, BOILER_STEPS + 1))
    heat = np.zeros((count, BOILER_STEPS + 1))
    soc[:, 0] = 1.0
    for step in range(BOILER_STEPS):
        level = stored / capacity_kwh
        if _NIGHT[step]:
            heating = np.where(heating, level < 1.0, level < 0.97) | (_TOP_UP[step] & (level < 1))
        else:
            heating = np.where(heating, level < 0.6, level < 0.25)
        added = np.where(heating, np.minimum(element_kw * step_h, capacity_kwh - stored), 0.0)
        stored = np.maximum(stored + added - draws[:, step] - loss_kw * step_h, 0.0)
        soc[:, step + 1] = stored / capacity_kwh
        heat[:, step + 1] = heat[:, step] + added
    return soc, heat


def lerp_grid(grid: np.ndarray, start_s: float, at_s: np.ndarray) -> np.ndarray:
    """Rows of a per-minute boiler grid (from :func:`simulate_boilers`) linearly at ``at_s``."""
    x = np.clip((at_s - start_s) / BOILER_STEP_S, 0.0, BOILER_STEPS)
    i = np.minimum(np.floor(x).astype(np.int64), BOILER_STEPS - 1)
    w = x - i
    return grid[:, i] * (1.0 - w) + grid[:, i + 1] * w


def boiler_temperature(soc: np.ndarray) -> np.ndarray:
    """Outlet temperature (°C) of a stratified tank: 40 °C nearly empty, 65 °C full."""
    return 40.0 + 25.0 * np.clip(soc, 0.0, 1.0)


# --- households --------------------------------------------------------------------------------

APPLIANCES = ("washing_machine", "dryer", "dishwasher", "boiler")
PLUG_SUFFIX = {"washing_machine": "washer", "dryer": "dryer", "dishwasher": "dishwasher"}
LOCATIONS = ("Leuven", "Genk", "Mechelen", "Hasselt", "Gent", "Antwerpen", "Brugge", "Kortrijk")
PILOT_PHASES = ("phase-1", "phase-2")
EXPERIMENTS = ("tou-tariff", "auto-dr", "control")

HOUSEHOLD_STREAM = 0  # first word of the seed of every household's own random stream


@dataclass(frozen=True, slots=True)
class Household:
    """The hidden parameters behind one simulated site (handy for checks and forecasts)."""

    index: int
    site: Site
    annual_kwh: float  # target yearly consumption, appliances included
    base_kwh: float  # the H0 part: everything that is not a metered appliance
    shift_s: float  # this household lives a little earlier or later than H0
    pv_kwp: float
    pv_roof: int  # index into PV_AZIMUTHS_DEG
    pv_yield: float
    habits: dict[str, float]
    boiler_kwh: float
    boiler_kw: float
    boiler_loss_kw: float
    hot_water: float  # scale of the hot-water draws
    voltage_offset: tuple[float, float, float]
    register_kwh: float  # register value at the origin of the register estimate
    standby_kw: float


def make_household(seed: int, n: int, prefix: str, tenant: str) -> Household:
    """Draw household ``n`` from its own stream: hh001 is the same in a fleet of 5 or 500."""
    rng = np.random.default_rng([seed, HOUSEHOLD_STREAM, n])
    location = LOCATIONS[int(rng.integers(len(LOCATIONS)))]
    phase = PILOT_PHASES[int(rng.random() < 0.4)]
    experiment = EXPERIMENTS[int(rng.choice(3, p=[0.4, 0.35, 0.25]))]
    owned = {a for a, p in zip(APPLIANCES, (0.85, 0.5, 0.7, 0.35), strict=True) if rng.random() < p}
    if not owned - {"boiler"} or "dryer" in owned:  # every Linear home had a smart whitegood;
        owned.add("washing_machine")  # a dryer only runs after a wash
    has_pv = bool(rng.random() < 0.4)
    annual = float(rng.uniform(2500, 5500))
    habits = {
        "washing_machine": float(rng.uniform(2, 6)),
        "dryer": float(rng.uniform(0.4, 0.9)),
        "dishwasher": float(rng.uniform(3, 7)),
    }
    liters = float(rng.choice([120.0, 150.0, 200.0]))
    boiler_kw = float(rng.choice([2.4, 3.0]))
    loss_kw = float(rng.uniform(0.03, 0.06))
    hot_water = float(rng.uniform(0.5, 1.1))
    kwp = round(float(rng.uniform(2.0, 6.0)), 1)
    roof = int(rng.integers(len(PV_AZIMUTHS_DEG)))
    pv_yield = float(rng.uniform(0.85, 1.0))
    shift = float(rng.uniform(-1800, 1800))
    offsets = rng.normal(0.0, 2.0) + rng.normal(0.0, 0.7, 3)
    register = float(rng.uniform(1000, 8000))
    standby = float(rng.uniform(0.0005, 0.002))
    appliance_kwh = 52 * (
        ("washing_machine" in owned) * habits["washing_machine"] * 0.8
        + ("dryer" in owned) * habits["washing_machine"] * habits["dryer"] * 3.0
        + ("dishwasher" in owned) * habits["dishwasher"] * 1.05
    ) + ("boiler" in owned) * 365 * (hot_water * 6.0 + loss_kw * 24)
    site_id = f"{prefix}{n:03d}"
    site = Site(
        tenant,
        site_id,
        name=f"Household {n}",
        location=location,
        pilot_phase=phase,
        experiment=experiment,
        appliance_types=tuple(a for a in APPLIANCES if a in owned),
        has_pv=has_pv,
    )
    return Household(
        n,
        site,
        annual,
        max(annual - appliance_kwh, 0.45 * annual),
        shift,
        kwp if has_pv else 0.0,
        roof,
        pv_yield,
        habits,
        liters * 4.186 * 50 / 3600,
        boiler_kw,
        loss_kw,
        hot_water,
        (float(offsets[0]), float(offsets[1]), float(offsets[2])),
        register,
        standby,
    )
