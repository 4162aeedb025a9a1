"""Market hub logic: webhook signatures, request fingerprints, who supplies whom (the access
layer's contracts, on a real temporary catalog), areas and the simulator's statistics."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridhub.access.directory import Directory
from gridhub.access.tokens import Principal
from gridhub.domain.access import Kind as K
from gridhub.domain.market import RequestKind, fingerprint
from gridhub.domain.registry import Site, Tenant
from gridhub.errors import Conflict, Forbidden, InvalidRequest
from gridhub.services.market import Area, check_key
from gridhub.services.market_directory import ContractsMarketDirectory, retailer_of
from gridhub.services.webhooks import sign, verify
from gridhub.sim.market import percentile
from gridhub.storage.access_catalog import DuckDBAccessCatalog
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.registry import Registry

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"event":"emergency.announced"}'
    sig = sign("s3cret", 1_800_000_000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", "1800000000", body, sig, now=1_800_000_010)
    assert not verify("other", "1800000000", body, sig, now=1_800_000_010)  # wrong secret
    assert not verify("s3cret", "1800000000", body + b" ", sig, now=1_800_000_010)  # tampered
    assert not verify("s3cret", "1800000001", body, sig, now=1_800_000_010)  # timestamp changed
    assert not verify("s3cret", "1800000000", body, sig, now=1_800_000_400)  # replayed late
    assert not verify("s3cret", None, body, sig) and not verify("s3cret", "x", body, sig)


def test_fingerprint_ignores_key_order_and_sees_content() -> None:
    a = fingerprint(RequestKind.BILLING, {"from": "a", "sites": ["x"]})
    assert a == fingerprint(RequestKind.BILLING, {"sites": ["x"], "from": "a"})
    assert a != fingerprint(RequestKind.PROFILE, {"from": "a", "sites": ["x"]})
    assert a != fingerprint(RequestKind.BILLING, {"from": "a", "sites": ["y"]})


def test_keys_and_areas_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="idempotency key"):
        check_key(None)
    with pytest.raises(InvalidRequest):
        check_key("k" * 129)
    assert check_key("k") == "k"
    with pytest.raises(InvalidRequest, match="exactly one"):
        Area(node="n1", sites=("a",))
    with pytest.raises(InvalidRequest, match="exactly one"):
        Area()
    with pytest.raises(InvalidRequest, match="unknown group attribute"):
        Area(attribute="colour", value="red")
    assert Area(node="n1").describe() == {"node": "n1"}


@dataclass
class World:
    registry: Registry
    directory: Directory


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The real registry and access directory on a temporary DuckDB."""
    db = DuckDBDatabase(Path(tmp_path_factory.mktemp("market")) / "gridhub.duckdb")
    registry = Registry(DuckDBCatalog(db))
    yield World(registry, Directory(DuckDBAccessCatalog(db), registry))
    db.close()


_tenants = itertools.count()


def _tenant(world: World) -> str:
    """A tenant with households hh1, hh2 (customers alice, bob), retailers r1, r2, r3 and an
    aggregator."""
    t = f"m{next(_tenants)}"
    world.registry.create_tenant(Tenant(t, t))
    world.registry.register_sites([Site(t, s) for s in ("hh1", "hh2")])
    world.directory.create_stakeholders(
        t,
        [
            ("alice", K.CUSTOMER, "", "hh1"),
            ("bob", K.CUSTOMER, "", "hh2"),
            ("r1", K.RETAILER, "", None),
            ("r2", K.RETAILER, "", None),
            ("r3", K.RETAILER, "", None),
            ("agg", K.AGGREGATOR, "", None),
        ],
    )
    return t


def test_contracts_directory_answers_from_contracts(world: World) -> None:
    t = _tenant(world)
    d = world.directory
    switch = T0 + timedelta(days=5)
    d.create_contracts(
        t,
        [
            ("alice", "r1", T0, None, None),
            ("bob", "r1", T0, None, None),
            ("bob", "agg", T0, None, None),  # an aggregator is no retailer
        ],
    )
    d.switch_supplier(t, "alice", "r2", switch)
    m = ContractsMarketDirectory(d)
    week = (T0, T0 + timedelta(days=7))
    assert m.supply_windows(t, "r1", "hh1", *week) == [(T0, switch)]
    assert m.supply_windows(t, "r2", "hh1", *week) == [(switch, week[1])]
    assert m.supply_windows(t, "agg", "hh2", *week) == []
    assert m.supply_windows(t, "r3", "hh1", *week) == []
    assert m.supply_windows(t, "alice", "hh1", *week) == []  # a customer supplies nobody
    assert m.supplies(t, "r1", "hh1", switch - timedelta(microseconds=1))
    assert not m.supplies(t, "r1", "hh1", switch)
    assert m.by_retailer(t, ["hh1", "hh2", "nowhere"], switch) == {"r1": ["hh2"], "r2": ["hh1"]}
    assert m.by_retailer(t, ["hh1", "hh2"], T0) == {"r1": ["hh1", "hh2"]}
    assert m.by_retailer(t, ["hh1"], T0 - timedelta(seconds=1)) == {}  # before any contract
    # a disabled retailer supplies nobody any more, and is routed nothing
    d.disable_stakeholder(t, "r1")
    assert m.retailer(t, "r1") is None
    assert m.supply_windows(t, "r1", "hh2", *week) == []
    assert m.by_retailer(t, ["hh1", "hh2"], switch) == {"r2": ["hh1"]}


def test_bulk_contracts_are_all_or_nothing(world: World) -> None:
    t = _tenant(world)
    d = world.directory
    before = d.contracts(t)
    with pytest.raises(Conflict):  # the second overlaps the first: neither is made
        d.create_contracts(
            t,
            [("alice", "r1", T0, None, None), ("alice", "r2", T0 + timedelta(days=1), None, None)],
        )
    with pytest.raises(InvalidRequest):  # a retailer is not a customer
        d.create_contracts(t, [("bob", "r1", T0, None, None), ("r2", "r1", T0, None, None)])
    assert d.contracts(t) == before
    made = d.create_contracts(
        t,
        [
            ("alice", "r1", T0, T0 + timedelta(days=1), "c1"),
            ("alice", "r2", T0 + timedelta(days=1), None, "c2"),
        ],
    )
    assert [c.id for c in made] == ["c1", "c2"]
    assert ContractsMarketDirectory(d).by_retailer(t, ["hh1"], T0 + timedelta(days=2)) == {
        "r2": ["hh1"]
    }


def test_retailer_of_takes_the_token_stakeholder() -> None:
    assert retailer_of(Principal("tok1", "t", "retailer", "r7")) == "r7"
    with pytest.raises(Forbidden, match="no stakeholder"):
        retailer_of(Principal("tok2", "t", "retailer"))  # a retailer token of nobody
    with pytest.raises(Forbidden):
        retailer_of(Principal("tok3", "t", "dso", "r7"))  # not a retailer token


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0
