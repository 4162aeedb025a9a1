"""The gateway's on-disk outbox: a message is on disk before it is published (issue 6).

A gateway next to a meter loses its network or its broker now and then; seed 001 warns that
"drops in the communication may lead to loss of data if not properly buffered". So every
canonical message is appended here first, published from here in id order, and deleted only
when the broker's PUBACK for it arrives. After a crash, a power cut or a restart, whatever is
still in the table is published again, oldest first.

Storage is one SQLite table (stdlib ``sqlite3``) in WAL mode:

* ``id INTEGER PRIMARY KEY AUTOINCREMENT`` — the order of publication; AUTOINCREMENT so an id is
  never reused, even after the newest rows were deleted, and "published up to id N" stays true.
* ``topic``, ``payload`` — what to publish; ``size`` — their bytes, for the bound.
* ``state`` — ``queued``, or ``sent`` once handed to the MQTT client and awaiting its PUBACK.
  It is advisory: on open every ``sent`` row goes back to ``queued`` (its PUBACK, if any, was
  for a connection that no longer exists) and the count is logged, so an operator sees how many
  messages a restart resends. ``attempts`` counts publications of the row.

Durability: appends commit with ``synchronous=FULL`` (the WAL is fsynced before ``append``
returns), one transaction per call, so a caller appends a whole telegram (or a whole read) at
once and pays one fsync for it. Acknowledgements and ``sent`` marks commit with
``synchronous=NORMAL``: they reach the WAL at once but are fsynced with the next append or
checkpoint. A power cut can therefore undo the deletion of a few acknowledged messages — they
are published again, and the hub drops them as duplicates (it stores a reading once per
device, identifier and timestamp) — but never an append. WAL recovery yields a prefix of the
commits, so the table is always a consistent state.

The outbox is **bounded** (``max_bytes`` of topic plus payload, ``max_messages``). When it is
full, the messages already in it are kept and new ones are refused (:class:`OutboxFull`), counted
in :attr:`Outbox.refused_messages`; the caller logs it. Why not drop the oldest instead:

* every message in the outbox was accepted with a promise — "on disk until the broker has it";
  keeping that promise without exceptions is what makes the outbox easy to reason about and to
  test, while evicting old rows would make loss happen silently in the middle of a backlog;
* the loss is then one contiguous gap at the end of a long outage, which the hub's
  completeness view shows as one gap, and meter energy registers are cumulative: the first
  telegram after recovery carries the totals again, so the energy of the gap is not lost, only
  its time resolution;
* the oldest readings are the ones no other copy exists of, whereas a meter keeps producing
  new ones (and keeps its registers and often its own load profile).

A single writer owns an outbox: the file is opened with ``locking_mode=EXCLUSIVE``, so a second
gateway on the same file fails at once (:class:`OutboxLocked`) instead of publishing every
message twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

__all__ = ["Entry", "Outbox", "OutboxFull", "OutboxLocked", "OutboxStats"]

MiB = 1024 * 1024
_CHUNK = 500  # ids per IN (...) statement, far below SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent')),
    attempts INTEGER NOT NULL DEFAULT 0
)
"""


class OutboxFull(Exception):
    """The bound would be exceeded: the messages were not appended (nothing was)."""


class OutboxLocked(Exception):
    """Another process (another gateway) has the outbox open."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored message, as the forwarder publishes it."""

    id: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    messages: int  # rows waiting for a PUBACK (queued or sent)
    bytes: int  # their topic + payload bytes, what the bound counts
    sent: int  # of those, handed to the MQTT client and awaiting their PUBACK
    oldest_us: int | None  # when the oldest waiting row was appended (µs since the epoch)
    refused_messages: int  # refused because the outbox was full, since open
    refused_batches: int


class Outbox:
    """A bounded, ordered, crash-safe queue of MQTT messages in a SQLite file.

    Thread-safe: the reader thread appends while the forwarder thread reads and acknowledges.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 256 * MiB,
        max_messages: int = 1_000_000,
    ) -> None:
        if max_bytes <= 0 or max_messages <= 0:
            raise ValueError("the outbox bounds must be positive")
        self.path = Path(path)
        self.max_bytes, self.max_messages = max_bytes, max_messages
        self.refused_messages = self.refused_batches = 0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=0.5
        )
        try:
            self._open()
        except BaseException:
            self._con.close()
            raise

    def _open(self) -> None:
        con = self._con
        # before WAL: in exclusive mode the WAL index lives in our memory, not a shared file
        con.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            with self._transaction(durable=True):
                con.execute(_SCHEMA)  # a write: takes the exclusive lock, held until close
                requeued = con.execute(
                    "UPDATE outbox SET state = 'queued' WHERE state = 'sent'"
                ).rowcount
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise OutboxLocked(f"outbox {self.path} is in use by another process") from None
            raise
        if str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode for {self.path} (got {mode!r})")
        count, size = con.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(count), int(size)
        if self._count:
            log.info(
                "outbox %s: %d messages (%d bytes) from before, %d of them published without "
                "a PUBACK; publishing them again first",
                self.path,
                self._count,
                self._bytes,
                requeued,
            )

    @contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Cursor]:
        cur = self._con.cursor()
        try:
            cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        finally:
            cur.close()

    # --- writing ---------------------------------------------------------------------------

    def append(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store ``(topic, payload)`` pairs, all or none, fsynced; return their ids.

        Raises :class:`OutboxFull` (and counts the refusal) if they do not fit in the bound.
        """
        if not items:
            return []
        sizes = [len(topic.encode()) + len(payload) for topic, payload in items]
        added = sum(sizes)
        with self._lock:
            if self._count + len(items) > self.max_messages or self._bytes + added > self.max_bytes:
                self.refused_messages += len(items)
                self.refused_batches += 1
                raise OutboxFull(
                    f"outbox full ({self._count} messages, {self._bytes} bytes; bound "
                    f"{self.max_messages} messages, {self.max_bytes} bytes): "
                    f"{len(items)} new messages refused"
                )
            now_us = time.time_ns() // 1000
            ids: list[int] = []
            with self._transaction(durable=True) as cur:
                for (topic, payload), size in zip(items, sizes, strict=True):
                    cur.execute(
                        "INSERT INTO outbox (topic, payload, size, created_us) VALUES (?, ?, ?, ?)",
                        (topic, payload, size, now_us),
                    )
                    assert cur.lastrowid is not None
                    ids.append(cur.lastrowid)
            self._count += len(items)
            self._bytes += added
            return ids

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that these rows were handed to the MQTT client (advisory, not fsynced)."""
        if not ids:
            return
        with self._lock, self._transaction(durable=False) as cur:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1 "
                    f"WHERE id IN ({marks})",
                    chunk,
                )

    def ack(self, ids: Sequence[int]) -> int:
        """Delete rows whose PUBACK arrived (or that were dealt with otherwise); return how many.

        Unknown ids are ignored, so acknowledging twice is harmless.
        """
        if not ids:
            return 0
        deleted = freed = 0
        with self._lock:
            with self._transaction(durable=False) as cur:
                for chunk in _chunks(ids):
                    marks = ",".join("?" * len(chunk))
                    rows = cur.execute(
                        f"DELETE FROM outbox WHERE id IN ({marks}) RETURNING size", chunk
                    ).fetchall()
                    deleted += len(rows)
                    freed += sum(int(size) for (size,) in rows)
            self._count -= deleted
            self._bytes -= freed
        return deleted

    # --- reading ---------------------------------------------------------------------------

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Entry]:
        """Up to ``limit`` rows with an id above ``after_id``, oldest first."""
        with self._lock:
            rows = self._con.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Entry(int(i), str(t), bytes(p)) for i, t, p in rows]

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def stats(self) -> OutboxStats:
        with self._lock:
            sent, oldest = self._con.execute(
                "SELECT count(*) FILTER (WHERE state = 'sent'), min(created_us) FROM outbox"
            ).fetchone()
            return OutboxStats(
                self._count,
                self._bytes,
                int(sent),
                None if oldest is None else int(oldest),
                self.refused_messages,
                self.refused_batches,
            )

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint the WAL into the database file and release the file."""
        with self._lock:
            try:
                self._con.execute("PRAGMA synchronous=FULL")
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # the data is safe in the WAL all the same
                log.warning("outbox %s: checkpoint on close failed: %s", self.path, exc)
            finally:
                self._con.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])
