"""The inbound pipeline: validate → bounded buffer → batch writer → confirm.

Sources (MQTT, HTTP, CSV import, simulator) hand over envelopes together with a callback. The
envelopes are validated in the caller's thread, then queued in a buffer bounded in readings. One
writer thread drains the buffer greedily — everything waiting goes into the next store write, so
batches grow with load and stay small (fast) when the hub is idle — and writes it in one store
transaction. Only after that commit are the callbacks called: an MQTT source sends its PUBACK, an
HTTP request gets its 2xx. If the store fails, the writer keeps the batch and retries with backoff
while the buffer fills; a full buffer makes sources wait (MQTT) or answer 503 (HTTP). Nothing is
confirmed that is not durable, and nothing is dropped that was confirmed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gridhub.domain.rejections import RejectReason
from gridhub.errors import Overloaded, StoreUnavailable
from gridhub.ingest.metrics import IngestMetrics
from gridhub.ingest.validate import Envelope, Limits, Prepared, prepare
from gridhub.storage.base import Store, WriteBatch, WriteResult
from gridhub.storage.registry import Registry

log = logging.getLogger(__name__)
MERGE_ROWS = 50_000  # merge rollups at least this often (in readings) …
MERGE_SECONDS = 5.0  # … or this often in time, or when idle
# Linger for a fuller batch only when this many submissions were already waiting: then the
# writer is the bottleneck and bigger batches raise throughput. With fewer, arrivals are sparse
# and waiting would only add latency (a message every 100 ms gains nothing from a 20 ms wait).
LINGER_MIN_SUBMISSIONS = 64
# Store maintenance (e.g. compaction) runs on the merger thread, beside the writer: while the
# writer is idle, steps back to back for up to this long; under load, one step this often, so
# it still progresses (each step is bounded, ~0.2 s) without taking the other core from ingest.
MAINTENANCE_IDLE_S = 1.0
MAINTENANCE_BUSY_EVERY_S = 10.0


class _Stopping(Exception):
    """The pipeline is stopping while the store is unavailable."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str
    detail: str


@dataclass(slots=True)
class Receipt:
    """What happened to a submission, given to its callback once it is durable (or failed)."""

    accepted: int = 0
    readings: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    error: Exception | None = None  # set when the submission could not be made durable


@dataclass(slots=True)
class _Pending:
    items: list[Prepared]
    receipt: Receipt
    on_done: Callable[[Receipt], None]
    rows: int


class _BoundedBuffer:
    """A FIFO bounded by the number of rows it holds, not the number of submissions."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows = 0
        self._items: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def close(self) -> None:
        """Refuse new submissions and wake every source waiting for room."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    def put(self, pending: _Pending, timeout: float | None) -> None:
        """Queue ``pending``; wait up to ``timeout`` s for room (``None``: as long as needed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            # A submission larger than the whole buffer is let in alone rather than refused.
            while True:
                if self._closed:
                    raise StoreUnavailable("the hub is shutting down", retry_after=5.0)
                if not (self.rows and self.rows + pending.rows > self.capacity):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Overloaded(
                        f"ingest buffer full ({self.rows}/{self.capacity} readings)",
                        retry_after=1.0,
                    )
                self._cond.wait(remaining)
            self._items.append(pending)
            self.rows += pending.rows
            self._cond.notify_all()

    def take(self, max_rows: int, wait: float) -> list[_Pending]:
        """Everything waiting, up to ``max_rows``; wait up to ``wait`` s for the first item."""
        with self._cond:
            if not self._items:
                self._cond.wait(wait)
            taken: list[_Pending] = []
            rows = 0
            while self._items and (not taken or rows + self._items[0].rows <= max_rows):
                pending = self._items.popleft()
                taken.append(pending)
                rows += pending.rows
            return taken

    def release(self, rows: int) -> None:
        """Free room once a batch is durable (rows stay counted while being written)."""
        with self._cond:
            self.rows -= rows
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


class Pipeline:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        limits: Limits | None = None,
        buffer_rows: int = 500_000,
        batch_rows: int = 50_000,
        batch_delay_s: float = 0.0,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self.limits = limits or Limits()
        self._buffer = _BoundedBuffer(buffer_rows)
        self._batch_rows = batch_rows
        self._batch_delay_s = batch_delay_s
        self.metrics = metrics or IngestMetrics()
        self.metrics.buffer_capacity = buffer_rows
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store_healthy = True
        self._store_down_until = 0.0  # fault injection (S3): writes fail until then
        # readings stored but not yet folded into the rollups (Store.merge_rollups), which the
        # merger thread does beside the writer (a merge must not hold up confirmations)
        self._unmerged = 1  # unknown at start: a leftover from a crash is merged first
        self._unmerged_lock = threading.Lock()
        self._merge_now = threading.Event()
        self._merger: threading.Thread | None = None
        # told about every committed batch (e.g. the command service matching Acknowledges)
        self._observers: list[Callable[[list[Prepared]], None]] = []
        self._maintenance: list[Callable[[], bool]] = []
        self._last_maintenance = time.monotonic()

    def add_observer(self, observer: Callable[[list[Prepared]], None]) -> None:
        """Call ``observer`` with the messages of each batch after its commit (dead letters
        included: each observer picks what it needs).

        It runs on the writer thread, so it must be quick; what it raises is logged.
        """
        self._observers.append(observer)

    def add_maintenance(self, step: Callable[[], bool]) -> None:
        """Run ``step`` on the merger thread, beside the writer (e.g. ``Compactor.step``).

        ``step`` does one bounded unit of work, in its own store transaction, and returns
        whether more is waiting; it runs back to back while the writer is idle, and once every
        ``MAINTENANCE_BUSY_EVERY_S`` under load. What it raises is logged; it is called again
        later.
        """
        self._maintenance.append(step)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._buffer.reopen()
        self._thread = threading.Thread(target=self._run, name="gridhub-writer", daemon=True)
        self._thread.start()
        self._merger = threading.Thread(target=self._merge_loop, name="gridhub-merger", daemon=True)
        self._merger.start()

    def close_intake(self) -> None:
        """Refuse new submissions (a source blocked waiting for room gives up, unconfirmed)."""
        self._buffer.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new submissions, write what is buffered (up to ``timeout`` s), then stop."""
        if self._thread is None:
            return
        self._buffer.close()
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None
        if self._merger is not None:  # it merges what the writer left, then ends
            self._merge_now.set()
            self._merger.join(timeout)
            self._merger = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- submission -----------------------------------------------------------------------------

    def submit(
        self,
        envelopes: Sequence[Envelope],
        on_done: Callable[[Receipt], None],
        *,
        timeout: float | None = None,
    ) -> Receipt:
        """Validate and queue envelopes; ``on_done`` runs once all are durable.

        Waits up to ``timeout`` seconds for room in the buffer (``None`` waits as long as needed,
        which is how MQTT pushes back on the broker) and raises :class:`Overloaded` after that.
        Returns the receipt that will be passed to ``on_done`` (filled in by then).
        """
        if not self.running:
            raise StoreUnavailable("the ingest pipeline is not running", retry_after=5.0)
        items = [prepare(env, self._registry, self.limits) for env in envelopes]
        receipt = Receipt()
        rows = 0
        for index, item in enumerate(items):
            rows += item.rows
            if item.dead_letter is not None:
                dl = item.dead_letter
                receipt.rejected.append(Rejection(index, dl.reason, dl.detail))
            else:
                receipt.accepted += 1
                if item.readings is not None:
                    receipt.readings += len(item.readings)
        self.metrics.add(received_messages=len(items))
        try:
            self._buffer.put(_Pending(items, receipt, on_done, rows), timeout)
        except Overloaded:
            self.metrics.add(overloaded=1)
            raise
        self.metrics.buffer_rows = self._buffer.rows
        return receipt

    def submit_and_wait(self, envelopes: Sequence[Envelope], timeout: float = 60.0) -> Receipt:
        """Submit and block until durable — for the CLI import, backfill and tests."""
        done = threading.Event()
        receipt = self.submit(envelopes, lambda _r: done.set(), timeout=timeout)
        if not done.wait(timeout):
            raise StoreUnavailable(f"not durable after {timeout:g} s")
        if receipt.error is not None:
            raise receipt.error
        return receipt

    # -- the writer -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            taken = self._buffer.take(self._batch_rows, 0.2)
            if not taken:
                if self._unmerged:
                    self._merge_now.set()  # idle: bring the rollups up to date
                if self._stop.is_set():
                    return
                continue
            if (
                self._batch_delay_s
                and len(taken) >= LINGER_MIN_SUBMISSIONS
                and sum(p.rows for p in taken) < self._batch_rows
            ):
                time.sleep(self._batch_delay_s)  # linger: trade latency for larger batches
                taken += self._buffer.take(self._batch_rows - sum(p.rows for p in taken), 0.0)
            self._write(taken)
            if self._unmerged >= MERGE_ROWS:
                self._merge_now.set()

    def _merge_loop(self) -> None:
        """The merger thread: a merge every ``MERGE_SECONDS``, or sooner when the writer asks
        (many readings pending, or nothing to write). It runs beside the writer in its own
        store transaction — DuckDB's snapshot isolation keeps the two apart, and a merge
        deletes only the pending readings it saw — so a merge (tens of ms, more under load)
        never delays a confirmation, and DuckDB runs it on the other core."""
        more = False
        while True:
            self._merge_now.wait(0.2 if more else MERGE_SECONDS)
            self._merge_now.clear()
            self._merge_rollups()
            if self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
                self._merge_rollups()  # what the writer wrote last
                return
            more = self._maintain(idle=not len(self._buffer))

    def _maintain(self, *, idle: bool) -> bool:
        """Steps of the maintenance tasks: while the writer is idle, until they are done, a
        batch waits or ``MAINTENANCE_IDLE_S`` is spent; under load, one step each every
        ``MAINTENANCE_BUSY_EVERY_S``. Never while the store is failing. Return whether work
        is left that the idle writer leaves room for (the merger then comes back soon)."""
        now = time.monotonic()
        if not self._maintenance or not self.store_healthy or now < self._store_down_until:
            return False
        if not idle and now - self._last_maintenance < MAINTENANCE_BUSY_EVERY_S:
            return False
        self._last_maintenance = now
        deadline = now + MAINTENANCE_IDLE_S
        left = False
        for step in self._maintenance:
            while True:
                try:
                    more = step()
                except Exception:  # a failed step is retried later; ingest goes on
                    log.exception("store maintenance step failed")
                    break
                if not (more and idle and not len(self._buffer) and not self._stop.is_set()):
                    break
                if time.monotonic() >= deadline:
                    left = True
                    break
        return left

    def _merge_rollups(self) -> None:
        """Fold stored readings into the rollups, after their senders were confirmed.

        Reads are exact before the merge too; merging later only keeps the pending set small
        and makes the arithmetic of many batches one statement per rollup table.
        """
        if not self._unmerged or time.monotonic() < self._store_down_until:
            return
        with self._unmerged_lock:
            counted, self._unmerged = self._unmerged, 0
        started = time.perf_counter()
        try:
            merged = self._store.merge_rollups()
        except Exception as exc:  # the readings stay pending and reads stay exact
            with self._unmerged_lock:
                self._unmerged += counted
            if isinstance(exc, StoreUnavailable):
                self.store_healthy = False
                log.warning("rollup merge failed, will retry: %s", exc)
            else:  # a bug
                log.exception("rollup merge failed")
            return
        self.metrics.add(rollup_merges=1, rollup_merged_readings=merged)
        self.metrics.last_merge_seconds = time.perf_counter() - started

    def _write(self, taken: list[_Pending]) -> None:
        rows = sum(p.rows for p in taken)
        started = time.perf_counter()
        try:
            result = self._commit(self._build(taken))
        except _Stopping as stopping:
            # stopping with the store down: give up, unconfirmed, so senders will resend
            for pending in taken:
                pending.receipt.error = stopping.cause
                pending.on_done(pending.receipt)
            self._buffer.release(rows)
            return
        except Exception as exc:  # StoreRejected, or a bug: never let the writer die
            log.error("store refused a batch of %d submissions: %s", len(taken), exc)
            self.metrics.add(store_errors=1)
            if len(taken) > 1:  # find the culprit: each submission on its own
                for pending in taken:
                    self._write([pending])  # releases its own rows
                return
            self._dead_letter_all(taken[0], exc)
            try:
                result = self._commit(self._build(taken))
            except Exception as final:  # not even the dead letters: leave it unconfirmed
                log.exception("could not keep refused messages as dead letters")
                taken[0].receipt.error = final
                taken[0].on_done(taken[0].receipt)
                self._buffer.release(rows)
                return
        elapsed = time.perf_counter() - started
        self._buffer.release(rows)
        with self._unmerged_lock:
            self._unmerged += result.stored
        self.metrics.add(
            accepted_messages=sum(p.receipt.accepted for p in taken),
            rejected_messages=sum(len(p.receipt.rejected) for p in taken),
            stored_readings=result.stored,
            duplicate_readings=result.duplicates,
            dead_lettered=result.dead_letters,
            alerts_stored=result.alerts,
            acks_stored=result.acks,
            batches=1,
        )
        self.metrics.last_batch_rows = rows
        self.metrics.last_batch_seconds = elapsed
        self.metrics.buffer_rows = self._buffer.rows
        for pending in taken:
            try:
                pending.on_done(pending.receipt)
            except Exception:  # a failing callback must not stop the writer
                log.exception("ingest confirmation callback failed")
        if self._observers:
            written = [item for pending in taken for item in pending.items]
            for observer in self._observers:
                try:
                    observer(written)
                except Exception:  # an observer's bug must not stop the writer
                    log.exception("pipeline observer failed")

    def simulate_store_outage(self, seconds: float) -> None:
        """Fault injection (S3): every store write fails for ``seconds``, as in a real outage."""
        self._store_down_until = time.monotonic() + seconds

    def _commit(self, batch: WriteBatch) -> WriteResult:
        """Write a batch, retrying with backoff while the store is unavailable."""
        backoff = 0.1
        while True:
            try:
                if time.monotonic() < self._store_down_until:
                    raise StoreUnavailable("store outage (fault injection)")
                result = self._store.write(batch)
                self.store_healthy = True
                return result
            except StoreUnavailable as exc:
                self.store_healthy = False
                self.metrics.add(store_errors=1)
                log.warning("store write failed, retrying in %.1f s: %s", backoff, exc)
                if self._stop.wait(backoff):
                    raise _Stopping(exc) from exc
                backoff = min(backoff * 2, 1.0)  # a recovered store is used within a second

    @staticmethod
    def _dead_letter_all(pending: _Pending, exc: Exception) -> None:
        """The store refuses this submission even alone: keep its messages as dead letters."""
        detail = f"the store refused it: {str(exc)[:500]}"
        receipt = pending.receipt
        for index, item in enumerate(pending.items):
            if item.dead_letter is None:
                pending.items[index] = item.as_dead_letter(RejectReason.STORE_REJECTED, detail)
                receipt.rejected.append(Rejection(index, RejectReason.STORE_REJECTED, detail))
        receipt.rejected.sort(key=lambda r: r.index)
        receipt.accepted = 0
        receipt.readings = 0

    def _build(self, taken: list[_Pending]) -> WriteBatch:
        batch = WriteBatch()
        cols = batch.measurements
        for pending in taken:
            for item in pending.items:
                if item.dead_letter is not None:
                    batch.dead_letters.append(item.dead_letter)
                    continue
                tenant = item.tenant
                assert tenant is not None and item.device is not None  # set for valid items
                if tenant not in batch.zones:
                    batch.zones[tenant] = self._registry.tenant(tenant).timezone
                if item.readings is not None:
                    cols.extend(tenant, item.device, item.readings, item.update_state)
                elif item.alert is not None:
                    batch.alerts.append(item.alert)
                elif item.ack is not None:
                    batch.acks.append(item.ack)
        return batch
