"""Market hub pure logic: webhook signatures, request fingerprints, supplier directories,
areas and the simulator's statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest

from gridhub.access.tokens import Principal
from gridhub.domain.market import RequestKind, Supply, fingerprint
from gridhub.errors import Conflict, Forbidden, InvalidRequest
from gridhub.services.market import Area, check_key
from gridhub.services.market_directory import (
    ContractsMarketDirectory,
    RegistryMarketDirectory,
    is_supplier,
    retailer_of,
)
from gridhub.services.webhooks import sign, verify
from gridhub.sim.market import percentile

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


class FakeStore:
    def __init__(self) -> None:
        self.rows: list[Supply] = []
        self.writes = 0

    def supplies(self) -> list[Supply]:
        return list(self.rows)

    def put_supplies(self, ended: list[Supply], added: list[Supply]) -> None:
        self.writes += 1
        for e in ended:
            self.rows = [r for r in self.rows if (r.site, r.start) != (e.site, e.start)] + [e]
        self.rows += added


def test_registry_directory_switch_keeps_each_supplier_its_period() -> None:
    store = FakeStore()
    d = RegistryMarketDirectory(store)  # type: ignore[arg-type]
    switch = T0 + timedelta(days=10)
    d.set_suppliers("t", [("s1", "r1", T0), ("s2", "r2", T0)])
    d.set_suppliers("t", [("s1", "r2", switch)])
    assert store.writes == 2
    month = (T0, T0 + timedelta(days=30))
    assert d.supply_windows("t", "r1", "s1", *month) == [(T0, switch)]
    assert d.supply_windows("t", "r2", "s1", *month) == [(switch, month[1])]
    assert d.supply_windows("t", "r1", "s2", *month) == []
    assert is_supplier(d, "t", "r1", "s1", switch - timedelta(seconds=1))
    assert not is_supplier(d, "t", "r1", "s1", switch)
    assert d.suppliers("t", ["s1", "s2", "s9"], switch) == {"s1": "r2", "s2": "r2"}
    assert d.clients("t", "r2", switch) == ["s1", "s2"]
    assert d.clients("t", "r1", T0) == ["s1"]
    with pytest.raises(Conflict):
        d.set_suppliers("t", [("s1", "r1", T0)])  # before the running supply's start
    # the same supplier again changes nothing; a reload sees the same history
    d.set_suppliers("t", [("s2", "r2", switch)])
    again = RegistryMarketDirectory(store)  # type: ignore[arg-type]
    assert again.supply_windows("t", "r1", "s1", *month) == [(T0, switch)]
    assert again.suppliers("t", ["s2"], switch) == {"s2": "r2"}


class Kind(StrEnum):
    RETAILER = "retailer"
    CUSTOMER = "customer"
    AGGREGATOR = "aggregator"


@dataclass(frozen=True)
class Holder:
    id: str
    kind: Kind
    site: str | None = None


@dataclass(frozen=True)
class Contract:
    customer: str
    supplier: str
    start: datetime
    end: datetime | None = None


class FakeContracts:
    """The subset of the access layer's Directory the market hub uses, with its semantics."""

    def __init__(self, holders: list[Holder], contracts: list[Contract]) -> None:
        self.holders = {h.id: h for h in holders}
        self.list = contracts

    def contracts_at(self, tenant: str, supplier: str, site: str) -> list[Contract]:
        return [
            c for c in self.list if c.supplier == supplier and self.holders[c.customer].site == site
        ]

    def contracts_of(self, tenant: str, supplier: str) -> list[Contract]:
        return [c for c in self.list if c.supplier == supplier]

    def contracts(self, tenant: str, customer: Any = None, supplier: Any = None) -> list[Contract]:
        return [
            c
            for c in self.list
            if customer in (None, c.customer) and supplier in (None, c.supplier)
        ]

    def stakeholders(self, tenant: str) -> list[Holder]:
        return list(self.holders.values())

    def find_stakeholder(self, tenant: str, stakeholder_id: str) -> Holder | None:
        return self.holders.get(stakeholder_id)


def test_contracts_directory_answers_from_contracts() -> None:
    switch = T0 + timedelta(days=5)
    source = FakeContracts(
        [
            Holder("r1", Kind.RETAILER),
            Holder("r2", Kind.RETAILER),
            Holder("agg", Kind.AGGREGATOR),
            Holder("alice", Kind.CUSTOMER, "hh1"),
            Holder("bob", Kind.CUSTOMER, "hh2"),
        ],
        [
            Contract("alice", "r1", T0, switch),
            Contract("alice", "r2", switch),
            Contract("bob", "r1", T0),
            Contract("bob", "agg", T0),  # an aggregator is no retailer
        ],
    )
    d = ContractsMarketDirectory(source)
    week = (T0, T0 + timedelta(days=7))
    assert d.supply_windows("t", "r1", "hh1", *week) == [(T0, switch)]
    assert d.supply_windows("t", "agg", "hh2", *week) == []
    assert d.suppliers("t", ["hh1", "hh2"], switch) == {"hh1": "r2", "hh2": "r1"}
    assert d.clients("t", "r1", switch) == ["hh2"]
    assert d.clients("t", "r1", T0) == ["hh1", "hh2"]


def test_retailer_of_prefers_the_access_stakeholder() -> None:
    assert retailer_of(Principal("tok1", "t", "retailer"), {"tok1": "r1"}) == "r1"
    with pytest.raises(Forbidden):
        retailer_of(Principal("tok2", "t", "retailer"), {"tok1": "r1"})
    with pytest.raises(Forbidden):
        retailer_of(Principal("tok1", "t", "dso"), {"tok1": "r1"})

    @dataclass(frozen=True)
    class AccessPrincipal:
        token_id: str
        tenant: str
        role: str
        stakeholder: str | None

    who = AccessPrincipal("tok9", "t", "retailer", "r7")
    assert retailer_of(who, {}) == "r7"  # type: ignore[arg-type]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0
