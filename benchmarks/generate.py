"""Generate the query benchmark's data set straight into a gridhub DuckDB file.

10,000 meters × 1 year × one ``electricity.power.active.consumed.total`` reading per
quarter-hour (≈ 350 million rows) by default, written the way live ingest leaves the store:
appended in time order, tick by tick, every meter at each tick; then the 15 min / 1 h / 1 day
rollups computed from those raw rows with SQL, chunk by chunk (chunks are whole local days, so
every bucket is complete within one chunk and the rollups too are appended in bucket order).
The schema and the registry rows (tenant ``bench`` in Europe/Brussels, one site, the meters,
a tenant token) are made by :func:`gridhub.hub.build_hub`, so the file is a data directory a
hub can serve.

Last, the store is compacted as a running hub would have compacted it by now
(:class:`gridhub.storage.compaction.Compactor`, the same code the hub's writer runs: every local
day that ended more than two days ago rewritten in (device, identifier, ts) order); a hub that
had ingested this year live would hold it that way. ``--no-compact`` leaves the append order.

Everything is generated inside DuckDB (``INSERT … SELECT … FROM range(…)``), never row by row in
Python. The readings are a deterministic function of (meter, tick), so the peers
(``benchmarks/peers.py``) load exactly the same values from :func:`readings_sql`.

    python benchmarks/generate.py --data-dir /tmp/bench-data --meters 10000 --days 365
    python benchmarks/generate.py --data-dir /tmp/bench-raw --meters 1000 --days 365 --no-compact
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from time import perf_counter
from zoneinfo import ZoneInfo

import duckdb
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gridhub.config import Settings
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import build_hub
from gridhub.storage.compaction import Compactor
from gridhub.storage.duckdb_store import DuckDBDatabase

TENANT = "bench"
ZONE = "Europe/Brussels"
IDENTIFIER = "electricity.power.active.consumed.total"
START = date(2025, 1, 1)
INTERVAL_S = 900
# rows per INSERT statement, about (rounded to whole local days)
CHUNK_ROWS = 4_000_000


@dataclass(frozen=True)
class Span:
    """The data set's shape: ``meters`` meters over ``days`` local days from ``start``."""

    meters: int
    days: int
    start: date = START

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(ZONE)

    @cached_property
    def midnights(self) -> list[datetime]:
        """The ``days + 1`` local midnights bounding the days, as UTC instants."""
        return [
            datetime.combine(self.start + timedelta(days=n), time(0), self.zone).astimezone(UTC)
            for n in range(self.days + 1)
        ]

    @property
    def t0(self) -> datetime:
        return self.midnights[0]

    @property
    def end(self) -> datetime:
        return self.midnights[-1]

    @property
    def ticks(self) -> int:
        """Quarter-hours in the span (a DST day has 92 or 100)."""
        return self.tick_of(self.end)

    @property
    def rows(self) -> int:
        return self.ticks * self.meters

    def tick_of(self, moment: datetime) -> int:
        return int((moment - self.t0).total_seconds()) // INTERVAL_S

    @property
    def width(self) -> int:
        return max(5, len(str(self.meters - 1)))

    def meter(self, n: int) -> str:
        return f"m{n:0{self.width}d}"

    # what the benchmarks ask for
    @property
    def query_meter(self) -> str:
        return self.meter(min(42, self.meters - 1))

    @property
    def query_day(self) -> date:
        """A day in the middle of the span."""
        return self.start + timedelta(days=self.days // 2)

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        n = (day - self.start).days
        return self.midnights[n], self.midnights[n + 1]

    def chunks(self, rows: int = CHUNK_ROWS) -> list[tuple[int, int]]:
        """[tick_lo, tick_hi) per chunk of whole local days, about ``rows`` rows each."""
        per_chunk = max(1, rows // (self.meters * 96))
        ticks = [self.tick_of(m) for m in self.midnights]
        return [
            (ticks[n], ticks[min(n + per_chunk, self.days)]) for n in range(0, self.days, per_chunk)
        ]


def readings_sql(span: Span, row_lo: int, row_hi: int, step: int = 1) -> str:
    """A SELECT of rows ``range(row_lo, row_hi, step)`` of the data set as (i, device, ts, value).

    Row ``i`` is meter ``i % meters`` at tick ``i // meters``: time order, every meter per tick.
    The value (kW, three decimals) is a daily curve scaled per meter plus a little noise; a
    function of (meter, tick) only, so every system gets exactly the same readings. The caller's
    connection must have ``TimeZone`` set to UTC for ``ts`` to print as UTC.
    """
    m, w, t0 = span.meters, span.width, int(span.t0.timestamp())
    return f"""
        SELECT i,
               'm' || lpad((i % {m})::VARCHAR, {w}, '0') AS device,
               to_timestamp({t0} + (i // {m}) * {INTERVAL_S}) AS ts,
               round(
                   (0.5 + ((i % {m}) * 7919 % 1000) / 1000.0)
                   * (0.35 + 0.3 * sin(2 * pi() * ((i // {m}) % 96 - 30) / 96.0))
                   + (i * 2654435761 % 1000) / 5000.0,
                   3) AS value
        FROM range({row_lo}, {row_hi}, {step}) r(i)
    """


def prepare_registry(data_dir: Path, meters: int, span: Span | None = None) -> str:
    """Schema and registry through the hub itself; return a tenant admin token secret."""
    span = span or Span(meters, 1)
    hub = build_hub(Settings(data_dir=data_dir))
    try:
        hub.registry.create_tenant(Tenant(TENANT, "Benchmark fleet", ZONE))
        hub.registry.register_sites([Site(TENANT, "s1")])
        hub.registry.register_devices(
            [Device(TENANT, span.meter(n), "smart-meter", "s1") for n in range(meters)]
        )
        _record, secret = hub.tokens.create(TENANT, "admin", "bench")
        return secret
    finally:
        hub.db.close()


def new_token(data_dir: Path) -> str:
    """A fresh tenant admin token for an existing data directory (no hub may be running)."""
    hub = build_hub(Settings(data_dir=data_dir))
    try:
        _record, secret = hub.tokens.create(TENANT, "admin", "bench")
        return secret
    finally:
        hub.db.close()


@dataclass
class Generated:
    data_dir: Path
    db_path: Path
    span: Span
    seconds: float
    bytes: int
    token: str
    compaction_seconds: float = 0.0  # included in ``seconds``; 0: not compacted

    @property
    def rows(self) -> int:
        return self.span.rows


# The rollups, from the chunk's raw rows, appended in bucket order. Each raw reading lies on a
# quarter-hour and is its meter's only one there, so a 15 min bucket is one reading (a projection:
# no aggregation needed); hours aggregate the raw rows, days the hours (sum, min, max and count
# compose; first and last are the earliest and latest of the parts).
_ROLLUP_SQL = {
    "rollup_15m": """
        INSERT INTO rollup_15m
        SELECT tenant, device, identifier, time_bucket(INTERVAL '15 minutes', ts),
               1, value, value, value, ts, value, ts, value
        FROM measurements WHERE ts >= $lo AND ts < $hi
    """,
    "rollup_1h": f"""
        INSERT INTO rollup_1h
        SELECT tenant, device, identifier, time_bucket(INTERVAL '1 hour', ts, '{ZONE}') AS bucket,
               count(*), sum(value), min(value), max(value),
               min(ts), arg_min(value, ts), max(ts), arg_max(value, ts)
        FROM measurements WHERE ts >= $lo AND ts < $hi
        GROUP BY ALL ORDER BY bucket, device
    """,
    "rollup_1d": f"""
        INSERT INTO rollup_1d
        SELECT tenant, device, identifier,
               time_bucket(INTERVAL '1 day', bucket, '{ZONE}') AS day,
               sum(count), sum(sum), min(min), max(max),
               min(first_ts), arg_min(first, first_ts), max(last_ts), arg_max(last, last_ts)
        FROM rollup_1h WHERE bucket >= $lo AND bucket < $hi
        GROUP BY ALL ORDER BY day, device
    """,
}


def generate_duckdb(
    data_dir: Path | str,
    meters: int = 10_000,
    days: int = 365,
    *,
    start: date = START,
    progress: bool = True,
    threads: int | None = None,
    compact: bool = True,
) -> Generated:
    """Create a gridhub data directory at ``data_dir`` holding the data set, compacted unless
    ``compact`` is false; see the module doc.

    ``data_dir`` must not hold a gridhub database yet.
    """
    data_dir = Path(data_dir)
    span = Span(meters, days, start)
    settings = Settings(data_dir=data_dir)
    if settings.db_path.exists():
        raise FileExistsError(f"{settings.db_path} exists; generate into an empty directory")
    started = perf_counter()
    token = prepare_registry(data_dir, meters, span)
    con = duckdb.connect(str(settings.db_path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        chunks = span.chunks()
        with Progress(
            TextColumn("[bold]generate[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task(f"{meters:,} meters × {days} days", total=span.rows)
            for tick_lo, tick_hi in chunks:
                lo = span.t0 + timedelta(seconds=tick_lo * INTERVAL_S)
                hi = span.t0 + timedelta(seconds=tick_hi * INTERVAL_S)
                con.execute("BEGIN")
                con.execute(
                    f"""
                    INSERT INTO measurements
                    SELECT '{TENANT}', device, '{IDENTIFIER}', ts, value
                    FROM ({readings_sql(span, tick_lo * meters, tick_hi * meters)})
                    """
                )
                for sql in _ROLLUP_SQL.values():
                    con.execute(sql, {"lo": lo, "hi": hi})
                con.execute("COMMIT")
                bar.advance(task, (tick_hi - tick_lo) * meters)
            # the hub's state table: each meter's latest reading
            last = span.ticks - 1
            con.execute(
                f"""
                INSERT INTO state
                SELECT '{TENANT}', device, '{IDENTIFIER}', ts, value, ts
                FROM ({readings_sql(span, last * meters, (last + 1) * meters)})
                """
            )
            con.execute("CHECKPOINT")
    finally:
        con.close()
    compaction_seconds = compact_store(settings.db_path) if compact else 0.0
    seconds = perf_counter() - started
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
    return Generated(data_dir, settings.db_path, span, seconds, size, token, compaction_seconds)


def compact_store(db_path: Path) -> float:
    """Compact what a hub would have compacted by now (its own :class:`Compactor`, all at once
    rather than a slice between write batches); return the seconds it took."""
    started = perf_counter()
    db = DuckDBDatabase(db_path)
    try:
        Compactor(db).run()
        db.cursor().execute("CHECKPOINT")
    finally:
        db.close()
    return perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="an empty directory")
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--start", type=date.fromisoformat, default=START, help="first day")
    parser.add_argument("--force", action="store_true", help="replace an existing data dir")
    parser.add_argument(
        "--no-compact", action="store_true", help="leave the rows in append (time) order"
    )
    args = parser.parse_args(argv)
    if args.force and args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    gen = generate_duckdb(
        args.data_dir, args.meters, args.days, start=args.start, compact=not args.no_compact
    )
    print(
        f"{gen.rows:,} rows ({args.meters:,} meters × {args.days} days) + rollups in "
        f"{gen.seconds:,.1f} s ({gen.rows / gen.seconds:,.0f} rows/s, of which "
        f"{gen.compaction_seconds:,.1f} s compaction); "
        f"{gen.bytes / 2**30:,.2f} GiB in {gen.data_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
