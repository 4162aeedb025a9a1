"""LV fault location (G2, seed 004 §4.3.2.9.1): which section of a radial feeder holds a fault,
from the sensors that saw fault current.

Convert → solve → results:

* :func:`sensor_layout` places the feeder's sensors (sensor id → node) on the topology and keeps,
  for each, its path up to the supply root (the topology's own walk; nothing is re-walked here).
* Detection has the seed's two modes. *Distributed*: each sensor analyses its own (V, I) and
  sends a :class:`FaultReport` at once. *Centralised*: the LV unit polls (V, I) from every
  sensor and decides itself; :func:`detect_faults` turns polled :class:`SensorSample` records into
  the same reports with the thresholds of :class:`DetectionThresholds`. Either way
  :func:`locate_fault` locates.
* The seed's rule: fault current flows from the source through every sensor upstream of the fault
  and through none below it, so the fault lies *after the most downstream reporting sensor*; if
  sensors follow it, *between it and the sensor(s) immediately after* (one per branch when the
  feeder forks); otherwise *after the last sensor*. :class:`FaultLocation` names that section:
  its upstream sensor and node, the downstream sensors, its nodes and lines and their length.

Reports that contradict a radial picture are not dropped silently: a reporting sensor off the
path to the most downstream one is listed in ``conflicting`` (reverse current from PV on another
branch, a sensor fault), and a sensor on that path that stayed silent in ``silent``. Reports of one
fault are those within ``window`` of the latest one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_REPORTS",
    "MAX_SENSORS",
    "DetectionThresholds",
    "FaultDetector",
    "FaultLocation",
    "FaultLocator",
    "FaultReport",
    "SensorLayout",
    "SensorSample",
    "detect_faults",
    "locate_fault",
    "sensor_layout",
]

MAX_SENSORS = 1_000  # an LV feeder has tens
MAX_REPORTS = 100_000
DEFAULT_WINDOW = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class FaultReport:
    """A sensor saw fault conditions at ``at`` (its own alarm, or decided centrally)."""

    sensor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SensorSample:
    """One polled measurement (centralised mode): RMS voltage (V) and current (A)."""

    sensor: str
    at: datetime
    voltage_v: float
    current_a: float


@dataclass(frozen=True, slots=True)
class DetectionThresholds:
    """Centralised detection: a sample shows fault current when its current exceeds
    ``current_a`` (set it above anything the sensor carries in service, e.g. 1.5× the rating of
    the cable or transformer it watches), or exceeds ``current_ratio`` times the sensor's last
    healthy current (the pre-fault load) while the voltage has sagged below ``voltage_sag_pu`` of
    nominal. A moderate overcurrent without a sag is an overload or an inrush, not a short
    circuit; a sensor near the transformer sees little sag for a fault far down the feeder, so
    an absolute overcurrent needs none."""

    nominal_v: float = 230.0
    current_a: float = 1_000.0
    current_ratio: float = 3.0
    voltage_sag_pu: float = 0.9


@dataclass(frozen=True, slots=True)
class SensorLayout:
    """Sensors on a radial feeder and the path of each to the supply root."""

    topology: Topology
    sensors: Mapping[str, str]  # sensor id -> node
    paths: Mapping[str, tuple[str, ...]]  # sensor id -> nodes from it up to the root
    at_node: Mapping[str, tuple[str, ...]]  # node -> sensor ids there


@dataclass(frozen=True, slots=True)
class FaultLocation:
    upstream_sensor: str  # the most downstream sensor that saw fault current
    upstream_node: str
    downstream_sensors: tuple[str, ...]  # the next sensors below; () when the fault is after
    downstream_nodes: tuple[str, ...]  # the last sensor
    nodes: tuple[str, ...]  # the nodes of the section (the upstream node first)
    lines: tuple[str, ...]  # the lines in it
    length_km: float  # their total length (0 for lines of unknown length)
    after_last_sensor: bool
    reported_at: datetime  # the first report of this fault
    reporting: tuple[str, ...]  # the reports used, upstream first
    conflicting: tuple[str, ...]  # reports off the path to the upstream sensor
    silent: tuple[str, ...]  # sensors on that path that did not report


def sensor_layout(topology: Topology, sensors: Mapping[str, str]) -> SensorLayout:
    """Place sensors (id → node) on ``topology``. Every node must exist and be supplied; the
    grid must be radial (fault current has one path), which :meth:`Topology.is_radial` decides."""
    if len(sensors) > MAX_SENSORS:
        raise InvalidRequest(f"at most {MAX_SENSORS} sensors per layout")
    if not topology.is_radial():
        loops = ", ".join(branch for branch, _, _ in topology.loop_branches()[:5])
        raise InvalidRequest(f"fault location needs a radial grid; loops close through {loops}")
    paths: dict[str, tuple[str, ...]] = {}
    at_node: dict[str, list[str]] = {}
    known = {n.id for n in topology.nodes}
    for sensor, node in sensors.items():
        if node not in known:
            raise InvalidRequest(f"sensor {sensor!r} is on unknown node {node[:64]!r}")
        if not topology.is_supplied(node):
            raise InvalidRequest(f"sensor {sensor!r} is on node {node!r}, which is not supplied")
        paths[sensor] = topology.supply_path(node).nodes
        at_node.setdefault(node, []).append(sensor)
    frozen = {node: tuple(sorted(ids)) for node, ids in at_node.items()}
    return SensorLayout(topology, dict(sensors), paths, frozen)


@dataclass
class FaultDetector:
    """Centralised detection on arrival: :meth:`sample` takes one polled sample (in time order
    per sensor) and answers the :class:`FaultReport` it implies, or ``None``. A sensor reports
    once per fault: again only after a healthy sample."""

    layout: SensorLayout
    thresholds: DetectionThresholds = field(default_factory=DetectionThresholds)
    healthy_current: dict[str, float] = field(default_factory=dict)
    faulted: set[str] = field(default_factory=set)

    def sample(self, sample: SensorSample) -> FaultReport | None:
        if sample.sensor not in self.layout.sensors:
            raise InvalidRequest(f"unknown sensor {sample.sensor!r}")
        if not (math.isfinite(sample.voltage_v) and math.isfinite(sample.current_a)):
            raise InvalidRequest(f"sensor {sample.sensor!r}: non-finite sample at {sample.at}")
        t = self.thresholds
        base = self.healthy_current.get(sample.sensor)
        current = abs(sample.current_a)
        sag = sample.voltage_v < t.voltage_sag_pu * t.nominal_v
        relative = base is not None and base > 0 and current > t.current_ratio * base
        if current > t.current_a or (relative and sag):
            if sample.sensor not in self.faulted:
                self.faulted.add(sample.sensor)
                return FaultReport(sample.sensor, sample.at)
            return None
        self.faulted.discard(sample.sensor)
        self.healthy_current[sample.sensor] = current
        return None


def detect_faults(
    layout: SensorLayout,
    samples: Iterable[SensorSample],
    thresholds: DetectionThresholds = DetectionThresholds(),
) -> list[FaultReport]:
    """Centralised mode: the reports the polled samples imply, in time order (a
    :class:`FaultDetector` run over them)."""
    ordered = sorted(samples, key=lambda s: s.at)
    if len(ordered) > MAX_REPORTS:
        raise InvalidRequest(f"at most {MAX_REPORTS} samples at once")
    detector = FaultDetector(layout, thresholds)
    return [r for r in map(detector.sample, ordered) if r is not None]


def locate_fault(
    layout: SensorLayout, reports: Iterable[FaultReport], *, window: timedelta = DEFAULT_WINDOW
) -> FaultLocation | None:
    """The section holding the fault the latest reports (those within ``window`` of the newest)
    describe; ``None`` without reports."""
    all_reports = list(reports)
    if len(all_reports) > MAX_REPORTS:
        raise InvalidRequest(f"at most {MAX_REPORTS} reports at once")
    for report in all_reports:
        if report.sensor not in layout.sensors:
            raise InvalidRequest(f"unknown sensor {report.sensor!r}")
    if not all_reports:
        return None
    newest = max(r.at for r in all_reports)
    recent = [r for r in all_reports if r.at >= newest - window]
    first_at: dict[str, datetime] = {}
    for r in sorted(recent, key=lambda r: r.at):
        first_at.setdefault(r.sensor, r.at)
    paths = layout.paths
    # the most downstream reporter: the one whose path holds most other reporters, then deepest
    reporters = sorted(first_at)

    def support(sensor: str) -> tuple[int, int, str]:
        on_path = set(paths[sensor])
        held = sum(1 for other in reporters if layout.sensors[other] in on_path)
        return held, len(paths[sensor]), sensor

    deepest = max(reporters, key=support)
    on_path = set(paths[deepest])
    used = [s for s in reporters if layout.sensors[s] in on_path]
    conflicting = tuple(s for s in reporters if s not in used)
    used.sort(key=lambda s: (len(paths[s]), s))
    silent = tuple(
        sorted(s for s, node in layout.sensors.items() if node in on_path and s not in first_at)
    )
    upstream_node = layout.sensors[deepest]
    below, lines = _section(layout, upstream_node)
    next_sensors = tuple(sorted(s for node in below[1] for s in layout.at_node[node]))
    line_length = {line.id: line.length_km for line in layout.topology.lines}
    return FaultLocation(
        upstream_sensor=deepest,
        upstream_node=upstream_node,
        downstream_sensors=next_sensors,
        downstream_nodes=below[1],
        nodes=below[0],
        lines=lines,
        length_km=math.fsum(line_length[b] for b in lines),
        after_last_sensor=not next_sensors,
        reported_at=min(first_at[s] for s in used),
        reporting=tuple(used),
        conflicting=conflicting,
        silent=silent,
    )


@dataclass
class FaultLocator:
    """Distributed mode on arrival: each sensor report re-runs the location over the reports of
    the last ``window``; :meth:`report` answers the location when it is new or has moved (a
    report from further down narrows it), ``None`` when the report changes nothing."""

    layout: SensorLayout
    window: timedelta = DEFAULT_WINDOW
    reports: list[FaultReport] = field(default_factory=list)
    last: FaultLocation | None = None

    def report(self, report: FaultReport) -> FaultLocation | None:
        if report.sensor not in self.layout.sensors:
            raise InvalidRequest(f"unknown sensor {report.sensor!r}")
        newest = max([report.at, *(r.at for r in self.reports)])
        self.reports = [r for r in (*self.reports, report) if r.at >= newest - self.window]
        found = locate_fault(self.layout, self.reports, window=self.window)
        moved = found is not None and (
            self.last is None
            or (found.upstream_sensor, found.reported_at)
            != (self.last.upstream_sensor, self.last.reported_at)
        )
        self.last = found
        return found if moved else None


def _section(
    layout: SensorLayout, start: str
) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]]:
    """((section nodes, the sensor nodes bounding it below), line ids) from ``start`` down to
    the next sensor on every branch (the sensor nodes are included in the nodes)."""
    topology = layout.topology
    lines = {line.id for line in topology.lines}
    nodes, ends, edges = [start], [], []
    stack = [start]
    while stack:
        here = stack.pop()
        for child in topology.children(here):
            nodes.append(child)
            branch = topology.path_between(here, child)[1]
            edges += [b for b in branch if b in lines]
            if child in layout.at_node:
                ends.append(child)
            else:
                stack.append(child)
    return (tuple(nodes), tuple(sorted(ends))), tuple(edges)
