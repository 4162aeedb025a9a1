"""Many-row INSERTs into DuckDB through Arrow instead of ``executemany``.

DuckDB's ``executemany`` runs the statement once per row: measured at about 3 ms a row on the
development machine (2,000 command invocations: 6.4 s), which made a network tariff broadcast
to 1,000 households take seconds. Staging the rows as an Arrow table and inserting them with
one ``INSERT … SELECT`` took 10 ms for the same rows. Columns are matched by position; DuckDB
casts each (an all-NULL column included) to the table's type.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import duckdb
import pyarrow as pa

__all__ = ["executemany"]

_INSERT = re.compile(r"\s*INSERT INTO\s+(\w+)\s*(\([^)]*\))?\s*VALUES\s*\(", re.IGNORECASE)
MIN_ROWS = 4  # below this, executemany is as quick


def executemany(cur: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[Sequence[object]]) -> None:
    """``cur.executemany(sql, rows)``, but one Arrow insert for an INSERT … VALUES of many rows."""
    match = _INSERT.match(sql)
    if match is None or len(rows) < MIN_ROWS:
        cur.executemany(sql, rows)
        return
    table, columns = match.group(1), match.group(2) or ""
    staged = pa.table({f"c{i}": list(col) for i, col in enumerate(zip(*rows, strict=True))})
    name = f"_staged_{uuid.uuid4().hex}"
    cur.register(name, staged)
    try:
        cur.execute(f"INSERT INTO {table} {columns} SELECT * FROM {name}")
    finally:
        cur.unregister(name)
