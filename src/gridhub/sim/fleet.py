"""The fleet simulator (S1): a Linear-like pilot as canonical ``DeviceMeasurements`` messages.

API (the CLI and the demo call exactly this)::

    fleet = Fleet(200, seed=1, zone="Europe/Brussels", prefix="hh", tenant="demo")
    fleet.sites()      # list[Site]: hh001..hh200 with location, pilot phase, experiment, ...
    fleet.devices()    # list[Device]: <site>-meter, <site>-plug-washer|-dryer|-dishwasher, -boiler
    fleet.ticks_count(start, end, 900)   # ticks in [start, end), for progress bars
    for batch in fleet.batches(start, end, 900, batch_size=5000, gap_rate=0.0,
                               malformed_rate=0.0, update_state=True):
        publish(batch)  # list[(hardwareId, canonical JSON bytes)], in time order

``CUSTOM_IDENTIFIERS`` lists the (identifier, unit) pairs the tenant must register before the
boiler messages validate. Extra keywords of ``batches``: ``outage_rate`` (probability that a
device is silent for one 1-6 h window on a given day) and ``gap_windows`` (explicit
``(start, end)`` or ``(start, end, site_or_hardware_id)`` spans with no messages).

Meters report, per tick ``t`` of an interval ``dt``: mean consumed and injected power over
``[t, t + dt)`` (kW, net of PV self-consumption), the consumed-energy register at the instant
``t`` (kWh; so ``register(t + dt) - register(t) = consumed(t) * dt / 3600``), and three phase
voltages. Plugs report their appliance's mean power; boilers their element's mean power, state of
charge (%) and temperature (°C). Each plug's smart whitegood also reports its cycles, as
``whitegood.configured`` / ``whitegood.started`` alerts after the measurements of the tick whose
interval holds them (:mod:`gridhub.sim.whitegoods`). Ticks are the multiples of ``dt`` since the
Unix epoch, which for every ``dt`` dividing 900 s puts one on each local midnight: 96 per day at
15 min, 92 and 100 on DST days. ``eventDate`` is local time with its UTC offset.

Why it is fast: a local day is cut into windows of at most 3,600 ticks, and each window is
computed for the whole fleet in numpy (cached, so live mode pays once per window); the only
per-message Python work is a dict, a struct and msgspec's encoder. Why it is deterministic:
every random draw comes from a generator seeded by (seed, purpose, household, day, window), so a
value depends on the seed and the instant, not on how a span is cut into calls. The register is
the exception: it continues from this fleet's previous call when the next one starts where that
ended (or inside its last window), as backfill then live does, and otherwise from an estimate.
A ``Fleet`` is not thread-safe; give each thread its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from gridhub.domain import registry as reg
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, encode
from gridhub.domain.registry import Device, Site
from gridhub.domain.validation import to_us
from gridhub.sim import profiles as pf
from gridhub.sim import whitegoods as wg

POWER = "electricity.power.active.consumed.total"
INJECTED = "electricity.power.active.injected.total"
REGISTER = "electricity.energy.active.consumed.total"
VOLTAGES = tuple(f"electricity.voltage.rms.l{phase}" for phase in (1, 2, 3))
METER_IDENTIFIERS = (POWER, INJECTED, REGISTER, *VOLTAGES)  # the column order of a meter
PLUG_IDENTIFIERS = (POWER,)
BOILER_IDENTIFIERS = (POWER, "boiler.stateOfCharge", "boiler.temperature")
CUSTOM_IDENTIFIERS: tuple[tuple[str, str], ...] = (
    ("boiler.stateOfCharge", "%"),
    ("boiler.temperature", "°C"),
)
MAX_INTERVAL_S = 3600
WINDOW_TICKS = 3600
UNKNOWN_IDENTIFIER = "sim.unknown.identifier"
_REGISTER_ORIGIN_S = 1_420_070_400  # 2015-01-01T00:00Z: the register estimate grows from here
# the purpose word of each random stream's seed (0 is the households', in profiles)
_DAY, _NOISE, _BOILER, _WEATHER, _GAPS, _OUTAGE, _BAD, _WHITEGOOD = range(1, 9)

GapWindow = tuple[datetime, datetime] | tuple[datetime, datetime, str]


class MalformedKind(StrEnum):
    """Broken messages the simulator can send; each value is the reject reason the hub owes."""

    MALFORMED_JSON = "malformed_json"
    UNKNOWN_IDENTIFIER = "unknown_identifier"
    STRING_VALUE = "wrong_value_type"
    MISSING_OFFSET = "missing_offset"
    BAD_DATE = "bad_date"


MALFORMED_CYCLE = tuple(MalformedKind)


def malformed(kind: MalformedKind, msg: DeviceMeasurements) -> bytes:
    """A broken variant of a good message: same device, same values, one realistic mistake."""
    request = msg.request
    measurements, when = dict(request.measurements), request.eventDate or ""
    name, value = next(iter(measurements.items()))
    if kind is MalformedKind.MALFORMED_JSON:
        return encode(msg)[:-3]  # cut inside the eventDate string: unterminated JSON
    if kind is MalformedKind.UNKNOWN_IDENTIFIER:
        measurements = {UNKNOWN_IDENTIFIER: value, **measurements}
        del measurements[name]
    elif kind is MalformedKind.STRING_VALUE:
        measurements[name] = str(value)
    elif kind is MalformedKind.MISSING_OFFSET:
        when = when[:19]
    else:  # a European-style date, as a hand-made gateway might send
        when = f"{when[8:10]}/{when[5:7]}/{when[:4]} {when[11:16]}"
    request = MeasurementsRequest(measurements, request.updateState, when)
    return encode(DeviceMeasurements(msg.hardwareId, request))


@dataclass(frozen=True, slots=True)
class _Spec:
    hardware_id: str
    names: tuple[str, ...]
    first: int  # its columns in a window's value matrix: [first, last)
    last: int


@dataclass(frozen=True, slots=True)
class _Window:
    times: np.ndarray  # tick starts, UTC epoch seconds
    dates: list[str]  # eventDate of each tick
    values: np.ndarray  # (ticks, columns), registers left at 0 (they depend on the call)


@dataclass(frozen=True, slots=True)
class _Options:
    batch_size: int
    gap_rate: float
    malformed_rate: float
    update_state: bool
    outage_rate: float
    gap_windows: tuple[GapWindow, ...]


def _memo(cache: dict[Any, Any], key: Any, make: Callable[[], Any], size: int = 4) -> Any:
    """A tiny bounded memo: live mode revisits the same window and days every tick."""
    if key not in cache:
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


class Fleet:
    """N simulated households of a Linear-like pilot, deterministic for a seed."""

    def __init__(
        self,
        households: int,
        *,
        seed: int = 1,
        zone: str = "Europe/Brussels",
        prefix: str = "hh",
        tenant: str = "demo",
    ) -> None:
        if not 1 <= households <= 99_999:
            raise ValueError("households must be 1..99999")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        reg.check_site_id(f"{prefix}001")
        self.tenant = reg.check_tenant_id(tenant)
        self.zone = ZoneInfo(reg.check_timezone(zone))
        self.seed = seed
        self.households = [
            pf.make_household(seed, n, prefix, tenant) for n in range(1, households + 1)
        ]
        self._devices: list[Device] = []
        self._specs: list[_Spec] = []
        self._plugs: list[tuple[int, int, str]] = []  # (column, household, appliance)
        self._boilers: list[int] = []  # household of each boiler
        self._plug_device: dict[tuple[int, str], int] = {}  # (household, appliance) -> device
        meters, boilers = [], []
        for h, home in enumerate(self.households):
            site, owned = home.site.id, home.site.appliance_types
            meters.append(self._add(f"{site}-meter", "smart-meter", site, METER_IDENTIFIERS))
            for appliance in (a for a in owned if a in pf.PLUG_SUFFIX):
                name = f"{site}-plug-{pf.PLUG_SUFFIX[appliance]}"
                self._plugs.append(
                    (self._add(name, "smart-plug", site, PLUG_IDENTIFIERS), h, appliance)
                )
                self._plug_device[h, appliance] = len(self._specs) - 1
            if "boiler" in owned:
                boilers.append(self._add(f"{site}-boiler", "boiler", site, BOILER_IDENTIFIERS))
                self._boilers.append(h)
        self._meter_cols = np.array(meters, dtype=np.int64)
        self._boiler_cols = np.array(boilers, dtype=np.int64)
        self._trail: tuple[np.ndarray, np.ndarray] | None = None  # last slice: ticks, registers
        self._cache: dict[str, dict[Any, Any]] = {
            k: {} for k in ("day", "plan", "boiler", "win", "events")
        }

    def _add(self, hardware_id: str, kind: str, site: str, names: tuple[str, ...]) -> int:
        first = self._specs[-1].last if self._specs else 0
        self._specs.append(_Spec(hardware_id, names, first, first + len(names)))
        self._devices.append(Device(self.tenant, hardware_id, kind, site, f"{site} {kind}"))
        return first

    def _attr(self, name: str, homes: Sequence[int] | None = None) -> np.ndarray:
        """One household parameter as a column vector, for whole-fleet array maths."""
        chosen = self.households if homes is None else [self.households[h] for h in homes]
        return np.array([getattr(home, name) for home in chosen], dtype=float)[:, None]

    def _rng(self, *words: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *words])

    def sites(self) -> list[Site]:
        return [home.site for home in self.households]

    def devices(self) -> list[Device]:
        return list(self._devices)

    # --- time ----------------------------------------------------------------------------------

    @staticmethod
    def _tick_span(start: datetime, end: datetime, interval_s: int) -> tuple[int, int]:
        """(first tick in UTC epoch s, number of ticks) of ``[start, end)``."""
        if isinstance(interval_s, bool) or not isinstance(interval_s, int):
            raise TypeError("interval_s must be an int")
        if not 1 <= interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be 1..{MAX_INTERVAL_S}")
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be aware datetimes (with a time zone)")
        step_us = interval_s * 1_000_000
        first_us = -(-to_us(start) // step_us) * step_us
        count = max(0, -(-(to_us(end) - first_us) // step_us))
        return first_us // 1_000_000, count

    def ticks_count(self, start: datetime, end: datetime, interval_s: int) -> int:
        """Ticks in ``[start, end)``; messages are at most this times ``len(devices())``."""
        return self._tick_span(start, end, interval_s)[1]

    def _day(self, day: date) -> tuple[int, int, np.ndarray]:
        """UTC bounds of a local day and the UTC offset (s) of each of its quarter-hours."""

        def make() -> tuple[int, int, np.ndarray]:
            ds, de = (
                int(datetime.combine(d, time(0), tzinfo=self.zone).timestamp())
                for d in (day, day + timedelta(days=1))
            )
            offsets = [
                datetime.fromtimestamp(t, self.zone).utcoffset() for t in range(ds, de + 900, 900)
            ]
            return ds, de, np.array([o.total_seconds() if o else 0.0 for o in offsets])

        return _memo(self._cache["day"], day, make, size=8)

    def _slices(self, first: int, count: int, dt: int) -> Iterator[tuple[date, int, int, int]]:
        """(local day, window, a, b): ticks ``a:b`` of each window that the span touches."""
        stop = first + count * dt
        day = datetime.fromtimestamp(first, self.zone).date()
        while (bounds := self._day(day))[0] < stop:
            ds, de, _ = bounds
            day_first = -(-ds // dt) * dt
            lo, hi = max(first, day_first), min(stop, de)
            if lo < hi:
                i_lo, i_hi = (lo - day_first) // dt, -(-(hi - day_first) // dt)
                for k in range(i_lo // WINDOW_TICKS, (i_hi - 1) // WINDOW_TICKS + 1):
                    base = k * WINDOW_TICKS
                    yield day, k, max(i_lo, base) - base, min(i_hi, base + WINDOW_TICKS) - base
            day += timedelta(days=1)

    # --- the physics of a day and of a window ------------------------------------------------

    def _plan(self, day: date) -> tuple[np.ndarray, list[dict[str, list[pf.Cycle]]]]:
        """Per household: the day's consumption factor and its whitegood cycles."""

        def make() -> tuple[np.ndarray, list[dict[str, list[pf.Cycle]]]]:
            ds = self._day(day)[0]
            weekend = day.weekday() >= 5 or day in pf.belgian_holidays(day.year)
            factors, cycles = [], []
            for home in self.households:
                rng = self._rng(_DAY, home.index, day.toordinal())
                factors.append(math.exp(rng.normal(0.0, 0.15) - 0.15**2 / 2))
                site = home.site
                shifts = site.experiment != "control"  # tariff experiments move load to night
                cycles.append(
                    pf.whitegood_day(rng, ds, weekend, site.appliance_types, home.habits, shifts)
                )
            return np.array(factors)[:, None], cycles

        return _memo(self._cache["plan"], day, make)

    def _events(self, day: date) -> list[wg.Event]:
        """The smart whitegoods' configured/started alerts of a day, in time order."""

        def make() -> list[wg.Event]:
            cycles, events = self._plan(day)[1], []
            for (h, appliance), device in self._plug_device.items():
                which = list(pf.PLUG_SUFFIX).index(appliance)
                rng = self._rng(_WHITEGOOD, self.households[h].index, day.toordinal(), which)
                runs = cycles[h].get(appliance, [])
                hardware_id = self._specs[device].hardware_id
                events += wg.cycle_events(rng, hardware_id, device, appliance, runs, self.zone)
            return sorted(events, key=lambda e: (e.at_s, e.device))

        return _memo(self._cache["events"], day, make)

    def _boiler_day(self, day: date) -> tuple[float, dict[str, np.ndarray]]:
        """(start, {"soc", "heat"}) of every boiler over one boiler day (05:00 to 06:00)."""

        def make() -> tuple[float, dict[str, np.ndarray]]:
            homes = [self.households[h] for h in self._boilers]
            weekend = day.weekday() >= 5
            rngs = [self._rng(_BOILER, home.index, day.toordinal()) for home in homes]
            draws = np.stack(
                [
                    pf.boiler_draws(rng, weekend, h.hot_water)
                    for rng, h in zip(rngs, homes, strict=True)
                ]
            )
            params = (
                self._attr(name, self._boilers)[:, 0]
                for name in ("boiler_kwh", "boiler_kw", "boiler_loss_kw")
            )
            soc, heat = pf.simulate_boilers(draws, *params)
            return self._day(day)[0] + pf.BOILER_OFFSET_S, {"soc": soc, "heat": heat}

        return _memo(self._cache["boiler"], day, make)

    def _boiler_window(
        self, day: date, times: np.ndarray, edges: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Element power over each tick and state of charge at each tick, ``(boilers, ticks)``.

        Ticks before 05:00 belong to yesterday's boiler day; both are full then, so they join.
        """
        (t0, prev), (t1, cur) = self._boiler_day(day - timedelta(days=1)), self._boiler_day(day)

        def at(grid: str, moments: np.ndarray, carry: bool) -> np.ndarray:
            early = moments < t1
            out = np.empty((len(self._boilers), moments.size))
            out[:, early] = pf.lerp_grid(prev[grid], t0, moments[early])
            out[:, ~early] = pf.lerp_grid(cur[grid], t1, moments[~early])
            if carry:  # cumulative heat continues from yesterday's total at the switch
                out[:, ~early] += pf.lerp_grid(prev[grid], t0, np.array([t1], dtype=float))
            return out

        energy = at("heat", edges, carry=True)
        return np.diff(energy, axis=1) * 3600 / np.diff(edges), at("soc", times, carry=False)

    def _window(self, day: date, k: int, dt: int) -> _Window:
        return _memo(self._cache["win"], (day, k, dt), lambda: self._compute(day, k, dt), size=2)

    def _compute(self, day: date, k: int, dt: int) -> _Window:
        """Every device's values for window ``k`` of a local day, for the whole fleet at once."""
        from scipy.signal import lfilter  # lazy: scipy comes with pvlib but is slow to import

        ds, de, quarter_offsets = self._day(day)
        day_first = -(-ds // dt) * dt
        in_day = -(-(de - day_first) // dt)
        times = day_first + dt * np.arange(k * WINDOW_TICKS, min(in_day, (k + 1) * WINDOW_TICKS))
        edges = np.append(times, times[-1] + dt).astype(float)
        mid = times + dt / 2
        midnight = (day - date(1970, 1, 1)).days * pf.DAY_S  # local midnight as naive epoch s
        wall = mid + quarter_offsets[(times - ds) // 900] - midnight  # local clock, DST-aware
        n, ordinal = times.size, day.toordinal()
        noise = np.stack(
            [
                self._rng(_NOISE, home.index, ordinal, k, dt).standard_normal((5, n + 1))
                for home in self.households
            ]
        )

        # base load: H0 on the household's own clock, a daily factor, correlated noise
        factors, cycles = self._plan(day)
        sigma, phi = 0.12 * (900 / dt) ** 0.15, math.exp(-dt / 180)
        b, a = [math.sqrt(1 - phi * phi)], [1.0, -phi]
        wobble = lfilter(b, a, noise[:, 0, 1:], axis=1, zi=phi * noise[:, 0, :1])[0]
        load = (
            self._attr("base_kwh")
            * factors
            * pf.h0_at(day, wall + self._attr("shift_s"))
            * np.exp(sigma * wobble - sigma * sigma / 2)
        )

        # PV: clear sky on the household's roof, regional clouds, a little local noise
        quarters = (de - ds) // 900 + 2
        sky = pf.sky_transmission(self._rng(_WEATHER, ordinal), day.month, quarters)
        clear = pf.clear_sky_per_kwp(mid) * np.interp(mid, ds + 900.0 * np.arange(quarters), sky)
        roofs = self._attr("pv_roof")[:, 0].astype(np.int64)
        flicker = 1 + 0.04 * (900 / dt) ** 0.2 * noise[:, 1, 1:]
        pv = np.maximum(self._attr("pv_kwp") * self._attr("pv_yield") * clear[roofs] * flicker, 0)

        values = np.zeros((n, self._specs[-1].last))
        previous = self._plan(day - timedelta(days=1))[1]
        for col, h, appliance in self._plugs:
            runs = previous[h].get(appliance, []) + cycles[h].get(appliance, [])
            power = pf.mean_power(edges, runs) + self.households[h].standby_kw
            load[h] += power
            values[:, col] = np.round(power, 4)
        if self._boilers:
            power, soc = self._boiler_window(day, times.astype(float), edges)
            load[self._boilers] += power
            values[:, self._boiler_cols] = np.round(power, 4).T
            values[:, self._boiler_cols + 1] = np.round(100 * soc, 1).T
            values[:, self._boiler_cols + 2] = np.round(pf.boiler_temperature(soc), 1).T

        consumed = np.round(np.maximum(load - pv, 0.0), 4) + 0.0  # + 0.0: no "-0.0" on the wire
        injected = np.round(np.maximum(pv - load, 0.0), 4) + 0.0
        values[:, self._meter_cols] = consumed.T
        values[:, self._meter_cols + 1] = injected.T
        feeder = pf.h0_at(day, wall) * 8760  # fleet-wide load level: the evening voltage dip
        for phase in range(3):
            offset = np.array([h.voltage_offset[phase] for h in self.households])[:, None]
            volts = 233.0 + offset - 3.0 * feeder - 0.5 * consumed + 0.9 * injected
            values[:, self._meter_cols + 3 + phase] = np.round(
                volts + 0.4 * noise[:, 2 + phase, 1:], 1
            ).T
        dates = [datetime.fromtimestamp(t, self.zone).isoformat() for t in times.tolist()]
        dates = [d[:-6] + "Z" if d.endswith("+00:00") else d for d in dates]
        return _Window(times, dates, values)

    # --- registers, gaps, faults ---------------------------------------------------------------

    def _registers(self, values: np.ndarray, times: np.ndarray, dt: int) -> None:
        """Fill the register columns of a slice from its consumed power.

        A slice that starts within the previous slice (or right at its end) continues from the
        register at that instant: backfill then live, even overlapping, or switching from 15 min
        to 1 min in the middle of a quarter, stays consistent. After a jump forward it adds the
        skipped time at the household's average rate; before the previous slice (or on a fresh
        fleet) it starts from an estimate that grows with the date.
        """
        first = int(times[0])
        per_day = self._attr("annual_kwh")[:, 0] / 365.25
        days = max(first - _REGISTER_ORIGIN_S, 0) / pf.DAY_S
        start = self._attr("register_kwh")[:, 0] + per_day * days
        if self._trail is not None:
            marks, totals = self._trail
            if marks[0] <= first <= marks[-1]:  # at the register's value at that instant
                i = min(int(np.searchsorted(marks, first, side="right")) - 1, marks.size - 2)
                share = (first - marks[i]) / (marks[i + 1] - marks[i])
                start = totals[i] + share * (totals[i + 1] - totals[i])
            elif first > marks[-1]:  # skipped time counts at the household's average rate
                start = totals[-1] + per_day * (first - marks[-1]) / pf.DAY_S
        energy = values[:, self._meter_cols] * (dt / 3600)
        totals = start + np.vstack([np.zeros((1, energy.shape[1])), np.cumsum(energy, axis=0)])
        values[:, self._meter_cols + 2] = np.round(totals[:-1], 4)  # the register before t
        self._trail = (np.append(times, times[-1] + dt), totals)

    def _missing(
        self, day: date, k: int, dt: int, window: _Window, a: int, b: int, opts: _Options
    ) -> np.ndarray | None:
        """``(ticks, devices)`` True where a device stays silent, or None if none does."""
        if opts.gap_rate <= 0 and opts.outage_rate <= 0 and not opts.gap_windows:
            return None
        times, devices = window.times[a:b], len(self._specs)
        missing = np.zeros((b - a, devices), dtype=bool)
        if opts.gap_rate > 0:
            rng = self._rng(_GAPS, day.toordinal(), k, dt)
            missing |= rng.random((window.times.size, devices))[a:b] < opts.gap_rate
        if opts.outage_rate > 0:
            ds, de, _ = self._day(day)
            rng = self._rng(_OUTAGE, day.toordinal())
            hit, length = rng.random(devices) < opts.outage_rate, rng.uniform(3600, 21600, devices)
            begin = ds + rng.random(devices) * (de - ds - length)  # whole, within the day
            end = begin + length
            missing |= hit & (times[:, None] >= begin) & (times[:, None] < end)
        for gap in opts.gap_windows:
            who = gap[2] if len(gap) > 2 else None
            chosen = [who in (None, d.hardware_id, d.site) for d in self._devices]
            cols = np.flatnonzero(chosen)
            rows = (times >= gap[0].timestamp()) & (times < gap[1].timestamp())
            missing[np.ix_(rows, cols)] = True
        return missing if missing.any() else None

    # --- messages ------------------------------------------------------------------------------

    def batches(
        self,
        start: datetime,
        end: datetime,
        interval_s: int,
        *,
        batch_size: int = 5000,
        gap_rate: float = 0.0,
        malformed_rate: float = 0.0,
        update_state: bool = True,
        outage_rate: float = 0.0,
        gap_windows: Sequence[GapWindow] = (),
    ) -> Iterator[list[tuple[str, bytes]]]:
        """Messages of ``[start, end)`` as lists of ``(hardwareId, canonical JSON bytes)``.

        One message per device per tick, in time order (devices in ``devices()`` order within a
        tick, then the whitegood alerts of the tick's interval), at most ``batch_size``
        measurements per list (alerts ride along: a multiple of the device count is whole
        ticks). ``gap_rate``: probability a device's reading (and its alerts) is missing at a
        tick; ``outage_rate``: probability a device is silent for one 1-6 h window
        of a day; ``gap_windows``: explicit silent spans for everyone, a site or a device.
        ``malformed_rate``: probability a message is replaced by a broken one, the kinds taken
        in ``MALFORMED_CYCLE`` order. Arguments are checked now; values are made lazily.
        """
        first, count = self._tick_span(start, end, interval_s)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not all(0.0 <= r <= 1.0 for r in (gap_rate, malformed_rate, outage_rate)):
            raise ValueError("rates must be within [0, 1]")
        if any(g[0].tzinfo is None or g[1].tzinfo is None for g in gap_windows):
            raise ValueError("gap windows need aware datetimes")
        opts = _Options(
            batch_size, gap_rate, malformed_rate, update_state, outage_rate, tuple(gap_windows)
        )
        return self._generate(first, count, interval_s, opts)

    def _generate(
        self, first: int, count: int, dt: int, opts: _Options
    ) -> Iterator[list[tuple[str, bytes]]]:
        out: list[tuple[str, bytes]] = []
        broken = filled = 0  # filled: measurements in ``out``
        specs = [(s.hardware_id, s.names, s.first, s.last) for s in self._specs]
        for day, k, a, b in self._slices(first, count, dt):
            window = self._window(day, k, dt)
            values = window.values[a:b].copy()
            self._registers(values, window.times[a:b], dt)
            missing = self._missing(day, k, dt, window, a, b, opts)
            bad = None
            if opts.malformed_rate > 0:
                rng = self._rng(_BAD, day.toordinal(), k, dt)
                bad = rng.random((window.times.size, len(specs)))[a:b] < opts.malformed_rate
            events = wg.by_tick(self._events(day), window.times[a:b].tolist(), dt)
            for j in range(b - a):
                row = values[j].tolist()  # per row: a 1 s window as Python floats is ~200 MB
                event_date = window.dates[a + j]
                skip = missing[j].tolist() if missing is not None else None
                spoil = bad[j].tolist() if bad is not None else None
                for d, (hardware_id, names, lo, hi) in enumerate(specs):
                    if skip is not None and skip[d]:
                        continue
                    measurements = dict(zip(names, row[lo:hi], strict=False))
                    request = MeasurementsRequest(measurements, opts.update_state, event_date)
                    msg = DeviceMeasurements(hardware_id, request)
                    if spoil is not None and spoil[d]:
                        payload = malformed(MALFORMED_CYCLE[broken % len(MALFORMED_CYCLE)], msg)
                        broken += 1
                    else:
                        payload = encode(msg)
                    out.append((hardware_id, payload))
                    filled += 1
                    if filled >= opts.batch_size:
                        yield out
                        out, filled = [], 0
                # then the tick's appliance events (lost if the device is silent); they do not
                # count towards batch_size, so batches of whole ticks stay whole ticks
                out += [
                    (e.hardware_id, e.payload)
                    for e in events[j]
                    if skip is None or not skip[e.device]
                ]
        if out:
            yield out
