"""The command service driven tick by tick: a real (in-memory) DuckDB, a recording transport
and a hand-moved clock, so retries, expiry, acks and store failures are exact."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gridhub.access.tokens import Principal
from gridhub.domain.commands import RetryPolicy, Status
from gridhub.domain.registry import Device, Tenant
from gridhub.errors import StoreUnavailable
from gridhub.ingest.validate import Envelope, Prepared
from gridhub.outbound.mqtt_publisher import Outgoing
from gridhub.services.commands import CommandConfig, CommandService
from gridhub.storage.base import AckRecord
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.outbound_store import OutboundStore
from gridhub.storage.registry import Registry

WHO = Principal("tok", "t", "admin")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Transport:
    """Records what is published; ``up`` says whether the broker confirms."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.up = True

    def publish(self, messages: Sequence[Outgoing], timeout: float) -> list[bool]:
        if self.up:
            self.sent.extend(messages)
        return [self.up] * len(messages)


@pytest.fixture
def world() -> tuple[CommandService, Transport, Clock, OutboundStore]:
    db = DuckDBDatabase(":memory:")
    registry = Registry(DuckDBCatalog(db))
    registry.create_tenant(Tenant("t", "T"))
    registry.register_devices([Device("t", "p1", "smart-plug"), Device("t", "p2", "smart-plug")])
    store = OutboundStore(db)
    clock = Clock()
    config = CommandConfig(max_attempts=3, retry=RetryPolicy(base_s=10, max_delay_s=40))
    service = CommandService(store, registry, config, clock=clock)
    transport = Transport()
    service._publisher = transport  # driven by tick(), without the dispatcher thread
    return service, transport, clock, store


def ack(device: str, invocation: str, response: str = "ok") -> Prepared:
    record = AckRecord("t", device, 0, invocation, response, 0)
    # as the MQTT source labels it: only an ack from the device's own topic counts
    return Prepared(
        Envelope(f"mqtt:gridhub/t/{device}/events", b"", "t", 0), "t", device, ack=record
    )


def test_an_ack_sent_over_http_changes_nothing(world: tuple) -> None:
    """Any device token of the tenant may POST events: an ack there could answer for another
    device, so only one from the device's own MQTT topic counts."""
    service, _transport, _clock, store = world
    inv, _ = service.invoke(WHO, "t", "p1", "on", {})
    service.tick()
    record = AckRecord("t", "p1", 0, inv.id, "ok", 0)
    service.observe([Prepared(Envelope("http", b"", "t", 0), "t", "p1", ack=record)])
    service.tick()
    assert service.get("t", inv.id).status is Status.SENT
    service.observe([ack("p1", inv.id)])
    service.tick()
    assert store.get("t", inv.id).status is Status.ACKNOWLEDGED  # type: ignore[union-attr]


def seen(device: str) -> Prepared:
    return Prepared(
        Envelope(f"mqtt:gridhub/t/{device}/events", b"", "t", 0), "t", device, readings=[]
    )


def test_retry_schedule_then_expiry(world: tuple) -> None:
    service, transport, clock, store = world
    inv, _ = service.invoke(WHO, "t", "p1", "on", {}, ttl_s=100)
    sends = []
    for _ in range(100):
        service.tick()
        if len(transport.sent) > len(sends):
            sends.append(clock.now)
        clock.now += 1
    assert [t - 1_000 for t in sends] == [0, 10, 30]  # 10 s, then doubled
    assert store.get("t", inv.id).status is Status.SENT  # type: ignore[union-attr]
    clock.now = inv.expires
    service.tick()
    final = store.get("t", inv.id)
    assert final is not None and (final.status, final.attempts) == (Status.EXPIRED, 3)
    text = service.render_metrics()
    assert "gridhub_commands_sent_total 3\n" in text
    assert "gridhub_commands_expired_total 1\n" in text and "gridhub_commands_open 0\n" in text


def test_ack_from_the_right_device_only(world: tuple) -> None:
    service, transport, clock, store = world
    inv, _ = service.invoke(WHO, "t", "p1", "on", {})
    service.tick()
    service.observe([ack("p2", inv.id)])  # p2 has nothing open: ignored
    service.observe([seen("p1"), ack("p1", "someone-else")])
    service.tick()
    assert service.get("t", inv.id).status is Status.SENT
    service.observe([ack("p1", inv.id, "Rejected: busy")])
    service.tick()
    assert store.get("t", inv.id).status is Status.FAILED  # type: ignore[union-attr]
    assert service.invocations("t", status=Status.FAILED)[0].response == "Rejected: busy"


def test_broker_down_keeps_it_pending_without_using_attempts(world: tuple) -> None:
    service, transport, clock, store = world
    transport.up = False
    inv, _ = service.invoke(WHO, "t", "p1", "on", {}, ttl_s=1_000)
    for _ in range(30):
        service.tick()
        clock.now += 1
    got = store.get("t", inv.id)
    assert got is not None and (got.status, got.attempts) == (Status.PENDING, 0)
    transport.up = True
    service.tick()
    assert service.get("t", inv.id).attempts == 1 and len(transport.sent) == 1


def test_device_heard_from_gets_a_resend(world: tuple) -> None:
    service, transport, clock, store = world
    inv, _ = service.invoke(WHO, "t", "p1", "on", {}, ttl_s=10_000, max_attempts=1)
    service.tick()
    clock.now += 500
    service.tick()
    assert len(transport.sent) == 1  # no timed retry left
    service.observe([seen("p2")])  # another device: nothing
    service.tick()
    assert len(transport.sent) == 1
    clock.now += 1
    service.observe([seen("p1")])
    service.tick()
    assert len(transport.sent) == 2 and service.get("t", inv.id).attempts == 2


def test_store_failure_keeps_the_ack_for_the_next_tick(
    world: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, transport, clock, store = world
    inv, _ = service.invoke(WHO, "t", "p1", "on", {})
    service.tick()
    service.observe([ack("p1", inv.id)])
    real_save = store.save

    def broken(invocations: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(store, "save", broken)
    with pytest.raises(StoreUnavailable):
        service.tick()
    assert service.get("t", inv.id).status is Status.SENT  # still open, still in memory
    monkeypatch.setattr(store, "save", real_save)
    service.tick()
    assert store.get("t", inv.id).status is Status.ACKNOWLEDGED  # type: ignore[union-attr]
