"""The per-series newest-reading marks that let a batch of new readings skip the dedupe join."""

from __future__ import annotations

import threading
from pathlib import Path

from gridhub.storage.base import MeasurementColumns
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore
from gridhub.storage.high_water import HighWater


def cols(*rows: tuple[str, str, str, int]) -> MeasurementColumns:
    c = MeasurementColumns()
    for tenant, device, ident, ts in rows:
        c.append(tenant, device, ident, ts, 1.0, False)
    return c


def loaded(rows: list[tuple[str, str, str, int]]) -> HighWater:
    marks = HighWater()
    marks.load_in_background(lambda: rows)
    assert marks.wait_ready(5)
    return marks


def flags(marks: HighWater, *rows: tuple[str, str, str, int]) -> list[bool]:
    known, got, _newest = marks.sift(cols(*rows))
    assert known == sum(got)
    return got


def test_nothing_is_known_new_before_the_scan() -> None:
    assert flags(HighWater(), ("t", "d", "p", 1)) == [False]


def test_newer_than_the_stored_newest_is_new_and_older_or_equal_is_not() -> None:
    marks = loaded([("t", "d", "p", 100)])
    assert marks.sift(cols(("t", "d", "p", 101))) == (1, [True], {("t", "d", "p"): 101})
    assert flags(marks, ("t", "d", "p", 100)) == [False]
    assert flags(marks, ("t", "d", "p", 101), ("t", "d", "p", 50)) == [True, False]
    # an unknown series has nothing stored: new; another tenant's series is another series
    assert marks.sift(cols(("u", "d", "p", 5))) == (1, [True], {("u", "d", "p"): 5})


def test_a_batch_repeating_or_reordering_a_series_sends_the_later_reading_to_the_join() -> None:
    marks = loaded([])
    assert flags(marks, ("t", "d", "p", 5), ("t", "d", "p", 5)) == [True, False]
    assert flags(marks, ("t", "d", "p", 6), ("t", "d", "p", 5)) == [True, False]
    assert flags(marks, ("t", "d", "p", 5), ("t", "d", "p", 6)) == [True, True]


def test_an_old_reading_does_not_lower_the_floor_of_its_series() -> None:
    """After a resent reading (not new), the next one is new only if above the stored mark."""
    marks = loaded([("t", "d", "p", 100)])
    known, got, newest = marks.sift(
        cols(("t", "d", "p", 50), ("t", "d", "p", 80), ("t", "d", "p", 101), ("t", "e", "p", 1))
    )
    assert (known, got) == (2, [False, False, True, True])
    assert newest == {("t", "d", "p"): 101, ("t", "e", "p"): 1}


def test_marks_recorded_during_the_scan_are_kept_when_higher() -> None:
    """A batch committed while the scan runs may be newer than what the scan saw, or older."""
    scanning, release = threading.Event(), threading.Event()

    def scan() -> list[tuple[str, str, str, int]]:
        scanning.set()
        release.wait(5)
        return [("t", "a", "p", 10), ("t", "b", "p", 30)]

    marks = HighWater()
    marks.load_in_background(scan)
    assert scanning.wait(5)
    marks.record({("t", "a", "p"): 20, ("t", "b", "p"): 25})
    assert flags(marks, ("t", "a", "p", 99)) == [False]  # not ready yet
    release.set()
    assert marks.wait_ready(5)
    assert flags(marks, ("t", "a", "p", 20), ("t", "b", "p", 30)) == [False, False]
    assert flags(marks, ("t", "a", "p", 21), ("t", "b", "p", 31)) == [True, True]


def test_a_failed_scan_leaves_every_batch_to_the_join() -> None:
    def scan() -> list[tuple[str, str, str, int]]:
        raise OSError("store closed")

    marks = HighWater()
    marks.load_in_background(scan)
    assert not marks.wait_ready(0.5)
    assert flags(marks, ("t", "d", "p", 1)) == [False]


def test_newest_takes_the_maximum_in_any_order() -> None:
    got = HighWater.newest(cols(("t", "d", "p", 7), ("t", "d", "p", 3), ("t", "e", "p", 1)))
    assert got == {("t", "d", "p"): 7, ("t", "e", "p"): 1}


def test_closing_the_store_during_the_scan_interrupts_it(tmp_path: Path) -> None:
    """The scan runs on its own cursor; DuckDB refuses to close a connection under a running
    query, so close() must interrupt the scan and wait for it instead of failing."""
    db = DuckDBDatabase(tmp_path / "big.duckdb")
    db.cursor().execute(
        "INSERT INTO measurements SELECT 't', 'd' || (i % 5000), 'p',"
        " TIMESTAMPTZ '2026-01-01' + i * INTERVAL 1 SECOND, 1.0 FROM range(3000000) r(i)"
    )
    for _ in range(3):
        store = DuckDBStore(db)
        db.close()  # right away: the scan is (usually) still running
        assert not store.high_water.ready or store.high_water.wait_ready(0)
        db = DuckDBDatabase(tmp_path / "big.duckdb")
    store = DuckDBStore(db)
    try:
        assert store.high_water.wait_ready(30)
        assert flags(store.high_water, ("t", "d1", "p", 1), ("t", "d1", "p", 2**62)) == [
            False,  # stored
            True,
        ]
    finally:
        db.close()
