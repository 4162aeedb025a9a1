"""Durable state of the market hub on DuckDB: retailer platforms, requests and deliveries.

Nothing about a request lives only in memory: the request (with its idempotency key and the
fingerprint of its content), its webhook deliveries (with the exact body to send and every
attempt's outcome) and the retailers' answers are rows here. A restarted hub reloads the
pending deliveries and carries on; a caller repeating a request finds it by its key. Writes go
through one lock, so concurrent webhook workers never race on a request's row.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gridhub.domain.market import (
    Delivery,
    DeliveryStatus,
    MarketRequest,
    RequestKind,
    RequestStatus,
    Retailer,
)
from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["MarketStore"]

_REQ = (
    "id, tenant, kind, issuer, key, fingerprint, created, status, params, result, deadline,"
    " finished, parent"
)
_DEL = (
    "id, tenant, request, retailer, event, body, status, created, next_attempt, attempts,"
    " last_code, last_error, delivered, answer, answered, clients"
)
_RET = "tenant, id, name, webhook_url, secret, token_id, created, disabled"


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _req(row: tuple[Any, ...]) -> MarketRequest:
    (id_, tenant, kind, issuer, key, fp, created, status, params, result, deadline, fin, parent) = (
        row
    )
    return MarketRequest(
        id_,
        tenant,
        RequestKind(kind),
        issuer,
        key,
        fp,
        created,
        RequestStatus(status),
        json.loads(params),
        json.loads(result) if result is not None else None,
        deadline,
        fin,
        parent,
    )


def _del(row: tuple[Any, ...]) -> Delivery:
    (id_, tenant, request, retailer, event, body, status, created, nxt, attempts) = row[:10]
    code, error, delivered, answer, answered, clients = row[10:]
    return Delivery(
        id_,
        tenant,
        request,
        retailer,
        event,
        bytes(body),
        DeliveryStatus(status),
        created,
        nxt,
        attempts,
        code,
        error,
        delivered,
        json.loads(answer) if answer is not None else None,
        answered,
        tuple(clients),
    )


def _del_row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.tenant,
        d.request,
        d.retailer,
        d.event,
        d.body,
        d.status.value,
        d.created,
        d.next_attempt,
        d.attempts,
        d.last_code,
        d.last_error,
        d.delivered,
        _json(d.answer),
        d.answered,
        list(d.clients),
    )


class MarketStore:
    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "market store read")

    def _write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run every (sql, rows) in one transaction."""
        with self._lock:
            self._db.write(statements, "market store write", bulk=True)

    # -- retailers --------------------------------------------------------------------------------

    def put_retailer(self, r: Retailer) -> None:
        self._write(
            [
                ("DELETE FROM market_retailers WHERE tenant = ? AND id = ?", [(r.tenant, r.id)]),
                (
                    f"INSERT INTO market_retailers ({_RET}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.tenant,
                            r.id,
                            r.name,
                            r.webhook_url,
                            r.secret,
                            r.token_id,
                            r.created,
                            r.disabled,
                        )
                    ],
                ),
            ]
        )

    def retailers(self) -> list[Retailer]:
        return [
            Retailer(*row)
            for row in self._rows(f"SELECT {_RET} FROM market_retailers ORDER BY tenant, id")
        ]

    # -- requests ---------------------------------------------------------------------------------

    def find_request(self, tenant: str, issuer: str, key: str) -> MarketRequest | None:
        rows = self._rows(
            f"SELECT {_REQ} FROM market_requests WHERE tenant = ? AND issuer = ? AND key = ?",
            [tenant, issuer, key],
        )
        return _req(rows[0]) if rows else None

    def request(self, tenant: str, request_id: str) -> MarketRequest | None:
        rows = self._rows(
            f"SELECT {_REQ} FROM market_requests WHERE tenant = ? AND id = ?", [tenant, request_id]
        )
        return _req(rows[0]) if rows else None

    def requests(
        self,
        tenant: str,
        *,
        kind: RequestKind | None = None,
        issuer: str | None = None,
        status: RequestStatus | None = None,
        limit: int = 100,
    ) -> list[MarketRequest]:
        where, params = ["tenant = ?"], [tenant]
        for column, value in (("kind", kind), ("issuer", issuer), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        return [
            _req(r)
            for r in self._rows(
                f"SELECT {_REQ} FROM market_requests WHERE {' AND '.join(where)}"
                f" ORDER BY created DESC, id LIMIT {int(limit)}",
                params,
            )
        ]

    def open_requests(self) -> list[MarketRequest]:
        return [
            _req(r)
            for r in self._rows(
                f"SELECT {_REQ} FROM market_requests WHERE status = 'open' ORDER BY created"
            )
        ]

    def create_request(self, req: MarketRequest, deliveries: Sequence[Delivery]) -> None:
        """A request and its deliveries in one transaction: a crash leaves both or neither."""
        self._write(
            [
                (
                    f"INSERT INTO market_requests ({_REQ}) VALUES ({', '.join('?' * 13)})",
                    [
                        (
                            req.id,
                            req.tenant,
                            req.kind.value,
                            req.issuer,
                            req.key,
                            req.fingerprint,
                            req.created,
                            req.status.value,
                            _json(req.params),
                            _json(req.result),
                            req.deadline,
                            req.finished,
                            req.parent,
                        )
                    ],
                ),
                (
                    f"INSERT INTO market_deliveries ({_DEL}) VALUES ({', '.join('?' * 16)})",
                    [_del_row(d) for d in deliveries],
                ),
            ]
        )

    def finish_request(
        self, tenant: str, request_id: str, status: RequestStatus, finished: datetime
    ) -> None:
        self._write(
            [
                (
                    "UPDATE market_requests SET status = ?, finished = ?"
                    " WHERE tenant = ? AND id = ? AND status = 'open'",
                    [(status.value, finished, tenant, request_id)],
                )
            ]
        )

    # -- deliveries -------------------------------------------------------------------------------

    def deliveries(self, tenant: str, request_id: str) -> list[Delivery]:
        return [
            _del(r)
            for r in self._rows(
                f"SELECT {_DEL} FROM market_deliveries WHERE tenant = ? AND request = ?"
                " ORDER BY retailer",
                [tenant, request_id],
            )
        ]

    def delivery(self, delivery_id: str) -> Delivery | None:
        rows = self._rows(f"SELECT {_DEL} FROM market_deliveries WHERE id = ?", [delivery_id])
        return _del(rows[0]) if rows else None

    def pending_deliveries(self) -> list[Delivery]:
        """Every delivery not yet final (what a restarted hub resumes)."""
        return [
            _del(r)
            for r in self._rows(
                f"SELECT {_DEL} FROM market_deliveries WHERE status = 'pending'"
                " ORDER BY next_attempt"
            )
        ]

    def update_delivery(self, d: Delivery) -> None:
        """Record one attempt's outcome (status, attempts, code, error, answer)."""
        self._write(
            [
                (
                    "UPDATE market_deliveries SET status = ?, next_attempt = ?, attempts = ?,"
                    " last_code = ?, last_error = ?, delivered = ?,"
                    " answer = coalesce(?, answer), answered = coalesce(?, answered)"
                    " WHERE id = ?",
                    [
                        (
                            d.status.value,
                            d.next_attempt,
                            d.attempts,
                            d.last_code,
                            d.last_error,
                            d.delivered,
                            _json(d.answer),
                            d.answered,
                            d.id,
                        )
                    ],
                )
            ]
        )

    def set_answer(self, delivery_id: str, answer: dict[str, Any], answered: datetime) -> None:
        """Record a retailer's answer given over REST (the delivery's status is left alone)."""
        self._write(
            [
                (
                    "UPDATE market_deliveries SET answer = ?, answered = ? WHERE id = ?",
                    [(_json(answer), answered, delivery_id)],
                )
            ]
        )
