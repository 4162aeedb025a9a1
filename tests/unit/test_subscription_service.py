"""The subscription service driven tick by tick: a real (in-memory) DuckDB, real tokens, a
hand-moved clock and a policy check of the test's choosing, so that the per-value policy, the
periodic windows and revocation are exact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gridhub.access.tokens import Principal, TokenService
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.domain.subscriptions import (
    Channel,
    Kind,
    PeriodicFunction,
    Subscription,
    make_condition,
)
from gridhub.errors import Conflict, Forbidden
from gridhub.ingest.validate import Envelope, Prepared
from gridhub.services.subscriptions import MayRead, NewSubscription, SubscriptionService
from gridhub.storage.base import MeasurementColumns, WriteBatch
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore
from gridhub.storage.registry import Registry
from gridhub.storage.subscriptions_store import SubscriptionStore

P = "electricity.power.active.consumed.total"
T0 = 1_800_000_000.0  # a whole multiple of 10 s and of 60 s
CUTOFF_US = int((T0 + 5) * 1_000_000)  # the "contract" ends here


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 0.5

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db() -> Iterator[DuckDBDatabase]:
    database = DuckDBDatabase(":memory:")
    yield database
    database.close()


class World:
    def __init__(self, db: DuckDBDatabase, policy: MayRead | None = None) -> None:
        self.registry = Registry(DuckDBCatalog(db))
        self.registry.create_tenant(Tenant("t", "T"))
        self.registry.register_sites([Site("t", "s1")])
        self.registry.register_devices([Device("t", "m1", "smart-meter", "s1")])
        self.tokens = TokenService(DuckDBCatalog(db))
        record, _ = self.tokens.create("t", "retailer", "r1")
        self.who = Principal(record.id, "t", "retailer")
        self.data = DuckDBStore(db)
        self.clock = Clock()
        self.notes: list[dict[str, Any]] = []
        self.service = SubscriptionService(
            SubscriptionStore(db),
            self.data,
            self.registry,
            self.tokens,
            may_read=policy or self.policy,
            clock=self.clock,
            on_notify=lambda _sub, _who, payload: self.notes.append(payload),
        )

    @staticmethod
    def policy(who: Principal, tenant: str, device: str, identifier: str, at: datetime) -> bool:
        """Like a contract that ends at CUTOFF: values after it are not the retailer's."""
        return who.tenant == tenant and at < datetime.fromtimestamp(CUTOFF_US / 1e6, UTC)

    def readings(self, *points: tuple[float, float]) -> None:
        """Store readings (seconds after T0, value) and tell the service, as the pipeline does."""
        cols = MeasurementColumns()
        for offset, value in points:
            cols.append("t", "m1", P, int((T0 + offset) * 1_000_000), value, False)
        self.data.write(WriteBatch(measurements=cols, zones={"t": "UTC"}))
        env = Envelope("test", b"", "t", 0)
        readings = [(P, int((T0 + o) * 1_000_000), v) for o, v in points]
        self.service.observe([Prepared(env, "t", "m1", readings)])

    def subscribe(self, **kwargs: Any) -> Subscription:
        new = NewSubscription(device="m1", identifier=P, channel=Channel.MQTT, **kwargs)
        return self.service.create(self.who, "t", new)


@pytest.fixture
def world(db: DuckDBDatabase) -> World:
    return World(db)


def test_every_event_passes_the_policy_per_value(world: World) -> None:
    sub = world.subscribe(kind=Kind.EVENT, condition=make_condition("above", value=0))
    world.readings((1, 1.0), (6, 2.0), (7, 3.0))
    world.service.tick()
    assert [n["value"] for n in world.notes] == [1.0]  # 6 s and 7 s lie after the cutoff
    assert world.service.stats(sub.id)["refused"] == 2
    assert world.notes[0]["delivery"] == f"{sub.id}.{int((T0 + 1) * 1_000_000)}"


def test_periodic_aggregate_leaves_out_values_the_subscriber_may_not_read(world: World) -> None:
    world.subscribe(kind=Kind.PERIODIC, period_s=10.0, function=PeriodicFunction.SUM)
    world.readings((1, 1.0), (4, 4.0), (6, 100.0))  # the period under way: [T0, T0+10)
    world.service.tick()
    assert world.notes == []  # the period is not over
    world.clock.now = T0 + 11.0  # closed, and its grace (1 s) passed
    world.service.tick()
    (note,) = world.notes
    assert (note["value"], note["count"]) == (5.0, 2)  # the value after the cutoff left out
    world.readings((12, 1.0))
    world.clock.now = T0 + 21.0
    world.service.tick()  # [T0+10, T0+20) lies wholly after the cutoff: nothing is sent
    assert len(world.notes) == 1


def test_periodic_windows_and_aggregates(db: DuckDBDatabase) -> None:
    world = World(db, policy=lambda *_a: True)
    world.subscribe(kind=Kind.PERIODIC, period_s=10.0, function=PeriodicFunction.AVG)
    world.readings((9, 100.0), (10.5, 1.0), (12, 2.0), (19.9, 6.0), (20, 50.0))
    world.clock.now = T0 + 10.5  # the first period closed, but within the grace: not yet
    world.service.tick()
    assert world.notes == []
    world.clock.now = T0 + 11.0
    world.service.tick()
    world.clock.now = T0 + 21.0
    world.service.tick()
    world.service.tick()  # each period reported once only
    assert [(n["value"], n["count"]) for n in world.notes] == [(100.0, 1), (3.0, 3)]
    note = world.notes[1]
    assert note["function"] == "avg"
    assert note["from"] == datetime.fromtimestamp(T0 + 10, UTC).isoformat()
    assert note["to"] == datetime.fromtimestamp(T0 + 20, UTC).isoformat()
    world.clock.now = T0 + 45.0  # a period skipped (the hub was busy): the latest closed one
    world.service.tick()
    last = world.notes[2]
    assert last["from"] == datetime.fromtimestamp(T0 + 30, UTC).isoformat()
    assert (last["result"], last["value"], last["count"]) == ("no_data", None, 0)


def test_revoked_token_stops_notifications(world: World) -> None:
    sub = world.subscribe(kind=Kind.EVENT, condition=make_condition("below", value=10))
    world.readings((1, 1.0))
    world.service.tick()
    world.tokens.revoke(world.who.token_id)
    world.readings((2, 2.0))
    world.service.tick()
    assert [n["value"] for n in world.notes] == [1.0]
    assert world.service.stats(sub.id)["refused"] == 1


def test_one_periodic_per_subscriber_and_series(world: World) -> None:
    world.subscribe(kind=Kind.PERIODIC, period_s=60.0)
    with pytest.raises(Conflict, match="one per subscriber and series"):
        world.subscribe(kind=Kind.PERIODIC, period_s=900.0, function=PeriodicFunction.MAX)
    world.subscribe(kind=Kind.EVENT, condition=make_condition("above", value=1))  # events: any


def test_subscribing_needs_read_rights_now(db: DuckDBDatabase) -> None:
    world = World(db, policy=lambda *_a: False)  # e.g. no contract with this customer
    event = NewSubscription(
        Kind.EVENT, "m1", P, Channel.MQTT, condition=make_condition("above", value=1)
    )
    with pytest.raises(Forbidden, match="may not read m1"):
        world.service.create(world.who, "t", event)
    with pytest.raises(Forbidden, match="scoped to tenant"):
        world.service.create(Principal("x", "other", "dso"), "t", event)


def test_restored_after_restart(world: World, db: DuckDBDatabase) -> None:
    sub = world.subscribe(kind=Kind.EVENT, condition=make_condition("outside", lo=1, hi=2))
    again = SubscriptionService(SubscriptionStore(db), world.data, world.registry, world.tokens)
    again.start(None)
    try:
        (restored,) = again.visible(world.who, "t")
        assert restored == sub
    finally:
        again.stop()
