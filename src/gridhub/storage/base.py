"""The storage seam: one small protocol for time series, one for the registry.

``Store`` is what the ingest pipeline writes to and the query service reads from. It is kept as
small as a transport interface: ``write`` one batch atomically, and a handful of reads. Every
backend (DuckDB now, PostgreSQL next) must pass ``tests/contract/``.

Timestamps cross this seam as integers (µs since the epoch, UTC) on the write path — the hot
path builds no datetime objects — and as aware datetimes on the read path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from gridhub.domain.identifiers import Identifier
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.domain.timeutil import Function, Resolution


@dataclass(slots=True)
class MeasurementColumns:
    """Readings of a batch, column by column (cheap to hand to a columnar store)."""

    tenant: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    identifier: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    update_state: list[bool] = field(default_factory=list)

    def append(
        self, tenant: str, device: str, identifier: str, ts: int, value: float, update: bool
    ) -> None:
        self.tenant.append(tenant)
        self.device.append(device)
        self.identifier.append(identifier)
        self.ts.append(ts)
        self.value.append(value)
        self.update_state.append(update)

    def extend(
        self, tenant: str, device: str, readings: list[tuple[str, int, float]], update: bool
    ) -> None:
        """One device's readings at once (list operations instead of a call per reading)."""
        n = len(readings)
        if not n:
            return
        identifiers, ts, values = zip(*readings, strict=True)
        self.tenant.extend([tenant] * n)
        self.device.extend([device] * n)
        self.identifier.extend(identifiers)
        self.ts.extend(ts)
        self.value.extend(values)
        self.update_state.extend([update] * n)

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    tenant: str
    device: str
    ts: int
    type: str
    level: str
    message: str
    metadata: str  # JSON text
    received: int


@dataclass(frozen=True, slots=True)
class AckRecord:
    tenant: str
    device: str
    ts: int
    originating_event_id: str
    response: str
    received: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    tenant: str | None
    source: str
    received: int
    reason: str
    detail: str
    raw: bytes
    # a redelivery (MQTT DUP flag) of something perhaps kept already: stored only if no dead
    # letter with the same tenant, source and bytes exists
    redelivered: bool = False


@dataclass(slots=True)
class WriteBatch:
    """Everything the pipeline hands to the store in one transaction."""

    measurements: MeasurementColumns = field(default_factory=MeasurementColumns)
    alerts: list[AlertRecord] = field(default_factory=list)
    acks: list[AckRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # tenant id -> IANA zone, for hour and day rollup buckets of the tenants in this batch
    zones: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.measurements) + len(self.alerts) + len(self.acks) + len(self.dead_letters)


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: int
    duplicates: int
    alerts: int = 0
    acks: int = 0
    dead_letters: int = 0


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    tenant: str
    device: str
    identifier: str
    start: datetime
    end: datetime
    resolution: Resolution = Resolution.RAW
    function: Function = Function.AVG
    limit: int = 100_000


@dataclass(frozen=True, slots=True)
class Point:
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class StateValue:
    identifier: str
    ts: datetime
    value: float
    received: datetime


@dataclass(frozen=True, slots=True)
class AlertQuery:
    tenant: str
    device: str | None = None
    level: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class StoredAlert:
    device: str
    ts: datetime
    type: str
    level: str
    message: str
    metadata: str
    received: datetime


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    tenant: str | None
    source: str
    received: datetime
    reason: str
    detail: str
    raw: bytes


class Store(Protocol):
    """Time-series storage: one atomic batch write and the reads the query service needs."""

    def write(self, batch: WriteBatch) -> WriteResult:
        """Write a batch in one transaction; drop readings whose key is already stored.

        The key of a reading is (tenant, device, identifier, ts). A committed batch is
        immediately queryable at every resolution (see :meth:`merge_rollups`).
        """
        ...

    def merge_rollups(self) -> int:
        """Fold readings written since the last call into the rollups; return how many.

        ``write`` makes readings durable and queryable at every resolution at once; the
        rollup tables themselves are brought up to date here, in a separate transaction, so
        that confirming a message does not wait for the rollup arithmetic.
        """
        ...

    def series(self, query: SeriesQuery, zone: str) -> list[Point]: ...

    def latest(self, tenant: str, device: str) -> list[StateValue]: ...

    def alerts(self, query: AlertQuery) -> list[StoredAlert]: ...

    def dead_letters(
        self, tenant: str | None, limit: int = 100, reason: str | None = None
    ) -> list[StoredDeadLetter]: ...

    def ping(self) -> None:
        """Raise if the store cannot be used right now."""
        ...

    def close(self) -> None: ...


class Catalog(Protocol):
    """Persistence of the registry: tenants, sites, devices, identifiers, token hashes."""

    def tenants(self) -> list[Tenant]: ...
    def put_tenant(self, tenant: Tenant) -> None: ...
    def sites(self, tenant: str) -> list[Site]: ...
    def put_sites(self, sites: Sequence[Site]) -> None: ...
    def devices(self, tenant: str) -> list[Device]: ...
    def put_devices(self, devices: Sequence[Device]) -> None: ...
    def identifiers(self, tenant: str) -> list[Identifier]: ...
    def put_identifier(self, tenant: str, identifier: Identifier) -> None: ...
    def tokens(self) -> list[TokenRecord]: ...
    def put_token(self, token: TokenRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    hash: str  # sha256 hex of the secret; the secret itself is never stored
    tenant: str | None  # None: the installation's admin token, for every tenant
    role: str
    name: str
    created: datetime
    revoked: bool = False
    stakeholder: str | None = None  # the stakeholder it acts for (issue #4); None: device/admin
    service: str | None = None  # the stakeholder's service it is for; owner policies match it
    expires: datetime | None = None


class TopologyCatalog(Protocol):
    """Persistence of each tenant's grid topology, as the JSON document of
    ``grid/topology_json.py`` (the grid layer parses and checks it)."""

    def topology_document(self, tenant: str) -> str | None: ...
    def put_topology_document(self, tenant: str, name: str, document: str) -> None: ...
