"""Tenants' grid topologies on DuckDB: one JSON document per tenant, replaced as a whole."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from gridhub.errors import StoreUnavailable
from gridhub.storage.duckdb_store import DuckDBDatabase


class DuckDBTopologies:
    """:class:`~gridhub.storage.base.TopologyCatalog` on DuckDB."""

    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db

    def topology_document(self, tenant: str) -> str | None:
        try:
            rows = (
                self._db.cursor()
                .execute("SELECT document FROM topologies WHERE tenant = ?", [tenant])
                .fetchall()
            )
        except duckdb.Error as exc:
            raise StoreUnavailable(f"topology read failed: {exc}") from exc
        return str(rows[0][0]) if rows else None

    def put_topology_document(self, tenant: str, name: str, document: str) -> None:
        try:
            self._db.cursor().execute(
                "INSERT OR REPLACE INTO topologies VALUES (?, ?, ?, ?)",
                [tenant, name, document, datetime.now(UTC)],
            )
        except duckdb.Error as exc:
            raise StoreUnavailable(f"topology write failed: {exc}") from exc
