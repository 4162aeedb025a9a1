"""Fused luminaires (G3, seed 004 §4.3.2.9.2): which segment of a public-lighting feeder lost
light bulbs, from the impedance seen by voltage-and-current sensors along it.

The seed's method: the impedance a sensor sees, ``Z_i = U_i / I_i``, is all the luminaires below
it in parallel; a segment's own impedance follows from two consecutive sensors,
``Z_seg = Z_i·Z_(i+1) / (Z_(i+1) − Z_i)`` (the last segment: ``Z_k``). A fused bulb raises the
impedance of its segment and leaves the others as they were. Here the same relation is used in
admittance form, ``Y_seg = Y_i − Y_(i+1)`` with ``Y = I/U`` — equal, without dividing by a small
difference — and a segment's admittance is the sum of its luminaires' admittances, so the drop
says how many bulbs went out.

Why impedance and not current: a luminaire's current and power follow the supply voltage over
the night, its impedance stays. What is still done to stay clear of false alarms:

* sets with any sensor outside ``[min_voltage_pu, max_voltage_pu]`` of nominal are skipped (the
  seed's low-voltage condition, under which bulbs flicker), and so are the first ``warmup_sets``
  after the circuit switches on (discharge lamps start up drawing a different current);
* the baseline of each segment is the *median* of its last ``baseline_sets`` normal values, so
  a single odd set does not move it;
* a deviation must last ``persistence`` consecutive valid sets before it is reported (flicker
  passes); after a report the baseline restarts from the new level, so the next bulb in the same
  segment is found too, and a repair (admittance back up) is reported the same way.

Convert → solve → results: :func:`lighting_feeder` orders the sensors along the feeder (from the
topology's walk); :class:`LuminaireMonitor` is fed :class:`MonitoringSet` records in time order and
returns :class:`LuminairesFused`, :class:`LuminairesRepaired` and :class:`ScheduleMismatch`
events (the circuit off while it should be lit, or lit by day, when ``schedule`` is given).
"""

from __future__ import annotations

import cmath
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "LightingFeeder",
    "LuminaireEvent",
    "LuminaireMonitor",
    "LuminaireRules",
    "LuminairesFused",
    "LuminairesRepaired",
    "MonitoringSet",
    "ScheduleMismatch",
    "Segment",
    "SensorReading",
    "lighting_feeder",
    "segment_admittances",
]

MAX_SENSORS = 1_000


@dataclass(frozen=True, slots=True)
class Segment:
    """The luminaires between ``upstream`` and ``downstream`` sensor (``None``: to the end)."""

    index: int
    upstream: str
    downstream: str | None
    nodes: tuple[str, ...]  # from the upstream sensor's node down to the next sensor's node
    luminaires: int | None  # how many the segment has, when known


@dataclass(frozen=True, slots=True)
class LightingFeeder:
    name: str
    sensors: tuple[str, ...]  # from the feeder head down
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class SensorReading:
    voltage_v: float
    current_a: float
    power_factor: float = 1.0  # lagging; 1 for resistive loads

    @property
    def admittance(self) -> complex:
        phi = math.acos(self.power_factor)
        return cmath.rect(self.current_a / self.voltage_v, -phi)


@dataclass(frozen=True, slots=True)
class MonitoringSet:
    """Synchronised readings of every sensor of a feeder at one time."""

    at: datetime
    readings: Mapping[str, SensorReading]


@dataclass(frozen=True, slots=True)
class LuminaireRules:
    nominal_v: float = 230.0
    min_voltage_pu: float = 0.9
    max_voltage_pu: float = 1.1
    on_current_a: float = 0.05  # the head current above which the circuit counts as lit
    warmup_sets: int = 2
    baseline_sets: int = 6
    persistence: int = 3
    relative_change: float = 0.1  # threshold when a segment's luminaire count is unknown
    luminaire_fraction: float = 0.5  # with a known count n: this many bulbs' worth (of 1/n)
    schedule: Callable[[datetime], bool] | None = None  # should the circuit be lit at that time

    def __post_init__(self) -> None:
        for name in ("warmup_sets", "baseline_sets", "persistence"):
            if getattr(self, name) < (0 if name == "warmup_sets" else 1):
                raise InvalidRequest(f"{name} is too small")
        if not 0 < self.relative_change < 1 or not 0 < self.luminaire_fraction <= 1:
            raise InvalidRequest("relative_change and luminaire_fraction must be in (0, 1)")
        if not 0 < self.min_voltage_pu < 1 < self.max_voltage_pu:
            raise InvalidRequest("voltage band must contain 1 pu")


@dataclass(frozen=True, slots=True)
class LuminairesFused:
    segment: Segment
    first_seen: datetime
    confirmed_at: datetime
    baseline_s: float  # the segment's admittance before (siemens, magnitude)
    now_s: float  # and now (the median over the persistence sets)
    estimated_luminaires: int | None  # how many bulbs that is, when the count is known


@dataclass(frozen=True, slots=True)
class LuminairesRepaired:
    segment: Segment
    first_seen: datetime
    confirmed_at: datetime
    baseline_s: float
    now_s: float
    estimated_luminaires: int | None


@dataclass(frozen=True, slots=True)
class ScheduleMismatch:
    first_seen: datetime
    confirmed_at: datetime
    expected_on: bool  # True: dark while it should be lit


LuminaireEvent = LuminairesFused | LuminairesRepaired | ScheduleMismatch


def lighting_feeder(
    topology: Topology,
    sensors: Mapping[str, str],
    *,
    luminaires: Mapping[str, int] | None = None,
    name: str = "",
) -> LightingFeeder:
    """Order ``sensors`` (id → node) along the feeder. They must lie on one path from the
    feeder head (the seed's linear PL feeder), the first at the head. ``luminaires`` gives the
    number of bulbs of a segment, keyed by its upstream sensor."""
    if not 1 <= len(sensors) <= MAX_SENSORS:
        raise InvalidRequest(f"a lighting feeder needs 1..{MAX_SENSORS} sensors")
    known = {n.id for n in topology.nodes}
    for sensor, node in sensors.items():
        if node not in known or not topology.is_supplied(node):
            raise InvalidRequest(f"sensor {sensor!r} is on an unknown or unsupplied node {node!r}")
    if len(set(sensors.values())) != len(sensors):
        raise InvalidRequest("two sensors on one node see the same impedance")
    ordered = sorted(sensors, key=lambda s: len(topology.supply_path(sensors[s]).nodes))
    segments = []
    for index, sensor in enumerate(ordered):
        after = ordered[index + 1] if index + 1 < len(ordered) else None
        if after is not None:
            if sensors[sensor] not in topology.supply_path(sensors[after]).nodes:
                raise InvalidRequest(
                    f"sensor {after!r} is not fed through sensor {sensor!r}: the sensors must "
                    "lie on one path"
                )
            nodes = topology.path_between(sensors[sensor], sensors[after])[0]
        else:
            nodes = topology.downstream(sensors[sensor])
        count = (luminaires or {}).get(sensor)
        if count is not None and count < 1:
            raise InvalidRequest(f"segment after {sensor!r}: luminaire count must be >= 1")
        segments.append(Segment(index, sensor, after, nodes, count))
    unknown = set(luminaires or {}) - set(sensors)
    if unknown:
        raise InvalidRequest(f"luminaire counts for unknown sensors {sorted(unknown)[:5]}")
    return LightingFeeder(name or topology.name, tuple(ordered), tuple(segments))


def segment_admittances(
    feeder: LightingFeeder, readings: Mapping[str, SensorReading]
) -> list[float]:
    """``|Y_i − Y_(i+1)|`` per segment (siemens): the seed's segment impedances, inverted."""
    y = [readings[s].admittance for s in feeder.sensors]
    return [abs(y[i] - (y[i + 1] if i + 1 < len(y) else 0)) for i in range(len(y))]


@dataclass
class _Track:
    history: deque[float]
    unit: float | None = None  # one luminaire's admittance, from the first baseline
    pending: list[float] = field(default_factory=list)
    direction: int = 0
    first_seen: datetime | None = None


@dataclass
class LuminaireMonitor:
    feeder: LightingFeeder
    rules: LuminaireRules = field(default_factory=LuminaireRules)
    skipped: int = 0  # sets not used (voltage out of band, warm-up, circuit dark)
    _tracks: list[_Track] = field(default_factory=list)
    _lit_sets: int = 0
    _last: datetime | None = None
    _schedule_pending: list[datetime] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = self.rules.baseline_sets
        self._tracks = [_Track(deque(maxlen=size)) for _ in self.feeder.segments]

    def feed(self, monitoring: MonitoringSet) -> list[LuminaireEvent]:
        if self._last is not None and monitoring.at <= self._last:
            raise InvalidRequest(f"monitoring set at {monitoring.at} is not after {self._last}")
        missing = [s for s in self.feeder.sensors if s not in monitoring.readings]
        if missing:
            raise InvalidRequest(f"monitoring set at {monitoring.at} lacks sensors {missing[:5]}")
        for sensor in self.feeder.sensors:
            r = monitoring.readings[sensor]
            values = (r.voltage_v, r.current_a, r.power_factor)
            if not all(math.isfinite(v) for v in values) or r.voltage_v <= 0 or r.current_a < 0:
                raise InvalidRequest(f"sensor {sensor!r} at {monitoring.at}: bad reading {r}")
            if not 0 < r.power_factor <= 1:
                raise InvalidRequest(f"sensor {sensor!r}: power factor must be in (0, 1]")
        self._last = monitoring.at
        rules = self.rules
        head = monitoring.readings[self.feeder.sensors[0]]
        lit = head.current_a >= rules.on_current_a
        events: list[LuminaireEvent] = self._check_schedule(monitoring.at, lit)
        self._lit_sets = self._lit_sets + 1 if lit else 0
        band = (rules.min_voltage_pu * rules.nominal_v, rules.max_voltage_pu * rules.nominal_v)
        steady = all(band[0] <= r.voltage_v <= band[1] for r in monitoring.readings.values())
        if not lit or self._lit_sets <= rules.warmup_sets or not steady:
            self.skipped += 1
            return events
        admittances = segment_admittances(self.feeder, monitoring.readings)
        tracks = zip(self.feeder.segments, self._tracks, admittances, strict=True)
        for segment, track, value in tracks:
            event = self._step(segment, track, value, monitoring.at)
            if event is not None:
                events.append(event)
        return events

    def _step(
        self, segment: Segment, track: _Track, value: float, at: datetime
    ) -> LuminaireEvent | None:
        if len(track.history) < self.rules.baseline_sets:
            track.history.append(value)  # still learning the baseline
            if len(track.history) == self.rules.baseline_sets and segment.luminaires:
                track.unit = statistics.median(track.history) / segment.luminaires
            return None
        base = statistics.median(track.history)
        if base <= 0:
            return None
        # the smallest change worth a report: part of one bulb when the count is known
        if track.unit is not None:
            threshold = self.rules.luminaire_fraction * track.unit
        else:
            threshold = self.rules.relative_change * base
        delta = value - base
        direction = -1 if delta <= -threshold else (1 if delta >= threshold else 0)
        if direction == 0 or (track.direction and direction != track.direction):
            track.pending, track.direction, track.first_seen = [], 0, None
            if direction == 0:
                track.history.append(value)
                return None
        if not track.pending:
            track.direction, track.first_seen = direction, at
        track.pending.append(value)
        if len(track.pending) < self.rules.persistence:
            return None
        now = statistics.median(track.pending)
        estimate = None if track.unit is None else round(abs(now - base) / track.unit)
        first_seen = track.first_seen or at
        kind = LuminairesFused if direction < 0 else LuminairesRepaired
        track.history.clear()
        track.history.extend(track.pending[-self.rules.baseline_sets :])  # the new normal
        while len(track.history) < self.rules.baseline_sets:
            track.history.append(now)
        track.pending, track.direction, track.first_seen = [], 0, None
        return kind(segment, first_seen, at, base, now, estimate)

    def _check_schedule(self, at: datetime, lit: bool) -> list[LuminaireEvent]:
        schedule = self.rules.schedule
        if schedule is None:
            return []
        expected = schedule(at)
        if expected == lit:
            self._schedule_pending = []
            return []
        self._schedule_pending.append(at)
        if len(self._schedule_pending) != self.rules.persistence:
            return []  # reported once, when it has lasted long enough
        return [ScheduleMismatch(self._schedule_pending[0], at, expected)]
