"""The embedded DuckDB backend: zero set-up, one file under the data directory.

One :class:`DuckDBDatabase` owns the file; the :class:`DuckDBStore` (time series) and the
:class:`~gridhub.storage.duckdb_catalog.DuckDBCatalog` (registry) share it. DuckDB allows one
writing process per file, so the CLI talks to a running hub over HTTP instead of opening it.

Writes come from the pipeline's single writer thread. Each batch is staged as an Arrow table and
written in one transaction: readings already stored (same tenant, device, identifier, ts) are
dropped by an anti-join restricted to the batch's time span (cheap thanks to DuckDB's min/max
zone maps on an append-ordered table) — unless every reading is newer than its series' newest
stored one (:mod:`~gridhub.storage.high_water`), the usual case of live meters, which skips the
join. The new readings are appended to ``measurements`` and to ``rollup_pending``: that is the
whole write (a live reading: about 3 ms with the commit, was 9 ms). :meth:`DuckDBStore.
merge_rollups` later folds the pending readings into the 15 min / 1 h / 1 day rollups (``MERGE
INTO`` restricted to their span; no index, which measured 1.5–4× slower) and into the latest
state, and reads add whatever is still pending (the ``current_state`` view for the state) — so
late data lands in the right bucket, a resent reading is never counted twice, and every answer
is exact at any moment.

``measurements`` is append-ordered only for its recent days: once a tenant's local day has
settled, :mod:`~gridhub.storage.compaction` rewrites it sorted by (device, identifier, ts), so
the zone maps on ``device`` skip all but one or two of the day's row groups when ``series`` reads
one meter (one meter's day on 350 M rows: 9 row groups scanned of 2,919 before, 2 after). The
anti-join bounds the devices as well as the time span, so a late or resent reading for a
compacted day stays cheap too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from gridhub.domain.timeutil import ROLLUP_RESOLUTIONS, Function, Resolution
from gridhub.domain.validation import from_us
from gridhub.errors import ConfigError, StoreRejected, StoreUnavailable
from gridhub.storage.base import (
    AlertQuery,
    MeasurementColumns,
    Point,
    SeriesQuery,
    StateValue,
    StoredAlert,
    StoredDeadLetter,
    WriteBatch,
    WriteResult,
)
from gridhub.storage.bulk import executemany
from gridhub.storage.high_water import HighWater, SeriesKey
from gridhub.storage.latest_state import LatestState
from gridhub.storage.schema import migrate

_TS = pa.timestamp("us", tz="UTC")
SMALL_BATCH = 16  # readings; a batch this small of new readings is inserted as VALUES
_STAGING_SCHEMA = pa.schema(
    [
        ("tenant", pa.string()),
        ("device", pa.string()),
        ("identifier", pa.string()),
        ("ts", _TS),
        ("value", pa.float64()),
        ("update_state", pa.bool_()),
        ("seq", pa.int64()),
        ("zone", pa.string()),
        ("known_new", pa.bool_()),  # HighWater.sift: cannot be a duplicate, skips the join
    ]
)
# bucket of a pending reading: quarter-hours in UTC (every zone's offset is a multiple of 15 min),
# hours and days in the tenant's zone, kept with each pending reading
_BUCKET_SQL = {
    Resolution.QUARTER_HOUR: "time_bucket(INTERVAL '15 minutes', ts)",
    Resolution.HOUR: "time_bucket(INTERVAL '1 hour', ts, zone)",
    Resolution.DAY: "time_bucket(INTERVAL '1 day', ts, zone)",
}
_BUCKET_SPAN = {
    Resolution.QUARTER_HOUR: timedelta(minutes=15),
    Resolution.HOUR: timedelta(hours=1),
    Resolution.DAY: timedelta(hours=26),
}
_FUNCTION_SQL = {
    Function.AVG: "sum / count",
    Function.MIN: "min",
    Function.MAX: "max",
    Function.SUM: "sum",
    Function.COUNT: "count::DOUBLE",
    Function.FIRST: "first",
    Function.LAST: "last",
}
_RAW_FUNCTION_SQL = {
    Function.AVG: "value",
    Function.MIN: "value",
    Function.MAX: "value",
    Function.SUM: "value",
    Function.COUNT: "1.0",
    Function.FIRST: "value",
    Function.LAST: "value",
}


# Errors worth retrying: the disk, a write conflict, memory. Anything else (a conversion or
# constraint error) would fail again with the same batch.
_TRANSIENT = (
    duckdb.IOException,
    duckdb.TransactionException,
    duckdb.OutOfMemoryException,
    duckdb.ConnectionException,
)


# DuckDB folds its WAL into the database file (a checkpoint) once the WAL passes this size. At
# DuckDB's default of 16 MiB a hub under load checkpoints every few seconds, inside the commit
# of whichever batch crossed the line, and rewrites the partly filled last row group each time:
# 10,000-reading batches wrote 252,000 rows/s at 16 MiB, 311,000 at 64 and 320,000 at 128-1,024
# (checkpoints included, 3 M rows, benchmarks' store figure). The price is a longer replay of
# the WAL after a crash and up to this much more disk.
CHECKPOINT_MB = 128


class DuckDBDatabase:
    """The DuckDB file, migrated, with a cursor per calling thread."""

    def __init__(self, path: Path | str, *, checkpoint_mb: int = CHECKPOINT_MB) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            raise ConfigError(
                f"cannot open {self.path}: {exc}. Is another gridhub using this data "
                "directory? Talk to it over HTTP (--url) or stop it first."
            ) from exc
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute(f"SET checkpoint_threshold = '{int(checkpoint_mb)}MiB'")
        migrate(self._con)
        self._local = threading.local()
        # one batch write at a time, and one maintenance transaction (rollup merge, compaction
        # slice) at a time, beside the writes: DuckDB's snapshot isolation keeps them apart
        self.write_lock = threading.Lock()
        self.maintenance_lock = threading.Lock()
        # DuckDB refuses (ResourceInUse) a call on the root connection while another runs —
        # making cursors from several threads at once — and closing it while a cursor's query
        # runs: background readers are tracked, and closing interrupts and waits for them
        self._con_lock = threading.Condition()
        self._background: set[duckdb.DuckDBPyConnection] = set()
        self._closed = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for the calling thread (DuckDB connections are not shared by threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._con_lock:
                cur = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._local.cursor = cur
        return cur

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own, for work that may be interrupted (the SQL console)."""
        with self._con_lock:
            return self._con.cursor()

    def read(
        self, sql: str, params: object = (), what: str = "DuckDB read"
    ) -> list[tuple[Any, ...]]:
        """Rows of one query on this thread's cursor; a DuckDB error is ``StoreUnavailable``."""
        try:
            return self.cursor().execute(sql, params).fetchall()
        except duckdb.Error as exc:
            raise StoreUnavailable(f"{what} failed: {exc}") from exc

    def write(
        self,
        statements: Sequence[tuple[str, Sequence[Sequence[object]]]],
        what: str = "DuckDB write",
        *,
        bulk: bool = False,
    ) -> None:
        """Every ``(sql, rows)`` in one transaction (statements without rows are skipped);
        rolled back and raised as ``StoreUnavailable`` if any fails. ``bulk`` stages many-row
        INSERTs as Arrow (``storage/bulk.py``) instead of running them row by row."""
        cur = self.cursor()
        try:
            cur.execute("BEGIN")
            for sql, rows in statements:
                if rows:
                    if bulk:
                        executemany(cur, sql, rows)
                    else:
                        cur.executemany(sql, rows)
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise StoreUnavailable(f"{what} failed: {exc}") from exc

    @contextmanager
    def background_cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own for a reader on a background thread (e.g. a start-up scan):
        :meth:`close` interrupts its query and waits for it instead of failing."""
        with self._con_lock:
            if self._closed:
                raise StoreUnavailable("the DuckDB file is closed")
            cur = self._con.cursor()
            self._background.add(cur)
        try:
            yield cur
        finally:
            cur.close()
            with self._con_lock:
                self._background.discard(cur)
                self._con_lock.notify_all()

    def close(self) -> None:
        with self._con_lock:
            self._closed = True
            for cur in self._background:
                cur.interrupt()
            self._con_lock.wait_for(lambda: not self._background, timeout=30)
            self._con.close()


def _warm_up_arrow() -> None:
    """Build one tiny Arrow table now, in the background: pyarrow imports its pandas shim on
    the first table (0.4 s), which would otherwise hold up the first batch of readings."""
    pa.Table.from_arrays([pa.array([0])], names=["warm_up"])


_StateUpdate = tuple[str, str, str, int, float]  # tenant, device, identifier, ts µs, value


def _state_updates(cols: MeasurementColumns, known_new: list[bool]) -> list[_StateUpdate]:
    """The known-new readings of ``cols`` sent with ``updateState``."""
    if not any(cols.update_state):
        return []
    return [
        (cols.tenant[i], cols.device[i], cols.identifier[i], cols.ts[i], cols.value[i])
        for i, (update, new) in enumerate(zip(cols.update_state, known_new, strict=True))
        if update and new
    ]


class DuckDBStore:
    """:class:`~gridhub.storage.base.Store` on DuckDB."""

    def __init__(self, db: DuckDBDatabase) -> None:
        self._db = db
        self.high_water = HighWater()
        self.high_water.load_in_background(self._newest_stored)
        self.latest_state = LatestState()
        self.latest_state.load_in_background(self._current_state)
        threading.Thread(target=_warm_up_arrow, name="gridhub-arrow-warm-up", daemon=True).start()

    def _newest_stored(self) -> list[tuple[str, str, str, int]]:
        """Each series' newest stored reading (µs), for :class:`HighWater`: one full scan."""
        with self._db.background_cursor() as cur:
            return cur.execute(
                "SELECT tenant, device, identifier, epoch_us(max(ts))"
                " FROM measurements GROUP BY ALL"
            ).fetchall()

    def _current_state(self) -> list[tuple[str, str, str, int, float, int]]:
        """Every series' latest state, for :class:`LatestState`: one read of the view."""
        with self._db.background_cursor() as cur:
            return cur.execute(
                "SELECT tenant, device, identifier, epoch_us(ts), value, epoch_us(received)"
                " FROM current_state"
            ).fetchall()

    # -- writes ---------------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        received = time.time_ns() // 1000  # the stored state's "received", in DuckDB and memory
        with self._db.write_lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN")
                stored, duplicates, newest, states = self._write_measurements(cur, batch, received)
                alerts, acks, dead_letters = self._write_events(cur, batch)
                cur.execute("COMMIT")
            except Exception as exc:  # whatever failed, never leave the transaction open
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if isinstance(exc, _TRANSIENT):
                    raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
                raise StoreRejected(f"DuckDB refused the batch: {exc}") from exc
            self.high_water.record(newest)
            if states:
                self.latest_state.record(states, received)
        return WriteResult(
            stored=stored,
            duplicates=duplicates,
            alerts=alerts,
            acks=acks,
            dead_letters=dead_letters,
        )

    def _write_measurements(
        self, cur: duckdb.DuckDBPyConnection, batch: WriteBatch, received: int
    ) -> tuple[int, int, dict[SeriesKey, int], list[_StateUpdate]]:
        """Append the batch's new readings to ``measurements`` and ``rollup_pending``; return
        (stored, duplicates, newest timestamp per series, stored state-updating readings) —
        the last two for :class:`HighWater` and :class:`LatestState`."""
        cols = batch.measurements
        if not len(cols):
            return 0, 0, {}, []
        zones = batch.zones
        known, flags, newest = self.high_water.sift(cols)
        if known == len(cols) and known <= SMALL_BATCH:
            self._insert_small(cur, cols, zones, received)
            return known, 0, newest, _state_updates(cols, flags)
        staging = pa.Table.from_arrays(
            [
                pa.array(cols.tenant, pa.string()),
                pa.array(cols.device, pa.string()),
                pa.array(cols.identifier, pa.string()),
                pa.array(cols.ts, pa.int64()).cast(_TS),
                pa.array(cols.value, pa.float64()),
                pa.array(cols.update_state, pa.bool_()),
                pa.array(range(len(cols)), pa.int64()),
                pa.array([zones[t] for t in cols.tenant], pa.string()),
                pa.array(flags, pa.bool_()),
            ],
            schema=_STAGING_SCHEMA,
        )
        cur.register("staging", staging)
        try:
            if known == len(cols):  # every reading newer than its series' newest: no join
                source, stored = "staging", known
            else:
                source = "(SELECT * FROM staging WHERE known_new UNION ALL SELECT * FROM fresh)"
                stored = known + self._dedupe_join(cur, cols, flags)
            states = _state_updates(cols, flags)
            if stored > known and any(
                update and not new for update, new in zip(cols.update_state, flags, strict=True)
            ):
                states += cur.execute(
                    "SELECT tenant, device, identifier, epoch_us(ts), value FROM fresh"
                    " WHERE update_state"
                ).fetchall()
            if stored:
                cur.execute(
                    "INSERT INTO measurements"
                    f" SELECT tenant, device, identifier, ts, value FROM {source}"
                )
                # the latest state is folded in at the merge too (see merge_rollups)
                cur.execute(
                    "INSERT INTO rollup_pending"
                    " (tenant, device, identifier, ts, value, zone, update_state, received)"
                    " SELECT tenant, device, identifier, ts, value, zone, update_state,"
                    f" make_timestamptz({received}::BIGINT) FROM {source}"
                )
        finally:
            cur.unregister("staging")
        return stored, len(cols) - stored, newest, states

    @staticmethod
    def _dedupe_join(
        cur: duckdb.DuckDBPyConnection, cols: MeasurementColumns, flags: list[bool]
    ) -> int:
        """The readings of ``staging`` not known new that are neither stored already nor in
        the batch before (a known-new one of the same key, or an earlier copy), into the temp
        table ``fresh``; return how many."""
        doubtful = [i for i, new in enumerate(flags) if not new]
        ts = [cols.ts[i] for i in doubtful]
        devices = [cols.device[i] for i in doubtful]
        # Constant time bounds (not a subquery) let DuckDB skip row groups by zone map; so do
        # the device bounds, in compacted days (storage/compaction.py), whose row groups each
        # span a whole day but few devices: a late reading scans 4 row groups of 350 M rows
        # instead of 12.
        cur.execute(
            """
            CREATE OR REPLACE TEMP TABLE fresh AS
            SELECT s.* FROM (
                -- of readings repeated within the batch, the first one sent is kept
                SELECT DISTINCT ON (tenant, device, identifier, ts) * FROM staging
                WHERE NOT known_new
                ORDER BY tenant, device, identifier, ts, seq
            ) s
            ANTI JOIN (
                SELECT tenant, device, identifier, ts FROM measurements
                WHERE ts BETWEEN $lo AND $hi AND device BETWEEN $first AND $last
                UNION ALL
                SELECT tenant, device, identifier, ts FROM staging WHERE known_new
            ) m USING (tenant, device, identifier, ts)
            """,
            {
                "lo": from_us(min(ts)),
                "hi": from_us(max(ts)),
                "first": min(devices),
                "last": max(devices),
            },
        )
        return int(cur.execute("SELECT count(*) FROM fresh").fetchall()[0][0])

    @staticmethod
    def _insert_small(
        cur: duckdb.DuckDBPyConnection,
        cols: MeasurementColumns,
        zones: dict[str, str],
        received: int,
    ) -> None:
        """New readings of a small batch (a live meter's message) as ``VALUES``: 0.4 ms a
        statement where staging them as Arrow costs 1.0 ms (measured, one reading)."""
        rows = list(
            zip(cols.tenant, cols.device, cols.identifier, cols.ts, cols.value, strict=True)
        )
        ts, at = "make_timestamptz(?::BIGINT)", f"make_timestamptz({int(received)}::BIGINT)"
        cur.execute(
            "INSERT INTO measurements VALUES " + ", ".join([f"(?, ?, ?, {ts}, ?)"] * len(rows)),
            [v for row in rows for v in row],
        )
        cur.execute(
            "INSERT INTO rollup_pending"
            " (tenant, device, identifier, ts, value, zone, update_state, received) VALUES "
            + ", ".join([f"(?, ?, ?, {ts}, ?, ?, ?, {at})"] * len(rows)),
            [
                v
                for row, update in zip(rows, cols.update_state, strict=True)
                for v in (*row, zones[row[0]], update)
            ],
        )

    def merge_rollups(self) -> int:
        """Merge the readings stored since the last call into the rollups; return how many.

        Runs in its own transaction, after the readings were confirmed: the partial aggregates
        of everything pending are merged into ``rollup_15m``, ``rollup_1h`` and ``rollup_1d``
        (``MERGE INTO`` restricted to the pending span: zone maps prune the rest), the newest
        pending reading of each state-updating series into ``state``, and the pending rows are
        deleted in the same commit. Until then, reads add the pending readings
        on the fly, so answers are exact either way; after a crash the merge simply happens on
        the next call.
        """
        with self._db.maintenance_lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN")
                rows, lo, hi = cur.execute(
                    "SELECT count(*), min(ts), max(ts) FROM rollup_pending"
                ).fetchall()[0]
                if rows:
                    for resolution in ROLLUP_RESOLUTIONS:
                        self._merge_into(cur, resolution, lo, hi)
                    cur.execute(
                        """
                        INSERT INTO state
                        SELECT tenant, device, identifier, max(ts), arg_max(value, ts),
                               arg_max(received, ts)
                        FROM rollup_pending WHERE update_state GROUP BY ALL
                        ON CONFLICT DO UPDATE SET
                            ts = excluded.ts, value = excluded.value, received = excluded.received
                        WHERE excluded.ts >= state.ts
                        """
                    )
                    cur.execute("DELETE FROM rollup_pending")
                cur.execute("COMMIT")
            except Exception as exc:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if isinstance(exc, _TRANSIENT):
                    raise StoreUnavailable(f"DuckDB rollup merge failed: {exc}") from exc
                raise StoreRejected(f"DuckDB refused the rollup merge: {exc}") from exc
        return int(rows)

    @staticmethod
    def _merge_into(
        cur: duckdb.DuckDBPyConnection, resolution: Resolution, lo: datetime, hi: datetime
    ) -> None:
        table = resolution.rollup_table
        # A bucket starts at most one bucket width (a DST day: 25 h) before its readings: a
        # constant span that lets DuckDB prune the rollup table by zone map, not scan it.
        params = {"lo": lo - _BUCKET_SPAN[resolution], "hi": hi}
        cur.execute(
            f"""
            MERGE INTO {table} r
            USING (
                SELECT tenant, device, identifier, {_BUCKET_SQL[resolution]} AS bucket,
                       count(*) AS count, sum(value) AS sum, min(value) AS min,
                       max(value) AS max, min(ts) AS first_ts, arg_min(value, ts) AS first,
                       max(ts) AS last_ts, arg_max(value, ts) AS last
                FROM rollup_pending
                GROUP BY ALL
            ) p
            ON r.bucket BETWEEN $lo AND $hi AND r.bucket = p.bucket
               AND r.tenant = p.tenant AND r.device = p.device AND r.identifier = p.identifier
            WHEN MATCHED THEN UPDATE SET
                count = r.count + p.count,
                sum = r.sum + p.sum,
                min = least(r.min, p.min),
                max = greatest(r.max, p.max),
                first = CASE WHEN p.first_ts < r.first_ts THEN p.first ELSE r.first END,
                first_ts = least(r.first_ts, p.first_ts),
                last = CASE WHEN p.last_ts > r.last_ts THEN p.last ELSE r.last END,
                last_ts = greatest(r.last_ts, p.last_ts)
            WHEN NOT MATCHED THEN INSERT VALUES (
                p.tenant, p.device, p.identifier, p.bucket, p.count, p.sum, p.min, p.max,
                p.first_ts, p.first, p.last_ts, p.last)
            """,
            params,
        )

    def _write_events(
        self, cur: duckdb.DuckDBPyConnection, batch: WriteBatch
    ) -> tuple[int, int, int]:
        """Alerts (key: tenant, device, ts, type) and acks (key: tenant, device, ts,
        originatingEventId), each dropped if already stored; dead letters kept, except a
        redelivered copy of one already kept."""
        alerts = self._insert_new(
            cur,
            "alerts",
            ["tenant", "device", "ts", "type", "level", "message", "metadata", "received"],
            ["tenant", "device", "ts", "type"],
            [
                (a.tenant, a.device, a.ts, a.type, a.level, a.message, a.metadata, a.received)
                for a in batch.alerts
            ],
        )
        acks = self._insert_new(
            cur,
            "acks",
            ["tenant", "device", "ts", "originating_event_id", "response", "received"],
            ["tenant", "device", "ts", "originating_event_id"],
            [
                (a.tenant, a.device, a.ts, a.originating_event_id, a.response, a.received)
                for a in batch.acks
            ],
        )
        fresh_letters = [d for d in batch.dead_letters if not d.redelivered]
        if fresh_letters:
            cur.executemany(
                "INSERT INTO dead_letters (tenant, source, received, reason, detail, raw)"
                " VALUES (?, ?, make_timestamp(?)::TIMESTAMPTZ, ?, ?, ?)",
                [
                    (d.tenant, d.source, d.received, d.reason, d.detail, d.raw)
                    for d in fresh_letters
                ],
            )
        kept = len(fresh_letters)
        for d in batch.dead_letters:
            if d.redelivered:  # the broker's second try of a message we may have kept already
                kept += cur.execute(
                    "INSERT INTO dead_letters (tenant, source, received, reason, detail, raw)"
                    " SELECT ?, ?, make_timestamp(?)::TIMESTAMPTZ, ?, ?, ? WHERE NOT EXISTS ("
                    " SELECT 1 FROM dead_letters WHERE tenant IS NOT DISTINCT FROM ?"
                    " AND source = ? AND raw = ?)",
                    [
                        d.tenant,
                        d.source,
                        d.received,
                        d.reason,
                        d.detail,
                        d.raw,
                        d.tenant,
                        d.source,
                        d.raw,
                    ],
                ).fetchall()[0][0]
        return alerts, acks, kept

    @staticmethod
    def _insert_new(
        cur: duckdb.DuckDBPyConnection,
        table: str,
        columns: list[str],
        key: list[str],
        rows: list[tuple[Any, ...]],
    ) -> int:
        """Insert the rows whose key is not stored yet; return how many were inserted.

        Timestamp columns (``ts``, ``received``) come as µs since the epoch.
        """
        if not rows:
            return 0
        arrays = []
        for index, name in enumerate(columns):
            values = [row[index] for row in rows]
            if name in ("ts", "received"):
                arrays.append(pa.array(values, pa.int64()).cast(_TS))
            else:
                arrays.append(pa.array(values, pa.string()))
        incoming = pa.Table.from_arrays(arrays, names=columns)
        lo, hi = from_us(min(r[2] for r in rows)), from_us(max(r[2] for r in rows))
        keys = ", ".join(key)
        cur.register("incoming", incoming)
        try:
            before = cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            cur.execute(
                f"""
                INSERT INTO {table}
                SELECT i.* FROM (SELECT DISTINCT ON ({keys}) * FROM incoming) i
                ANTI JOIN (SELECT {keys} FROM {table} WHERE ts BETWEEN $lo AND $hi) t
                USING ({keys})
                """,
                {"lo": lo, "hi": hi},
            )
            after = cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        finally:
            cur.unregister("incoming")
        return int(after - before)

    # -- reads ----------------------------------------------------------------------------------

    def series(self, query: SeriesQuery, zone: str) -> list[Point]:
        params: dict[str, object] = {
            "tenant": query.tenant,
            "device": query.device,
            "identifier": query.identifier,
            "start": query.start,
            "end": query.end,
            "limit": query.limit,
        }
        if query.resolution is Resolution.RAW:
            # Sorted by the projected epoch rather than by ts (the same order): DuckDB runs
            # ORDER BY <timestamptz> LIMIT n slower, ~0.8 ms more for a day's 96 values on the
            # 350 M row set (measured side by side, BENCHMARKS.md).
            sql = f"""
                SELECT epoch_us(ts) AS us, {_RAW_FUNCTION_SQL[query.function]} FROM measurements
                WHERE tenant = $tenant AND device = $device AND identifier = $identifier
                  AND ts >= $start AND ts < $end
                ORDER BY us LIMIT $limit
            """
        else:
            # merged rollups plus the readings not merged yet, combined per bucket: exact
            # whether or not merge_rollups has run since they were stored
            sql = f"""
                WITH parts AS (
                    SELECT bucket, count, sum, min, max, first_ts, first, last_ts, last
                    FROM {query.resolution.rollup_table}
                    WHERE tenant = $tenant AND device = $device AND identifier = $identifier
                      AND bucket >= $start AND bucket < $end
                    UNION ALL
                    SELECT * FROM (
                        SELECT {_BUCKET_SQL[query.resolution]} AS bucket, count(*), sum(value),
                               min(value), max(value), min(ts), arg_min(value, ts), max(ts),
                               arg_max(value, ts)
                        FROM rollup_pending
                        WHERE tenant = $tenant AND device = $device AND identifier = $identifier
                        GROUP BY 1
                    ) WHERE bucket >= $start AND bucket < $end
                ), merged AS (
                    SELECT bucket, sum(count) AS count, sum(sum) AS sum, min(min) AS min,
                           max(max) AS max, arg_min(first, first_ts) AS first,
                           arg_max(last, last_ts) AS last
                    FROM parts GROUP BY bucket
                )
                SELECT epoch_us(bucket), {_FUNCTION_SQL[query.function]} FROM merged
                ORDER BY bucket LIMIT $limit
            """
        rows = self._read(sql, params)
        return [Point(from_us(us), value) for us, value in rows]

    def latest(self, tenant: str, device: str) -> list[StateValue]:
        known = self.latest_state.get(tenant, device)
        if known is not None:
            return [StateValue(i, from_us(ts), v, from_us(r)) for i, ts, v, r in known]
        rows = self._read(
            "SELECT identifier, epoch_us(ts), value, epoch_us(received) FROM current_state"
            " WHERE tenant = ? AND device = ? ORDER BY identifier",
            [tenant, device],
        )
        return [StateValue(i, from_us(ts), v, from_us(r)) for i, ts, v, r in rows]

    def alerts(self, query: AlertQuery) -> list[StoredAlert]:
        clauses = ["tenant = $tenant"]
        params: dict[str, object] = {"tenant": query.tenant, "limit": query.limit}
        for column, value, op in (
            ("device", query.device, "="),
            ("level", query.level, "="),
            ("ts", query.start, ">="),
            ("ts", query.end, "<"),
        ):
            if value is not None:
                key = f"p{len(params)}"
                clauses.append(f"{column} {op} ${key}")
                params[key] = value
        rows = self._read(
            "SELECT device, epoch_us(ts), type, level, message, metadata, epoch_us(received)"
            f" FROM alerts WHERE {' AND '.join(clauses)} ORDER BY ts DESC LIMIT $limit",
            params,
        )
        return [
            StoredAlert(d, from_us(ts), t, lvl, msg, meta, from_us(rec))
            for d, ts, t, lvl, msg, meta, rec in rows
        ]

    def dead_letters(
        self, tenant: str | None, limit: int = 100, reason: str | None = None
    ) -> list[StoredDeadLetter]:
        clauses = ["true"]
        params: dict[str, object] = {"limit": limit}
        if tenant is not None:
            clauses.append("tenant = $tenant")
            params["tenant"] = tenant
        if reason is not None:
            clauses.append("reason = $reason")
            params["reason"] = reason
        rows = self._read(
            "SELECT id, tenant, source, epoch_us(received), reason, detail, raw FROM dead_letters"
            f" WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT $limit",
            params,
        )
        return [
            StoredDeadLetter(i, t, s, from_us(r), reason_, d, bytes(raw))
            for i, t, s, r, reason_, d, raw in rows
        ]

    def ping(self) -> None:
        self._read("SELECT 1", [])

    def close(self) -> None:
        self._db.close()

    def _read(self, sql: str, params: object) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params)
