"""Compaction: settled days rewritten in key order keep every reading exactly once, answer every
query as before, and dedupe still refuses a resent old reading."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gridhub.domain.timeutil import Function, Resolution, day_bounds
from gridhub.domain.validation import to_us
from gridhub.storage.base import SeriesQuery, WriteBatch
from gridhub.storage.compaction import Compactor
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore

ZONE = "Europe/Brussels"
P = "electricity.power.active.consumed.total"
Q = "electricity.energy.active.consumed.total"
DEVICES = [f"m{n:03d}" for n in range(12)]
FIRST = date(2026, 3, 27)  # spans the spring DST change (a 23 h day on 03-29)
DAYS = 6
NOW = datetime(2026, 4, 3, 12, tzinfo=UTC)  # days up to 03-31 are settled (2 days)


def at(day: date, quarter: int) -> datetime:
    return day_bounds(day, ZoneInfo(ZONE))[0].astimezone(UTC) + timedelta(minutes=15 * quarter)


def batch_of(rows: list[tuple[str, str, str, datetime, float]]) -> WriteBatch:
    batch = WriteBatch(zones={"t1": ZONE, "t2": ZONE})
    for tenant, device, ident, ts, value in rows:
        batch.measurements.append(tenant, device, ident, to_us(ts), value, False)
    return batch


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDBDatabase]:
    database = DuckDBDatabase(tmp_path / "c.duckdb")
    for tenant in ("t1", "t2"):
        database.write(
            [("INSERT INTO tenants VALUES (?, ?, ?, 'reject')", [(tenant, tenant, ZONE)])]
        )
    yield database
    database.close()


@pytest.fixture
def store(db: DuckDBDatabase) -> DuckDBStore:
    """A store holding DAYS days of quarter-hourly readings, appended in time order (every
    device at each tick, two quantities, two tenants) as live ingest leaves them."""
    s = DuckDBStore(db)
    rng = random.Random(3)
    for n in range(DAYS):
        day = FIRST + timedelta(days=n)
        rows = []
        for quarter in range(100):
            ts = at(day, quarter)
            if ts >= at(day + timedelta(days=1), 0):
                break
            for device in DEVICES:
                rows.append(("t1", device, P, ts, round(rng.uniform(0, 5), 3)))
                rows.append(("t1", device, Q, ts, round(rng.uniform(0, 5), 3)))
            rows.append(("t2", DEVICES[0], P, ts, round(rng.uniform(0, 5), 3)))
        for i in range(0, len(rows), 1000):
            s.write(batch_of(rows[i : i + 1000]))
        s.merge_rollups()
    return s


def all_rows(db: DuckDBDatabase) -> list[tuple[Any, ...]]:
    return db.read("SELECT * FROM measurements ORDER BY ALL")


def answers(store: DuckDBStore) -> dict[tuple[str, str, str, str], list[tuple[datetime, float]]]:
    """Every device's series of every quantity, raw and per day, day by day."""
    got = {}
    for tenant, devices in (("t1", DEVICES), ("t2", DEVICES[:1])):
        for device in devices:
            for ident in (P, Q):
                for n in range(DAYS):
                    lo, hi = day_bounds(FIRST + timedelta(days=n), ZoneInfo(ZONE))
                    for res, fn in ((Resolution.RAW, Function.AVG), (Resolution.DAY, Function.SUM)):
                        points = store.series(
                            SeriesQuery(tenant, device, ident, lo, hi, res, fn), ZONE
                        )
                        got[(tenant, device, ident, f"{n}{res}")] = [
                            (p.ts, p.value) for p in points
                        ]
    return got


def physical_order(db: DuckDBDatabase, tenant: str, day: date) -> list[tuple[str, str, datetime]]:
    """The day's keys in storage order (rowid), which is what zone maps see."""
    lo, hi = day_bounds(day, ZoneInfo(ZONE))
    return [
        (d, i, ts)
        for d, i, ts in db.read(
            "SELECT device, identifier, ts FROM measurements"
            " WHERE tenant = ? AND ts >= ? AND ts < ? ORDER BY rowid",
            [tenant, lo, hi],
        )
    ]


def test_settled_days_are_rewritten_in_key_order_and_every_row_kept_once(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    before_rows = all_rows(db)
    before = answers(store)
    settled = [FIRST + timedelta(days=n) for n in range(5)]  # 03-27 .. 03-31
    assert physical_order(db, "t1", settled[0]) != sorted(physical_order(db, "t1", settled[0]))

    stats = Compactor(db, slice_rows=700, now=lambda: NOW).run()

    assert all_rows(db) == before_rows  # the same multiset: nothing lost, nothing doubled
    assert answers(store) == before
    assert stats.days == 2 * len(settled) and stats.recompacted == 0
    assert stats.rows == sum(len(physical_order(db, t, d)) for t in ("t1", "t2") for d in settled)
    assert stats.slices > stats.days  # 2,300 rows a day in slices of at most 700
    for day in settled:
        keys = physical_order(db, "t1", day)
        assert keys == sorted(keys)
    # the last day ended less than 2 days before NOW: still in arrival (time) order
    recent = physical_order(db, "t1", FIRST + timedelta(days=5))
    assert recent != sorted(recent)
    recorded = db.read("SELECT tenant, day, rows FROM compacted_days ORDER BY ALL")
    assert [(t, d) for t, d, _ in recorded] == [(t, d) for t in ("t1", "t2") for d in settled]
    assert recorded[2][2] == 23 * 4 * len(DEVICES) * 2  # the 23-hour DST day
    # done: a second run finds nothing to do
    assert Compactor(db, now=lambda: NOW).run().days == 0


def test_dedupe_after_compaction_and_a_late_reading_is_compacted_again(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    Compactor(db, now=lambda: NOW).run()
    day = FIRST + timedelta(days=1)
    old = db.read(
        "SELECT tenant, device, identifier, ts, value FROM measurements"
        " WHERE device = 'm005' AND identifier = ? AND ts = ?",
        [P, at(day, 40)],
    )[0]
    # the meter resends an old reading: refused as a duplicate, with a different value too
    resent = store.write(batch_of([old[:4] + (old[4] + 1,)]))
    assert (resent.stored, resent.duplicates) == (0, 1)
    # a reading it never sent (a gap filled late) is stored, and the day rewritten again
    late = ("t1", "m005", P, at(day, 40) + timedelta(minutes=5), 9.5)
    assert store.write(batch_of([late])).stored == 1
    store.merge_rollups()
    before_rows = all_rows(db)
    assert physical_order(db, "t1", day)[-1] == ("m005", P, late[3])  # appended at the end

    compactor = Compactor(db, now=lambda: NOW)
    stats = compactor.run()
    assert (stats.days, stats.recompacted) == (1, 1)
    assert all_rows(db) == before_rows
    keys = physical_order(db, "t1", day)
    assert keys == sorted(keys)
    (rows,) = db.read("SELECT rows FROM compacted_days WHERE tenant = 't1' AND day = ?", [day])[0]
    assert rows == len(keys)
    # still a duplicate after the second rewrite
    assert store.write(batch_of([late])).duplicates == 1
    points = store.series(
        SeriesQuery(
            "t1", "m005", P, *day_bounds(day, ZoneInfo(ZONE)), Resolution.DAY, Function.COUNT
        ),
        ZONE,
    )
    assert [p.value for p in points] == [24 * 4 + 1]


def test_history_imported_before_the_compacted_days_is_compacted_too(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    Compactor(db, now=lambda: NOW).run()
    early = FIRST - timedelta(days=3)
    rows = [("t1", device, P, at(early, q), float(q)) for q in range(96) for device in DEVICES]
    assert store.write(batch_of(rows)).stored == len(rows)
    stats = Compactor(db, now=lambda: NOW).run()
    # the imported day, and the two empty days between it and the compacted ones (recorded)
    assert stats.days == 1
    keys = physical_order(db, "t1", early)
    assert len(keys) == len(rows) and keys == sorted(keys)
    days = [
        d for (d,) in db.read("SELECT day FROM compacted_days WHERE tenant = 't1' ORDER BY day")
    ]
    assert days == [early + timedelta(days=n) for n in range(8)]


def test_steps_are_bounded_and_planning_waits_for_its_interval(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    compactor = Compactor(db, slice_rows=500, plan_every_s=3600, now=lambda: NOW)
    steps = 1
    while compactor.step():
        steps += 1
        assert steps < 1000
    assert compactor.stats.days == 10 and compactor.stats.slices >= 5 * 5
    assert steps > compactor.stats.slices  # one slice (or one query) per step
    # nothing planned again before plan_every_s, even if a late reading arrives
    late = ("t1", "m001", P, at(FIRST, 3) + timedelta(minutes=1), 1.0)
    assert store.write(batch_of([late])).stored == 1
    assert compactor.step() is False
    # an hour later, the new plan finds only newly settled days; the recount is daily
    compactor._next_plan = 0.0  # noqa: SLF001 - the hour has passed
    while compactor.step():
        pass
    assert compactor.stats.recompacted == 0
    compactor._next_plan = compactor._next_recount = 0.0  # noqa: SLF001 - a day has passed
    while compactor.step():
        pass
    assert compactor.stats.recompacted == 1


def test_a_hub_started_empty_looks_again_soon_and_then_hourly(db: DuckDBDatabase) -> None:
    """The first plan runs when the hub starts, often before any reading: it must not wait an
    hour for the history imported next. Once readings are there, planning is hourly."""
    compactor = Compactor(db, plan_every_s=3600, empty_plan_every_s=0.0, now=lambda: NOW)
    while compactor.step():
        pass
    assert compactor.stats.days == 0
    store = DuckDBStore(db)
    rows = [("t1", device, P, at(FIRST, q), float(q)) for q in range(96) for device in DEVICES]
    assert store.write(batch_of(rows)).stored == len(rows)
    steps = 0
    while compactor.step():  # planned again at once: the store was empty
        steps += 1
    assert steps and compactor.stats.days >= 1
    assert physical_order(db, "t1", FIRST) == sorted(physical_order(db, "t1", FIRST))
    late = ("t1", DEVICES[0], P, at(FIRST + timedelta(days=1), 0), 1.0)
    assert store.write(batch_of([late])).stored == 1
    assert compactor.step() is False  # readings found: the next plan is an hour away


def test_compaction_beside_the_writer_keeps_late_and_resent_readings_once(
    db: DuckDBDatabase, store: DuckDBStore
) -> None:
    """The merger thread compacts while the writer appends: late readings of the very days
    being rewritten, and resends of readings being moved, must each end up exactly once."""
    import threading

    before = all_rows(db)
    errors: list[Exception] = []
    compactor = Compactor(db, slice_rows=300, now=lambda: NOW)

    def compact() -> None:
        try:
            compactor.run()
        except Exception as exc:  # what the test is about
            errors.append(exc)

    thread = threading.Thread(target=compact)
    thread.start()
    late = []
    for n in range(5):  # settled days: each gets late readings of a new quantity, and resends
        day = FIRST + timedelta(days=n)
        for quarter in range(0, 90, 3):
            late.append(("t1", DEVICES[quarter % 12], "late.quantity", at(day, quarter), 1.0))
    resent = [(t, d, i, ts.astimezone(UTC), v) for t, d, i, ts, v in before[::37]]
    for i in range(0, len(late), 10):
        store.write(batch_of(late[i : i + 10] + resent[i : i + 10]))
    thread.join()
    assert errors == []
    after = all_rows(db)
    assert len(after) == len(before) + len(late)
    assert len({r[:4] for r in after}) == len(after)  # no key twice
    Compactor(db, slice_rows=300, now=lambda: NOW).run()  # the days that changed, again
    assert all_rows(db) == after
