"""The Store contract: every backend must pass this suite unchanged.

Backends are listed in ``BACKENDS``; PostgreSQL joins here when it lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridhub.domain.timeutil import Function, Resolution
from gridhub.domain.validation import to_us
from gridhub.storage.base import (
    AlertQuery,
    AlertRecord,
    DeadLetter,
    SeriesQuery,
    Store,
    WriteBatch,
    WriteResult,
)
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore
from gridhub.storage.high_water import HighWater
from gridhub.storage.latest_state import LatestState

BRUSSELS = "Europe/Brussels"
P = "electricity.power.active.consumed.total"


def _duckdb(tmp_path: Path) -> Store:
    return DuckDBStore(DuckDBDatabase(tmp_path / "contract.duckdb"))


BACKENDS: dict[str, Callable[[Path], Store]] = {"duckdb": _duckdb}


class _MergingStore:
    """A store whose rollups are merged after every write: reads must not care when."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def write(self, batch: WriteBatch) -> WriteResult:
        result = self._inner.write(batch)
        self._inner.merge_rollups()
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.fixture(
    params=[
        (b, m, d)
        for b in sorted(BACKENDS)
        for m in ("deferred", "merged")
        for d in ("marks", "joins")
    ],
    ids=lambda p: "-".join(p),
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each backend with rollups merged later or at once, and (DuckDB) dedupe by the newest
    stored reading per series when it can and the latest state from memory, or always by the
    anti-join and the state from the ``current_state`` view."""
    backend, mode, dedupe = request.param
    s = BACKENDS[backend](tmp_path)
    if isinstance(s, DuckDBStore):
        if dedupe == "marks":
            assert s.high_water.wait_ready(10)
            assert s.latest_state.wait_ready(10)
        else:
            s.high_water = HighWater()  # never loaded: every batch takes the anti-join
            s.latest_state = LatestState()  # never loaded: state read from current_state
    yield s if mode == "deferred" else _MergingStore(s)  # type: ignore[misc]
    s.close()


def batch_of(rows: list[tuple[str, str, str, datetime, float]], update: bool = False) -> WriteBatch:
    batch = WriteBatch(zones={t: BRUSSELS for t, *_ in rows})
    for tenant, device, ident, ts, value in rows:
        batch.measurements.append(tenant, device, ident, to_us(ts), value, update)
    return batch


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def q(
    store: Store,
    start: datetime,
    end: datetime,
    res: Resolution,
    fn: Function,
    tenant: str = "t1",
    device: str = "d1",
) -> list[tuple[datetime, float]]:
    points = store.series(SeriesQuery(tenant, device, P, start, end, res, fn), BRUSSELS)
    return [(p.ts, p.value) for p in points]


def test_raw_round_trip_and_range(store: Store) -> None:
    t0 = utc(2026, 11, 20, 0)
    rows = [("t1", "d1", P, t0 + timedelta(minutes=15 * i), float(i)) for i in range(8)]
    result = store.write(batch_of(rows))
    assert (result.stored, result.duplicates) == (8, 0)
    got = q(
        store, t0 + timedelta(minutes=15), t0 + timedelta(minutes=60), Resolution.RAW, Function.AVG
    )
    assert got == [(t0 + timedelta(minutes=15 * i), float(i)) for i in (1, 2, 3)]


def test_duplicates_dropped_within_and_across_batches(store: Store) -> None:
    t0 = utc(2026, 11, 20, 0)
    row = ("t1", "d1", P, t0, 1.0)
    first = store.write(batch_of([row, row, ("t1", "d1", P, t0 + timedelta(minutes=15), 2.0)]))
    assert (first.stored, first.duplicates) == (2, 1)
    again = store.write(batch_of([row]))
    assert (again.stored, again.duplicates) == (0, 1)
    day = q(store, utc(2026, 11, 19), utc(2026, 11, 21), Resolution.DAY, Function.COUNT)
    assert sum(v for _, v in day) == 2  # the rollups did not count the duplicates either


def test_a_batch_of_new_readings_with_resent_ones_among_them_stores_each_once(
    store: Store,
) -> None:
    """Live readings, a resend of a stored one, and a new reading repeated later in the same
    batch (DuckDB: the first known new, the repeat and the resend left to the join)."""
    t0 = utc(2026, 11, 20, 0)
    stored = [("t1", f"d{i}", P, t0, float(i)) for i in range(20)]
    assert store.write(batch_of(stored)).stored == 20
    live = [("t1", f"d{i}", P, t0 + timedelta(minutes=15), 100.0 + i) for i in range(20)]
    mixed = [*live[:10], stored[3], live[4], *live[10:], ("t1", "d3", P, t0, 999.0)]
    result = store.write(batch_of(mixed, update=True))
    assert (result.stored, result.duplicates) == (20, 3)
    d3 = q(store, t0, t0 + timedelta(hours=1), Resolution.RAW, Function.AVG, device="d3")
    assert [v for _, v in d3] == [3.0, 103.0]  # the stored value, not the resent 999
    d4 = q(store, t0, t0 + timedelta(hours=1), Resolution.RAW, Function.AVG, device="d4")
    assert [v for _, v in d4] == [4.0, 104.0]  # the repeat stored once
    hours = q(store, t0, t0 + timedelta(hours=1), Resolution.HOUR, Function.COUNT, device="d4")
    assert sum(v for _, v in hours) == 2  # nor counted twice by the rollups


def test_rollups_match_raw_with_late_data(store: Store) -> None:
    rng = random.Random(7)
    t0 = utc(2026, 11, 20, 0)
    rows = [
        ("t1", "d1", P, t0 + timedelta(seconds=rng.randrange(0, 3 * 86400)), rng.uniform(-5, 5))
        for _ in range(3000)
    ]
    rows = list({r[3]: r for r in rows}.values())  # unique timestamps
    half = len(rows) // 2
    late_first = sorted(rows, key=lambda r: r[3], reverse=True)  # newest first, late data after
    store.write(batch_of(late_first[:half]))
    store.write(batch_of(late_first[half:]))
    zone = ZoneInfo(BRUSSELS)
    start, end = utc(2026, 11, 19), utc(2026, 11, 24)
    for res, key in (
        (Resolution.QUARTER_HOUR, lambda ts: ts.replace(minute=ts.minute // 15 * 15, second=0)),
        (Resolution.HOUR, lambda ts: ts.astimezone(zone).replace(minute=0, second=0)),
        (Resolution.DAY, lambda ts: ts.astimezone(zone).replace(hour=0, minute=0, second=0)),
    ):
        buckets: dict[datetime, list[tuple[datetime, float]]] = {}
        for _t, _d, _i, ts, value in rows:
            buckets.setdefault(key(ts), []).append((ts, value))
        expected = {
            Function.COUNT: {b: float(len(v)) for b, v in buckets.items()},
            Function.SUM: {b: sum(x for _, x in v) for b, v in buckets.items()},
            Function.AVG: {b: sum(x for _, x in v) / len(v) for b, v in buckets.items()},
            Function.MIN: {b: min(x for _, x in v) for b, v in buckets.items()},
            Function.MAX: {b: max(x for _, x in v) for b, v in buckets.items()},
            Function.FIRST: {b: min(v)[1] for b, v in buckets.items()},
            Function.LAST: {b: max(v)[1] for b, v in buckets.items()},
        }
        for fn, want in expected.items():
            got = dict(q(store, start, end, res, fn))
            assert set(got) == set(want), (res, fn)
            for bucket, value in want.items():
                assert got[bucket] == pytest.approx(value, rel=1e-9, abs=1e-9), (res, fn, bucket)


def test_day_buckets_follow_the_tenant_zone_across_dst(store: Store) -> None:
    zone = ZoneInfo(BRUSSELS)
    start = datetime(2026, 3, 29, tzinfo=zone)  # spring forward: 23 hours
    end = datetime(2026, 3, 30, tzinfo=zone)
    rows, ts = [], start.astimezone(UTC)
    while ts < end:
        rows.append(("t1", "d1", P, ts, 1.0))
        ts += timedelta(minutes=15)
    store.write(batch_of(rows))
    assert len(rows) == 92
    quarter = q(store, start, end, Resolution.QUARTER_HOUR, Function.SUM)
    assert len(quarter) == 92
    assert q(store, start, end, Resolution.DAY, Function.COUNT) == [(start, 92.0)]
    assert len(q(store, start, end, Resolution.HOUR, Function.SUM)) == 23


def test_tenants_and_devices_do_not_mix(store: Store) -> None:
    t0 = utc(2026, 11, 20)
    store.write(
        batch_of([("t1", "d1", P, t0, 1.0), ("t2", "d1", P, t0, 2.0), ("t1", "d2", P, t0, 3.0)])
    )
    end = t0 + timedelta(hours=1)
    assert q(store, t0, end, Resolution.RAW, Function.AVG) == [(t0, 1.0)]
    assert q(store, t0, end, Resolution.RAW, Function.AVG, tenant="t2") == [(t0, 2.0)]
    assert q(store, t0, end, Resolution.RAW, Function.AVG, device="d2") == [(t0, 3.0)]
    assert q(store, t0, end, Resolution.RAW, Function.AVG, tenant="t3") == []


def test_latest_state_only_moves_forward(store: Store) -> None:
    t0 = utc(2026, 11, 20)
    store.write(batch_of([("t1", "d1", P, t0 + timedelta(hours=2), 5.0)], update=True))
    store.write(batch_of([("t1", "d1", P, t0 + timedelta(hours=1), 4.0)], update=True))  # late
    store.write(batch_of([("t1", "d1", "electricity.frequency", t0, 50.0)], update=False))
    state = store.latest("t1", "d1")
    assert [(s.identifier, s.ts, s.value) for s in state] == [(P, t0 + timedelta(hours=2), 5.0)]
    assert store.latest("t2", "d1") == []


def test_alerts_filtered(store: Store) -> None:
    t0 = to_us(utc(2026, 11, 20))
    alerts = [
        AlertRecord("t1", "d1", t0, "last.gasp", "Critical", "power lost", "{}", t0),
        AlertRecord("t1", "d2", t0 + 1_000_000, "max.power", "Warning", "", "{}", t0),
        AlertRecord("t2", "d1", t0, "last.gasp", "Critical", "", "{}", t0),
    ]
    store.write(WriteBatch(alerts=alerts))
    assert [a.device for a in store.alerts(AlertQuery("t1"))] == ["d2", "d1"]
    assert [a.type for a in store.alerts(AlertQuery("t1", level="Critical"))] == ["last.gasp"]
    assert [a.device for a in store.alerts(AlertQuery("t1", device="d2"))] == ["d2"]
    later = utc(2026, 11, 20, 0, 0, 1)
    assert [a.device for a in store.alerts(AlertQuery("t1", start=later))] == ["d2"]
    assert len(store.alerts(AlertQuery("t2"))) == 1


def test_dead_letters_keep_raw_bytes(store: Store) -> None:
    raw = b'\xff{"broken": \x00'
    now = to_us(utc(2026, 11, 20))
    store.write(
        WriteBatch(
            dead_letters=[
                DeadLetter("t1", "mqtt:gridhub/t1/d1/events", now, "malformed_json", "bad", raw),
                DeadLetter(None, "mqtt:elsewhere", now, "bad_topic", "not ours", b"x"),
            ]
        )
    )
    mine = store.dead_letters("t1")
    assert [(d.reason, d.raw, d.source) for d in mine] == [
        ("malformed_json", raw, "mqtt:gridhub/t1/d1/events")
    ]
    assert len(store.dead_letters(None)) == 2
    assert store.dead_letters("t1", reason="bad_topic") == []


def test_rollups_merge_batches_in_any_order(store: Store) -> None:
    """first/last/min/max of a bucket fed by several batches, older and newer ones mixed."""
    t0 = utc(2026, 11, 20, 10)
    rows = [
        ("t1", "d1", P, t0 + timedelta(minutes=m), float(v))
        for m, v in ((5, 7), (0, 3), (10, 9), (2, -1), (14, 4))
    ]
    for row in rows:  # one batch each, in the order above
        store.write(batch_of([row]))
    end = t0 + timedelta(minutes=15)
    assert q(store, t0, end, Resolution.QUARTER_HOUR, Function.FIRST) == [(t0, 3.0)]
    assert q(store, t0, end, Resolution.QUARTER_HOUR, Function.LAST) == [(t0, 4.0)]
    assert q(store, t0, end, Resolution.QUARTER_HOUR, Function.MIN) == [(t0, -1.0)]
    assert q(store, t0, end, Resolution.QUARTER_HOUR, Function.MAX) == [(t0, 9.0)]
    assert q(store, t0, end, Resolution.QUARTER_HOUR, Function.COUNT) == [(t0, 5.0)]
    assert q(store, t0, end, Resolution.HOUR, Function.LAST) == [(t0, 4.0)]


def test_tenants_in_different_zones_in_one_batch(store: Store) -> None:
    ts = utc(2026, 11, 20, 23, 30)  # Brussels: the 21st already; New York: still the 20th
    batch = WriteBatch(zones={"eu": BRUSSELS, "us": "America/New_York"})
    for tenant in ("eu", "us"):
        batch.measurements.append(tenant, "d1", P, to_us(ts), 1.0, False)
    store.write(batch)
    start, end = utc(2026, 11, 19), utc(2026, 11, 23)
    eu = store.series(SeriesQuery("eu", "d1", P, start, end, Resolution.DAY, Function.SUM), "")
    us = store.series(SeriesQuery("us", "d1", P, start, end, Resolution.DAY, Function.SUM), "")
    assert eu[0].ts == datetime(2026, 11, 21, tzinfo=ZoneInfo(BRUSSELS))
    assert us[0].ts == datetime(2026, 11, 20, tzinfo=ZoneInfo("America/New_York"))


def test_a_resent_reading_does_not_change_state_or_series(store: Store) -> None:
    t0 = utc(2026, 11, 20)
    store.write(batch_of([("t1", "d1", P, t0, 1.0)], update=True))
    store.write(batch_of([("t1", "d1", P, t0, 7.0)], update=True))  # same key, other value
    assert [s.value for s in store.latest("t1", "d1")] == [1.0]
    end = t0 + timedelta(minutes=1)
    assert q(store, t0, end, Resolution.RAW, Function.AVG) == [(t0, 1.0)]
    # within one batch the first one sent wins
    t1 = t0 + timedelta(minutes=15)
    store.write(batch_of([("t1", "d1", P, t1, 5.0), ("t1", "d1", P, t1, 6.0)], update=True))
    assert q(store, t1, t1 + timedelta(minutes=1), Resolution.RAW, Function.AVG) == [(t1, 5.0)]


def test_alerts_and_acks_are_not_stored_twice(store: Store) -> None:
    from gridhub.storage.base import AckRecord

    t0 = to_us(utc(2026, 11, 20))
    alert = AlertRecord("t1", "d1", t0, "last.gasp", "Critical", "", "{}", t0)
    ack = AckRecord("t1", "d1", t0, "inv-1", "ok", t0)
    first = store.write(WriteBatch(alerts=[alert, alert], acks=[ack]))
    again = store.write(WriteBatch(alerts=[alert], acks=[ack]))
    assert (first.alerts, first.acks, again.alerts, again.acks) == (1, 1, 0, 0)
    assert len(store.alerts(AlertQuery("t1"))) == 1


def test_merging_rollups_changes_no_answer(store: Store) -> None:
    rng = random.Random(3)
    t0 = utc(2026, 11, 20, 0)
    rows = [
        ("t1", "d1", P, t0 + timedelta(seconds=s), rng.uniform(0, 9))
        for s in rng.sample(range(0, 2 * 86400), 500)
    ]
    start, end = utc(2026, 11, 19), utc(2026, 11, 23)
    answers = []
    for chunk in range(5):
        store.write(batch_of(rows[chunk * 100 : (chunk + 1) * 100]))
        if chunk % 2:
            store.merge_rollups()
    for _ in range(2):
        answers.append(
            [
                q(store, start, end, res, fn)
                for res in (Resolution.QUARTER_HOUR, Resolution.HOUR, Resolution.DAY)
                for fn in Function
            ]
        )
        store.merge_rollups()
    for before, after in zip(answers[0], answers[1], strict=True):
        assert [ts for ts, _ in before] == [ts for ts, _ in after]
        assert [v for _, v in before] == pytest.approx([v for _, v in after], rel=1e-12)
    assert store.merge_rollups() == 0  # nothing left pending


def test_marks_loaded_after_a_restart_still_drop_resent_readings(tmp_path: Path) -> None:
    """The newest-reading marks come from the stored data: a reopened store must not take a
    resent reading (old, or exactly the newest) for a new one."""
    t0 = utc(2026, 11, 20)
    rows = [("t1", "d1", P, t0 + timedelta(minutes=15 * i), float(i)) for i in range(4)]
    first = DuckDBStore(DuckDBDatabase(tmp_path / "restart.duckdb"))
    first.write(batch_of(rows, update=True))
    first.close()
    store = DuckDBStore(DuckDBDatabase(tmp_path / "restart.duckdb"))
    try:
        assert store.high_water.wait_ready(10)
        for resent in (rows[-1], rows[0]):
            result = store.write(batch_of([resent], update=True))
            assert (result.stored, result.duplicates) == (0, 1)
        newer = ("t1", "d1", P, t0 + timedelta(hours=1), 9.0)
        assert store.write(batch_of([newer, rows[1]], update=True)).stored == 1
        assert [s.value for s in store.latest("t1", "d1")] == [9.0]
        end = t0 + timedelta(days=1)
        assert [v for _, v in q(store, t0, end, Resolution.RAW, Function.AVG)] == [
            0.0,
            1.0,
            2.0,
            3.0,
            9.0,
        ]
    finally:
        store.close()


def test_a_merge_beside_the_writes_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The pipeline merges rollups on its own thread while the writer writes: every reading
    must end up in the rollups once, and the state must be the newest reading."""
    import threading

    store = DuckDBStore(DuckDBDatabase(tmp_path / "beside.duckdb"))
    stop, errors = threading.Event(), []

    def merge() -> None:
        while not stop.is_set():
            try:
                store.merge_rollups()
            except Exception as exc:  # what the test is about
                errors.append(exc)

    merger = threading.Thread(target=merge)
    merger.start()
    t0 = utc(2026, 11, 20)
    try:
        for b in range(60):
            rows = [
                ("t1", f"d{i % 20}", P, t0 + timedelta(minutes=b * 10 + i // 20), float(i % 7))
                for i in range(200)
            ]
            store.write(batch_of(rows, update=True))
    finally:
        stop.set()
        merger.join()
    try:
        assert errors == []
        store.merge_rollups()
        start, end = t0 - timedelta(days=1), t0 + timedelta(days=2)
        total = sum(
            v
            for d in range(20)
            for _, v in q(store, start, end, Resolution.DAY, Function.COUNT, device=f"d{d}")
        )
        assert total == 60 * 200
        newest = t0 + timedelta(minutes=59 * 10 + 9)
        assert [s.ts for s in store.latest("t1", "d0")] == [newest]
    finally:
        store.close()


def test_the_state_in_memory_is_the_state_in_duckdb(tmp_path: Path) -> None:
    """Random batches (out of order, resent, some without updateState), merged or not, before
    and after a reopen: :class:`LatestState` answers what the ``current_state`` view holds."""
    rng = random.Random(11)
    t0 = utc(2026, 11, 20)
    path = tmp_path / "state.duckdb"
    store = DuckDBStore(DuckDBDatabase(path))
    assert store.latest_state.wait_ready(10) and store.high_water.wait_ready(10)
    devices = [f"d{i}" for i in range(6)]
    idents = [P, "electricity.frequency"]

    def from_view(device: str) -> list[tuple[str, datetime, float, datetime]]:
        rows = store._db.read(
            "SELECT identifier, ts, value, received FROM current_state"
            " WHERE tenant = 't1' AND device = ? ORDER BY identifier",
            [device],
        )
        return [(i, ts, v, r) for i, ts, v, r in rows]

    def check() -> None:
        for device in devices:
            got = [(s.identifier, s.ts, s.value, s.received) for s in store.latest("t1", device)]
            assert got == from_view(device), device

    try:
        for round_ in range(12):
            rows = [
                (
                    "t1",
                    rng.choice(devices),
                    rng.choice(idents),
                    t0 + timedelta(minutes=15 * rng.randrange(40)),
                    float(round_ * 100 + k),
                )
                for k in range(rng.choice((1, 5, 40)))
            ]
            store.write(batch_of(rows, update=rng.random() < 0.7))
            if rng.random() < 0.3:
                store.merge_rollups()
            check()
        store.close()
        store = DuckDBStore(DuckDBDatabase(path))
        assert store.latest_state.wait_ready(10)
        check()
    finally:
        store.close()


def test_an_older_reading_sent_with_update_state_still_sets_a_state_never_set(
    store: Store,
) -> None:
    """A series whose newer readings came without updateState: a late one with it is stored
    (after the dedupe join, not known new) and becomes the state."""
    t0 = utc(2026, 11, 20)
    store.write(batch_of([("t1", "d1", P, t0 + timedelta(hours=5), 1.0)]))
    late = [("t1", "d1", P, t0 + timedelta(minutes=15 * i), 10.0 + i) for i in range(20)]
    assert store.write(batch_of(late, update=True)).stored == 20
    assert [(s.ts, s.value) for s in store.latest("t1", "d1")] == [
        (t0 + timedelta(minutes=15 * 19), 29.0)
    ]
