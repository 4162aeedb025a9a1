"""Outage detection (G1, seed 002 §7.1): which part of the grid lost supply, from when, and
when it came back — from the last gasps of the meters mapped onto the topology.

Convert → solve → results:

* :func:`outage_grid` maps meters (``hardwareId``) to topology nodes — devices attached to the
  topology, and the devices of attached sites — and precomputes, from the topology's own walk,
  each node's path up and the number of meters below it.
* :class:`OutageDetector` is fed :class:`MeterSignal` records in time order (last gasp, power
  restored, or any fresh reading, which proves the meter is powered) and returns the
  :data:`OutageEvent` records each one causes, so it can run on arrival; :func:`detect_outages`
  runs a batch through it.

The rule (every threshold is a field of :class:`OutageRules`):

1. A meter is *dark* from its last gasp until a power-restore alert or a reading stamped after
   the gasp. A dark meter *counts* while its gasp is at most ``window`` old, or while it sits in
   an ongoing outage: a last-gasp storm arrives within seconds to minutes, so a meter that died
   alone hours ago does not pull a fresh outage upstream, yet a long outage is not forgotten.
2. A node *qualifies* when at least ``min_meters`` meters below it count and they are at least
   ``fraction`` of the meters below it. With ``min_meters`` ≥ 2 a single meter's last gasp is
   never an outage (a meter fault, a customer's own fuse); with ``fraction`` < 1 an outage is
   found although some last gasps are lost, as they are on PLC and radio networks.
3. Each topmost qualifying node is one outage. Its faulty element is located by the lowest common
   ancestor of the counting meters (``deepest``), widened up to the highest node that feeds
   exactly the same meters (``node``): the fault is on the path between them, and no meter
   can tell where on it. ``scope`` says what is out: a whole secondary substation, LV feeder, MV
   feeder or primary substation when ``node`` is one, else a section of a feeder.
4. Events reconcile the new picture with the ongoing outages: a new area starts an outage; an
   area that grows or shrinks moves it (:class:`OutageRelocated`, e.g. feeder → substation as
   more gasps arrive); outages absorbed by a wider one end as ``merged``; an outage whose area
   no longer qualifies ends as ``restored`` at the signal that brought it below the threshold.

A restored outage ends at the first power-restore (or fresh reading) of one of its meters after
it started: when a fault is cleared every meter regains power at once, and the last restore
messages may trail by minutes.

Signals may arrive late (a reading stamped before the newest signal): the detector's clock is the
newest time seen, and events are stamped with it. Limits: the topology must reflect the switching
state (a back-fed section belongs to its new feeder); meters on unsupplied nodes are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from gridhub.domain.topology import NodeKind, Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_METERS",
    "MeterSignal",
    "Outage",
    "OutageDetector",
    "OutageEnded",
    "OutageEvent",
    "OutageGrid",
    "OutageRelocated",
    "OutageRules",
    "OutageScope",
    "OutageStarted",
    "SignalKind",
    "detect_outages",
    "outage_grid",
]

MAX_METERS = 1_000_000
MAX_BATCH = 1_000_000


class SignalKind(StrEnum):
    LAST_GASP = "last_gasp"
    POWER_RESTORED = "power_restored"
    READING = "reading"  # any measurement: the meter had power at ``at``


class OutageScope(StrEnum):
    PRIMARY_SUBSTATION = "primary_substation"
    MV_FEEDER = "mv_feeder"
    SECONDARY_SUBSTATION = "secondary_substation"
    LV_FEEDER = "lv_feeder"
    SECTION = "section"  # part of a feeder, below ``node``


_SCOPE_OF = {
    NodeKind.PRIMARY_SUBSTATION: OutageScope.PRIMARY_SUBSTATION,
    NodeKind.MV_FEEDER: OutageScope.MV_FEEDER,
    NodeKind.SECONDARY_SUBSTATION: OutageScope.SECONDARY_SUBSTATION,
    NodeKind.LV_FEEDER: OutageScope.LV_FEEDER,
}


@dataclass(frozen=True, slots=True)
class MeterSignal:
    hardware_id: str
    at: datetime
    kind: SignalKind


@dataclass(frozen=True, slots=True)
class OutageRules:
    fraction: float = 0.6
    min_meters: int = 2
    window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise InvalidRequest(f"fraction must be in (0, 1], got {self.fraction}")
        if self.min_meters < 1:
            raise InvalidRequest("min_meters must be >= 1")
        if self.window <= timedelta(0):
            raise InvalidRequest("window must be positive")


@dataclass(frozen=True, slots=True)
class OutageGrid:
    """Meters on a topology, with what the detector needs of the topology."""

    topology: Topology
    meter_node: Mapping[str, str]
    paths: Mapping[str, tuple[str, ...]]  # node -> nodes from it up to its supply root
    meters_below: Mapping[str, int]  # node -> number of meters below it (itself included)


def outage_grid(
    topology: Topology, site_devices: Mapping[str, Iterable[str]] | None = None
) -> OutageGrid:
    """Meters of ``topology``: its attached devices, plus each attached site's devices
    (``site id → hardwareIds``, from the registry). A meter placed twice is refused."""
    meter_node: dict[str, str] = {}

    def place(meter: str, node: str) -> None:
        if meter in meter_node and meter_node[meter] != node:
            raise InvalidRequest(f"meter {meter!r} is placed at {meter_node[meter]!r} and {node!r}")
        meter_node[meter] = node
        if len(meter_node) > MAX_METERS:
            raise InvalidRequest(f"at most {MAX_METERS} meters per grid")

    for device in topology.devices:
        place(device.hardware_id, device.node)
    for site, meters in (site_devices or {}).items():
        node = topology.site_node(site)
        for meter in meters:
            place(meter, node)
    supplied = {m: n for m, n in meter_node.items() if topology.is_supplied(n)}
    paths = {node: topology.supply_path(node).nodes for node in set(supplied.values())}
    below: dict[str, int] = {}
    for node in supplied.values():
        for up in paths[node]:
            below[up] = below.get(up, 0) + 1
    for node in list(below):
        paths.setdefault(node, topology.supply_path(node).nodes)
    return OutageGrid(topology, supplied, paths, below)


@dataclass(frozen=True, slots=True)
class Outage:
    id: str
    node: str  # the highest node feeding exactly the meters out
    deepest: str  # the lowest common node of the meters out: the fault is between the two
    scope: OutageScope
    lv_feeder: str | None  # the LV feeder of ``deepest``: None when several feeders are out
    secondary_substation: str | None
    started_at: datetime  # the earliest last gasp of its meters
    meters_out: int
    meters_total: int  # meters below ``node``


@dataclass(frozen=True, slots=True)
class OutageStarted:
    outage: Outage
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class OutageRelocated:
    outage: Outage  # as it is now
    previous_node: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OutageEnded:
    outage: Outage  # as it was last
    ended_at: datetime
    reason: str  # "restored" or "merged"
    merged_into: str | None = None

    @property
    def duration(self) -> timedelta:
        return self.ended_at - self.outage.started_at


OutageEvent = OutageStarted | OutageRelocated | OutageEnded


@dataclass
class OutageDetector:
    """The incremental detector: :meth:`feed` one signal, get the events it causes."""

    grid: OutageGrid
    rules: OutageRules = field(default_factory=OutageRules)
    dark: dict[str, datetime] = field(default_factory=dict)  # meter -> its last gasp
    ongoing: dict[str, Outage] = field(default_factory=dict)
    restored: dict[str, datetime] = field(default_factory=dict)  # meter -> when power came back
    unmapped: int = 0  # signals from meters not on the grid
    now: datetime | None = None  # the newest time seen
    _serial: int = 0

    def feed(self, signal: MeterSignal) -> list[OutageEvent]:
        now = signal.at if self.now is None else max(self.now, signal.at)
        self.now = now
        meter = signal.hardware_id
        if meter not in self.grid.meter_node:
            self.unmapped += 1
            return []
        gasp = self.dark.get(meter)
        if signal.kind is SignalKind.LAST_GASP:
            if gasp is not None and gasp <= signal.at:
                return []  # a repeated gasp: dark since the first
            if meter in self.restored and self.restored[meter] > signal.at:
                return []  # a late gasp of a meter already back
            self.dark[meter] = signal.at
        elif gasp is not None and (signal.kind is SignalKind.POWER_RESTORED or signal.at > gasp):
            del self.dark[meter]
            self.restored[meter] = max(signal.at, gasp)
        else:
            return []  # nothing changed (a reading of a live meter: the usual case)
        return self._reconcile(now)

    def advance(self, now: datetime) -> list[OutageEvent]:
        """Let time pass without a signal: gasps age out of ``window``."""
        self.now = now if self.now is None else max(self.now, now)
        return self._reconcile(self.now)

    def _restored_at(self, outage: Outage, now: datetime) -> datetime:
        """The first sign of power among the outage's meters after it started."""
        paths, nodes = self.grid.paths, self.grid.meter_node
        back = [
            at
            for meter, at in self.restored.items()
            if at >= outage.started_at and outage.node in paths[nodes[meter]]
        ]
        return min(back, default=now)

    # --- the rule ------------------------------------------------------------------------

    def _counting(self, now: datetime) -> dict[str, datetime]:
        in_outage = {o.node for o in self.ongoing.values()}
        fresh = now - self.rules.window
        paths, nodes = self.grid.paths, self.grid.meter_node
        return {
            meter: gasp
            for meter, gasp in self.dark.items()
            if gasp >= fresh or not in_outage.isdisjoint(paths[nodes[meter]])
        }

    def _areas(self, now: datetime) -> list[Outage]:
        counting = self._counting(now)
        paths, nodes, total = self.grid.paths, self.grid.meter_node, self.grid.meters_below
        out: dict[str, list[str]] = {}
        for meter in counting:
            for up in paths[nodes[meter]]:
                out.setdefault(up, []).append(meter)
        rules = self.rules

        def qualifies(node: str) -> bool:
            count = len(out.get(node, ()))
            return count >= rules.min_meters and count >= rules.fraction * total[node] - 1e-9

        tops = [
            node
            for node in out
            if qualifies(node) and not any(qualifies(up) for up in paths[node][1:])
        ]
        areas = []
        for top in sorted(tops, key=lambda n: (-len(paths[n]), n)):
            meters = out[top]
            deepest = _common_node([paths[nodes[m]] for m in meters])
            node = deepest
            for up in paths[deepest][1:]:
                if total[up] != total[deepest]:
                    break
                node = up
            supply = self.grid.topology.supply_path(deepest)
            scope = _SCOPE_OF.get(self.grid.topology.node(node).kind, OutageScope.SECTION)
            started = min(counting[m] for m in meters)
            areas.append(
                Outage("", node, deepest, scope, supply.lv_feeder, supply.secondary_substation,
                       started, len(meters), total[node])
            )  # fmt: skip
        return areas

    def _reconcile(self, now: datetime) -> list[OutageEvent]:
        paths = self.grid.paths
        events: list[OutageEvent] = []
        carried: dict[str, Outage] = {}

        def overlaps(a: str, b: str) -> bool:
            return a in paths[b] or b in paths[a]

        for area in self._areas(now):
            old = sorted(
                (o for o in self.ongoing.values() if overlaps(o.node, area.node)),
                key=lambda o: (o.started_at, o.id),
            )
            free = [o for o in old if o.id not in carried]
            if free:
                carrier = free[0]
                started = min(area.started_at, carrier.started_at)
                now_outage = _with(area, carrier.id, started)
                if carrier.node != area.node:
                    events.append(OutageRelocated(now_outage, carrier.node, now))
                for other in free[1:]:
                    events.append(OutageEnded(other, now, "merged", carrier.id))
                    carried[other.id] = other
                carried[carrier.id] = now_outage
            else:
                self._serial += 1
                started = min((o.started_at for o in old), default=area.started_at)
                new = _with(area, f"{area.node}@{self._serial}", min(started, area.started_at))
                events.append(OutageStarted(new, now))
                carried[new.id] = new
        for outage in self.ongoing.values():
            if outage.id not in carried:
                events.append(OutageEnded(outage, self._restored_at(outage, now), "restored"))
        self.ongoing = {
            o.id: o
            for o in carried.values()
            if not any(isinstance(e, OutageEnded) and e.outage.id == o.id for e in events)
        }
        return events


def _with(area: Outage, outage_id: str, started: datetime) -> Outage:
    return replace(area, id=outage_id, started_at=started)


def _common_node(paths: list[tuple[str, ...]]) -> str:
    """The lowest node on every path (paths run from a node up to its root)."""
    first = paths[0]
    shared = set(first).intersection(*paths[1:])
    return next(node for node in first if node in shared)


def detect_outages(
    grid: OutageGrid, signals: Iterable[MeterSignal], rules: OutageRules | None = None
) -> tuple[list[OutageEvent], OutageDetector]:
    """Run a batch of signals (any order; sorted by time, stably) through a new detector."""
    batch = list(signals)
    if len(batch) > MAX_BATCH:
        raise InvalidRequest(f"at most {MAX_BATCH} signals per batch")
    detector = OutageDetector(grid, rules or OutageRules())
    events: list[OutageEvent] = []
    for signal in sorted(batch, key=lambda s: s.at):
        events += detector.feed(signal)
    return events, detector
