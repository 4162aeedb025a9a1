"""The SQL console's gate, as pure logic: what passes, how it is rewritten, what is refused."""

from __future__ import annotations

import duckdb
import pytest

from gridhub.errors import InvalidRequest
from gridhub.services.sql_console import VIEWS, scope_sql

EXISTING = frozenset({"tokens", "tenants", "measurements", "rollup_15m", "duckdb_tables"})


def test_each_view_reference_becomes_a_tenant_filtered_subquery() -> None:
    scoped = scope_sql(
        "SELECT m.device, sum(value) FROM measurements m JOIN devices d"
        " ON d.hardware_id = m.device GROUP BY ALL",
        "linear",
        EXISTING,
    )
    assert scoped.tables == ("devices", "measurements")
    assert scoped.sql.count("WHERE tenant = 'linear'") == 2
    assert "main.measurements" in scoped.sql and "main.devices" in scoped.sql


def test_the_rewritten_statement_reads_only_the_tenants_rows() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE measurements (tenant VARCHAR, device VARCHAR, identifier VARCHAR,"
        " ts TIMESTAMPTZ, value DOUBLE)"
    )
    con.execute(
        "INSERT INTO measurements VALUES ('a', 'd', 'i', now(), 1), ('b', 'd', 'i', now(), 5)"
    )
    scoped = scope_sql("SELECT sum(value) FROM measurements", "a", EXISTING)
    assert con.execute(scoped.sql).fetchall() == [(1.0,)]
    # a CTE over a view and a subquery in WHERE are scoped too
    nested = scope_sql(
        "WITH x AS (SELECT * FROM measurements) SELECT count(*) FROM x"
        " WHERE value IN (SELECT value FROM measurements)",
        "a",
        EXISTING,
    )
    assert con.execute(nested.sql).fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("SELECT * FROM tokens", "unknown table"),
        ("SELECT * FROM main.measurements", "unknown table"),
        ("SELECT * FROM (WITH tokens AS (SELECT 1) SELECT 1), tokens", "CTE"),
        ("WITH devices AS (SELECT 1) SELECT * FROM devices", "CTE"),
        ("SELECT * FROM read_csv('/etc/passwd')", "not allowed"),
        ("SELECT * FROM query('SELECT 1')", "not allowed"),
        ("SELECT getenv('HOME')", "not allowed"),
        ("SELECT 1; SELECT 2", "exactly one"),
        ("COPY measurements TO 'x.csv'", "only SELECT"),
        ("PRAGMA version", "only SELECT"),
        ("   ", "empty"),
        ("SELECT " + "1 + " * 6000 + "1", "longer than"),
        ("SELEC 1", "parse"),
    ],
)
def test_refused(statement: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        scope_sql(statement, "linear", EXISTING)


def test_views_never_expose_the_tenant_column() -> None:
    assert all("tenant" not in columns for _table, columns in VIEWS.values())
