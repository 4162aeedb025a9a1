"""Many-row INSERTs into DuckDB through Arrow instead of ``executemany``.

DuckDB's ``executemany`` runs the statement once per row: measured at about 3 ms a row on the
development machine (2,000 command invocations: 6.4 s), which made a network tariff broadcast
to 1,000 households take seconds. Staging the rows as an Arrow table and inserting them with
one ``INSERT … SELECT`` took 10 ms for the same rows (``INSERT OR REPLACE`` likewise, e.g.
the command dispatcher marking 2,000 invocations sent). Columns are matched by position; DuckDB
casts each (an all-NULL column included) to the table's type.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import duckdb
import pyarrow as pa

__all__ = ["executemany"]

_INSERT = re.compile(
    r"\s*INSERT\s+(OR\s+REPLACE\s+)?INTO\s+(\w+)\s*(\([^)]*\))?\s*VALUES\s*\(", re.IGNORECASE
)
MIN_ROWS = 4  # below this, executemany is as quick


def executemany(cur: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[Sequence[object]]) -> None:
    """``cur.executemany(sql, rows)``, but one Arrow insert for an INSERT … VALUES of many rows."""
    match = _INSERT.match(sql)
    replace = match is not None and match.group(1) is not None
    # one INSERT OR REPLACE may not touch a key twice; our tables' keys start with the first
    # column, so distinct first values are distinct keys — otherwise row by row, in order
    if (
        match is None
        or len(rows) < MIN_ROWS
        or (replace and len({r[0] for r in rows}) != len(rows))
    ):
        cur.executemany(sql, rows)
        return
    table, columns = match.group(2), match.group(3) or ""
    staged = pa.table({f"c{i}": list(col) for i, col in enumerate(zip(*rows, strict=True))})
    name = f"_staged_{uuid.uuid4().hex}"
    cur.register(name, staged)
    try:
        verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
        cur.execute(f"{verb} {table} {columns} SELECT * FROM {name}")
    finally:
        cur.unregister(name)
