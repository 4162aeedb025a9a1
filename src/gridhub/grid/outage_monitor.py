"""Outage detection on arrival (G1): last gasps in, outage events out, as the DSO's alerts.

A :class:`~gridhub.grid.monitoring.TenantMonitor` (wiring, threads and write-back are described
there): it picks out last-gasp and power-restored alerts, and readings of meters currently dark
(a reading proves power), feeds each tenant's :class:`~gridhub.grid.outage.OutageDetector`, and
writes every event back as a ``DeviceAlert`` of the virtual device ``grid:<node>``.

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

import logging
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gridhub.domain.alert_types import (
    OUTAGE_ENDED,
    OUTAGE_RELOCATED,
    OUTAGE_STARTED,
)
from gridhub.domain.topology import Topology
from gridhub.domain.validation import from_us
from gridhub.grid.monitoring import (
    GridAlert,
    TenantMonitor,
    WriteBack,
    grid_alert_message,
    grid_device,
)
from gridhub.grid.outage import (
    MeterSignal,
    OutageDetector,
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
    "outage_event_alert",
]

#: device types whose loss of supply is an outage sign (billing meters send last gasps)
METER_TYPES = frozenset({"smart-meter", "dsmr-p1-meter", "dsmr5-p1-meter", "iec62056-meter"})
REPLAY = timedelta(hours=24)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OUTAGE_TYPES = frozenset({OUTAGE_STARTED, OUTAGE_RELOCATED, OUTAGE_ENDED})


def outage_event_alert(event: OutageEvent) -> GridAlert:
    """An outage event as the alert of its node, with the outage's facts as metadata."""
    outage = event.outage
    facts: dict[str, object] = {
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
    return GridAlert(outage.node, kind, level, text, _at(event), facts)


def outage_alert(event: OutageEvent, sequence: int = 0) -> tuple[str, bytes]:
    """An outage event as a canonical ``DeviceAlert`` of its node: (hardwareId, JSON bytes).

    ``sequence`` orders events stamped at the same time (several moves caused by one batch of
    signals); the monitor uses the emission time in nanoseconds."""
    return grid_alert_message(outage_event_alert(event), sequence)


class OutageMonitor(TenantMonitor[OutageDetector, MeterSignal]):
    """One detector per tenant with a topology, fed on arrival; see the module docstring."""

    name = "outage-monitor"

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write_back: WriteBack,
        rules: OutageRules | None = None,
    ) -> None:
        super().__init__(topologies, registry, store, write_back)
        self.rules = rules or OutageRules()

    def pick(self, item: Prepared, watched: frozenset[str] | None) -> list[MeterSignal]:
        device = item.device
        assert device is not None
        # A meter's clock may run ahead (up to a day is accepted): the detector's clock must
        # not, or one fast meter would age every other gasp out of the window. So a signal is
        # taken at the earlier of its stamp and its arrival.
        if item.alert is not None:
            at = from_us(min(item.alert.ts, item.alert.received))
            signal = signal_from_alert(device, item.alert.type, at)
            return [signal] if signal is not None else []
        if item.readings and watched and device in watched:  # a reading proves power again
            newest = max(ts for _identifier, ts, _value in item.readings)
            at = from_us(min(newest, item.envelope.received_us))
            return [MeterSignal(device, at, SignalKind.READING)]
        return []

    def configure(self, tenant: str, topology: Topology) -> Hashable:
        """The tenant's meters by site (only electricity meters: a plug or a boiler sends no
        last gasp, and counting it would dilute every feeder's fraction of meters out)."""
        meters: dict[str, list[str]] = {}
        for device in self._registry.devices(tenant):
            if device.site is not None and device.device_type in METER_TYPES:
                meters.setdefault(device.site, []).append(device.hardware_id)
        return tuple(sorted((site, tuple(sorted(ids))) for site, ids in meters.items()))

    def build(self, tenant: str, topology: Topology, config: Hashable) -> OutageDetector:
        assert isinstance(config, tuple)
        meters = {site: list(ids) for site, ids in config}
        return OutageDetector(outage_grid(topology, meters), self.rules)

    def watched(self, state: OutageDetector) -> frozenset[str]:
        return frozenset(state.dark)

    def feed(
        self, tenant: str, state: OutageDetector, inputs: list[MeterSignal]
    ) -> list[GridAlert]:
        events: list[OutageEvent] = []
        for signal in sorted(inputs, key=lambda s: s.at):
            events.extend(state.feed(signal))
        return [outage_event_alert(e) for e in events]

    def tick(self, tenant: str, state: OutageDetector, now: datetime) -> list[GridAlert]:
        if not (state.dark or state.ongoing):
            return []
        return [outage_event_alert(e) for e in state.advance(now)]

    def replay(self, tenant: str, state: OutageDetector) -> list[GridAlert]:
        """Rebuild the detector's memory from the stored signals of the last ``REPLAY``; write
        only the events of each node after its newest outage alert already stored — those of
        signals that arrived just before a crash — not again the ones written before."""
        signals = []
        written: dict[str, datetime] = {}  # grid device -> its newest outage alert
        for stored in self._store.alerts(
            AlertQuery(tenant, start=datetime.now(UTC) - REPLAY, limit=1_000_000)
        ):
            at = min(stored.ts, stored.received)
            signal = signal_from_alert(stored.device, stored.type, at)
            if signal is not None:
                signals.append(signal)
            elif stored.type in _OUTAGE_TYPES and stored.ts > written.get(stored.device, _EPOCH):
                written[stored.device] = stored.ts
        if not signals:
            return []
        events: list[OutageEvent] = []
        for signal in sorted(signals, key=lambda s: s.at):
            events.extend(state.feed(signal))
        log.info("tenant %s: outage detector replayed %d signals", tenant, len(signals))
        return [
            outage_event_alert(e)
            for e in events
            if _at(e) > written.get(grid_device(e.outage.node), _EPOCH)
        ]


def _at(event: OutageEvent) -> datetime:
    if isinstance(event, OutageStarted):
        return event.outage.started_at
    if isinstance(event, OutageRelocated):
        return event.at
    return event.ended_at
