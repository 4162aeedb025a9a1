"""Delivering notifications: WebSocket connections, MQTT topics, signed webhooks with retries.

A notification is checked against the subscriber's rights *at every send* (the first and each
retry): a revoked token, an expired contract or a withdrawn policy stops it even when it was
already waiting. WebSocket delivery is live only (a connection gets what happens while it is
open). MQTT and webhook notifications wait in a bounded queue and are tried again with
exponential backoff until the broker confirms (PUBACK) or the endpoint answers 2xx; every
webhook attempt is written to the delivery log.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from gridhub.domain.subscriptions import Channel, Subscription, retry_delay, sign
from gridhub.outbound.mqtt_publisher import Outgoing, Publisher
from gridhub.services.webhook_guard import WebhookGuard, WebhookRefused, WebhookUnresolved
from gridhub.storage.subscriptions_store import DeliveryRecord, SubscriptionStore

__all__ = [
    "Connection",
    "Note",
    "Sender",
    "SenderConfig",
    "WebSocketHub",
    "body",
]

log = logging.getLogger(__name__)
WS_QUEUE = 1000  # notifications a slow WebSocket client may lag behind before losing some
USER_AGENT = "gridhub-webhooks/1"
CLOSE = None  # sentinel: close the connection (its token was revoked)
Authorise = Callable[[Subscription, datetime], bool]


@dataclass(frozen=True, slots=True)
class Note:
    """One notification: its id (stable across retries), the value time the policy is
    checked at, and the JSON body."""

    delivery: str
    at: datetime
    body: bytes


# -- WebSocket -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One open WebSocket: what it listens to and the asyncio queue its route drains."""

    tenant: str
    token_id: str
    subscription: str | None  # None: every WebSocket subscription of its token
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(WS_QUEUE))
    dropped: int = 0
    close_reason: tuple[int, str] = (1008, "token revoked or expired")  # when None is queued

    def wants(self, sub: Subscription) -> bool:
        if sub.tenant != self.tenant or sub.token_id != self.token_id:
            return False
        return self.subscription is None or self.subscription == sub.id

    def _put(self, item: bytes | None) -> None:  # in the connection's event loop
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    def push(self, item: bytes | None) -> None:
        """From any thread."""
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed: the connection is gone
            pass


class WebSocketHub:
    """The open WebSocket connections, by token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: dict[str, set[Connection]] = {}

    def register(self, conn: Connection) -> None:
        with self._lock:
            self._by_token.setdefault(conn.token_id, set()).add(conn)

    def unregister(self, conn: Connection) -> None:
        with self._lock:
            conns = self._by_token.get(conn.token_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_token[conn.token_id]

    def tokens(self) -> list[str]:
        """The tokens with an open connection."""
        with self._lock:
            return list(self._by_token)

    def connections(self, token_id: str) -> int:
        with self._lock:
            return len(self._by_token.get(token_id, ()))

    def push(self, sub: Subscription, body: bytes) -> int:
        """Hand ``body`` to every connection listening to ``sub``; how many there were."""
        with self._lock:
            targets = [c for c in self._by_token.get(sub.token_id, ()) if c.wants(sub)]
        for conn in targets:
            conn.push(body)
        return len(targets)

    def close_token(self, token_id: str) -> None:
        """The token lost its rights: end its connections."""
        with self._lock:
            targets = list(self._by_token.get(token_id, ()))
        for conn in targets:
            conn.push(CLOSE)

    def close_subscription(self, sub: Subscription) -> None:
        """Unsubscribed: end the connections listening to that subscription alone."""
        with self._lock:
            targets = [c for c in self._by_token.get(sub.token_id, ()) if c.subscription == sub.id]
        for conn in targets:
            conn.close_reason = (1000, "unsubscribed")
            conn.push(CLOSE)


# -- MQTT and webhooks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderConfig:
    max_pending: int = 10_000
    retry_s: float = 2.0
    retry_max_s: float = 300.0
    max_attempts: int = 8
    webhook_timeout_s: float = 5.0
    mqtt_timeout_s: float = 10.0
    workers: int = 4
    guard: WebhookGuard = field(default_factory=WebhookGuard)  # where webhooks may go (SSRF)


@dataclass(slots=True)
class _Job:
    sub: Subscription
    note: Note
    attempt: int = 0


class Sender:
    """A due-time heap of MQTT and webhook jobs, sent by a small thread pool."""

    def __init__(
        self,
        store: SubscriptionStore,
        authorise: Authorise,
        is_active: Callable[[str], bool],
        config: SenderConfig | None = None,
    ) -> None:
        self._store = store
        self._authorise = authorise
        self._is_active = is_active
        self.config = config or SenderConfig()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._log: list[DeliveryRecord] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self.publisher: Publisher | None = None
        self.counts: dict[str, int] = dict.fromkeys(
            ("delivered", "retried", "failed", "refused", "dropped"), 0
        )

    def start(self, publisher: Publisher | None) -> None:
        self.publisher = publisher
        self._http = httpx.Client(
            timeout=self.config.webhook_timeout_s,
            follow_redirects=False,  # a redirect could lead a signed body somewhere else
            headers={"User-Agent": USER_AGENT},
        )
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="gridhub-hook")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gridhub-subs-send", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._flush_log()
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._heap) + self._in_flight

    def submit(self, sub: Subscription, note: Note) -> bool:
        """Queue a first send; False (and counted) when the queue is full."""
        with self._lock:
            if len(self._heap) + self._in_flight >= self.config.max_pending:
                self.counts["dropped"] += 1
                return False
            heapq.heappush(self._heap, (time.monotonic(), next(self._seq), _Job(sub, note)))
            self._wake.notify_all()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            due: list[_Job] = []
            with self._lock:
                now = time.monotonic()
                free = self.config.workers * 4 - self._in_flight
                while self._heap and self._heap[0][0] <= now and len(due) < free:
                    due.append(heapq.heappop(self._heap)[2])
                self._in_flight += len(due)
                if not due:
                    # all workers busy: wait for one to finish (it notifies), else for the next due
                    wait = self._heap[0][0] - now if self._heap and free > 0 else 1.0
                    self._wake.wait(min(max(wait, 0.005), 1.0))
            pool = self._pool
            for job in due:
                if pool is None:
                    break
                pool.submit(self._attempt, job)
            self._flush_log()

    def _attempt(self, job: _Job) -> None:
        try:
            job.attempt += 1
            outcome, status, detail = self._send(job)
        except Exception as exc:  # a bug must not lose the job silently
            log.exception("subscription delivery failed")
            outcome, status, detail = "retry", None, f"internal error: {exc}"
        if outcome == "retry" and job.attempt >= self.config.max_attempts:
            outcome = "failed"
        with self._lock:
            self._in_flight -= 1
            self.counts[{"retry": "retried"}.get(outcome, outcome)] += 1
            if outcome == "retry":
                delay = retry_delay(job.attempt, self.config.retry_s, self.config.retry_max_s)
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
            self._wake.notify_all()  # a worker is free, and the log has something to write
            if job.sub.channel is Channel.WEBHOOK:
                self._log.append(
                    DeliveryRecord(
                        job.sub.tenant,
                        job.sub.id,
                        job.note.delivery,
                        job.attempt,
                        datetime.now(UTC),
                        outcome,
                        status,
                        detail[:500],
                    )
                )

    def _send(self, job: _Job) -> tuple[str, int | None, str]:
        sub, note = job.sub, job.note
        if not self._is_active(sub.id):
            return "dropped", None, "unsubscribed"
        if not self._authorise(sub, note.at):  # at send time, every attempt
            return "refused", None, "the subscriber may not read this value (any more)"
        if sub.channel is Channel.MQTT:
            publisher = self.publisher
            if publisher is None:
                return "retry", None, "no MQTT connection"
            ok = publisher.publish(
                [Outgoing(sub.mqtt_topic, note.body)], self.config.mqtt_timeout_s
            )
            return ("delivered", None, "PUBACK") if ok[0] else ("retry", None, "no PUBACK")
        return self._post(sub, note, job.attempt)

    def _post(self, sub: Subscription, note: Note, attempt: int) -> tuple[str, int | None, str]:
        http = self._http
        if http is None or sub.webhook_url is None or sub.webhook_secret is None:
            return "retry", None, "webhook client not running"
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Gridhub-Delivery": note.delivery,
            "X-Gridhub-Attempt": str(attempt),
            "X-Gridhub-Timestamp": str(stamp),
            "X-Gridhub-Signature": sign(sub.webhook_secret, stamp, note.body),
        }
        try:  # checked again, sent to the address just checked: DNS may have changed since
            response = self.config.guard.post(http, sub.webhook_url, note.body, headers)
        except WebhookRefused as exc:
            return "refused", None, str(exc)
        except WebhookUnresolved as exc:
            return "retry", None, str(exc)
        except httpx.HTTPError as exc:
            return "retry", None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return "delivered", response.status_code, "ok"
        # the status only, never the body: the log must not become a way to read other servers
        return "retry", response.status_code, response.reason_phrase[:100]

    def _flush_log(self) -> None:
        with self._lock:
            records, self._log = self._log, []
        if not records:
            return
        try:
            self._store.log(records)
        except Exception:  # the log is for operators; a store hiccup must not stop delivery
            log.exception("could not write %d webhook delivery records", len(records))


def body(payload: dict[str, object]) -> bytes:
    """The JSON bytes of a notification (compact; what is signed is exactly what is sent)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
