"""LV fault location on arrival (G2): sensors' fault reports in, the faulty section out.

Sensors are the topology's attached devices (``devices`` of the topology document) registered
with device type ``lv-sensor``; their nodes make the
:func:`~gridhub.grid.fault_location.sensor_layout` (a meshed grid is refused, and logged).
Both detection modes of the seed are served:

* *distributed*: a sensor decides itself and sends a ``DeviceAlert`` of type
  ``fault.current.detected`` (``domain.alert_types.FAULT_CURRENT``) stamped when it saw the fault
  current (``metadata``: ``currentA``, ``voltageV``, informative);
* *centralised*: the sensor sends its RMS ``electricity.voltage.rms.l1..l3`` and
  ``electricity.current.rms.l1..l3``; per message the lowest voltage and highest current make one
  :class:`~gridhub.grid.fault_location.SensorSample`, judged by a
  :class:`~gridhub.grid.fault_location.FaultDetector`. A report decided here is written back as
  the sensor's own ``fault.current.detected`` alert (``metadata.detectedBy = "hub"``), so both
  modes leave the same durable trace.

Each new or narrower location is written as ``grid.fault.located`` (level Critical) on
``grid:<upstream node>`` at the time of the fault's first report; ``metadata`` names the section:
``upstreamSensor``/``upstreamNode``, ``downstreamSensors``/``downstreamNodes`` (empty and
``afterLastSensor`` true when the fault lies after the last sensor), its ``nodes``, ``lines`` and
``lengthKm``, the ``reporting``, ``conflicting`` and ``silent`` sensors, ``fault`` (the first
report's time: it identifies the fault across narrowing alerts) and ``narrows`` (the upstream
sensor of the coarser location it replaces, if any). An alert is written when the location is
new or narrows, with every report received so far; a later report that only confirms it writes
nothing. After a restart the locator is rebuilt from the stored reports of the last ``REPLAY``,
and the locations already written are read back, so only a location that changed is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gridhub.domain.alert_types import FAULT_CURRENT, FAULT_LOCATED
from gridhub.domain.registry import GRID_DEVICE_PREFIX
from gridhub.domain.topology import Topology
from gridhub.domain.validation import from_us
from gridhub.grid.fault_location import (
    DetectionThresholds,
    FaultDetector,
    FaultLocation,
    FaultLocator,
    FaultReport,
    SensorLayout,
    SensorSample,
    sensor_layout,
)
from gridhub.grid.monitoring import GridAlert, TenantMonitor, WriteBack
from gridhub.grid.topologies import TopologyService
from gridhub.storage.base import AlertQuery, Store
from gridhub.storage.registry import Registry

if TYPE_CHECKING:
    from gridhub.ingest.validate import Prepared

__all__ = ["LV_SENSOR_TYPE", "FaultMonitor", "location_alert"]

log = logging.getLogger(__name__)

LV_SENSOR_TYPE = "lv-sensor"
REPLAY = timedelta(hours=1)  # a fault's reports come within seconds; an hour covers a restart
_VOLTAGES = frozenset(f"electricity.voltage.rms.l{p}" for p in (1, 2, 3))
_CURRENTS = frozenset(f"electricity.current.rms.l{p}" for p in (1, 2, 3))
MAX_LISTED = 200  # nodes and lines named in one alert

Input = FaultReport | SensorSample


@dataclass
class _State:
    layout: SensorLayout
    locator: FaultLocator
    detector: FaultDetector
    published: dict[datetime, str] = field(default_factory=dict)  # fault -> upstream sensor


def location_alert(location: FaultLocation, layout: SensorLayout, narrows: str | None) -> GridAlert:
    """A fault location as the ``grid.fault.located`` alert of its upstream node."""
    topology = layout.topology

    def name(node: str) -> str:
        return topology.node(node).name or node

    upstream = f"sensor {location.upstream_sensor} ({name(location.upstream_node)})"
    if location.after_last_sensor:
        text = f"LV fault after the last sensor {upstream}"
    else:
        below = ", ".join(f"{s} ({name(layout.sensors[s])})" for s in location.downstream_sensors)
        text = f"LV fault between {upstream} and {below}"
    facts: dict[str, object] = {
        "fault": location.reported_at.isoformat(),
        "upstreamSensor": location.upstream_sensor,
        "upstreamNode": location.upstream_node,
        "downstreamSensors": list(location.downstream_sensors),
        "downstreamNodes": list(location.downstream_nodes),
        "afterLastSensor": location.after_last_sensor,
        "nodes": list(location.nodes[:MAX_LISTED]),
        "lines": list(location.lines[:MAX_LISTED]),
        "lengthKm": round(location.length_km, 6),
        "reporting": list(location.reporting),
        "conflicting": list(location.conflicting),
        "silent": list(location.silent),
        "narrows": narrows,
    }
    return GridAlert(
        location.upstream_node, FAULT_LOCATED, "Critical", text, location.reported_at, facts
    )


class FaultMonitor(TenantMonitor[_State, Input]):
    """G2 on arrival; see the module docstring."""

    name = "fault-monitor"

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write_back: WriteBack,
        thresholds: DetectionThresholds | None = None,
    ) -> None:
        super().__init__(topologies, registry, store, write_back)
        self.thresholds = thresholds or DetectionThresholds()

    def pick(self, item: Prepared, watched: frozenset[str] | None) -> list[Input]:
        device = item.device
        assert device is not None
        if item.alert is not None:
            if item.alert.type == FAULT_CURRENT:
                return [FaultReport(device, from_us(item.alert.ts))]
            return []
        if not item.readings or item.tenant is None:
            return []
        if watched is not None and device not in watched:
            if not self.is_sensor(item.tenant, device, LV_SENSOR_TYPE):
                return []
        return _samples(device, item.readings)

    def sensor_of(self, item: Input) -> str:
        return item.sensor

    def configure(self, tenant: str, topology: Topology) -> Hashable:
        sensors = {
            d.hardware_id for d in self._registry.devices(tenant) if d.device_type == LV_SENSOR_TYPE
        }
        return tuple(sorted((d.hardware_id, d.node) for d in topology.devices
                            if d.hardware_id in sensors))  # fmt: skip

    def build(self, tenant: str, topology: Topology, config: Hashable) -> _State | None:
        assert isinstance(config, tuple)
        if not config:
            return None
        layout = sensor_layout(topology, dict(config))
        return _State(layout, FaultLocator(layout), FaultDetector(layout, self.thresholds))

    def watched(self, state: _State) -> frozenset[str]:
        return frozenset(state.layout.sensors)

    def feed(self, tenant: str, state: _State, inputs: list[Input]) -> list[GridAlert]:
        reports: list[FaultReport] = []
        decided: list[GridAlert] = []
        for item in sorted(inputs, key=lambda i: i.at):
            if item.sensor not in state.layout.sensors:
                log.warning("tenant %s: fault report of %r, not an lv-sensor on the topology",
                            tenant, item.sensor)  # fmt: skip
                continue
            if isinstance(item, FaultReport):
                reports.append(item)
                continue
            report = state.detector.sample(item)
            if report is not None:
                reports.append(report)
                decided.append(_report_alert(item, state.layout))
        return decided + self._locate(state, reports)

    def replay(self, tenant: str, state: _State) -> list[GridAlert]:
        stored = self._store.alerts(
            AlertQuery(tenant, start=datetime.now(UTC) - REPLAY, limit=100_000)
        )
        reports = [
            FaultReport(a.device, a.ts)
            for a in stored
            if a.type == FAULT_CURRENT and a.device in state.layout.sensors
        ]
        # what was written already: the newest location of each fault (not written again)
        written: dict[datetime, tuple[int, str]] = {}
        for a in stored:
            if a.type == FAULT_LOCATED and a.device.startswith(GRID_DEVICE_PREFIX):
                try:
                    facts = json.loads(a.metadata)
                    fault = datetime.fromisoformat(facts["fault"])
                    mark = (int(facts.get("sequence", 0)), str(facts["upstreamSensor"]))
                except (ValueError, KeyError, TypeError):
                    continue
                written[fault] = max(written.get(fault, mark), mark)
        state.published.update({fault: sensor for fault, (_, sensor) in written.items()})
        if reports:
            log.info("tenant %s: fault locator replayed %d reports", tenant, len(reports))
        return self._locate(state, sorted(reports, key=lambda r: r.at))

    def _locate(self, state: _State, reports: list[FaultReport]) -> list[GridAlert]:
        """Feed the locator; the latest location of each fault these reports touched."""
        latest: dict[datetime, FaultLocation] = {}
        for report in reports:
            found = state.locator.report(report)
            if found is not None:
                latest[found.reported_at] = found
        last = state.locator.last  # with every report so far (later ones may only confirm it)
        if last is not None and last.reported_at in latest:
            latest[last.reported_at] = last
        alerts = []
        for fault, location in latest.items():
            previous = state.published.get(fault)
            if previous == location.upstream_sensor:
                continue
            state.published[fault] = location.upstream_sensor
            alerts.append(location_alert(location, state.layout, previous))
        if len(state.published) > 1_000:  # old faults are not narrowed any more
            for fault in sorted(state.published)[:-100]:
                del state.published[fault]
        return alerts


def _samples(device: str, readings: list[tuple[str, int, float]]) -> list[Input]:
    """One sample per timestamp with both a voltage and a current: the lowest phase voltage and
    the highest phase current (a fault shows on the faulted phases)."""
    volts: dict[int, float] = {}
    amps: dict[int, float] = {}
    for identifier, ts, value in readings:
        if identifier in _VOLTAGES:
            volts[ts] = min(value, volts.get(ts, value))
        elif identifier in _CURRENTS:
            amps[ts] = max(value, amps.get(ts, value))
    return [SensorSample(device, from_us(ts), volts[ts], amps[ts]) for ts in volts if ts in amps]


def _report_alert(sample: SensorSample, layout: SensorLayout) -> GridAlert:
    """A report decided centrally, written back as the sensor's own alert."""
    return GridAlert(
        layout.sensors[sample.sensor],
        FAULT_CURRENT,
        "Warning",
        f"fault current {sample.current_a:.0f} A at {sample.voltage_v:.0f} V (decided by the hub)",
        sample.at,
        {"currentA": sample.current_a, "voltageV": sample.voltage_v, "detectedBy": "hub"},
        device=sample.sensor,
    )
