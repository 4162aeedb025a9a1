"""Persistence of access control on DuckDB: stakeholders, contracts, policy versions, audit log.

The directory (``access/directory.py``) keeps stakeholders, contracts and policies in memory and
writes through to here; the audit log is appended in batches by ``access/audit.py`` and read back
with filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from gridhub.domain.access import AuditEntry, Contract, Kind, PolicyVersion, Stakeholder
from gridhub.errors import StoreUnavailable
from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["AccessCatalog", "AuditQuery", "AuditRow", "DuckDBAccessCatalog"]

# ts (µs since the epoch), tenant, actor, stakeholder, action, target, result, detail: a plain
# tuple, so that recording an entry on a request's path builds no object
AuditRow = tuple[int, str | None, str, str | None, str, str, str, str]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    tenant: str | None  # None: every tenant (installation admin)
    actor: str | None = None
    stakeholder: str | None = None
    action: str | None = None
    result: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int = 1000


class AccessCatalog(Protocol):
    def stakeholders(self) -> list[Stakeholder]: ...
    def put_stakeholder(self, stakeholder: Stakeholder) -> None: ...
    def add_stakeholders(self, stakeholders: Sequence[Stakeholder]) -> None: ...
    def contracts(self) -> list[Contract]: ...
    def put_contracts(self, contracts: Sequence[Contract]) -> None: ...
    def add_contracts(self, contracts: Sequence[Contract]) -> None: ...
    def policies(self) -> list[PolicyVersion]: ...
    def put_policy(self, policy: PolicyVersion) -> None: ...
    def append_audit(self, rows: Sequence[AuditRow]) -> None: ...
    def audit(self, query: AuditQuery) -> list[AuditEntry]: ...


_AUDIT_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("tenant", pa.string()),
        ("actor", pa.string()),
        ("stakeholder", pa.string()),
        ("action", pa.string()),
        ("target", pa.string()),
        ("result", pa.string()),
        ("detail", pa.string()),
    ]
)


class DuckDBAccessCatalog:
    """:class:`AccessCatalog` on the hub's DuckDB database (tables of the access migration)."""

    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db
        self._next_audit_id: int | None = None  # one writer: the audit log's flush

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "access catalog read")

    def _write(self, sql: str, rows: Sequence[Sequence[object]], bulk: bool = False) -> None:
        self._db.write([(sql, rows)], "access catalog write", bulk=bulk)

    def stakeholders(self) -> list[Stakeholder]:
        return [
            Stakeholder(t, i, Kind(k), n, s, c, d)
            for t, i, k, n, s, c, d in self._rows(
                "SELECT tenant, id, kind, name, site, created, disabled FROM stakeholders"
                " ORDER BY tenant, id"
            )
        ]

    def put_stakeholder(self, stakeholder: Stakeholder) -> None:
        s = stakeholder
        self._write(
            "INSERT OR REPLACE INTO stakeholders VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(s.tenant, s.id, s.kind.value, s.name, s.site, s.created, s.disabled)],
        )

    def add_stakeholders(self, stakeholders: Sequence[Stakeholder]) -> None:
        """New stakeholders (ids not yet stored), in one transaction: a bulk import is one
        Arrow insert, not a statement per row."""
        self._write(
            "INSERT INTO stakeholders VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (s.tenant, s.id, s.kind.value, s.name, s.site, s.created, s.disabled)
                for s in stakeholders
            ],
            bulk=True,
        )

    def contracts(self) -> list[Contract]:
        return [
            Contract(*row)
            for row in self._rows(
                'SELECT tenant, id, customer, supplier, "start", "end", created FROM contracts'
                ' ORDER BY tenant, "start", id'
            )
        ]

    def put_contracts(self, contracts: Sequence[Contract]) -> None:
        """Several at once, in one transaction: a supplier switch ends one and starts another."""
        self._write(
            "INSERT OR REPLACE INTO contracts VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (c.tenant, c.id, c.customer, c.supplier, c.start, c.end, c.created)
                for c in contracts
            ],
        )

    def add_contracts(self, contracts: Sequence[Contract]) -> None:
        """New contracts (ids not yet stored), in one transaction and one Arrow insert."""
        self._write(
            "INSERT INTO contracts VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (c.tenant, c.id, c.customer, c.supplier, c.start, c.end, c.created)
                for c in contracts
            ],
            bulk=True,
        )

    def policies(self) -> list[PolicyVersion]:
        return [
            PolicyVersion(*row)
            for row in self._rows(
                "SELECT tenant, id, version, grantee, service, identifier, can_read, can_write,"
                " min_delay_s, valid_from, site, device, created, created_by FROM policies"
                " ORDER BY tenant, id, version"
            )
        ]

    def put_policy(self, policy: PolicyVersion) -> None:
        p = policy
        self._write(
            "INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.tenant,
                    p.id,
                    p.version,
                    p.grantee,
                    p.service,
                    p.identifier,
                    p.read,
                    p.write,
                    p.min_delay_s,
                    p.valid_from,
                    p.site,
                    p.device,
                    p.created,
                    p.created_by,
                )
            ],
        )

    def append_audit(self, rows: Sequence[AuditRow]) -> None:
        """Append a batch as one Arrow table in one statement (cheap for thousands of rows)."""
        if not rows:
            return
        ts, tenant, actor, stakeholder, action, target, result, detail = map(
            list, zip(*rows, strict=True)
        )
        # ids given here, not by the sequence: DuckDB's nextval per row costs ~10 µs
        if self._next_audit_id is None:
            self._next_audit_id = self._rows("SELECT coalesce(max(id), 0) + 1 FROM audit")[0][0]
        first = self._next_audit_id
        table = pa.Table.from_arrays(
            [
                pa.array(range(first, first + len(rows)), pa.int64()),
                pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                *(pa.array(column, pa.string()) for column in
                  (tenant, actor, stakeholder, action, target, result, detail)),
            ],
            schema=_AUDIT_SCHEMA,
        )  # fmt: skip
        cur = self._db.cursor()
        cur.register("audit_batch", table)
        try:
            cur.execute(
                "INSERT INTO audit (id, ts, tenant, actor, stakeholder, action, target, result,"
                " detail) SELECT * FROM audit_batch"
            )
        except duckdb.Error as exc:
            raise StoreUnavailable(f"audit write failed: {exc}") from exc
        finally:
            cur.unregister("audit_batch")
        self._next_audit_id = first + len(rows)

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        clauses = ["TRUE"]
        params: list[object] = []
        for column, value, op in (
            ("tenant", query.tenant, "="),
            ("actor", query.actor, "="),
            ("stakeholder", query.stakeholder, "="),
            ("action", query.action, "="),
            ("result", query.result, "="),
            ("ts", query.start, ">="),
            ("ts", query.end, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        params.append(query.limit)
        rows = self._rows(
            "SELECT ts, tenant, actor, stakeholder, action, target, result, detail, id FROM audit"
            f" WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            params,
        )
        return [AuditEntry(*row) for row in rows]
