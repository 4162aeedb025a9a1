"""The registry's persistence on DuckDB (tenants, sites, devices, identifiers, token hashes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridhub.domain.identifiers import Identifier
from gridhub.domain.registry import Device, Site, Tenant, UnknownDevicePolicy
from gridhub.storage.base import TokenRecord
from gridhub.storage.duckdb_store import DuckDBDatabase


class DuckDBCatalog:
    """:class:`~gridhub.storage.base.Catalog` on DuckDB. Upserts, so imports can be re-run."""

    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "catalog read")

    def _write(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.write([(sql, rows)], "catalog write")

    def tenants(self) -> list[Tenant]:
        return [
            Tenant(i, n, tz, UnknownDevicePolicy(u))
            for i, n, tz, u in self._rows(
                "SELECT id, name, timezone, unknown_devices FROM tenants ORDER BY id"
            )
        ]

    def put_tenant(self, tenant: Tenant) -> None:
        self._write(
            "INSERT OR REPLACE INTO tenants VALUES (?, ?, ?, ?)",
            [(tenant.id, tenant.name, tenant.timezone, tenant.unknown_devices.value)],
        )

    def sites(self, tenant: str) -> list[Site]:
        return [
            Site(tenant, i, n, loc, phase, exp, tuple(types), pv)
            for i, n, loc, phase, exp, types, pv in self._rows(
                "SELECT id, name, location, pilot_phase, experiment, appliance_types, has_pv"
                " FROM sites WHERE tenant = ? ORDER BY id",
                [tenant],
            )
        ]

    def put_sites(self, sites: Sequence[Site]) -> None:
        self._write(
            "INSERT OR REPLACE INTO sites VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.tenant,
                    s.id,
                    s.name,
                    s.location,
                    s.pilot_phase,
                    s.experiment,
                    list(s.appliance_types),
                    s.has_pv,
                )
                for s in sites
            ],
        )

    def devices(self, tenant: str) -> list[Device]:
        return [
            Device(tenant, hw, dt, site, name)
            for hw, dt, site, name in self._rows(
                "SELECT hardware_id, device_type, site, name FROM devices WHERE tenant = ?"
                " ORDER BY hardware_id",
                [tenant],
            )
        ]

    def put_devices(self, devices: Sequence[Device]) -> None:
        self._write(
            "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?)",
            [(d.tenant, d.hardware_id, d.device_type, d.site, d.name) for d in devices],
        )

    def identifiers(self, tenant: str) -> list[Identifier]:
        return [
            Identifier(n, u, builtin=False)
            for n, u in self._rows(
                "SELECT name, unit FROM identifiers WHERE tenant = ? ORDER BY name", [tenant]
            )
        ]

    def put_identifier(self, tenant: str, identifier: Identifier) -> None:
        self._write(
            "INSERT OR REPLACE INTO identifiers VALUES (?, ?, ?)",
            [(tenant, identifier.name, identifier.unit)],
        )

    def tokens(self) -> list[TokenRecord]:
        return [
            TokenRecord(*row)
            for row in self._rows(
                "SELECT id, hash, tenant, role, name, created, revoked, stakeholder, service,"
                " expires FROM tokens ORDER BY created"
            )
        ]

    def put_token(self, token: TokenRecord) -> None:
        self._write(
            "INSERT INTO tokens (id, hash, tenant, role, name, created, revoked, stakeholder,"
            " service, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
            " SET name = excluded.name, revoked = excluded.revoked",
            [
                (
                    token.id,
                    token.hash,
                    token.tenant,
                    token.role,
                    token.name,
                    token.created,
                    token.revoked,
                    token.stakeholder,
                    token.service,
                    token.expires,
                )
            ],
        )
