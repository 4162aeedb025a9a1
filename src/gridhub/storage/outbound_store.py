"""Durable state of the outbound side on DuckDB: command specs and invocations, tariffs, signals.

Every status change of an invocation is written here before the hub acts on it, so a restarted
hub finds each command where it left it and resumes its retries and expiries
(:meth:`OutboundStore.open_invocations`), and matches acknowledgements stored while the
dispatcher had not yet seen them (:meth:`OutboundStore.acks_for`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from gridhub.domain.commands import FINAL, Invocation, Param, ParamType, Spec, Status
from gridhub.domain.tariffs import (
    ControlSignal,
    Direction,
    Period,
    Target,
    Tariff,
    TariffKind,
)
from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["OutboundStore"]

_INV_COLUMNS = (
    "id, tenant, device, command, parameters, created, expires, max_attempts, status, attempts,"
    " next_attempt, last_sent, finished, response, initiator, idempotency_key, origin, metadata"
)
_FINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(FINAL))


def _ts(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _sec(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _inv_row(inv: Invocation) -> tuple[Any, ...]:
    return (
        inv.id,
        inv.tenant,
        inv.device,
        inv.command,
        json.dumps(inv.parameters),
        _ts(inv.created),
        _ts(inv.expires),
        inv.max_attempts,
        inv.status.value,
        inv.attempts,
        _ts(inv.next_attempt),
        _ts(inv.last_sent),
        _ts(inv.finished),
        inv.response,
        inv.initiator,
        inv.idempotency_key,
        inv.origin,
        json.dumps(inv.metadata),
    )


def _inv(row: tuple[Any, ...]) -> Invocation:
    (
        id_,
        tenant,
        device,
        command,
        params,
        created,
        expires,
        max_attempts,
        status,
        attempts,
        next_attempt,
        last_sent,
        finished,
        response,
        initiator,
        key,
        origin,
        metadata,
    ) = row
    return Invocation(
        id=id_,
        tenant=tenant,
        device=device,
        command=command,
        parameters=json.loads(params),
        created=created.timestamp(),
        expires=expires.timestamp(),
        max_attempts=max_attempts,
        status=Status(status),
        attempts=attempts,
        next_attempt=next_attempt.timestamp(),
        last_sent=_sec(last_sent),
        finished=_sec(finished),
        response=response,
        initiator=initiator,
        idempotency_key=key,
        origin=origin,
        metadata=json.loads(metadata),
    )


def _spec_json(spec: Spec) -> str:
    return json.dumps(
        {
            "description": spec.description,
            "device_types": list(spec.device_types),
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type.value,
                    "required": p.required,
                    "description": p.description,
                }
                for p in spec.parameters
            ],
        }
    )


def _spec(name: str, text: str) -> Spec:
    data = json.loads(text)
    params = tuple(
        Param(p["name"], ParamType(p["type"]), p["required"], p.get("description", ""))
        for p in data["parameters"]
    )
    return Spec(name, params, data["description"], tuple(data["device_types"]), builtin=False)


def _target_json(target: Target) -> str:
    return json.dumps(
        {"sites": list(target.sites), "attribute": target.attribute, "value": target.value}
    )


def _target(text: str) -> Target:
    data = json.loads(text)
    return Target(tuple(data["sites"]), data["attribute"], data["value"])


def _tariff(tenant: str, row: tuple[Any, ...]) -> Tariff:
    id_, kind, day, target, sites, currency, unit, periods, published, publisher = row
    return Tariff(
        id_,
        tenant,
        TariffKind(kind),
        day,
        _target(target),
        tuple(sites),
        currency,
        unit,
        tuple(Period(*p) for p in json.loads(periods)),
        published,
        publisher,
    )


class OutboundStore:
    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "outbound store read")

    def _write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run every (sql, rows) in one transaction."""
        self._db.write(statements, "outbound store write", bulk=True)

    # -- specs ------------------------------------------------------------------------------------

    def specs(self, tenant: str) -> list[Spec]:
        return [
            _spec(n, s)
            for n, s in self._rows(
                "SELECT name, spec FROM command_specs WHERE tenant = ? ORDER BY name", [tenant]
            )
        ]

    def put_spec(self, tenant: str, spec: Spec) -> None:
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO command_specs VALUES (?, ?, ?)",
                    [(tenant, spec.name, _spec_json(spec))],
                )
            ]
        )

    def delete_spec(self, tenant: str, name: str) -> None:
        self._write([("DELETE FROM command_specs WHERE tenant = ? AND name = ?", [(tenant, name)])])

    # -- invocations ------------------------------------------------------------------------------

    def save(self, invocations: Sequence[Invocation]) -> None:
        """Insert or update invocations, all in one transaction."""
        self._write(
            [
                (
                    f"INSERT OR REPLACE INTO command_invocations ({_INV_COLUMNS}) VALUES "
                    f"({', '.join('?' * 18)})",
                    [_inv_row(i) for i in invocations],
                )
            ]
        )

    def create(self, invocation: Invocation) -> Invocation:
        """Store a new invocation; with an idempotency key already used, return that one."""
        key = invocation.idempotency_key
        if key is not None:
            found = self._rows(
                "SELECT invocation FROM command_idempotency WHERE tenant = ? AND key = ?",
                [invocation.tenant, key],
            )
            if found:
                existing = self.get(invocation.tenant, found[0][0])
                if existing is not None:
                    return existing
        self._write(
            [
                (
                    f"INSERT INTO command_invocations ({_INV_COLUMNS}) VALUES "
                    f"({', '.join('?' * 18)})",
                    [_inv_row(invocation)],
                ),
                (
                    "INSERT INTO command_idempotency VALUES (?, ?, ?)",
                    [(invocation.tenant, key, invocation.id)] if key is not None else [],
                ),
            ]
        )
        return invocation

    def create_many(self, invocations: Sequence[Invocation]) -> tuple[list[Invocation], int]:
        """Store many new invocations in one transaction; those whose idempotency key is used
        already are not stored again. Returns the ones stored and how many were already there."""
        if not invocations:
            return [], 0
        tenant = invocations[0].tenant
        keys = [i.idempotency_key for i in invocations if i.idempotency_key is not None]
        used = (
            {
                k
                for (k,) in self._rows(
                    "SELECT key FROM command_idempotency"
                    " WHERE tenant = ? AND key IN (SELECT unnest(?))",
                    [tenant, keys],
                )
            }
            if keys
            else set()
        )
        new = [i for i in invocations if i.idempotency_key not in used]
        self._write(
            [
                (
                    f"INSERT INTO command_invocations ({_INV_COLUMNS}) VALUES "
                    f"({', '.join('?' * 18)})",
                    [_inv_row(i) for i in new],
                ),
                (
                    "INSERT INTO command_idempotency VALUES (?, ?, ?)",
                    [(i.tenant, i.idempotency_key, i.id) for i in new if i.idempotency_key],
                ),
            ]
        )
        return new, len(invocations) - len(new)

    def get(self, tenant: str, invocation_id: str) -> Invocation | None:
        rows = self._rows(
            f"SELECT {_INV_COLUMNS} FROM command_invocations WHERE tenant = ? AND id = ?",
            [tenant, invocation_id],
        )
        return _inv(rows[0]) if rows else None

    def open_invocations(self) -> list[Invocation]:
        """Every invocation not yet in a final state (what a restarted hub resumes)."""
        return [
            _inv(r)
            for r in self._rows(
                f"SELECT {_INV_COLUMNS} FROM command_invocations"
                f" WHERE status NOT IN ({_FINAL_SQL}) ORDER BY created"
            )
        ]

    def invocations(
        self,
        tenant: str,
        *,
        device: str | None = None,
        status: Status | None = None,
        origin: str | None = None,
        limit: int = 1000,
    ) -> list[Invocation]:
        where, params = ["tenant = ?"], [tenant]
        for column, value in (("device", device), ("status", status), ("origin", origin)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        return [
            _inv(r)
            for r in self._rows(
                f"SELECT {_INV_COLUMNS} FROM command_invocations WHERE {' AND '.join(where)}"
                f" ORDER BY created DESC, id LIMIT {int(limit)}",
                params,
            )
        ]

    def delivery(self, tenant: str, origins: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per tariff or signal id: how many of its invocations are in each status."""
        if not origins:
            return {}
        counts: dict[str, dict[str, int]] = {o: {} for o in origins}
        for origin, status, n in self._rows(
            "SELECT origin, status, count(*) FROM command_invocations"
            " WHERE tenant = ? AND origin IN (SELECT unnest(?)) GROUP BY ALL",
            [tenant, list(origins)],
        ):
            counts[origin][status] = n
        return counts

    def acks_for(self, invocations: Sequence[Invocation]) -> list[tuple[str, str, float]]:
        """Stored acknowledgements of these invocations: (invocation id, response, ts)."""
        if not invocations:
            return []
        keys = [(i.tenant, i.device, i.id) for i in invocations]
        return [
            (eid, response, ts.timestamp())
            for eid, response, ts in self._rows(
                "SELECT a.originating_event_id, a.response, a.received FROM acks a"
                " JOIN (SELECT unnest(?, recursive := true)) k"
                " ON a.tenant = k.tenant AND a.device = k.device AND a.originating_event_id = k.id"
                " ORDER BY a.received",
                [[{"tenant": t, "device": d, "id": i} for t, d, i in keys]],
            )
        ]

    # -- tariffs ----------------------------------------------------------------------------------

    def put_tariffs(self, tariffs: Sequence[Tariff], invocations: Sequence[Invocation]) -> None:
        """Store tariffs and the invocations that deliver them, in one transaction."""
        self._write(
            [
                (
                    "INSERT INTO tariffs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            t.id,
                            t.tenant,
                            t.kind.value,
                            t.day,
                            _target_json(t.target),
                            list(t.sites),
                            t.currency,
                            t.unit,
                            json.dumps([[p.start, p.end, p.price, p.label] for p in t.periods]),
                            t.published,
                            t.publisher,
                        )
                        for t in tariffs
                    ],
                ),
                (
                    f"INSERT INTO command_invocations ({_INV_COLUMNS}) VALUES "
                    f"({', '.join('?' * 18)})",
                    [_inv_row(i) for i in invocations],
                ),
            ]
        )

    def tariffs(
        self,
        tenant: str,
        start: date,
        end: date,
        *,
        site: str | None = None,
        kind: TariffKind | None = None,
        latest_only: bool = True,
    ) -> list[Tariff]:
        """Tariffs of the days [start, end]; by default the newest per (kind, target, day)."""
        where = ["tenant = ?", "day BETWEEN ? AND ?"]
        params: list[object] = [tenant, start, end]
        if site is not None:
            where.append("list_contains(sites, ?)")
            params.append(site)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        qualify = (
            " QUALIFY row_number() OVER (PARTITION BY kind, target, day ORDER BY published DESC,"
            " id DESC) = 1"
            if latest_only
            else ""
        )
        rows = self._rows(
            "SELECT id, kind, day, target, sites, currency, unit, periods, published, publisher"
            f" FROM tariffs WHERE {' AND '.join(where)}{qualify} ORDER BY day, kind, published",
            params,
        )
        return [_tariff(tenant, row) for row in rows]

    # -- control signals --------------------------------------------------------------------------

    def put_signal(self, signal: ControlSignal, invocations: Sequence[Invocation]) -> None:
        s = signal
        self._write(
            [
                (
                    "INSERT INTO control_signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            s.id,
                            s.tenant,
                            s.direction.value,
                            s.limit_kw,
                            s.start,
                            s.end,
                            _target_json(s.target),
                            list(s.sites),
                            s.created,
                            s.issuer,
                        )
                    ],
                ),
                (
                    f"INSERT INTO command_invocations ({_INV_COLUMNS}) VALUES "
                    f"({', '.join('?' * 18)})",
                    [_inv_row(i) for i in invocations],
                ),
            ]
        )

    def signals(
        self, tenant: str, start: datetime, end: datetime, *, site: str | None = None
    ) -> list[ControlSignal]:
        """Signals in force at some moment of [start, end)."""
        where = ["tenant = ?", "start < ?", '("end" IS NULL OR "end" > ?)']
        params: list[object] = [tenant, end, start]
        if site is not None:
            where.append("list_contains(sites, ?)")
            params.append(site)
        rows = self._rows(
            'SELECT id, direction, limit_kw, start, "end", target, sites, created, issuer'
            f" FROM control_signals WHERE {' AND '.join(where)} ORDER BY start, created",
            params,
        )
        return [
            ControlSignal(id_, tenant, Direction(d), kw, s, e, _target(t), tuple(sites), c, who)
            for id_, d, kw, s, e, t, sites, c, who in rows
        ]
