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


def test_nothing_is_known_new_before_the_scan() -> None:
    assert HighWater().newest_if_all_new(cols(("t", "d", "p", 1))) is None


def test_newer_than_the_stored_newest_is_new_and_older_or_equal_is_not() -> None:
    marks = loaded([("t", "d", "p", 100)])
    assert marks.newest_if_all_new(cols(("t", "d", "p", 101))) == {("t", "d", "p"): 101}
    assert marks.newest_if_all_new(cols(("t", "d", "p", 100))) is None
    assert marks.newest_if_all_new(cols(("t", "d", "p", 101), ("t", "d", "p", 50))) is None
    # an unknown series has nothing stored: new; another tenant's series is another series
    assert marks.newest_if_all_new(cols(("u", "d", "p", 5))) == {("u", "d", "p"): 5}


def test_a_batch_repeating_or_reordering_a_series_takes_the_join() -> None:
    marks = loaded([])
    assert marks.newest_if_all_new(cols(("t", "d", "p", 5), ("t", "d", "p", 5))) is None
    assert marks.newest_if_all_new(cols(("t", "d", "p", 6), ("t", "d", "p", 5))) is None
    assert marks.newest_if_all_new(cols(("t", "d", "p", 5), ("t", "d", "p", 6))) is not None


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
    assert marks.newest_if_all_new(cols(("t", "a", "p", 99))) is None  # not ready yet
    release.set()
    assert marks.wait_ready(5)
    assert marks.newest_if_all_new(cols(("t", "a", "p", 20))) is None
    assert marks.newest_if_all_new(cols(("t", "b", "p", 30))) is None
    assert marks.newest_if_all_new(cols(("t", "a", "p", 21), ("t", "b", "p", 31))) is not None


def test_a_failed_scan_leaves_every_batch_to_the_join() -> None:
    def scan() -> list[tuple[str, str, str, int]]:
        raise OSError("store closed")

    marks = HighWater()
    marks.load_in_background(scan)
    assert not marks.wait_ready(0.5)
    assert marks.newest_if_all_new(cols(("t", "d", "p", 1))) is None


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
        assert store.high_water.newest_if_all_new(cols(("t", "d1", "p", 1))) is None  # stored
        assert store.high_water.newest_if_all_new(cols(("t", "d1", "p", 2**62))) is not None
    finally:
        db.close()
