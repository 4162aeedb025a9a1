"""Export (R6): any report as a table, written as CSV or Parquet.

Each view's export is the same service call the page makes, flattened to long format (one row
per value), so a downloaded file holds exactly the rows the page shows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gridhub.services.report_types import (
    Aggregates,
    Completeness,
    HouseholdView,
    Missing,
    Timelines,
)
from gridhub.storage.reports import SqlResult

__all__ = ["ExportFormat", "Table", "encode", "table_of"]


class ExportFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"

    @property
    def media_type(self) -> str:
        return "text/csv" if self is ExportFormat.CSV else "application/vnd.apache.parquet"


@dataclass(frozen=True, slots=True)
class Table:
    columns: list[str]
    rows: Sequence[Sequence[Any]]


def _household(v: HouseholdView) -> Table:
    rows = [
        (ts, s.device, s.appliance, s.identifier, s.unit, value)
        for s in v.series
        for ts, value in zip(v.slots, s.values, strict=True)
    ]
    return Table(["ts", "device", "appliance", "identifier", "unit", "value"], rows)


def _timelines(v: Timelines) -> Table:
    rows: list[Sequence[Any]] = [
        (s.device, s.identifier, ts, None, value)
        for s in v.boilers
        for ts, value in zip(v.slots, s.values, strict=True)
    ]
    rows += [
        (w.device, "run:" + w.appliance, r.start, r.end, r.energy_kwh)
        for w in v.whitegoods
        for r in w.runs
    ]
    return Table(["device", "identifier", "ts", "end", "value"], rows)


def _aggregates(v: Aggregates) -> Table:
    rows = [
        (r.group, r.value, r.households, r.devices, r.consumed_kwh, r.injected_kwh)
        for r in (*v.by_appliance, *v.by_group)
    ]
    return Table(["group", "value", "households", "devices", "consumed_kwh", "injected_kwh"], rows)


def _completeness(v: Completeness) -> Table:
    rows = [
        (d.device, d.site, d.device_type, day, got, want, got / want if want else None)
        for d in v.devices
        for day, got, want in zip(v.days, d.received, d.expected, strict=True)
    ]
    return Table(["device", "site", "device_type", "day", "received", "expected", "ratio"], rows)


def _missing(v: Missing) -> Table:
    return Table(["device", "day", "missing"], [(v.device, v.day, ts) for ts in v.missing])


def _sql(v: SqlResult) -> Table:
    return Table(v.columns, list(v.rows))


_FLATTEN: dict[type, Any] = {
    HouseholdView: _household,
    Timelines: _timelines,
    Aggregates: _aggregates,
    Completeness: _completeness,
    Missing: _missing,
    SqlResult: _sql,
}


def table_of(view: object) -> Table:
    table: Table = _FLATTEN[type(view)](view)
    return table


def encode(table: Table, fmt: ExportFormat) -> bytes:
    columns = list(zip(*table.rows, strict=True)) if table.rows else [()] * len(table.columns)
    names = _unique(table.columns)
    arrow = pa.table({name: pa.array(list(col)) for name, col in zip(names, columns, strict=True)})
    sink = io.BytesIO()
    if fmt is ExportFormat.CSV:
        pa_csv.write_csv(arrow, sink)
    else:
        pq.write_table(arrow, sink)
    return sink.getvalue()


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (a SQL result may repeat one)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
