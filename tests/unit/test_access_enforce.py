"""The enforcement point on a real (temporary) DuckDB catalog: defaults, contracts, switches,
versioned owner policies, rate limits; and a property test against a reference model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridhub.access.directory import Directory
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal, TokenService
from gridhub.domain.access import ALERTS, Kind, from_us, subtract, to_us, union
from gridhub.domain.market import Delivery, DeliveryStatus
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.errors import Conflict, Forbidden, InvalidRequest, RateLimited
from gridhub.grid.topologies import TopologyService
from gridhub.services.market_reads import MarketReads
from gridhub.services.webhook_guard import WebhookGuard
from gridhub.services.webhooks import Refusal, Target, WebhookConfig
from gridhub.storage.access_catalog import DuckDBAccessCatalog
from gridhub.storage.base import StateValue
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.duckdb_topologies import DuckDBTopologies
from gridhub.storage.market_readings import MarketReadings
from gridhub.storage.market_store import MarketStore
from gridhub.storage.registry import Registry

CONSUMED = "electricity.power.active.consumed.total"
INJECTED = "electricity.power.active.injected.total"
VOLTAGE = "electricity.voltage.rms.l1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    registry: Registry
    directory: Directory
    access: AccessControl
    clock: Clock
    market: MarketReads  # the market hub's retailer reads and routing, over the same access

    def tenant(self, tenant: str) -> None:
        """A tenant with two households (s1, s2) and a grid node (s3), one device each."""
        self.registry.create_tenant(Tenant(tenant, tenant))
        self.registry.register_sites([Site(tenant, s) for s in ("s1", "s2", "s3")])
        self.registry.register_devices(
            [Device(tenant, f"m{i}", "smart-meter", f"s{i}") for i in (1, 2, 3)]
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = DuckDBDatabase(Path(tmp_path_factory.mktemp("access")) / "gridhub.duckdb")
    registry = Registry(DuckDBCatalog(db))
    directory = Directory(DuckDBAccessCatalog(db), registry)
    clock = Clock()
    access = AccessControl(directory, registry, clock)
    market = MarketReads(
        MarketStore(db),
        MarketReadings(db),
        registry,
        TopologyService(DuckDBTopologies(db), registry),
        TokenService(DuckDBCatalog(db)),
        access,
        webhook_config=WebhookConfig(guard=WebhookGuard(["retailer.example"])),  # no DNS
    )
    yield World(registry, directory, access, clock, market)
    db.close()


_tenants = itertools.count()


@pytest.fixture
def t(world: World) -> str:
    """A fresh tenant per test, with customers alice (s1) and bob (s2) and other stakeholders."""
    tenant = f"t{next(_tenants)}"
    world.tenant(tenant)
    d = world.directory
    d.create_stakeholder(tenant, "alice", Kind.CUSTOMER, site="s1")
    d.create_stakeholder(tenant, "bob", Kind.CUSTOMER, site="s2")
    for sid, kind in (
        ("r1", Kind.RETAILER),
        ("r2", Kind.RETAILER),
        ("agg", Kind.AGGREGATOR),
        ("dso", Kind.DSO),
        ("res", Kind.RESEARCHER),
    ):
        d.create_stakeholder(tenant, sid, kind)
    return tenant


def who(tenant: str, stakeholder: str, role: str, service: str | None = None) -> Principal:
    return Principal(f"tok-{stakeholder}", tenant, role, stakeholder, service)


def windows(
    world: World, p: Principal, t: str, device: str, ident: str, lo: float, hi: float
) -> list[tuple[datetime, datetime]]:
    return world.access.decide_read(p, t, device, ident, h(lo), h(hi)).spans()


def test_customer_reads_its_own_site_only(world: World, t: str) -> None:
    alice = who(t, "alice", "customer")
    assert windows(world, alice, t, "m1", CONSUMED, 0, 10) == [(h(0), h(10))]
    assert windows(world, alice, t, "m1", ALERTS, 0, 10) == [(h(0), h(10))]
    for device in ("m2", "m3"):
        with pytest.raises(Forbidden):
            world.access.authorize_read(alice, t, device, CONSUMED, h(0), h(10))


def test_admins_devices_and_other_tenants(world: World, t: str) -> None:
    assert windows(world, Principal("a", t, "admin"), t, "m2", VOLTAGE, 0, 5) == [(h(0), h(5))]
    assert windows(world, Principal("root", None, "admin"), t, "m2", CONSUMED, 0, 5) == [
        (h(0), h(5))
    ]
    for p in (
        Principal("d", t, "device"),
        Principal("x", "elsewhere", "admin"),
        Principal("legacy", t, "researcher"),  # a token without stakeholder reads nothing
        who("elsewhere", "alice", "customer"),
    ):
        assert not world.access.decide_read(p, t, "m1", CONSUMED, h(0), h(5)).allowed, p


def test_retailer_reads_consumption_only_while_its_contract_runs(world: World, t: str) -> None:
    world.directory.create_contract(t, "alice", "r1", h(10), h(20))
    r1 = who(t, "r1", "retailer")
    assert windows(world, r1, t, "m1", CONSUMED, 0, 30) == [(h(10), h(20))]
    assert windows(world, r1, t, "m1", CONSUMED, 12, 15) == [(h(12), h(15))]
    for lo, hi in ((0, 10), (20, 30)):  # before and after (an expired contract)
        with pytest.raises(Forbidden):
            world.access.authorize_read(r1, t, "m1", CONSUMED, h(lo), h(hi))
    with pytest.raises(Forbidden):  # not its client's voltage, nor bob's consumption
        world.access.authorize_read(r1, t, "m1", VOLTAGE, h(10), h(20))
    with pytest.raises(Forbidden):
        world.access.authorize_read(r1, t, "m2", CONSUMED, h(10), h(20))
    with pytest.raises(Forbidden):  # injection is the aggregator's, not the retailer's
        world.access.authorize_read(r1, t, "m1", INJECTED, h(10), h(20))


def test_supplier_switch(world: World, t: str) -> None:
    world.directory.create_contract(t, "alice", "r1", h(0))
    ended, started = world.directory.switch_supplier(t, "alice", "r2", h(100))
    assert ended is not None and ended.end == h(100) and started.start == h(100)
    r1, r2 = who(t, "r1", "retailer"), who(t, "r2", "retailer")
    # the old retailer keeps its own period, loses everything after the switch
    assert windows(world, r1, t, "m1", CONSUMED, 50, 150) == [(h(50), h(100))]
    assert windows(world, r2, t, "m1", CONSUMED, 50, 150) == [(h(100), h(150))]
    with pytest.raises(Forbidden):
        world.access.authorize_read(r1, t, "m1", CONSUMED, h(100), h(101))
    assert world.access.may_read(r1, t, "m1", CONSUMED, h(99.9))
    assert not world.access.may_read(r1, t, "m1", CONSUMED, h(100))
    with pytest.raises(Conflict):  # one retailer at a time
        world.directory.create_contract(t, "alice", "r1", h(120), h(130))
    # an aggregator contract is of another kind: it may run alongside
    world.directory.create_contract(t, "alice", "agg", h(0))
    agg = who(t, "agg", "aggregator")
    assert windows(world, agg, t, "m1", INJECTED, 0, 1) == [(h(0), h(1))]


def test_latest_state_needs_a_running_grant(world: World, t: str) -> None:
    world.directory.create_contract(t, "alice", "r1", h(0), h(10))
    values = [StateValue(CONSUMED, h(5), 1.0, h(5)), StateValue(VOLTAGE, h(5), 230.0, h(5))]
    r1 = who(t, "r1", "retailer")
    assert world.access.filter_latest(r1, t, "m1", values, h(6)) == values[:1]
    with pytest.raises(Forbidden):  # the contract has ended: no latest state
        world.access.filter_latest(r1, t, "m1", values, h(11))
    dso = who(t, "dso", "dso")
    assert world.access.filter_latest(dso, t, "m1", values, h(11)) == values[1:]


def test_dso_reads_grid_measurements_and_grid_devices(world: World, t: str) -> None:
    dso = who(t, "dso", "dso")
    assert windows(world, dso, t, "m1", VOLTAGE, 0, 1) == [(h(0), h(1))]
    assert not world.access.decide_read(dso, t, "m1", CONSUMED, h(0), h(1)).allowed
    # s3 has no customer: a grid node, every identifier
    assert windows(world, dso, t, "m3", CONSUMED, 0, 1) == [(h(0), h(1))]


def test_versioned_policy_applies_by_value_time(world: World, t: str) -> None:
    d = world.directory
    res = who(t, "res", "researcher")
    assert not world.access.decide_read(res, t, "m1", CONSUMED, h(0), h(100)).allowed
    policy = d.create_policy(
        t, grantee="res", identifier="electricity.*", site="s1", read=True, write=False,
        valid_from=h(10),
    )  # fmt: skip
    d.add_policy_version(t, policy.id, read=False, write=False, valid_from=h(20))
    d.add_policy_version(t, policy.id, read=True, write=True, valid_from=h(30))
    assert windows(world, res, t, "m1", CONSUMED, 0, 100) == [(h(10), h(20)), (h(30), h(100))]
    assert not world.access.decide_read(res, t, "m1", CONSUMED, h(20), h(30)).allowed
    assert not world.access.decide_read(res, t, "m2", CONSUMED, h(0), h(100)).allowed  # site s2
    assert not world.access.decide_write(res, t, "m1", CONSUMED, h(15))
    assert world.access.decide_write(res, t, "m1", CONSUMED, h(35))
    with pytest.raises(InvalidRequest):  # versions move forward only
        d.add_policy_version(t, policy.id, read=True, write=False, valid_from=h(25))
    with pytest.raises(InvalidRequest):  # an owner cannot back-date
        d.add_policy_version(t, policy.id, read=True, write=False, valid_from=h(40),
                             may_backdate=False)  # fmt: skip


def test_owner_policy_overrides_the_contract_default(world: World, t: str) -> None:
    d = world.directory
    d.create_contract(t, "alice", "r1", h(0))
    r1 = who(t, "r1", "retailer")
    # the owner withdraws the retailer's reads from h(50) on; earlier values keep the default
    d.create_policy(
        t, grantee="r1", identifier=CONSUMED, site="s1", read=False, write=False,
        valid_from=h(50),
    )  # fmt: skip
    assert windows(world, r1, t, "m1", CONSUMED, 0, 100) == [(h(0), h(50))]
    # a policy for one service only does not touch the others
    d.create_policy(
        t, grantee="r1", service="billing", identifier="*", site="s1", read=True, write=False,
        valid_from=h(50),
    )  # fmt: skip
    billing = who(t, "r1", "retailer", service="billing")
    assert windows(world, billing, t, "m1", CONSUMED, 0, 100) == [(h(0), h(100))]
    assert windows(world, billing, t, "m1", VOLTAGE, 0, 100) == [(h(50), h(100))]


def test_minimum_delay_between_reads(world: World, t: str) -> None:
    world.directory.create_policy(
        t, grantee="res", identifier=CONSUMED, read=True, write=False, min_delay_s=60,
        valid_from=h(0),
    )  # fmt: skip
    res = who(t, "res", "researcher")
    world.access.authorize_read(res, t, "m1", CONSUMED, h(0), h(1))
    world.clock.now += 20
    with pytest.raises(RateLimited) as refused:
        world.access.authorize_read(res, t, "m1", CONSUMED, h(0), h(1))
    assert refused.value.retry_after == pytest.approx(40)
    world.access.authorize_read(res, t, "m2", CONSUMED, h(0), h(1))  # another series
    world.clock.now += 40
    world.access.authorize_read(res, t, "m1", CONSUMED, h(0), h(1))


def test_contract_validation(world: World, t: str) -> None:
    d = world.directory
    with pytest.raises(InvalidRequest):
        d.create_contract(t, "r1", "r2", h(0))  # r1 is no customer
    with pytest.raises(InvalidRequest):
        d.create_contract(t, "alice", "dso", h(0))  # a DSO supplies no contract
    with pytest.raises(InvalidRequest):
        d.create_contract(t, "alice", "r1", h(5), h(5))
    with pytest.raises(InvalidRequest):
        d.create_stakeholder(t, "carol", Kind.CUSTOMER)  # a customer needs a site


def test_window_arithmetic() -> None:
    assert union([(5, 7), (1, 3), (2, 4), (7, 8)]) == [(1, 4), (5, 8)]
    assert subtract([(0, 10)], [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]
    assert from_us(to_us(h(1.5))) == h(1.5)


# -- property: no routing path sends a client's data to a retailer without a running contract ----
#
# One generated history of alice's supply contracts (switches, ends) is checked on every path that
# can hand a client's data to a retailer: the enforcement point (series reads, per-value delivery,
# latest state) and the market hub (who supplies whom from the contracts, the windows a billing or
# profile request reads, the routing of DSO requests, and the check before each webhook attempt).

RETAILERS = ("r1", "r2")
_property_tenants = itertools.count()
ADMIN = Principal("tok-admin", None, "admin")

# events in hours: (time, new retailer or None = the contract ends without a successor)
events = st.lists(
    st.tuples(st.integers(0, 200), st.sampled_from((*RETAILERS, None))), max_size=8
).map(lambda es: sorted({t: s for t, s in es}.items()))
reads = st.lists(
    st.tuples(st.sampled_from(RETAILERS), st.integers(-10, 220), st.integers(1, 60)),
    min_size=1,
    max_size=10,
)


def reference(timeline: list[tuple[int, str | None]], retailer: str, hour: float) -> bool:
    """The supplier at ``hour`` is the last event's at or before it."""
    current = None
    for at, supplier in timeline:
        if at <= hour:
            current = supplier
    return current == retailer


def _hours(windows: list[tuple[datetime, datetime]], start: int, length: int) -> list[int]:
    """The whole hours of ``[start, start + length)`` the windows cover (at their middle)."""
    return [
        hour
        for hour in range(start, start + length)
        if any(lo <= h(hour + 0.5) < hi for lo, hi in windows)
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(events=events, reads=reads, aggregator=st.booleans())
def test_no_client_data_without_a_running_contract(
    world: World,
    events: list[tuple[int, str | None]],
    reads: list[tuple[str, int, int]],
    aggregator: bool,
) -> None:
    tenant = f"p{next(_property_tenants)}"
    world.tenant(tenant)
    d = world.directory
    d.create_stakeholder(tenant, "alice", Kind.CUSTOMER, site="s1")
    d.create_stakeholder(tenant, "bob", Kind.CUSTOMER, site="s2")
    for r in RETAILERS:
        d.create_stakeholder(tenant, r, Kind.RETAILER)
        world.market.register_retailer(
            ADMIN, tenant, r, name=r, webhook_url="http://retailer.example/hook", issue_token=False
        )
    d.create_stakeholder(tenant, "agg", Kind.AGGREGATOR)
    if aggregator:  # another kind of contract must not widen a retailer's access
        d.create_contract(tenant, "alice", "agg", h(0))
    # bob's contracts with the same retailers must not leak alice's data either
    d.create_contract(tenant, "bob", "r1", h(0))
    timeline: list[tuple[int, str | None]] = []
    current: str | None = None
    for at, supplier in events:
        if supplier == current:
            continue
        if supplier is None:
            running = [c for c in d.contracts(tenant, customer="alice") if c.end is None
                       and c.supplier in RETAILERS]  # fmt: skip
            d.end_contract(tenant, running[0].id, h(at))
        else:
            d.switch_supplier(tenant, "alice", supplier, h(at))
        timeline.append((at, supplier))
        current = supplier
    market = world.market
    for retailer, start, length in reads:
        p = who(tenant, retailer, "retailer")
        lo, hi = h(start), h(start + length)
        expected = [hour for hour in range(start, start + length)
                    if reference(timeline, retailer, hour)]  # fmt: skip
        decision = world.access.decide_read(p, tenant, "m1", CONSUMED, lo, hi)
        assert _hours(decision.spans(), start, length) == expected, (timeline, retailer, start)
        # the per-value check (subscriptions, notifications) agrees with the reference
        for hour in (start, start + length // 2):
            assert world.access.may_read(p, tenant, "m1", CONSUMED, h(hour)) == reference(
                timeline, retailer, hour
            )
        # the latest state is shown only while the contract runs now
        value = [StateValue(CONSUMED, h(start), 1.0, h(start))]
        try:
            shown = world.access.filter_latest(p, tenant, "m1", value, hi)
        except Forbidden:
            shown = []
        if shown:
            assert reference(timeline, retailer, start + length)
            assert reference(timeline, retailer, start)
        # market hub: the supply windows come from the contracts alone
        supply = market.directory.supply_windows(tenant, retailer, "s1", lo, hi)
        assert _hours(supply, start, length) == expected
        # a billing or profile request reads alice's meter only inside the retailer's contract
        readable = market.readable(p, tenant, retailer, None, CONSUMED, lo, hi)
        assert _hours(readable.allowed.get("s1", {}).get("m1", []), start, length) == expected
        assert set(readable.allowed) <= {"s1", "s2"}  # s3 is nobody's client
        if expected:
            named = market.readable(p, tenant, retailer, ["s1"], CONSUMED, lo, hi)
            assert _hours(named.allowed["s1"]["m1"], start, length) == expected
        else:
            with pytest.raises(Forbidden):
                market.readable(p, tenant, retailer, ["s1"], CONSUMED, lo, hi)
        # routing a DSO request at an instant: alice's site only to her retailer then
        for hour in (start, start + length // 2):
            routed = market.by_retailer(tenant, ["s1", "s2", "s3"], h(hour + 0.5))
            assert ("s1" in routed.get(retailer, [])) == reference(timeline, retailer, hour)
            assert all(r in RETAILERS for r in routed)
    # a webhook naming alice goes out (now) only to the retailer whose contract runs now
    for retailer in RETAILERS:
        delivery = Delivery("d", tenant, "req", retailer, "emergency.announced", b"{}",
                            DeliveryStatus.PENDING, h(0), h(0), clients=("s1",))  # fmt: skip
        target = market._hook_target(delivery)
        if reference(timeline, retailer, 10**6):  # the hours of the timeline lie in the past
            assert isinstance(target, Target)
        else:
            assert isinstance(target, Refusal)


def test_a_policy_on_one_identifier_leaves_the_others_to_the_defaults(world: World, t: str) -> None:
    d = world.directory
    d.create_contract(t, "alice", "r1", h(0))
    d.create_policy(t, grantee="r1", identifier=CONSUMED, site="s1", read=False, write=False,
                    valid_from=h(0))  # fmt: skip
    r1 = who(t, "r1", "retailer")
    energy = "electricity.energy.active.consumed.total"
    assert not world.access.may_read(r1, t, "m1", CONSUMED, h(5))
    assert world.access.may_read(r1, t, "m1", energy, h(5))
    assert world.access.may_read(r1, t, "m1", None, h(5))  # the device is still visible
    values = [StateValue(CONSUMED, h(5), 1.0, h(5)), StateValue(energy, h(5), 2.0, h(5))]
    assert world.access.filter_latest(r1, t, "m1", values, h(6)) == values[1:]
