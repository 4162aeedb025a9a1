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


def test_insert_or_replace_through_arrow_and_duplicate_keys_row_by_row() -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE t (id VARCHAR PRIMARY KEY, v INTEGER)")
    executemany(
        con, "INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)", [(f"k{i}", i) for i in range(6)]
    )
    executemany(
        con, "INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)", [(f"k{i}", 10 + i) for i in range(6)]
    )
    assert con.execute("SELECT sum(v), count(*) FROM t").fetchall() == [(sum(range(10, 16)), 6)]
    # the same key twice in one call: the later row wins, as with executemany
    executemany(
        con, "INSERT OR REPLACE INTO t VALUES (?, ?)", [("k0", 1), ("k1", 1), ("k0", 2), ("k2", 1)]
    )
    assert con.execute("SELECT v FROM t WHERE id = 'k0'").fetchall() == [(2,)]
