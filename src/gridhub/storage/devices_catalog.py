"""Persistence of tenant-defined device types and MQTT credential hashes (issue #6), on DuckDB.

Kept apart from :mod:`gridhub.storage.duckdb_catalog` so that the registry's catalog does not
grow with every feature; it shares its database and its error mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridhub.domain.device_types import DeviceType
from gridhub.domain.mqtt_credentials import MqttCredential
from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["DevicesCatalog"]


class DevicesCatalog:
    """Upserts and reads of ``device_types`` and ``mqtt_credentials``."""

    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db

    def _rows(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "catalog read")

    def _write(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.write([(sql, rows)], "catalog write")

    # -- device types ---------------------------------------------------------------------------

    def device_types(self) -> list[tuple[str, DeviceType]]:
        """Every tenant-defined type, as (tenant, type)."""
        return [
            (tenant, DeviceType(name, desc, tuple(ids), interval, builtin=False))
            for tenant, name, desc, ids, interval in self._rows(
                "SELECT tenant, name, description, identifiers, interval_s FROM device_types"
                " ORDER BY tenant, name"
            )
        ]

    def put_device_type(self, tenant: str, device_type: DeviceType) -> None:
        self._write(
            "INSERT OR REPLACE INTO device_types VALUES (?, ?, ?, ?, ?)",
            [
                (
                    tenant,
                    device_type.name,
                    device_type.description,
                    list(device_type.identifiers),
                    device_type.interval_s,
                )
            ],
        )

    # -- MQTT credentials -----------------------------------------------------------------------

    def mqtt_credentials(self) -> list[MqttCredential]:
        return [
            MqttCredential(user, role, hash_, created, rotated, tenant, hw)
            for user, tenant, hw, role, hash_, created, rotated in self._rows(
                "SELECT username, tenant, hardware_id, role, hash, created, rotated"
                " FROM mqtt_credentials ORDER BY username"
            )
        ]

    def mqtt_credential(self, username: str) -> MqttCredential | None:
        rows = self._rows(
            "SELECT username, tenant, hardware_id, role, hash, created, rotated"
            " FROM mqtt_credentials WHERE username = ?",
            [username],
        )
        if not rows:
            return None
        user, tenant, hw, role, hash_, created, rotated = rows[0]
        return MqttCredential(user, role, hash_, created, rotated, tenant, hw)

    def put_mqtt_credential(self, cred: MqttCredential) -> None:
        self._write(
            "INSERT OR REPLACE INTO mqtt_credentials VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    cred.username,
                    cred.tenant,
                    cred.hardware_id,
                    cred.role,
                    cred.hash,
                    cred.created,
                    cred.rotated,
                )
            ],
        )

    def delete_mqtt_credential(self, username: str) -> None:
        self._write("DELETE FROM mqtt_credentials WHERE username = ?", [(username,)])
