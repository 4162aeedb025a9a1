"""Outage detection on arrival (G1): last gasps in, outage events out, as the DSO's alerts.

Wiring (``hub.py``): the pipeline calls :meth:`OutageMonitor.observe` with the messages of every
committed batch.
``observe`` runs on the writer thread, so it only picks out what matters — last-gasp and
power-restored alerts, and readings of meters currently dark (a reading proves power) — and
queues it; the monitor's own thread feeds each tenant's :class:`~gridhub.grid.outage.OutageDetector`
and writes every event back through the ingest pipeline as a ``DeviceAlert`` of the virtual
device ``grid:<node>`` (registered on first use, type ``grid-node``). Written back that way, the
events are durable, deduplicated (same device, time and type), visible through the alerts API,
and the dashboard and subscriptions see them like any alert.

Alert types (the seed's dotted style, section 4.5.2):

* in, from meters: ``power.last.gasp`` (supply lost) and ``power.restored`` (the spellings
  head-ends use — ``lastGasp``, ``power-restore``… — too: ``grid.outage.ALERT_SIGNALS``);
* out, from ``grid:<node>``: ``grid.outage.started`` (level Critical, at the earliest last gasp),
  ``grid.outage.relocated`` (Warning) and ``grid.outage.ended`` (Info, at the first restore),
  with the outage's facts in ``metadata``.

A restart loses the detectors' memory, so a detector is rebuilt from the tenant's stored
last-gasp and restore alerts of the last ``REPLAY`` hours; replayed events are the same alerts,
which the store keeps once. Only electricity meters count (:data:`METER_TYPES`): a plug or a
boiler sends no last gasp, and counting it would dilute every feeder's fraction of meters out.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gridhub.domain.alert_types import (
    OUTAGE_ENDED,
    OUTAGE_RELOCATED,
    OUTAGE_STARTED,
)
from gridhub.domain.registry import GRID_DEVICE_PREFIX, Device
from gridhub.domain.topology import Topology
from gridhub.domain.validation import from_us
from gridhub.errors import NotFound
from gridhub.grid.outage import (
    MeterSignal,
    OutageDetector,
    OutageEnded,
    OutageEvent,
    OutageRelocated,
    OutageRules,
    OutageStarted,
    SignalKind,
    outage_grid,
    signal_from_alert,
)
from gridhub.grid.topologies import TopologyService
from gridhub.storage.base import AlertQuery, Store
from gridhub.storage.registry import Registry

if TYPE_CHECKING:  # the pipeline hands its validated messages over; grid does not drive ingest
    from gridhub.ingest.validate import Prepared

__all__ = [
    "METER_TYPES",
    "OutageMonitor",
    "grid_device",
    "outage_alert",
]

log = logging.getLogger(__name__)

#: device types whose loss of supply is an outage sign (billing meters send last gasps)
METER_TYPES = frozenset({"smart-meter", "dsmr-p1-meter", "dsmr5-p1-meter", "iec62056-meter"})
GRID_DEVICE_TYPE = "grid-node"
REPLAY = timedelta(hours=24)
REFRESH_S = 10.0  # how often a tenant's topology and meters are checked for changes
TICK_S = 30.0  # gasps age out of the detection window even when no signal arrives

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OUTAGE_TYPES = frozenset({OUTAGE_STARTED, OUTAGE_RELOCATED, OUTAGE_ENDED})

WriteBack = Callable[[str, list[bytes]], None]  # tenant, canonical messages


def grid_device(node: str) -> str:
    """The virtual device whose alerts and series are a topology node's (``grid:<node>``)."""
    return f"{GRID_DEVICE_PREFIX}{node}"


def outage_alert(event: OutageEvent, sequence: int = 0) -> tuple[str, bytes]:
    """An outage event as a canonical ``DeviceAlert`` of its node: (hardwareId, JSON bytes).

    ``sequence`` orders events stamped at the same time (several moves caused by one batch of
    signals); the monitor uses the emission time in nanoseconds."""
    outage = event.outage
    at = _at(event)
    facts: dict[str, object] = {
        "sequence": sequence,
        "outage": outage.id,
        "node": outage.node,
        "deepest": outage.deepest,
        "scope": outage.scope.value,
        "lvFeeder": outage.lv_feeder,
        "secondarySubstation": outage.secondary_substation,
        "startedAt": outage.started_at.isoformat(),
        "metersOut": outage.meters_out,
        "metersTotal": outage.meters_total,
    }
    where = f"{outage.scope.value.replace('_', ' ')} {outage.node}"
    if isinstance(event, OutageStarted):
        kind, level = OUTAGE_STARTED, "Critical"
        facts["detectedAt"] = event.detected_at.isoformat()
        text = f"outage of {where}: {outage.meters_out} of {outage.meters_total} meters out"
    elif isinstance(event, OutageRelocated):
        kind, level = OUTAGE_RELOCATED, "Warning"
        facts["previousNode"] = event.previous_node
        text = f"outage moved from {event.previous_node} to {where}"
    else:
        kind, level = OUTAGE_ENDED, "Info"
        facts.update(
            endedAt=event.ended_at.isoformat(),
            reason=event.reason,
            durationS=event.duration.total_seconds(),
            mergedInto=event.merged_into,
        )
        text = f"outage of {where} ended ({event.reason}) after {event.duration}"
    device = grid_device(outage.node)
    message = {
        "hardwareId": device,
        "type": "DeviceAlert",
        "request": {
            "type": kind,
            "level": level,
            "message": text,
            "eventDate": at.isoformat(),
            "metadata": facts,
        },
    }
    return device, json.dumps(message, separators=(",", ":")).encode()


@dataclass
class _TenantState:
    detector: OutageDetector
    topology: Topology
    meters: int


class OutageMonitor:
    """One detector per tenant with a topology, fed on arrival; see the module docstring."""

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write_back: WriteBack,
        rules: OutageRules | None = None,
    ) -> None:
        self._topologies = topologies
        self._registry = registry
        self._store = store
        self._write_back = write_back
        self.rules = rules or OutageRules()
        self._queue: queue.SimpleQueue[tuple[str, list[MeterSignal]] | None] = queue.SimpleQueue()
        self._tenants: dict[str, _TenantState] = {}
        self._checked: dict[str, float] = {}  # tenant -> when its topology was last looked at
        self._dark: dict[str, frozenset[str]] = {}  # tenant -> meters dark (writer's view)
        self._registered: set[tuple[str, str]] = set()
        self._thread: threading.Thread | None = None
        self.events_written = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outage-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    # -- on the writer thread: pick out the signals, nothing more ------------------------------

    def observe(self, items: list[Prepared]) -> None:
        """Pipeline observer: the messages of a committed batch (one check per message)."""
        signals: dict[str, list[MeterSignal]] = {}
        for item in items:
            tenant, device = item.tenant, item.device
            if tenant is None or device is None:
                continue
            if item.alert is not None:
                # a meter's clock may run ahead (up to a day is accepted): the detector's clock
                # must not, or one fast meter would age every other gasp out of the window
                at = from_us(min(item.alert.ts, item.alert.received))
                signal = signal_from_alert(device, item.alert.type, at)
                if signal is not None:
                    signals.setdefault(tenant, []).append(signal)
            elif item.readings:
                dark = self._dark.get(tenant)
                if dark and device in dark:  # a reading proves the meter has power again
                    newest = min(
                        max(ts for _identifier, ts, _value in item.readings),
                        item.envelope.received_us,
                    )
                    signal = MeterSignal(device, from_us(newest), SignalKind.READING)
                    signals.setdefault(tenant, []).append(signal)
        for tenant, found in signals.items():
            self._queue.put((tenant, found))

    # -- the monitor's thread ------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = ("", [])
            if item is None:
                return
            tenant, signals = item
            try:
                if signals:
                    self._feed(tenant, sorted(signals, key=lambda s: s.at))
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self._tick()
            except Exception:  # a bug must not end outage detection for everyone
                log.exception("outage monitor failed on %d signals of %r", len(signals), tenant)

    def _feed(self, tenant: str, signals: list[MeterSignal]) -> None:
        state = self._state(tenant)
        if state is None:
            return
        events: list[OutageEvent] = []
        for signal in signals:
            events.extend(state.detector.feed(signal))
        self._publish(tenant, state, events)

    def _tick(self) -> None:
        now = datetime.now(UTC)
        for tenant, state in list(self._tenants.items()):
            if state is not None and (state.detector.dark or state.detector.ongoing):
                self._publish(tenant, state, state.detector.advance(now))

    def _publish(self, tenant: str, state: _TenantState, events: list[OutageEvent]) -> None:
        self._dark[tenant] = frozenset(state.detector.dark)
        if not events:
            return
        messages = []
        new_devices = []
        emitted = time.time_ns()
        for index, event in enumerate(events):
            device, raw = outage_alert(event, emitted + index)
            messages.append(raw)
            if (tenant, device) not in self._registered:
                node = state.topology.node(event.outage.node)
                new_devices.append(
                    Device(tenant, device, GRID_DEVICE_TYPE, None, node.name or node.id)
                )
                self._registered.add((tenant, device))
        if new_devices:
            self._registry.register_devices(new_devices)
        self._write_back(tenant, messages)
        self.events_written += len(messages)
        for event in events:
            log.warning("tenant %s: %s", tenant, _describe(event))

    def _state(self, tenant: str) -> _TenantState | None:
        """The tenant's detector, built (and replayed) on first use and after a change of its
        topology or meters (looked at every ``REFRESH_S``); None without a topology."""
        now = time.monotonic()
        state = self._tenants.get(tenant)
        if now - self._checked.get(tenant, -REFRESH_S) < REFRESH_S:
            return state
        self._checked[tenant] = now
        try:
            topology = self._topologies.get(tenant)
        except NotFound:
            self._tenants.pop(tenant, None)
            return None
        meters = self._meters(tenant)
        count = sum(len(v) for v in meters.values())
        if state is not None and state.topology is topology and state.meters == count:
            return state
        detector = OutageDetector(outage_grid(topology, meters), self.rules)
        built = _TenantState(detector, topology, count)
        self._tenants[tenant] = built
        self._replay(tenant, built)
        return built

    def _meters(self, tenant: str) -> dict[str, list[str]]:
        meters: dict[str, list[str]] = {}
        for device in self._registry.devices(tenant):
            if device.site is not None and device.device_type in METER_TYPES:
                meters.setdefault(device.site, []).append(device.hardware_id)
        return meters

    def _replay(self, tenant: str, state: _TenantState) -> None:
        """Rebuild the detector's memory from the stored signals of the last ``REPLAY``; write
        only the events of each node after its newest outage alert already stored — those of
        signals that arrived just before a crash — not again the ones written before."""
        signals = []
        written: dict[str, datetime] = {}  # grid device -> its newest outage alert
        for stored in self._store.alerts(
            AlertQuery(tenant, start=datetime.now(UTC) - REPLAY, limit=1_000_000)
        ):
            signal = signal_from_alert(stored.device, stored.type, min(stored.ts, stored.received))
            if signal is not None:
                signals.append(signal)
            elif stored.type in _OUTAGE_TYPES and stored.ts > written.get(stored.device, _EPOCH):
                written[stored.device] = stored.ts
        if not signals:
            return
        events: list[OutageEvent] = []
        for signal in sorted(signals, key=lambda s: s.at):
            events.extend(state.detector.feed(signal))
        log.info("tenant %s: outage detector replayed %d signals", tenant, len(signals))
        fresh = [e for e in events if _at(e) > written.get(grid_device(e.outage.node), _EPOCH)]
        self._publish(tenant, state, fresh)


def _at(event: OutageEvent) -> datetime:
    if isinstance(event, OutageStarted):
        return event.outage.started_at
    if isinstance(event, OutageRelocated):
        return event.at
    return event.ended_at


def _describe(event: OutageEvent) -> str:
    o = event.outage
    if isinstance(event, OutageStarted):
        return f"outage {o.id} of {o.scope.value} {o.node} since {o.started_at.isoformat()}"
    if isinstance(event, OutageRelocated):
        return f"outage {o.id} moved from {event.previous_node} to {o.node}"
    assert isinstance(event, OutageEnded)
    return f"outage {o.id} of {o.node} ended ({event.reason}) after {event.duration}"
