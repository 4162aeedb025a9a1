"""Subscriptions, pure parts: conditions, aggregates, windows, signatures, backoff, the seam."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gridhub.access.tokens import Principal
from gridhub.domain.subscriptions import (
    Op,
    PeriodicFunction,
    aggregate,
    make_condition,
    retry_delay,
    sign,
    verify,
    window_of,
)
from gridhub.services.subscriptions import may_read, principal_of
from gridhub.storage.base import TokenRecord
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.subscriptions_store import DeliveryRecord, SubscriptionStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("op", "fields", "value", "expected"),
    [
        (Op.ABOVE, {"value": 10.0}, 10.5, True),
        (Op.ABOVE, {"value": 10.0}, 10.0, False),  # strictly above
        (Op.ABOVE, {"value": -1.0}, -2.0, False),
        (Op.BELOW, {"value": 10.0}, 9.99, True),
        (Op.BELOW, {"value": 10.0}, 10.0, False),
        (Op.OUTSIDE, {"lo": 207.0, "hi": 253.0}, 206.9, True),
        (Op.OUTSIDE, {"lo": 207.0, "hi": 253.0}, 253.1, True),
        (Op.OUTSIDE, {"lo": 207.0, "hi": 253.0}, 207.0, False),  # the range is closed
        (Op.OUTSIDE, {"lo": 207.0, "hi": 253.0}, 230.0, False),
        (Op.EQUAL, {"value": 1.0}, 1.0, True),
        (Op.EQUAL, {"value": 1.0}, 1.0000001, False),  # no tolerance: exact
        (Op.EQUAL, {"value": 1.0, "tolerance": 0.01}, 1.009, True),
        (Op.EQUAL, {"value": 1.0, "tolerance": 0.01}, 0.99, True),
        (Op.EQUAL, {"value": 1.0, "tolerance": 0.01}, 1.02, False),
    ],
)
def test_conditions(op: Op, fields: dict[str, float], value: float, expected: bool) -> None:
    assert make_condition(op, **fields).holds(value) is expected


@pytest.mark.parametrize(
    ("op", "fields", "message"),
    [
        ("greater", {"value": 1.0}, "unknown condition op"),
        ("above", {}, "needs value"),
        ("outside", {"lo": 1.0}, "needs lo and hi"),
        ("outside", {"lo": 2.0, "hi": 2.0}, "lo < hi"),
        ("above", {"value": 1.0, "lo": 0.0}, "not lo"),
        ("below", {"value": math.nan}, "finite"),
        ("above", {"value": math.inf}, "finite"),
        ("above", {"value": 1.0, "tolerance": 0.1}, "equal"),
        ("equal", {"value": 1.0, "tolerance": -0.1}, ">= 0"),
    ],
)
def test_bad_conditions_say_why(op: str, fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_condition(op, **fields)


def test_condition_round_trips_through_its_dict() -> None:
    for cond in (
        make_condition("above", value=3.0),
        make_condition("outside", lo=1.0, hi=2.0),
        make_condition("equal", value=5.0, tolerance=0.5),
    ):
        d = cond.as_dict()
        op = d.pop("op")
        assert make_condition(str(op), **{k: float(v) for k, v in d.items()}) == cond


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (PeriodicFunction.AVG, 2.5),
        (PeriodicFunction.MIN, 1.0),
        (PeriodicFunction.MAX, 4.0),
        (PeriodicFunction.SUM, 10.0),
        (PeriodicFunction.COUNT, 4.0),
        (PeriodicFunction.FIRST, 3.0),
        (PeriodicFunction.LAST, 2.0),
        (PeriodicFunction.LATEST, 2.0),
    ],
)
def test_aggregates(function: PeriodicFunction, expected: float) -> None:
    assert aggregate(function, [3.0, 1.0, 4.0, 2.0]) == expected


def test_aggregate_of_nothing() -> None:
    assert aggregate(PeriodicFunction.AVG, []) is None
    assert aggregate(PeriodicFunction.COUNT, []) == 0.0


def test_windows_are_aligned_to_the_epoch() -> None:
    assert window_of(1000.5, 60) == (900.0, 960.0)
    assert window_of(960.0, 60) == (900.0, 960.0)
    assert window_of(959.99, 60) == (840.0, 900.0)
    start, end = window_of(NOW.timestamp() + 7, 900)
    assert end == NOW.timestamp() and end - start == 900


def test_signature_verifies_and_refuses_tampering_and_replay() -> None:
    secret, body, ts = "whsec_abc", b'{"value":1.5}', 1_790_000_000
    signature = sign(secret, ts, body)
    assert signature.startswith("sha256=")
    assert verify(secret, str(ts), body, signature, now_s=ts + 10)
    assert not verify(secret, ts, b'{"value":9.5}', signature, now_s=ts)  # body changed
    assert not verify("whsec_other", ts, body, signature, now_s=ts)  # wrong key
    assert not verify(secret, ts + 1, body, signature, now_s=ts)  # timestamp changed
    assert not verify(secret, ts, body, signature, now_s=ts + 301)  # too old: a replay
    assert not verify(secret, "soon", body, signature, now_s=ts)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [retry_delay(a, 2.0, 30.0) for a in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_seam_scopes_to_the_tenant_and_refuses_devices() -> None:
    at = NOW
    assert may_read(Principal("t1", "linear", "retailer"), "linear", "m", "x", at)
    assert not may_read(Principal("t1", "linear", "retailer"), "other", "m", "x", at)
    assert not may_read(Principal("t2", "linear", "device"), "linear", "m", "x", at)
    assert may_read(Principal("t3", None, "admin"), "any", "m", "x", at)


def test_principal_of_follows_revocation() -> None:
    record = TokenRecord("abc", "h", "linear", "dso", "n", NOW - timedelta(days=1))
    who = principal_of(record, NOW)
    assert who is not None and (who.token_id, who.tenant, who.role) == ("abc", "linear", "dso")
    assert principal_of(replace(record, revoked=True), NOW) is None


def test_delivery_log_keeps_the_newest_per_subscription() -> None:
    db = DuckDBDatabase(":memory:")
    store = SubscriptionStore(db, keep=3)
    records = [
        DeliveryRecord("t", sub, f"d{i}", 1, NOW + timedelta(seconds=i), "retry", 500, "")
        for sub, n in (("a", 5), ("b", 2))
        for i in range(n)
    ]
    store.log(records)
    assert [r.delivery for r in store.deliveries("t", "a", 10)] == ["d4", "d3", "d2"]
    assert [r.delivery for r in store.deliveries("t", "b", 10)] == ["d1", "d0"]
    assert store.deliveries("other", "a", 10) == []  # scoped to the tenant
    db.close()
