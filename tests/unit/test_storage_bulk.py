"""The Arrow path of many-row INSERTs stores exactly what ``executemany`` stores."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from gridhub.storage.bulk import executemany

DDL = """CREATE TABLE {name} (id VARCHAR PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, n INTEGER,
    body BLOB, tags VARCHAR[] NOT NULL, note VARCHAR, ok BOOLEAN)"""


def test_arrow_insert_matches_executemany() -> None:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    rows = [
        (
            f"id{i}",
            now,
            i if i % 3 else None,
            bytes([i]),
            [f"t{i}"] if i % 2 else [],
            None,
            i % 2 == 0,
        )
        for i in range(10)
    ]
    for name in ("a", "b"):
        con.execute(DDL.format(name=name))
    con.executemany("INSERT INTO a VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    executemany(
        con, "INSERT INTO b (id, ts, n, body, tags, note, ok) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
    )
    expected = con.execute("SELECT * FROM a ORDER BY id").fetchall()
    assert con.execute("SELECT * FROM b ORDER BY id").fetchall() == expected
    assert len(expected) == 10 and expected[1][4] == ["t1"] and expected[0][4] == []
    # few rows, or not an INSERT … VALUES: plain executemany
    executemany(con, "UPDATE b SET note = ? WHERE id = ?", [("x", "id1")] * 5)
    assert con.execute("SELECT note FROM b WHERE id = 'id1'").fetchall() == [("x",)]
