"""Energy register reads for billing and consumption profiles, in one query per request.

A billing or profile request covers hundreds to thousands of clients; reading each device's
series through the query service would be one round trip per device. These queries read the
stored cumulative register (raw readings; DuckDB's zone maps on the append-ordered table keep a
time-bounded scan cheap) for all devices of the request at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gridhub.storage.duckdb_store import DuckDBDatabase

__all__ = ["MarketReadings", "RegisterSpan"]


@dataclass(frozen=True, slots=True)
class RegisterSpan:
    """A device's first and last register reading inside a window, and how many there were."""

    device: str
    first_ts: datetime
    first: float
    last_ts: datetime
    last: float
    count: int


class MarketReadings:
    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db

    def _rows(self, sql: str, params: object) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "register read")

    def spans(
        self,
        tenant: str,
        devices: Sequence[str],
        identifier: str,
        start: datetime,
        end: datetime,
    ) -> dict[str, RegisterSpan]:
        """First and last reading of ``identifier`` in ``[start, end)`` per device."""
        if not devices:
            return {}
        rows = self._rows(
            "SELECT device, min(ts), arg_min(value, ts), max(ts), arg_max(value, ts), count(*)"
            " FROM measurements WHERE tenant = ? AND identifier = ? AND ts >= ? AND ts < ?"
            " AND device IN (SELECT unnest(?)) GROUP BY device",
            [tenant, identifier, start, end, list(devices)],
        )
        return {r[0]: RegisterSpan(*r) for r in rows}

    def quarter_hours(
        self,
        tenant: str,
        devices: Sequence[str],
        identifier: str,
        start: datetime,
        end: datetime,
    ) -> dict[str, list[tuple[datetime, float, float]]]:
        """Per device, per quarter-hour of ``[start, end)``: (bucket, first, last) reading."""
        if not devices:
            return {}
        out: dict[str, list[tuple[datetime, float, float]]] = {}
        for device, bucket, first, last in self._rows(
            "SELECT device, time_bucket(INTERVAL 15 MINUTE, ts) AS b, arg_min(value, ts),"
            " arg_max(value, ts) FROM measurements WHERE tenant = ? AND identifier = ?"
            " AND ts >= ? AND ts < ? AND device IN (SELECT unnest(?))"
            " GROUP BY device, b ORDER BY device, b",
            [tenant, identifier, start, end, list(devices)],
        ):
            out.setdefault(device, []).append((bucket, first, last))
        return out
