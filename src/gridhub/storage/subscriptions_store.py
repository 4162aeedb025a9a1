"""Durable subscriptions and their webhook delivery log, on DuckDB.

Subscriptions are few and read once at start (a restarted hub restores them all); the delivery
log grows with every webhook attempt, so it is written in batches and pruned to the newest
:data:`KEEP_PER_SUBSCRIPTION` entries of each subscription.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gridhub.domain.subscriptions import (
    Channel,
    Condition,
    Kind,
    Op,
    PeriodicFunction,
    Subscription,
)
from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["DeliveryRecord", "SubscriptionStore"]

KEEP_PER_SUBSCRIPTION = 1000
_COLUMNS = (
    "id, tenant, token_id, kind, device, identifier, channel, spec, webhook_url, webhook_secret,"
    " created"
)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One attempt to deliver one notification (webhook or MQTT)."""

    tenant: str
    subscription: str
    delivery: str
    attempt: int
    at: datetime
    outcome: str  # delivered, retry, failed, refused, dropped
    status: int | None  # the HTTP status, when there was one
    detail: str


def _spec(sub: Subscription) -> str:
    return json.dumps(
        {
            "condition": sub.condition.as_dict() if sub.condition is not None else None,
            "period_s": sub.period_s,
            "function": sub.function.value if sub.function is not None else None,
        }
    )


def _row(sub: Subscription) -> tuple[Any, ...]:
    return (
        sub.id,
        sub.tenant,
        sub.token_id,
        sub.kind.value,
        sub.device,
        sub.identifier,
        sub.channel.value,
        _spec(sub),
        sub.webhook_url,
        sub.webhook_secret,
        datetime.fromtimestamp(sub.created, UTC),
    )


def _sub(row: tuple[Any, ...]) -> Subscription:
    id_, tenant, token, kind, device, identifier, channel, spec, url, secret, created = row
    parsed = json.loads(spec)
    cond = parsed["condition"]
    condition = None
    if cond is not None:
        condition = Condition(
            Op(cond["op"]),
            cond.get("value"),
            cond.get("lo"),
            cond.get("hi"),
            cond.get("tolerance", 0.0),
        )
    function = parsed["function"]
    return Subscription(
        id=id_,
        tenant=tenant,
        token_id=token,
        kind=Kind(kind),
        device=device,
        identifier=identifier,
        channel=Channel(channel),
        created=created.timestamp(),
        condition=condition,
        period_s=parsed["period_s"],
        function=PeriodicFunction(function) if function is not None else None,
        webhook_url=url,
        webhook_secret=secret,
    )


class SubscriptionStore:
    def __init__(self, db: DuckDBDatabase, keep: int = KEEP_PER_SUBSCRIPTION) -> None:
        self._db = db
        self.keep = keep  # log entries kept per subscription
        self._logged = 0

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "subscription store read")

    def _write(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.write([(sql, rows)], "subscription store write")

    def all(self) -> list[Subscription]:
        """Every subscription (what a starting hub restores)."""
        return [_sub(r) for r in self._rows(f"SELECT {_COLUMNS} FROM subscriptions ORDER BY id")]

    def add(self, sub: Subscription) -> None:
        self._write(
            f"INSERT INTO subscriptions ({_COLUMNS}) VALUES ({', '.join('?' * 11)})", [_row(sub)]
        )

    def delete(self, tenant: str, subscription_id: str) -> None:
        self._write(
            "DELETE FROM subscriptions WHERE tenant = ? AND id = ?", [(tenant, subscription_id)]
        )

    def log(self, records: Sequence[DeliveryRecord]) -> None:
        """Append delivery attempts; now and then keep only the newest per subscription."""
        if not records:
            return
        self._write(
            "INSERT INTO subscription_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.tenant,
                    r.subscription,
                    r.delivery,
                    r.attempt,
                    r.at,
                    r.outcome,
                    r.status,
                    r.detail,
                )
                for r in records
            ],
        )
        self._logged += len(records)
        if self._logged >= self.keep:
            self._logged = 0
            self._write(
                "DELETE FROM subscription_deliveries"
                " WHERE (subscription, delivery, attempt, sent) IN ("
                "   SELECT subscription, delivery, attempt, sent FROM ("
                "     SELECT *, row_number() OVER"
                "       (PARTITION BY subscription ORDER BY sent DESC) AS n"
                "     FROM subscription_deliveries)"
                "   WHERE n > ?)",
                [(self.keep,)],
            )

    def deliveries(self, tenant: str, subscription_id: str, limit: int) -> list[DeliveryRecord]:
        """The newest attempts first."""
        return [
            DeliveryRecord(*r)
            for r in self._rows(
                "SELECT tenant, subscription, delivery, attempt, sent, outcome, status, detail"
                " FROM subscription_deliveries WHERE tenant = ? AND subscription = ?"
                " ORDER BY sent DESC, attempt DESC LIMIT ?",
                [tenant, subscription_id, limit],
            )
        ]
