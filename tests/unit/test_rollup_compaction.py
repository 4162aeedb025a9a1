"""Compaction of the daily rollups: each local year's settled days of ``rollup_1d`` rewritten as
one block in series order, so one meter's year reads a row group or two, not all of them; every
rollup row kept exactly once, every answer as before, later merges still exact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridhub.domain.timeutil import Function, Resolution, day_bounds
from gridhub.domain.validation import to_us
from gridhub.storage.base import SeriesQuery, WriteBatch
from gridhub.storage.compaction import ROLLUP_TAIL_DAYS, Compactor
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore

ZONE = "Europe/Brussels"
TZ = ZoneInfo(ZONE)
P = "electricity.power.active.consumed.total"
Q = "electricity.energy.active.consumed.total"
DEVICES = [f"m{n:03d}" for n in range(12)]
FIRST = date(2025, 12, 1)
DAYS = 121  # to 2026-03-31, across the new year
SERIES = len(DEVICES) * 2


def noon(day: date) -> datetime:
    """Noon UTC of ``day``: the settle horizon (2 days) is then ``day - 2``."""
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)


def batch_of(rows: list[tuple[str, str, datetime, float]]) -> WriteBatch:
    batch = WriteBatch(zones={"t1": ZONE})
    for device, ident, ts, value in rows:
        batch.measurements.append("t1", device, ident, to_us(ts), value, False)
    return batch


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDBDatabase]:
    database = DuckDBDatabase(tmp_path / "r.duckdb")
    database.write([("INSERT INTO tenants VALUES ('t1', 't1', ?, 'reject')", [(ZONE,)])])
    yield database
    database.close()


@pytest.fixture
def store(db: DuckDBDatabase) -> DuckDBStore:
    """Four readings a day per series, merged day by day: the daily rollups lie in merge
    (bucket-major) order, as a live hub leaves them."""
    s = DuckDBStore(db)
    for n in range(DAYS):
        start = day_bounds(FIRST + timedelta(days=n), TZ)[0].astimezone(UTC)
        rows = [
            (device, ident, start + timedelta(hours=6 * k), float(n + k + d))
            for k in range(4)
            for d, device in enumerate(DEVICES)
            for ident in (P, Q)
        ]
        assert s.write(batch_of(rows)).stored == len(rows)
        s.merge_rollups()
    return s


def rollups(db: DuckDBDatabase) -> list[tuple[Any, ...]]:
    return db.read("SELECT * FROM rollup_1d ORDER BY ALL")


def physical_order(db: DuckDBDatabase, lo: date, hi: date) -> list[tuple[str, str, datetime]]:
    """The keys of the daily rollups of local days [lo, hi) in storage order (rowid), which is
    what zone maps see."""
    return [
        (d, i, b)
        for d, i, b in db.read(
            "SELECT device, identifier, bucket FROM rollup_1d"
            " WHERE tenant = 't1' AND bucket >= ? AND bucket < ? ORDER BY rowid",
            [day_bounds(lo, TZ)[0], day_bounds(hi, TZ)[0]],
        )
    ]


def yearly(store: DuckDBStore) -> dict[tuple[str, str], list[tuple[datetime, float]]]:
    """Every series' daily sums over the whole span."""
    lo, hi = day_bounds(FIRST, TZ)[0], day_bounds(FIRST + timedelta(days=DAYS), TZ)[0]
    return {
        (device, ident): [
            (p.ts, p.value)
            for p in store.series(
                SeriesQuery("t1", device, ident, lo, hi, Resolution.DAY, Function.SUM), ZONE
            )
        ]
        for device in DEVICES
        for ident in (P, Q)
    }


def recorded(db: DuckDBDatabase) -> list[tuple[int, date, int]]:
    return [
        (year, through, rows)
        for year, through, rows in db.read(
            "SELECT year, through, rows FROM compacted_rollup_years WHERE tenant = 't1'"
            " ORDER BY year"
        )
    ]


def is_sorted(keys: list[tuple[str, str, datetime]]) -> bool:
    return keys == sorted(keys)


def test_each_years_settled_days_are_rewritten_in_series_order(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    before, answers = rollups(db), yearly(store)
    assert not is_sorted(physical_order(db, FIRST, date(2026, 1, 1)))
    now = noon(date(2026, 2, 10))  # settled: up to 2026-02-07

    stats = Compactor(db, slice_rows=200, now=lambda: now).run()

    assert rollups(db) == before  # every rollup row exactly once, unchanged
    assert yearly(store) == answers
    assert recorded(db) == [
        (2025, date(2026, 1, 1), 31 * SERIES),
        (2026, date(2026, 2, 8), 38 * SERIES),
    ]
    assert stats.rollup_years == 2 and stats.rollup_rows == (31 + 38) * SERIES
    assert is_sorted(physical_order(db, FIRST, date(2026, 1, 1)))
    assert is_sorted(physical_order(db, date(2026, 1, 1), date(2026, 2, 8)))
    # the days not settled yet stay in merge order (cheap for the merges still coming)
    assert not is_sorted(physical_order(db, date(2026, 2, 8), date(2026, 3, 1)))
    # done: a second run rewrites nothing
    assert Compactor(db, now=lambda: now).run().rollup_years == 0


def test_the_current_year_is_rewritten_after_its_tail_and_once_it_is_over(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    Compactor(db, now=lambda: noon(date(2025, 12, 20))).run()
    assert recorded(db) == [(2025, date(2025, 12, 18), 17 * SERIES)]
    # the year is over (settled up to 12-31) two weeks later: its block is completed at once
    Compactor(db, now=lambda: noon(date(2026, 1, 3))).run()
    assert recorded(db) == [(2025, date(2026, 1, 1), 31 * SERIES)]
    assert is_sorted(physical_order(db, FIRST, date(2026, 1, 1)))
    Compactor(db, now=lambda: noon(date(2026, 1, 12))).run()
    through = recorded(db)[1][1]
    assert through == date(2026, 1, 10)  # 2026's first settled days, rewritten
    # fewer than ROLLUP_TAIL_DAYS newly settled days: left in merge order
    short = through + timedelta(days=ROLLUP_TAIL_DAYS - 1)
    assert Compactor(db, now=lambda: noon(short + timedelta(days=2))).run().rollup_years == 0
    assert not is_sorted(physical_order(db, date(2026, 1, 1), short))
    due = through + timedelta(days=ROLLUP_TAIL_DAYS)
    stats = Compactor(db, now=lambda: noon(due + timedelta(days=2))).run()
    assert stats.rollup_years == 1
    assert recorded(db)[1] == (2026, due, (due - date(2026, 1, 1)).days * SERIES)
    assert is_sorted(physical_order(db, date(2026, 1, 1), due))


def test_merges_after_compaction_stay_exact_and_a_new_day_is_recounted(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    now = noon(date(2026, 2, 10))
    Compactor(db, now=lambda: now).run()
    day = date(2025, 12, 10)
    lo, hi = day_bounds(day, TZ)
    # a late reading for a compacted day of a known series updates its rollup row in place
    late = ("m003", P, lo.astimezone(UTC) + timedelta(hours=1), 100.0)
    # and a series never heard of that day gets a new rollup row, appended out of order
    new = ("m000", "electricity.voltage.l1", lo.astimezone(UTC) + timedelta(hours=2), 230.0)
    assert store.write(batch_of([late, new])).stored == 2
    store.merge_rollups()
    query = SeriesQuery("t1", "m003", P, lo, hi, Resolution.DAY, Function.SUM)
    (expected,) = db.read(
        "SELECT sum(value) FROM measurements WHERE tenant = 't1' AND device = 'm003'"
        " AND identifier = ? AND ts >= ? AND ts < ?",
        [P, lo, hi],
    )[0]
    assert [p.value for p in store.series(query, ZONE)] == [expected]
    assert not is_sorted(physical_order(db, FIRST, date(2026, 1, 1)))
    before = rollups(db)

    # the (daily) recount finds that 2025 holds one row more than it did when compacted
    stats = Compactor(db, now=lambda: now).run()
    assert stats.rollup_years == 1
    assert rollups(db) == before
    assert recorded(db)[0] == (2025, date(2026, 1, 1), 31 * SERIES + 1)
    assert is_sorted(physical_order(db, FIRST, date(2026, 1, 1)))
    assert [p.value for p in store.series(query, ZONE)] == [expected]
