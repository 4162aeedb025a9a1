"""The researchers' read-only SQL console (R6): one SELECT over the caller's tenant only.

This is a security boundary, so a statement passes four gates before it runs:

1. it parses (sqlglot, DuckDB dialect) into exactly one query — a ``SELECT`` or a set
   operation of them; no ``COPY``, ``ATTACH``, ``PRAGMA``, ``SET``, DDL or DML anywhere in it;
2. every table it reads, resolved scope by scope (so a CTE cannot hide a real table), is one of
   the :data:`VIEWS` below, unqualified — never ``tokens``, a catalog table, a file or a table
   function such as ``read_csv`` or ``query``;
3. every function it calls is on an allow-list (no ``getenv``, ``current_setting``, ...);
4. each table reference is rewritten into a subquery filtered on the caller's tenant, with only
   the columns listed here.

The store then runs it on a fresh cursor in a read-only transaction with a statement timeout
and a row limit (:mod:`gridhub.storage.duckdb_reports`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.scope import traverse_scope

from gridhub.access.tokens import Principal
from gridhub.errors import Forbidden, InvalidRequest
from gridhub.storage.reports import ReportStore, SqlResult

__all__ = [
    "MAX_ROWS",
    "MAX_SQL_CHARS",
    "MAX_TIMEOUT_S",
    "SQL_ROLES",
    "VIEWS",
    "SqlConsole",
    "json_rows",
    "scope_sql",
]

MAX_SQL_CHARS = 20_000

# view name -> (base table, columns exposed); every row is filtered on the tenant column
VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "measurements": ("measurements", ("device", "identifier", "ts", "value")),
    "state": ("current_state", ("device", "identifier", "ts", "value", "received")),
    "alerts": ("alerts", ("device", "ts", "type", "level", "message", "metadata", "received")),
    "devices": ("devices", ("hardware_id", "device_type", "site", "name")),
    "sites": (
        "sites",
        ("id", "name", "location", "pilot_phase", "experiment", "appliance_types", "has_pv"),
    ),
    "identifiers": ("identifiers", ("name", "unit")),
}

# sqlglot's names (Func.sql_name()) of functions it knows, and the lowercase names of those it
# passes through as anonymous: pure computations only
_FUNCTIONS = frozenset(
    """
    ABS AVG CEIL CEILING FLOOR ROUND SQRT POW POWER EXP LN LOG LOG10 LOG2 SIGN GREATEST LEAST
    MOD SUM MIN MAX COUNT COUNT_IF COUNTIF MEDIAN QUANTILE QUANTILE_CONT QUANTILE_DISC
    PERCENTILE_CONT PERCENTILE_DISC APPROX_QUANTILE APPROX_DISTINCT STDDEV STDDEV_POP
    STDDEV_SAMP VARIANCE VARIANCE_POP VAR_SAMP VAR_POP CORR COVAR_POP COVAR_SAMP FIRST LAST
    FIRST_VALUE LAST_VALUE NTH_VALUE ARG_MAX ARG_MIN ARRAY_AGG LIST STRING_AGG GROUP_CONCAT
    ANY_VALUE BOOL_AND BOOL_OR LOGICAL_AND LOGICAL_OR ROW_NUMBER RANK DENSE_RANK PERCENT_RANK
    CUME_DIST NTILE LAG LEAD CAST TRY_CAST COALESCE NULLIF IF IFF CASE DATE_TRUNC
    TIMESTAMP_TRUNC DATE_BIN DATE_PART EXTRACT DATE_ADD DATE_SUB DATE_DIFF DATEDIFF
    TIMESTAMP_DIFF TIME_TO_STR STR_TO_TIME STRFTIME STRPTIME TO_TIMESTAMP UNIX_TO_TIME
    TIME_TO_UNIX CURRENT_DATE CURRENT_TIMESTAMP TS_OR_DS_TO_DATE DATE TIME_STR_TO_TIME
    CONVERT_TIMEZONE AT_TIME_ZONE LOWER UPPER LENGTH CONCAT CONCAT_WS SUBSTRING SUBSTR TRIM
    LTRIM RTRIM REPLACE REGEXP_LIKE REGEXP_EXTRACT REGEXP_REPLACE STARTS_WITH STARTSWITH
    CONTAINS SPLIT SPLIT_PART LEFT RIGHT LPAD RPAD ARRAY_CONTAINS ARRAY_SIZE ARRAY_LENGTH
    EXPLODE UNNEST GENERATE_SERIES HASH MD5 ISNAN IS_NAN
    """.split()
)
_ANONYMOUS = frozenset(
    """
    epoch epoch_ms epoch_us epoch_ns time_bucket timezone make_date make_timestamp
    make_timestamptz dayname monthname isodow dayofweek dayofyear week yearweek hour minute
    second year month day quarter list_contains list_sum list_avg len array_length
    """.split()
)
# node types that never belong in a read-only query, wherever they sit
_FORBIDDEN: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "DDL",
        "DML",
        "Command",
        "Pragma",
        "Copy",
        "Set",
        "Attach",
        "Detach",
        "Use",
        "Into",
        "Transaction",
        "Commit",
        "Rollback",
        "Install",
        "Export",
    )
    if hasattr(exp, name)
)


@dataclass(frozen=True, slots=True)
class ScopedSql:
    sql: str
    tables: tuple[str, ...]


def scope_sql(sql: str, tenant: str, existing: frozenset[str] = frozenset()) -> ScopedSql:
    """Check ``sql`` against the rules above and return it rewritten onto ``tenant``'s rows.

    ``existing`` names every table and view of the database: a CTE may not take one of those
    names, so that no reference that sqlglot resolves to a CTE can reach a real table.
    """
    if not sql.strip():
        raise InvalidRequest("the statement is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidRequest(f"the statement is longer than {MAX_SQL_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as exc:
        raise InvalidRequest(f"cannot parse the statement: {str(exc)[:300]}") from None
    if len(statements) != 1:
        raise InvalidRequest("give exactly one statement")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise InvalidRequest("only SELECT statements are allowed")
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN):
            raise InvalidRequest(f"{node.key.upper()} is not allowed in the SQL console")
        if isinstance(node, exp.Func) and not isinstance(node, exp.Window):
            _check_function(node)
    try:
        scopes = traverse_scope(tree)
    except SqlglotError as exc:
        raise InvalidRequest(f"cannot resolve the statement's tables: {exc}") from None
    base: list[exp.Table] = []
    for scope in scopes:
        for source in scope.sources.values():
            if isinstance(source, exp.Table):
                base.append(source)
    ctes = {str(cte.alias_or_name).lower() for cte in tree.find_all(exp.CTE)}
    shadowing = ctes & ({name.lower() for name in existing} | set(VIEWS))
    if shadowing:
        raise InvalidRequest(f"a CTE may not be named like a table: {', '.join(sorted(shadowing))}")
    resolved = {id(table) for table in base}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise InvalidRequest("table functions are not allowed; read the views instead")
        if id(table) not in resolved and (
            table.args.get("db") or table.args.get("catalog") or table.name.lower() not in ctes
        ):
            raise InvalidRequest(f"unknown table {table.sql(dialect='duckdb')!r}")
    used: list[str] = []
    for table in base:
        if table.args.get("db") or table.args.get("catalog") or table.name not in VIEWS:
            raise InvalidRequest(
                f"unknown table {table.sql(dialect='duckdb')!r}; the views are "
                + ", ".join(sorted(VIEWS))
            )
        used.append(table.name)
        table.replace(_scoped(table, tenant))
    return ScopedSql(tree.sql(dialect="duckdb"), tuple(sorted(set(used))))


def _check_function(node: exp.Func) -> None:
    if isinstance(node, exp.Anonymous):
        name = str(node.name).lower()
        if name not in _ANONYMOUS:
            raise InvalidRequest(f"function {name}() is not allowed in the SQL console")
        return
    if node.sql_name() not in _FUNCTIONS:
        raise InvalidRequest(f"function {node.sql_name().lower()}() is not allowed")


def _scoped(table: exp.Table, tenant: str) -> exp.Expression:
    base, columns = VIEWS[table.name]
    inner = (
        exp.select(*columns)
        .from_(exp.Table(this=exp.to_identifier(base), db=exp.to_identifier("main")))
        .where(exp.column("tenant").eq(exp.Literal.string(tenant)))
    )
    alias = table.alias or table.name
    return inner.subquery(alias=alias)


SQL_ROLES = ("researcher", "admin")
MAX_ROWS = 10_000
MAX_TIMEOUT_S = 10.0


class SqlConsole:
    """Runs researchers' statements: role check, :func:`scope_sql`, then the bounded run."""

    def __init__(self, reports: ReportStore) -> None:
        self._reports = reports

    def run(
        self,
        who: Principal,
        tenant: str,
        sql: str,
        *,
        limit: int = 1000,
        timeout_s: float = MAX_TIMEOUT_S,
    ) -> SqlResult:
        who.require_tenant(tenant)
        if who.role not in SQL_ROLES:
            raise Forbidden(f"the SQL console is for {' and '.join(SQL_ROLES)} tokens")
        if not 1 <= limit <= MAX_ROWS:
            raise InvalidRequest(f"limit must be 1..{MAX_ROWS}")
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise InvalidRequest(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}]")
        scoped = scope_sql(sql, tenant, self._reports.table_names())
        return self._reports.run_sql(scoped.sql, limit, timeout_s)


def json_rows(result: SqlResult) -> list[list[Any]]:
    """Rows as JSON values: times in ISO 8601, NaN and infinities as strings, bytes as hex."""
    return [[_json(v) for v in row] for row in result.rows]


def _json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return value
