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
charge (%) and temperature (°C). Ticks are the multiples of ``dt`` since the Unix epoch, which
for every ``dt`` dividing 900 s puts one on each local midnight: 96 per day at 15 min, 92 and
100 on DST days. ``eventDate`` is local time with its UTC offset.

Why it is fast: a local day is cut into windows of at most 3,600 ticks, and each window is
computed for the whole fleet in numpy (cached, so live mode pays once per window); the only
per-message Python work is a dict, a struct and msgspec's encoder. Why it is deterministic:
every random draw comes from a generator seeded by (seed, purpose, household, day, window), so a
value depends on the seed and the instant, not on how a span is cut into calls. The register is
the exception: it continues from the end of this fleet's previous call when the next starts there
(backfill then live), and otherwise starts from an estimate that grows with the date.
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

POWER = "electricity.power.active.consumed.total"
METER_IDENTIFIERS = (
    POWER,
    "electricity.power.active.injected.total",
    "electricity.energy.active.consumed.total",
    "electricity.voltage.rms.l1",
    "electricity.voltage.rms.l2",
    "electricity.voltage.rms.l3",
)
PLUG_IDENTIFIERS = (POWER,)
BOILER_IDENTIFIERS = (POWER, "boiler.stateOfCharge", "boiler.temperature")
CUSTOM_IDENTIFIERS: tuple[tuple[str, str], ...] = (
    ("boiler.stateOfCharge", "%"),
    ("boiler.temperature", "°C"),
)
MAX_INTERVAL_S = 3600
WINDOW_TICKS = 3600
UNKNOWN_IDENTIFIER = "sim.unknown.identifier"
_REGISTER_ORIGIN_S = 946_684_800  # 2000-01-01T00:00Z: the register estimate grows from here
# purposes, so no two random streams share a seed
_DAY, _NOISE, _BOILER, _WEATHER, _GAPS, _OUTAGE, _BAD = range(1, 8)  # 0: households

GapWindow = tuple[datetime, datetime] | tuple[datetime, datetime, str]


class MalformedKind(StrEnum):
    """Broken messages the simulator can send; each value is the reject reason the hub owes."""

    MALFORMED_JSON = "malformed_json"
    UNKNOWN_IDENTIFIER = "unknown_identifier"
    STRING_VALUE = "wrong_value_type"
    MISSING_OFFSET = "missing_offset"
    BAD_DATE = "bad_date"


MALFORMED_CYCLE = tuple(MalformedKind)


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
        self._boilers: list[int] = []  # household of each boiler row
        meters: list[int] = []
        boilers: list[int] = []
        for h, home in enumerate(self.households):
            site = home.site.id
            meters.append(self._add(f"{site}-meter", "smart-meter", site, METER_IDENTIFIERS))
            for appliance in home.site.appliance_types:
                if appliance in pf.PLUG_SUFFIX:
                    col = self._add(
                        f"{site}-plug-{pf.PLUG_SUFFIX[appliance]}",
                        "smart-plug",
                        site,
                        PLUG_IDENTIFIERS,
                    )
                    self._plugs.append((col, h, appliance))
            if "boiler" in home.site.appliance_types:
                boilers.append(self._add(f"{site}-boiler", "boiler", site, BOILER_IDENTIFIERS))
                self._boilers.append(h)
        self._meter_cols = np.array(meters, dtype=np.int64)
        self._boiler_cols = np.array(boilers, dtype=np.int64)
        self._columns = self._specs[-1].last
        self._reg_end = np.full(households, -1, dtype=np.int64)
        self._reg_value = np.zeros(households)
        self._cache: dict[str, dict[Any, Any]] = {k: {} for k in ("day", "plan", "boiler", "win")}

    def _add(self, hardware_id: str, kind: str, site: str, names: tuple[str, ...]) -> int:
        first = self._specs[-1].last if self._specs else 0
        self._specs.append(_Spec(hardware_id, names, first, first + len(names)))
        self._devices.append(Device(self.tenant, hardware_id, kind, site, f"{site} {kind}"))
        return first

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
            ds = int(datetime.combine(day, time(0), tzinfo=self.zone).timestamp())
            de = int(
                datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.zone).timestamp()
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
        while True:
            ds, de, _ = self._day(day)
            if ds >= stop:
                return
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
                rng = np.random.default_rng([self.seed, _DAY, home.index, day.toordinal()])
                factors.append(math.exp(rng.normal(0.0, 0.15) - 0.15**2 / 2))
                cycles.append(
                    pf.whitegood_day(
                        rng,
                        ds,
                        weekend,
                        home.site.appliance_types,
                        home.habits,
                        home.site.experiment != "control",
                    )
                )
            return np.array(factors), cycles

        return _memo(self._cache["plan"], day, make)

    def _boiler_day(self, day: date) -> tuple[float, np.ndarray, np.ndarray]:
        """(start, state of charge, cumulative heat) of every boiler for one boiler day."""

        def make() -> tuple[float, np.ndarray, np.ndarray]:
            weekend = day.weekday() >= 5
            homes = [self.households[h] for h in self._boilers]
            draws = np.stack(
                [
                    pf.boiler_draws(
                        np.random.default_rng([self.seed, _BOILER, home.index, day.toordinal()]),
                        weekend,
                        home.hot_water,
                    )
                    for home in homes
                ]
            )
            soc, heat = pf.simulate_boilers(
                draws,
                np.array([h.boiler_kwh for h in homes]),
                np.array([h.boiler_kw for h in homes]),
                np.array([h.boiler_loss_kw for h in homes]),
            )
            return self._day(day)[0] + pf.BOILER_OFFSET_S, soc, heat

        return _memo(self._cache["boiler"], day, make)

    def _boiler_window(self, day: date, times: np.ndarray, edges: np.ndarray):
        """Element power over each tick and state of charge at each tick, ``(boilers, ticks)``.

        Ticks before 05:00 belong to yesterday's boiler day: both are full then, so they join.
        """
        prev, cur = self._boiler_day(day - timedelta(days=1)), self._boiler_day(day)
        switch = cur[0]

        def lerp(grid: np.ndarray, start: float, at: np.ndarray) -> np.ndarray:
            x = np.clip((at - start) / pf.BOILER_STEP_S, 0.0, pf.BOILER_STEPS)
            i = np.minimum(np.floor(x).astype(np.int64), pf.BOILER_STEPS - 1)
            w = x - i
            return grid[:, i] * (1.0 - w) + grid[:, i + 1] * w

        def joined(index: int, at: np.ndarray, carry: bool) -> np.ndarray:
            early = at < switch
            out = np.empty((len(self._boilers), at.size))
            out[:, early] = lerp(prev[index], prev[0], at[early])
            out[:, ~early] = lerp(cur[index], cur[0], at[~early])
            if carry:  # cumulative heat continues from yesterday's total at the switch
                out[:, ~early] += lerp(prev[index], prev[0], np.array([switch], dtype=float))
            return out

        energy = joined(2, edges, carry=True)
        return np.diff(energy, axis=1) * 3600 / np.diff(edges), joined(1, times, carry=False)

    def _window(self, day: date, k: int, dt: int) -> _Window:
        return _memo(self._cache["win"], (day, k, dt), lambda: self._compute(day, k, dt), size=2)

    def _compute(self, day: date, k: int, dt: int) -> _Window:
        """Every device's values for window ``k`` of a local day, for the whole fleet at once."""
        from scipy.signal import lfilter  # lazy: scipy comes with pvlib but is slow to import

        ds, de, quarter_offsets = self._day(day)
        day_first = -(-ds // dt) * dt
        in_day = -(-(de - day_first) // dt)
        ticks = np.arange(k * WINDOW_TICKS, min(in_day, (k + 1) * WINDOW_TICKS), dtype=np.int64)
        times = day_first + ticks * dt
        edges = np.append(times, times[-1] + dt).astype(float)
        mid = times + dt / 2
        midnight = (day - date(1970, 1, 1)).days * pf.DAY_S  # local midnight as naive epoch s
        wall = times + quarter_offsets[(times - ds) // 900] - midnight + dt / 2
        homes = self.households
        n = times.size
        noise = np.stack(
            [
                np.random.default_rng(
                    [self.seed, _NOISE, home.index, day.toordinal(), k, dt]
                ).standard_normal((5, n + 1))
                for home in homes
            ]
        )

        # base load: H0 at the household's own clock, a daily factor, and correlated noise
        factors, cycles = self._plan(day)
        sigma, phi = 0.12 * (900 / dt) ** 0.15, math.exp(-dt / 180)
        wobble, _ = lfilter(
            [math.sqrt(1 - phi * phi)],
            [1.0, -phi],
            noise[:, 0, 1:],
            axis=1,
            zi=phi * noise[:, 0, :1],
        )
        shifts = np.array([h.shift_s for h in homes])
        base = (
            np.array([h.base_kwh for h in homes])[:, None]
            * factors[:, None]
            * pf.h0_at(day, wall[None, :] + shifts[:, None])
            * np.exp(sigma * wobble - sigma * sigma / 2)
        )

        # PV: clear sky on the household's roof, regional clouds, a little local noise
        quarters = (de - ds) // 900 + 2
        sky = pf.sky_transmission(
            np.random.default_rng([self.seed, _WEATHER, day.toordinal()]), day.month, quarters
        )
        clear = pf.clear_sky_per_kwp(mid) * np.interp(mid, ds + 900.0 * np.arange(quarters), sky)
        roofs = np.array([h.pv_roof for h in homes])
        pv_scale = np.array([h.pv_kwp * h.pv_yield for h in homes])[:, None]
        pv = pv_scale * clear[roofs] * (1 + 0.04 * (900 / dt) ** 0.2 * noise[:, 1, 1:])
        pv = np.maximum(pv, 0.0)

        values = np.zeros((n, self._columns))
        load = base
        previous = self._plan(day - timedelta(days=1))[1]
        for col, h, appliance in self._plugs:
            runs = previous[h].get(appliance, []) + cycles[h].get(appliance, [])
            power = pf.mean_power(edges, runs) + homes[h].standby_kw
            load[h] += power
            values[:, col] = np.round(power, 4)
        if self._boilers:
            power, soc = self._boiler_window(day, times.astype(float), edges)
            load[self._boilers] += power
            values[:, self._boiler_cols] = np.round(power, 4).T
            values[:, self._boiler_cols + 1] = np.round(100 * soc, 1).T
            values[:, self._boiler_cols + 2] = np.round(pf.boiler_temperature(soc), 1).T

        consumed = np.round(np.maximum(load - pv, 0.0), 4) + 0.0
        injected = np.round(np.maximum(pv - load, 0.0), 4) + 0.0
        values[:, self._meter_cols] = consumed.T
        values[:, self._meter_cols + 1] = injected.T
        feeder = pf.h0_at(day, wall) * 8760  # fleet-wide load level: the evening voltage dip
        for phase in range(3):
            offset = np.array([h.voltage_offset[phase] for h in homes])[:, None]
            volts = (
                233.0
                + offset
                - 3.0 * feeder[None, :]
                - 0.5 * consumed
                + 0.9 * injected
                + 0.4 * noise[:, 2 + phase, 1:]
            )
            values[:, self._meter_cols + 3 + phase] = np.round(volts, 1).T
        dates = [datetime.fromtimestamp(t, self.zone).isoformat() for t in times.tolist()]
        dates = [d[:-6] + "Z" if d.endswith("+00:00") else d for d in dates]
        return _Window(times, dates, values)

    # --- registers, gaps, faults ---------------------------------------------------------------

    def _registers(self, values: np.ndarray, first: int, dt: int) -> None:
        """Fill the register columns of a slice, continuing this fleet's previous call if it
        ended exactly here, else from an estimate that only grows with the date."""
        estimate = np.array(
            [
                h.register_kwh
                + h.annual_kwh / 365.25 * max(first - _REGISTER_ORIGIN_S, 0) / pf.DAY_S
                for h in self.households
            ]
        )
        known = self._reg_end >= 0
        start = np.where(
            self._reg_end == first,
            self._reg_value,
            np.where(
                known & (first > self._reg_end), np.maximum(estimate, self._reg_value), estimate
            ),
        )
        steps = np.cumsum(values[:, self._meter_cols] * (dt / 3600), axis=0)
        before = np.vstack([np.zeros((1, steps.shape[1])), steps[:-1]])
        values[:, self._meter_cols + 2] = np.round(start + before, 4)
        self._reg_end[:] = first + len(values) * dt
        self._reg_value = start + steps[-1]

    def _missing(
        self,
        day: date,
        k: int,
        dt: int,
        window: _Window,
        a: int,
        b: int,
        gap_rate: float,
        outage_rate: float,
        gap_windows: Sequence[GapWindow],
    ) -> np.ndarray | None:
        """``(ticks, devices)`` True where a device stays silent, or None if none does."""
        if gap_rate <= 0 and outage_rate <= 0 and not gap_windows:
            return None
        times, devices = window.times[a:b], len(self._specs)
        missing = np.zeros((b - a, devices), dtype=bool)
        if gap_rate > 0:
            rng = np.random.default_rng([self.seed, _GAPS, day.toordinal(), k, dt])
            missing |= rng.random((window.times.size, devices))[a:b] < gap_rate
        if outage_rate > 0:
            ds, de, _ = self._day(day)
            rng = np.random.default_rng([self.seed, _OUTAGE, day.toordinal()])
            hit, begin = rng.random(devices) < outage_rate, rng.uniform(ds, de, devices)
            end = begin + rng.uniform(3600, 6 * 3600, devices)
            missing |= hit & (times[:, None] >= begin) & (times[:, None] < end)
        for gap in gap_windows:
            lo, hi = gap[0].timestamp(), gap[1].timestamp()
            who = gap[2] if len(gap) > 2 else None  # type: ignore[misc]
            cols = [i for i, d in enumerate(self._devices) if who in (None, d.hardware_id, d.site)]
            rows = (times >= lo) & (times < hi)
            missing[np.ix_(rows, cols)] = True
        return missing if missing.any() else None

    @staticmethod
    def _malformed(kind: MalformedKind, msg: DeviceMeasurements) -> bytes:
        request = msg.request
        measurements, date_ = dict(request.measurements), request.eventDate or ""
        name, value = next(iter(measurements.items()))
        if kind is MalformedKind.MALFORMED_JSON:
            return encode(msg)[:-3]  # cut inside the eventDate string: unterminated JSON
        if kind is MalformedKind.UNKNOWN_IDENTIFIER:
            measurements = {UNKNOWN_IDENTIFIER: value, **measurements}
            del measurements[name]
        elif kind is MalformedKind.STRING_VALUE:
            measurements[name] = str(value)
        elif kind is MalformedKind.MISSING_OFFSET:
            date_ = date_[:19]
        else:  # a European-style date, as a hand-made gateway might send
            date_ = f"{date_[8:10]}/{date_[5:7]}/{date_[:4]} {date_[11:16]}"
        return encode(
            DeviceMeasurements(
                msg.hardwareId, MeasurementsRequest(measurements, request.updateState, date_)
            )
        )

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
        tick), at most ``batch_size`` per list. ``gap_rate``: probability a device's reading is
        missing at a tick; ``outage_rate``: probability a device is silent for one 1-6 h window
        of a day; ``gap_windows``: explicit silent spans for everyone, a site or a device.
        ``malformed_rate``: probability a message is replaced by a broken one, the kinds in
        ``MALFORMED_CYCLE`` order. Arguments are checked now, values made lazily.
        """
        first, count = self._tick_span(start, end, interval_s)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for rate in (gap_rate, malformed_rate, outage_rate):
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rates must be within [0, 1]")
        for gap in gap_windows:
            if gap[0].tzinfo is None or gap[1].tzinfo is None:
                raise ValueError("gap windows need aware datetimes")
        return self._generate(
            first,
            count,
            interval_s,
            batch_size,
            gap_rate,
            malformed_rate,
            update_state,
            outage_rate,
            tuple(gap_windows),
        )

    def _generate(
        self,
        first: int,
        count: int,
        dt: int,
        batch_size: int,
        gap_rate: float,
        malformed_rate: float,
        update_state: bool,
        outage_rate: float,
        gap_windows: tuple[GapWindow, ...],
    ) -> Iterator[list[tuple[str, bytes]]]:
        out: list[tuple[str, bytes]] = []
        broken = 0
        specs = [(s.hardware_id, s.names, s.first, s.last) for s in self._specs]
        for day, k, a, b in self._slices(first, count, dt):
            window = self._window(day, k, dt)
            values = window.values[a:b].copy()
            self._registers(values, int(window.times[a]), dt)
            missing = self._missing(day, k, dt, window, a, b, gap_rate, outage_rate, gap_windows)
            bad = None
            if malformed_rate > 0:
                rng = np.random.default_rng([self.seed, _BAD, day.toordinal(), k, dt])
                bad = rng.random((window.times.size, len(specs)))[a:b] < malformed_rate
            for j, row in enumerate(values.tolist()):
                event_date = window.dates[a + j]
                skip = missing[j].tolist() if missing is not None else None
                spoil = bad[j].tolist() if bad is not None else None
                for d, (hardware_id, names, lo, hi) in enumerate(specs):
                    if skip is not None and skip[d]:
                        continue
                    msg = DeviceMeasurements(
                        hardware_id,
                        MeasurementsRequest(
                            dict(zip(names, row[lo:hi], strict=False)), update_state, event_date
                        ),
                    )
                    if spoil is not None and spoil[d]:
                        payload = self._malformed(MALFORMED_CYCLE[broken % 5], msg)
                        broken += 1
                    else:
                        payload = encode(msg)
                    out.append((hardware_id, payload))
                    if len(out) >= batch_size:
                        yield out
                        out = []
        if out:
            yield out
