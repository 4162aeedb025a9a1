"""Fused luminaires on arrival (G3): public-lighting sensors' readings in, fused segments out.

Sensors are the topology's attached devices registered with device type ``pl-sensor``. They are
grouped into lighting feeders by the LV feeder they hang on (else their secondary substation,
else their supply root); each group must lie on one path from its head, as the seed's linear
public-lighting feeder does (:func:`~gridhub.grid.luminaires.lighting_feeder`; a group that
does not is logged and left out, the others run).

A sensor sends ``electricity.voltage.rms.l1`` (V), ``electricity.current.rms.l1`` (A) and,
optionally, ``electricity.powerFactor.l1`` — the angle φ between voltage and current in rad, as
the seed's Table 2 has it (power factor cos φ; missing: 0, a resistive load). Readings of one
feeder stamped with the same time make one synchronised
:class:`~gridhub.grid.luminaires.MonitoringSet` once every sensor of the feeder has sent it;
an incomplete set is dropped once a later one is complete (a missed poll), and sets are fed in
time order to the feeder's :class:`~gridhub.grid.luminaires.LuminaireMonitor`.

Events, on ``grid:<node of the segment's upstream sensor>`` at the time the change was first
seen: ``grid.luminaire.fused`` (Warning) and ``grid.luminaire.repaired`` (Info), ``metadata``:
``feeder``, ``segment`` (index from the head), ``upstreamSensor``, ``downstreamSensor`` (null
for the last segment), ``nodes``, ``firstSeen``, ``confirmedAt``, ``baselineS`` and ``nowS``
(the segment's admittance before and now, siemens) and ``estimatedLuminaires`` (null: the bulb
count of the segment is not known to the hub, so the threshold is a 10 % change). After a restart
the monitors are rebuilt from the sensors' stored readings of the last ``REPLAY``; the events
found again are the same alerts, stored once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gridhub.domain.alert_types import LUMINAIRE_FUSED, LUMINAIRE_REPAIRED
from gridhub.domain.topology import Topology
from gridhub.domain.validation import from_us, to_us
from gridhub.errors import InvalidRequest
from gridhub.grid.luminaires import (
    LightingFeeder,
    LuminaireEvent,
    LuminaireMonitor,
    LuminaireRules,
    LuminairesFused,
    LuminairesRepaired,
    MonitoringSet,
    SensorReading,
    lighting_feeder,
)
from gridhub.grid.monitoring import GridAlert, TenantMonitor, WriteBack
from gridhub.grid.topologies import TopologyService
from gridhub.storage.base import SeriesQuery, Store
from gridhub.storage.registry import Registry

if TYPE_CHECKING:
    from gridhub.ingest.validate import Prepared

__all__ = ["PL_SENSOR_TYPE", "LuminaireService", "luminaire_alert"]

log = logging.getLogger(__name__)

PL_SENSOR_TYPE = "pl-sensor"
VOLTAGE = "electricity.voltage.rms.l1"
CURRENT = "electricity.current.rms.l1"
ANGLE = "electricity.powerFactor.l1"
REPLAY = timedelta(hours=6)  # enough sets for a baseline at one per minute, and more
MAX_PENDING = 1_000  # incomplete sets kept per feeder


@dataclass(frozen=True, slots=True)
class _Reading:
    sensor: str
    at_us: int
    reading: SensorReading


@dataclass
class _Feeder:
    feeder: LightingFeeder
    monitor: LuminaireMonitor
    pending: dict[int, dict[str, SensorReading]] = field(default_factory=dict)
    last_us: int = -1
    dropped: int = 0  # incomplete or late sets


@dataclass
class _State:
    topology: Topology
    feeders: list[_Feeder]
    of_sensor: dict[str, _Feeder]


def luminaire_alert(event: LuminairesFused | LuminairesRepaired, feeder: str) -> GridAlert:
    """A fused (or repaired) segment as the alert of its upstream sensor's node."""
    segment = event.segment
    fused = isinstance(event, LuminairesFused)
    where = f"segment {segment.index} of lighting feeder {feeder} after sensor {segment.upstream}"
    where += f" (to {segment.downstream})" if segment.downstream else " (to the end)"
    change = f"admittance {event.baseline_s * 1000:.2f} → {event.now_s * 1000:.2f} mS"
    facts: dict[str, object] = {
        "feeder": feeder,
        "segment": segment.index,
        "upstreamSensor": segment.upstream,
        "downstreamSensor": segment.downstream,
        "nodes": list(segment.nodes[:200]),
        "firstSeen": event.first_seen.isoformat(),
        "confirmedAt": event.confirmed_at.isoformat(),
        "baselineS": event.baseline_s,
        "nowS": event.now_s,
        "estimatedLuminaires": event.estimated_luminaires,
    }
    return GridAlert(
        segment.nodes[0],
        LUMINAIRE_FUSED if fused else LUMINAIRE_REPAIRED,
        "Warning" if fused else "Info",
        f"luminaires {'fused' if fused else 'repaired'} in {where}: {change}",
        event.first_seen,
        facts,
    )


class LuminaireService(TenantMonitor[_State, _Reading]):
    """G3 on arrival; see the module docstring."""

    name = "luminaire-monitor"

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write_back: WriteBack,
        rules: LuminaireRules | None = None,
    ) -> None:
        super().__init__(topologies, registry, store, write_back)
        self.rules = rules or LuminaireRules()

    def pick(self, item: Prepared, watched: frozenset[str] | None) -> list[_Reading]:
        device, tenant = item.device, item.tenant
        if not item.readings or device is None or tenant is None:
            return []
        if watched is not None and device not in watched:
            if not self.is_sensor(tenant, device, PL_SENSOR_TYPE):
                return []
        return _readings(device, ((i, ts, v) for i, ts, v in item.readings))

    def sensor_of(self, item: _Reading) -> str:
        return item.sensor

    def configure(self, tenant: str, topology: Topology) -> Hashable:
        sensors = {
            d.hardware_id for d in self._registry.devices(tenant) if d.device_type == PL_SENSOR_TYPE
        }
        return tuple(
            sorted((d.hardware_id, d.node) for d in topology.devices if d.hardware_id in sensors)
        )

    def build(self, tenant: str, topology: Topology, config: Hashable) -> _State | None:
        assert isinstance(config, tuple)
        groups: dict[str, dict[str, str]] = {}
        for sensor, node in config:
            if not topology.is_supplied(node):
                log.error("tenant %s: pl-sensor %s is on unsupplied node %s", tenant, sensor, node)
                continue
            path = topology.supply_path(node)
            head = path.lv_feeder or path.secondary_substation or path.nodes[-1]
            groups.setdefault(head, {})[sensor] = node
        feeders = []
        for head, sensors in sorted(groups.items()):
            try:
                feeder = lighting_feeder(topology, sensors, name=head)
            except InvalidRequest as exc:
                log.error("tenant %s: lighting feeder %s left out: %s", tenant, head, exc)
                continue
            feeders.append(_Feeder(feeder, LuminaireMonitor(feeder, self.rules)))
        if not feeders:
            return None
        of_sensor = {s: f for f in feeders for s in f.feeder.sensors}
        return _State(topology, feeders, of_sensor)

    def watched(self, state: _State) -> frozenset[str]:
        return frozenset(state.of_sensor)

    def feed(self, tenant: str, state: _State, inputs: list[_Reading]) -> list[GridAlert]:
        events: list[tuple[LuminaireEvent, str]] = []
        for item in sorted(inputs, key=lambda r: r.at_us):
            feeder = state.of_sensor.get(item.sensor)
            if feeder is None:
                continue
            if item.at_us <= feeder.last_us:
                feeder.dropped += 1  # later than a set already judged
                continue
            readings = feeder.pending.setdefault(item.at_us, {})
            readings[item.sensor] = item.reading
            if len(readings) < len(feeder.feeder.sensors):
                if len(feeder.pending) > MAX_PENDING:
                    del feeder.pending[min(feeder.pending)]
                    feeder.dropped += 1
                continue
            for at_us in [t for t in feeder.pending if t <= item.at_us]:
                del feeder.pending[at_us]
                feeder.dropped += at_us != item.at_us
            feeder.last_us = item.at_us
            try:
                found = feeder.monitor.feed(MonitoringSet(from_us(item.at_us), readings))
            except InvalidRequest as exc:  # a bad reading (negative current, pf out of range)
                log.warning("tenant %s: lighting set skipped: %s", tenant, exc)
                continue
            events += [(e, feeder.feeder.name) for e in found]
        return [
            luminaire_alert(e, name)
            for e, name in events
            if isinstance(e, LuminairesFused | LuminairesRepaired)
        ]

    def replay(self, tenant: str, state: _State) -> list[GridAlert]:
        end = datetime.now(UTC)
        start = end - REPLAY
        stored: list[tuple[str, int, float]] = []
        readings: list[_Reading] = []
        for sensor in state.of_sensor:
            stored.clear()
            for identifier in (VOLTAGE, CURRENT, ANGLE):
                query = SeriesQuery(tenant, sensor, identifier, start, end, limit=1_000_000)
                stored += [
                    (identifier, to_us(p.ts), p.value) for p in self._store.series(query, "UTC")
                ]
            readings += _readings(sensor, stored)
        if readings:
            log.info("tenant %s: luminaire monitors replay %d readings", tenant, len(readings))
        return self.feed(tenant, state, readings)


def _readings(sensor: str, readings: Iterable[tuple[str, int, float]]) -> list[_Reading]:
    """One reading per timestamp holding a voltage and a current."""
    values: dict[int, dict[str, float]] = {}
    for identifier, ts, value in readings:
        if identifier in (VOLTAGE, CURRENT, ANGLE):
            values.setdefault(ts, {})[identifier] = value
    found = []
    for ts, at in values.items():
        if VOLTAGE in at and CURRENT in at:
            pf = math.cos(at.get(ANGLE, 0.0))
            found.append(_Reading(sensor, ts, SensorReading(at[VOLTAGE], at[CURRENT], pf)))
    return found
