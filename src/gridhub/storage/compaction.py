"""Compaction: rewrite each settled local day of ``measurements`` in key order.

Why. Live ingest appends readings as they arrive — by time, every meter at each tick — so each
DuckDB row group (122,880 rows) holds every meter of a few hours. One meter's day then lies in
every row group of that day (8 or 9 of them at 10,000 meters), and the ``device`` filter cannot
skip any by its min/max zone map: ``series`` for 96 values scanned ~1 M rows. Rewritten in
(tenant, device, identifier, ts) order, a day's row groups each hold a narrow range of devices,
and the zone maps skip all but the one or two that hold the meter (``EXPLAIN ANALYZE``: 2 of
3,206 row groups scanned on 350 M rows, was 9 of 2,919). Queries over all meters of a day
(completeness) read as many row groups as before, because a day stays together: it is sorted
within itself, never mixed with other days.

What. A tenant's local day (in its zone, like the day rollups) is compacted once it ended at
least ``settle`` ago (2 days by default: readings still arriving late keep landing in
append order, and the recent days stay cheap to write to). Each day is rewritten in slices of at
most ``slice_rows`` rows (a range of devices), each slice one transaction: its rows are copied
sorted into a temporary table, deleted, checked to be exactly as many, and appended back — every
row kept exactly once, nothing deduplicated or dropped, and a reader sees either the old or the
new layout. DuckDB reclaims the deleted rows at its next checkpoint. ``compacted_days`` records
each day and how many rows it held; a day whose count has changed since (a late or backfilled
reading appended after compaction) is rewritten again, and days before the first one compacted
(a history imported later) are picked up too.

Who. The pipeline's merger thread calls :meth:`Compactor.step` (``Pipeline.add_maintenance``):
one slice per call, several when the writer is idle. It looks for settled days hourly, and every
few seconds while the store holds no reading yet (the first plan runs as the hub starts). It
runs beside the writer, which only ever appends to ``measurements``: DuckDB's snapshot isolation
keeps them apart — a slice copies and deletes the rows its snapshot sees, so a late reading the
writer appends meanwhile stays, once, and the day's changed count has it rewritten at the next
recount. ``benchmarks/generate.py`` calls :meth:`Compactor.run` at its end, so the query
benchmark sees what a hub that had ingested that year would have left.

The rows keep their values, so nothing else changes: the rollups, the latest state and the
dedupe marks of :mod:`~gridhub.storage.high_water` (each series' newest reading) stay as they
are. The dedupe anti-join of ``DuckDBStore.write`` bounds both the batch's time span and its
devices, so a late or resent reading for a compacted day reads the few row groups of its meter,
not all of that day's (measured in docs/design.md).
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from gridhub.domain.timeutil import day_bounds
from gridhub.errors import StoreUnavailable
from gridhub.storage.duckdb_store import DuckDBDatabase

SETTLE = timedelta(days=2)  # a local day is compacted once it ended this long ago
SLICE_ROWS = 250_000  # most rows rewritten in one transaction (~0.2 s on 2 cores)
PLAN_EVERY_S = 3600.0  # look for newly settled days this often
# … but while the store holds no reading at all (a hub just installed, its history not yet
# imported), this often: the first plan runs when the hub starts, and an hour's wait would
# leave the first history imported in append order for that long
EMPTY_PLAN_EVERY_S = 10.0
RECOUNT_EVERY_S = 86_400.0  # and check compacted days for late readings this often
# a year's block of settled daily rollups is rewritten again once this many more days settled:
# a meter's year then reads the block's row group or two and at most this tail (10,000 meters:
# 300,000 rows, ~3 row groups) instead of every row group of the year (30)
ROLLUP_TAIL_DAYS = 30
RECOUNT_DAYS = 7  # days counted per step when looking for late readings (~0.1 s at 10,000 meters)


@dataclass(frozen=True)
class _Table:
    """A table compaction rewrites: its time column, and the order it is rewritten in (the
    tenant is fixed within a slice)."""

    name: str
    time: str
    sort: str


_RAW = _Table("measurements", "ts", "device, identifier, ts")
_DAILY = _Table("rollup_1d", "bucket", "device, identifier, bucket")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CompactionStats:
    """What :meth:`Compactor.run` (or the steps so far) did."""

    plans: int = 0  # times it looked for settled days
    days: int = 0  # days rewritten (first time or again)
    recompacted: int = 0  # of which, days rewritten again after late readings
    slices: int = 0
    rows: int = 0
    rollup_years: int = 0  # year blocks of rollup_1d rewritten
    rollup_rows: int = 0
    seconds: float = 0.0


class CompactionError(StoreUnavailable):
    """A slice did not delete exactly the rows it copied; it was rolled back."""


class Compactor:
    """Rewrites each tenant's settled local days of ``measurements`` in key order, one bounded
    slice per :meth:`step` (see the module doc)."""

    def __init__(
        self,
        db: DuckDBDatabase,
        *,
        settle: timedelta = SETTLE,
        slice_rows: int = SLICE_ROWS,
        plan_every_s: float = PLAN_EVERY_S,
        recount_every_s: float = RECOUNT_EVERY_S,
        empty_plan_every_s: float = EMPTY_PLAN_EVERY_S,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._db = db
        self.settle = settle
        self.slice_rows = slice_rows
        self.plan_every_s = plan_every_s
        self.recount_every_s = recount_every_s
        self.empty_plan_every_s = empty_plan_every_s
        self._now = now
        self.stats = CompactionStats()
        self._work: Iterator[None] | None = None
        self._next_plan = 0.0  # monotonic
        self._next_recount = 0.0
        self._found_readings = False  # whether the current plan found any reading

    # -- driving --------------------------------------------------------------------------------

    def step(self) -> bool:
        """Do one bounded unit of work (a query or a slice) if any is due; return whether more
        is queued. Cheap when nothing is due: it plans at most every ``plan_every_s`` (every
        ``empty_plan_every_s`` while the store holds no reading)."""
        if self._work is None:
            now = clock.monotonic()
            if now < self._next_plan:
                return False
            self._next_plan = now + self.plan_every_s
            recount = now >= self._next_recount
            if recount:
                self._next_recount = now + self.recount_every_s
            self._found_readings = False
            self.stats.plans += 1
            self._work = self._all_work(recount)
        try:
            next(self._work)
        except StopIteration:
            self._work = None
            if not self._found_readings:
                self._next_plan = min(self._next_plan, clock.monotonic() + self.empty_plan_every_s)
            return False
        except BaseException:
            self._work = None  # start over at the next plan; every slice is all or nothing
            raise
        return True

    def run(self) -> CompactionStats:
        """Everything due now, including the recount of compacted days; return what was done
        (for ``benchmarks/generate.py``, the CLI and tests)."""
        started = clock.perf_counter()
        before = CompactionStats(**vars(self.stats))
        for _ in self._all_work(recount=True):
            pass
        done = CompactionStats(
            **{
                f.name: getattr(self.stats, f.name) - getattr(before, f.name)
                for f in fields(before)
            }
        )
        done.plans = 1
        done.seconds = clock.perf_counter() - started
        return done

    # -- planning -------------------------------------------------------------------------------

    def _all_work(self, recount: bool) -> Iterator[None]:
        for tenant, zone_name in self._read("SELECT id, timezone FROM tenants ORDER BY id"):
            yield from self._tenant_work(tenant, ZoneInfo(zone_name), recount)

    def _tenant_work(self, tenant: str, zone: ZoneInfo, recount: bool) -> Iterator[None]:
        # days before ``horizon`` ended at least ``settle`` ago
        horizon = (self._now() - self.settle).astimezone(zone).date()
        yield from self._raw_work(tenant, zone, horizon, recount)
        yield from self._daily_rollup_work(tenant, zone, horizon, recount)

    def _raw_work(
        self, tenant: str, zone: ZoneInfo, horizon: date, recount: bool
    ) -> Iterator[None]:
        horizon_start = day_bounds(horizon, zone)[0]
        done = dict(
            self._read(
                "SELECT day, rows FROM compacted_days WHERE tenant = ? ORDER BY day", [tenant]
            )
        )
        # the first day with data: before every compacted day (a history imported later is
        # found by zone maps, cheaply), or the first reading at all
        first_start = day_bounds(min(done), zone)[0] if done else horizon_start
        (oldest,) = self._read(
            "SELECT min(ts) FROM measurements WHERE tenant = ? AND ts < ?", [tenant, first_start]
        )[0]
        yield
        first = oldest.astimezone(zone).date() if oldest is not None else min(done, default=None)
        if first is None:
            (any_reading,) = self._read(
                "SELECT count(*) > 0 FROM (SELECT 1 FROM measurements WHERE tenant = ? LIMIT 1)",
                [tenant],
            )[0]
            self._found_readings |= bool(any_reading)
            return
        self._found_readings = True
        changed: set[date] = set()
        if recount and done:
            changed = yield from self._changed_days(tenant, zone, sorted(done), done)
        day = first
        while day < horizon:
            if day not in done or day in changed:
                yield from self._compact_day(tenant, zone, day, again=day in done)
            day += timedelta(days=1)

    def _changed_days(
        self, tenant: str, zone: ZoneInfo, days: list[date], done: dict[date, int]
    ) -> Generator[None, None, set[date]]:
        """Generator returning the compacted days whose row count differs from the recorded one
        (readings appended since), ``RECOUNT_DAYS`` days per step."""
        changed: set[date] = set()
        for i in range(0, len(days), RECOUNT_DAYS):
            part = days[i : i + RECOUNT_DAYS]
            # one count per day with constant bounds, so zone maps prune each (converting every
            # ts to local time to group by day measured 5x slower)
            params: dict[str, object] = {"tenant": tenant}
            counts = []
            for n, day in enumerate(part):
                params[f"lo{n}"], params[f"hi{n}"] = day_bounds(day, zone)
                counts.append(
                    f"SELECT {n} AS n, count(*) FROM measurements"
                    f" WHERE tenant = $tenant AND ts >= $lo{n} AND ts < $hi{n}"
                )
            found = dict(self._read(" UNION ALL ".join(counts), params))
            changed.update(d for n, d in enumerate(part) if found.get(n, 0) != done[d])
            yield
        return changed

    def _daily_rollup_work(
        self, tenant: str, zone: ZoneInfo, horizon: date, recount: bool
    ) -> Iterator[None]:
        """The settled days of each local year of ``rollup_1d``, rewritten as one block in
        series order: once the year's first days settle, again every ``ROLLUP_TAIL_DAYS`` newly
        settled days and when the year is over, and at a recount if its row count changed."""
        done = {
            year: (through, rows)
            for year, through, rows in self._read(
                "SELECT year, through, rows FROM compacted_rollup_years WHERE tenant = ?",
                [tenant],
            )
        }
        horizon_start = day_bounds(horizon, zone)[0]
        (oldest,) = self._read(
            "SELECT min(bucket) FROM rollup_1d WHERE tenant = ? AND bucket < ?",
            [tenant, horizon_start],
        )[0]
        yield
        if oldest is None:
            return
        for year in range(oldest.astimezone(zone).year, horizon.year + 1):
            year_end = date(year + 1, 1, 1)
            through = min(year_end, horizon)
            if through <= date(year, 1, 1):
                continue
            lo = day_bounds(date(year, 1, 1), zone)[0]
            record = done.get(year)
            due = record is None or (
                record[0] < through
                and (through == year_end or (through - record[0]).days >= ROLLUP_TAIL_DAYS)
            )
            if not due and recount and record is not None:
                (rows,) = self._read(
                    "SELECT count(*) FROM rollup_1d WHERE tenant = ? AND bucket >= ?"
                    " AND bucket < ?",
                    [tenant, lo, day_bounds(record[0], zone)[0]],
                )[0]
                due = rows != record[1]
                yield
            if due:
                yield from self._compact_rollup_year(
                    tenant, zone, year, through, again=record is not None
                )

    # -- rewriting ------------------------------------------------------------------------------

    def _compact_rollup_year(
        self, tenant: str, zone: ZoneInfo, year: int, through: date, *, again: bool
    ) -> Iterator[None]:
        lo, hi = day_bounds(date(year, 1, 1), zone)[0], day_bounds(through, zone)[0]

        def record(cur: duckdb.DuckDBPyConnection, rows: int) -> None:
            cur.execute(
                "INSERT OR REPLACE INTO compacted_rollup_years VALUES (?, ?, ?, ?, now())",
                [tenant, year, through, rows],
            )

        what = f"{tenant} rollup_1d {year} until {through}"
        total = yield from self._compact_span(_DAILY, tenant, lo, hi, record, what)
        if total:
            self.stats.rollup_years += 1
            self.stats.rollup_rows += total

    def _compact_day(
        self, tenant: str, zone: ZoneInfo, day: date, *, again: bool
    ) -> Iterator[None]:
        lo, hi = day_bounds(day, zone)

        def record(cur: duckdb.DuckDBPyConnection, rows: int) -> None:
            cur.execute(
                "INSERT OR REPLACE INTO compacted_days VALUES (?, ?, ?, now())",
                [tenant, day, rows],
            )

        total = yield from self._compact_span(_RAW, tenant, lo, hi, record, f"{tenant} {day}")
        if total:  # an empty day is only remembered
            self.stats.days += 1
            self.stats.recompacted += again
            self.stats.rows += total

    def _compact_span(
        self,
        table: _Table,
        tenant: str,
        lo: datetime,
        hi: datetime,
        record: Callable[[duckdb.DuckDBPyConnection, int], None],
        what: str,
    ) -> Generator[None, None, int]:
        """Generator rewriting the tenant's rows of ``table`` in [lo, hi) in key order, one
        slice of whole devices per step; ``record`` notes the span as compacted (with its row
        count) in the last slice's transaction. Return the rows rewritten."""
        per_device = self._read(
            f"SELECT device, count(*) FROM {table.name}"
            f" WHERE tenant = ? AND {table.time} >= ? AND {table.time} < ?"
            " GROUP BY device ORDER BY device",
            [tenant, lo, hi],
        )
        yield
        if not per_device:  # nothing to rewrite: only remember the span
            with self._transaction(what) as cur:
                record(cur, 0)
            return 0
        # slices of whole devices; the first and last are open-ended, so a device first seen
        # between these statements is still rewritten (and the span recounted later)
        bounds: list[tuple[str | None, str | None]] = []
        start: str | None = None
        rows = 0
        for index, (device, count) in enumerate(per_device):
            if rows and rows + count > self.slice_rows:
                bounds.append((start, per_device[index - 1][0]))
                start, rows = device, 0
            rows += count
        bounds.append((start, None))
        total = 0
        for index, (first, last) in enumerate(bounds):
            last_slice = index == len(bounds) - 1
            total += self._rewrite(
                table, tenant, lo, hi, first, last, what, (record, total) if last_slice else None
            )
            self.stats.slices += 1
            yield
        return total

    def _rewrite(
        self,
        table: _Table,
        tenant: str,
        lo: datetime,
        hi: datetime,
        first: str | None,
        last: str | None,
        what: str,
        record: tuple[Callable[[duckdb.DuckDBPyConnection, int], None], int] | None,
    ) -> int:
        """Rewrite one slice in key order, in one transaction; with ``record`` (and the rows of
        the span's earlier slices), also record the span as compacted. Return the slice's
        rows."""
        where = f"tenant = $tenant AND {table.time} >= $lo AND {table.time} < $hi"
        params: dict[str, object] = {"tenant": tenant, "lo": lo, "hi": hi}
        if first is not None:
            where += " AND device >= $first"
            params["first"] = first
        if last is not None:
            where += " AND device <= $last"
            params["last"] = last
        with self._transaction(what) as cur:
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE compaction_slice AS"
                f" SELECT * FROM {table.name} WHERE {where} ORDER BY {table.sort}",
                params,
            )
            (copied,) = cur.execute("SELECT count(*) FROM compaction_slice").fetchall()[0]
            (deleted,) = cur.execute(f"DELETE FROM {table.name} WHERE {where}", params).fetchall()[
                0
            ]
            if deleted != copied:
                raise CompactionError(
                    f"compaction of {what}: copied {copied} rows, deleted {deleted}"
                )
            cur.execute(
                f"INSERT INTO {table.name} SELECT * FROM compaction_slice ORDER BY {table.sort}"
            )
            cur.execute("DROP TABLE compaction_slice")
            if record is not None:
                note, earlier = record
                note(cur, earlier + copied)
        return int(copied)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """One maintenance transaction: committed if the block returns, rolled back otherwise
        (a DuckDB error raised as :class:`StoreUnavailable`, retried at a later plan)."""
        with self._db.maintenance_lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if isinstance(exc, duckdb.Error):
                    raise StoreUnavailable(f"compaction of {what} failed: {exc}") from exc
                raise

    def _read(self, sql: str, params: object = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params, "compaction read")
