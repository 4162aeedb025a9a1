"""What every grid service run on arrival shares: a tenant's detector fed from the pipeline,
on its own thread, writing its events back as alerts of the virtual devices ``grid:<node>``.

The pipeline calls :meth:`TenantMonitor.observe` with the messages of every committed batch, on
its writer thread, so ``observe`` only picks out what the service needs
(:meth:`~TenantMonitor.pick`: an alert type, the readings of a watched device) and queues them.
The monitor's thread builds each tenant's state from the tenant's topology and registry
(:meth:`~TenantMonitor.configure` and :meth:`~TenantMonitor.build`, again whenever the topology
or the configuration changes, looked at every ``REFRESH_S``), replays what the store remembers
(a restart loses the detector's memory), feeds the inputs, and writes every event back through
the ingest pipeline as a ``DeviceAlert`` of ``grid:<node>`` (registered on first use, type
``grid-node``). Written back that way the events are durable, deduplicated (same device, time
and type: a replayed event is stored once), visible through the alerts API, and the dashboard
and subscriptions see them like any alert.

Subclasses: :class:`~gridhub.grid.outage_monitor.OutageMonitor` (G1),
:class:`~gridhub.grid.fault_monitor.FaultMonitor` (G2),
:class:`~gridhub.grid.luminaire_monitor.LuminaireMonitorService` (G3).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from gridhub.domain.registry import GRID_DEVICE_PREFIX, Device
from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest, NotFound
from gridhub.grid.topologies import TopologyService
from gridhub.storage.base import Store
from gridhub.storage.registry import Registry

if TYPE_CHECKING:  # the pipeline hands its validated messages over; grid does not drive ingest
    from gridhub.ingest.validate import Prepared

__all__ = [
    "GRID_DEVICE_TYPE",
    "GridAlert",
    "TenantMonitor",
    "WriteBack",
    "grid_alert_message",
    "grid_device",
]

log = logging.getLogger(__name__)

GRID_DEVICE_TYPE = "grid-node"
REFRESH_S = 10.0  # how often a tenant's topology and devices are checked for changes
RECHECK_S = 1.0  # sooner when an input comes from a sensor the state does not know yet
TICK_S = 30.0  # time passes for the detectors even when nothing arrives

WriteBack = Callable[[str, list[bytes]], None]  # tenant, canonical messages

S = TypeVar("S")  # a tenant's state (its detector)
I = TypeVar("I")  # noqa: E741 - one input picked from a message


def grid_device(node: str) -> str:
    """The virtual device whose alerts and series are a topology node's (``grid:<node>``)."""
    return f"{GRID_DEVICE_PREFIX}{node}"


@dataclass(frozen=True, slots=True)
class GridAlert:
    """One event of a grid service, to be stored as an alert of ``grid:<node>``."""

    node: str
    type: str
    level: str  # Info, Warning, Error, Critical
    text: str
    at: datetime  # when it happened (the alert's eventDate)
    facts: Mapping[str, object] = field(default_factory=dict)  # the alert's metadata
    device: str | None = None  # from this (real, registered) device instead of grid:<node>


def grid_alert_message(alert: GridAlert, sequence: int = 0) -> tuple[str, bytes]:
    """A grid event as a canonical ``DeviceAlert`` of its node: (hardwareId, JSON bytes).

    ``sequence`` (in the metadata) orders events stamped at the same time; the monitors use the
    emission time in nanoseconds."""
    device = alert.device or grid_device(alert.node)
    message = {
        "hardwareId": device,
        "type": "DeviceAlert",
        "request": {
            "type": alert.type,
            "level": alert.level,
            "message": alert.text,
            "eventDate": alert.at.isoformat(),
            "metadata": {"sequence": sequence, **alert.facts},
        },
    }
    return device, json.dumps(message, separators=(",", ":")).encode()


@dataclass
class _Tenant(Generic[S]):
    topology: Topology
    config: Hashable
    state: S | None  # None: the configuration does not allow the service (logged once)


class TenantMonitor(ABC, Generic[S, I]):
    """One state per tenant with a topology, fed on arrival; see the module docstring."""

    name = "grid-monitor"

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write_back: WriteBack,
    ) -> None:
        self._topologies = topologies
        self._registry = registry
        self._store = store
        self._write_back = write_back
        self._queue: queue.SimpleQueue[tuple[str, list[I]] | None] = queue.SimpleQueue()
        self._tenants: dict[str, _Tenant[S]] = {}
        self._checked: dict[str, float] = {}  # tenant -> when its topology was last looked at
        #: tenant -> the devices whose readings matter now (the writer thread's view);
        #: a tenant not in it has not been looked at yet
        self._watched: dict[str, frozenset[str]] = {}
        self._registered: set[tuple[str, str]] = set()
        self._asked: set[str] = set()  # tenants the writer asked the monitor to look at
        self._thread: threading.Thread | None = None
        self.events_written = 0

    # -- what a service defines ----------------------------------------------------------------

    @abstractmethod
    def pick(self, item: Prepared, watched: frozenset[str] | None) -> list[I]:
        """The inputs a stored message carries for this service (on the writer thread: keep it
        cheap; most messages carry none). ``watched``: :meth:`watched` of the tenant's state,
        None before the tenant has been looked at (then pass readings on, so the state gets
        built)."""

    @abstractmethod
    def configure(self, tenant: str, topology: Topology) -> Hashable:
        """What the state is built from besides the topology (e.g. the sensors and their
        nodes); the state is rebuilt when it changes."""

    @abstractmethod
    def build(self, tenant: str, topology: Topology, config: Hashable) -> S | None:
        """A fresh state; None when the tenant has nothing to run (no sensors)."""

    @abstractmethod
    def feed(self, tenant: str, state: S, inputs: list[I]) -> list[GridAlert]:
        """Run the service on inputs (in arrival order) and answer its events."""

    def replay(self, tenant: str, state: S) -> list[GridAlert]:
        """Rebuild the state's memory from the store after a (re)build; its events."""
        return []

    def tick(self, tenant: str, state: S, now: datetime) -> list[GridAlert]:
        """Let time pass (every ``TICK_S``)."""
        return []

    def watched(self, state: S) -> frozenset[str]:
        """The devices whose readings :meth:`pick` should pass on."""
        return frozenset()

    def sensor_of(self, item: I) -> str | None:
        """The sensor an input comes from, when the state must know it (a sensor attached
        while the hub runs is then picked up within a second, not at the next refresh)."""
        return None

    def is_sensor(self, tenant: str, device: str, kind: str) -> bool:
        """Whether ``device`` is registered as ``kind`` (cheap: for :meth:`pick`)."""
        found = self._registry.device(tenant, device)
        return found is not None and found.device_type == kind

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    # -- on the writer thread: pick out the inputs, nothing more -------------------------------

    def observe(self, items: list[Prepared]) -> None:
        """Pipeline observer: the messages of a committed batch (one check per message)."""
        found: dict[str, list[I]] = {}
        for item in items:
            tenant = item.tenant
            if tenant is None or item.device is None:
                continue
            watched = self._watched.get(tenant)
            if watched is None and tenant not in self._asked:
                # not looked at yet: have the monitor's thread look now, even if nothing is
                # picked (else a tenant without a topology would be scanned message by message
                # for good, its watched set never known)
                self._asked.add(tenant)
                self._queue.put((tenant, []))
            picked = self.pick(item, watched)
            if picked:
                found.setdefault(tenant, []).extend(picked)
        for tenant, inputs in found.items():
            self._queue.put((tenant, inputs))

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
            tenant, inputs = item
            try:
                if tenant and not inputs and tenant not in self._watched:
                    self._state(tenant)  # first sight of the tenant: learn what it watches
                if inputs:
                    state = self._state(tenant)
                    watched = self._watched.get(tenant, frozenset())
                    sensors = {self.sensor_of(i) for i in inputs} - {None}
                    if not sensors <= watched:
                        state = self._state(tenant, soon=True)
                    if state is not None:
                        self.publish(tenant, self.feed(tenant, state, inputs))
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    self._tick()
            except Exception:  # a bug must not end the service for everyone
                log.exception("%s failed on %d inputs of %r", self.name, len(inputs), tenant)

    def _tick(self) -> None:
        now = datetime.now(UTC)
        for tenant in list(self._watched):
            state = self._state(tenant)  # also picks up a topology given since
            if state is not None:
                self.publish(tenant, self.tick(tenant, state, now))

    def _state(self, tenant: str, *, soon: bool = False) -> S | None:
        """The tenant's state, built (and replayed) on first use and after a change of its
        topology or configuration (looked at every ``REFRESH_S``, or ``RECHECK_S`` when
        ``soon``); None without one."""
        now = time.monotonic()
        known = self._tenants.get(tenant)
        if now - self._checked.get(tenant, -REFRESH_S) < (RECHECK_S if soon else REFRESH_S):
            return known.state if known is not None else None
        self._checked[tenant] = now
        try:
            topology = self._topologies.get(tenant)
        except NotFound:
            self._tenants.pop(tenant, None)
            self._watched[tenant] = frozenset()
            return None
        config = self.configure(tenant, topology)
        if known is not None and known.topology is topology and known.config == config:
            return known.state
        try:
            state = self.build(tenant, topology, config)
        except InvalidRequest as exc:  # e.g. sensors off one path: the operator must fix it
            log.error("tenant %s: %s not running: %s", tenant, self.name, exc)
            state = None
        self._tenants[tenant] = _Tenant(topology, config, state)
        self._watched[tenant] = self.watched(state) if state is not None else frozenset()
        if state is not None:
            self.publish(tenant, self.replay(tenant, state))
        return state

    def publish(self, tenant: str, alerts: list[GridAlert]) -> None:
        """Write events back as alerts of their nodes' virtual devices."""
        known = self._tenants.get(tenant)
        if known is not None and known.state is not None:
            self._watched[tenant] = self.watched(known.state)
        if not alerts:
            return
        messages = []
        new_devices = []
        emitted = time.time_ns()
        for index, alert in enumerate(alerts):
            device, raw = grid_alert_message(alert, emitted + index)
            messages.append(raw)
            if alert.device is None and (tenant, device) not in self._registered:
                name = alert.node
                if known is not None:
                    node = known.topology.node(alert.node)
                    name = node.name or node.id
                new_devices.append(Device(tenant, device, GRID_DEVICE_TYPE, None, name))
                self._registered.add((tenant, device))
        if new_devices:
            self._registry.register_devices(new_devices)
        self._write_back(tenant, messages)
        self.events_written += len(messages)
        for alert in alerts:
            log.warning("tenant %s: %s: %s", tenant, alert.type, alert.text)
