"""The report reads (R1–R6) behind a small protocol of their own, beside :class:`Store`.

Reports count and sum over many devices at once (completeness of a fleet, energy per appliance
type), which the per-series :class:`~gridhub.storage.base.Store` reads do not cover. Keeping
them in their own protocol leaves ``Store`` as small as a transport interface; a backend offers
both. Times cross this seam as aware datetimes (UTC) and µs integers for slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

__all__ = ["DeviceEnergy", "ReportStore", "SlotCount", "SqlResult"]


@dataclass(frozen=True, slots=True)
class SlotCount:
    """How many reporting slots of one local day hold at least one reading of a device."""

    device: str
    day: date
    slots: int


@dataclass(frozen=True, slots=True)
class DeviceEnergy:
    """Sum and count of one device's values of one identifier over a span."""

    device: str
    identifier: str
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class SqlResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    seconds: float


class ReportStore(Protocol):
    def slot_counts(
        self, tenant: str, start: datetime, end: datetime, zone: str, interval_s: int
    ) -> list[SlotCount]:
        """Per device and local day of ``zone``: distinct ``interval_s`` slots with data."""
        ...

    def slots(
        self, tenant: str, device: str, start: datetime, end: datetime, interval_s: int
    ) -> list[int]:
        """Start (µs since the epoch) of each ``interval_s`` slot of ``device`` with data."""
        ...

    def sums(
        self, tenant: str, identifiers: Sequence[str], start: datetime, end: datetime
    ) -> list[DeviceEnergy]:
        """Per device and identifier: sum and count of the values in ``[start, end)``."""
        ...

    def quarter_hour_means(
        self,
        tenant: str,
        devices: Sequence[str],
        identifiers: Sequence[str],
        start: datetime,
        end: datetime,
    ) -> dict[tuple[str, str], dict[int, float]]:
        """Mean per quarter-hour (bucket start in µs) of each (device, identifier), in one read:
        exactly what ``Store.series`` answers at 15 min with ``avg``, for many series at once."""
        ...

    def readings_since(self, tenant: str, since: datetime) -> int:
        """Readings of the tenant timestamped at or after ``since``."""
        ...

    def table_names(self) -> frozenset[str]:
        """Every table and view name of the database (SQL console CTEs may not shadow them)."""
        ...

    def run_sql(self, sql: str, row_limit: int, timeout_s: float) -> SqlResult:
        """Run an already validated, tenant-scoped SELECT read-only, bounded in rows and time."""
        ...
