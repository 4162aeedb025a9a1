"""Signed webhooks to retailer platforms, retried with backoff, every attempt logged.

Signature: ``X-Gridhub-Signature: sha256=<hex>``, the HMAC-SHA256 with the retailer's secret of
``<timestamp>.<body>``, where ``<timestamp>`` (Unix seconds) is sent in ``X-Gridhub-Timestamp``.
Binding the timestamp into the MAC lets a receiver refuse replays older than a few minutes
(:func:`verify`); the body bytes are signed exactly as sent.

Deliveries are rows of ``market_deliveries`` before the first attempt; the dispatcher keeps a
heap of due ones in memory, which :meth:`WebhookDispatcher.start` rebuilds from the pending
rows, so a restart resumes every retry. A 2xx answer delivers; anything else (a refused
connection, a timeout, 4xx, 5xx) is retried after 0.5 s, 1 s, 2 s, … up to ``max_backoff_s``,
until ``max_attempts`` or the request's deadline, then the delivery fails.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gridhub.domain.market import Delivery, DeliveryStatus
from gridhub.services.webhook_guard import WebhookGuard, WebhookRefused, WebhookUnresolved
from gridhub.storage.market_store import MarketStore

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Refusal",
    "Target",
    "WebhookConfig",
    "WebhookDispatcher",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gridhub-Signature"
TIMESTAMP_HEADER = "X-Gridhub-Timestamp"
DELIVERY_HEADER = "X-Gridhub-Delivery"
EVENT_HEADER = "X-Gridhub-Event"
MAX_ANSWER_BYTES = 1 << 20  # a webhook answer body larger than this is not read as an answer


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """What a retailer does on receipt: a valid MAC over a timestamp that is recent enough."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    workers: int = 16
    timeout_s: float = 10.0
    max_attempts: int = 8
    first_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    guard: WebhookGuard = field(default_factory=WebhookGuard)  # where webhooks may go (SSRF)


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to send: resolved at each attempt (a changed URL applies to retries)."""

    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A delivery that must not be sent at all (it fails at once, without retries): e.g. it
    names a client whose supplier changed since the request was made."""

    reason: str


# per attempt: where to send; None — not now (unknown or disabled retailer: retried); a Refusal
Resolve = Callable[[Delivery], "Target | Refusal | None"]
OnFinal = Callable[[Delivery], None]


class WebhookDispatcher:
    def __init__(
        self,
        store: MarketStore,
        resolve: Resolve,
        on_final: OnFinal,
        config: WebhookConfig | None = None,
        deadline_of: Callable[[Delivery], datetime | None] | None = None,
    ) -> None:
        self._store = store
        self._resolve = resolve
        self._on_final = on_final
        self.config = config or WebhookConfig()
        self._deadline_of = deadline_of or (lambda _d: None)
        self._heap: list[tuple[float, str]] = []
        self._known: dict[str, Delivery] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self.sent = self.delivered = self.failed = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._client = httpx.Client(
            timeout=self.config.timeout_s,
            limits=httpx.Limits(max_connections=self.config.workers * 2),
            follow_redirects=False,  # a redirect could lead a signed body somewhere else
        )
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="webhook")
        self.submit(self._store.pending_deliveries())
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    def submit(self, deliveries: list[Delivery]) -> None:
        """Queue stored deliveries (new ones, or pending ones after a restart)."""
        with self._cond:
            for d in deliveries:
                if d.status is DeliveryStatus.PENDING and d.id not in self._known:
                    self._known[d.id] = d
                    heapq.heappush(self._heap, (d.next_attempt.timestamp(), d.id))
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._known)

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            due: list[Delivery] = []
            with self._cond:
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    _, did = heapq.heappop(self._heap)
                    d = self._known.get(did)
                    if d is not None:
                        due.append(d)
                wait = self._heap[0][0] - now if self._heap else 1.0
                if not due:
                    self._cond.wait(min(max(wait, 0.001), 1.0))
                    continue
            assert self._pool is not None
            for d in due:
                try:
                    self._pool.submit(self._attempt, d)
                except RuntimeError:  # shut down meanwhile
                    return

    def _backoff(self, attempts: int) -> float:
        c = self.config
        return float(min(c.max_backoff_s, c.first_backoff_s * 2 ** max(attempts - 1, 0)))

    def _attempt(self, d: Delivery) -> None:
        target = self._resolve(d)
        now = datetime.now(UTC)
        code: int | None = None
        error: str | None = None
        answer: dict[str, Any] | None = None
        refused = isinstance(target, Refusal)
        if isinstance(target, Refusal):
            error = target.reason
        elif target is None:
            error = "retailer unknown or disabled"
        else:
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(target.secret, stamp, d.body),
                DELIVERY_HEADER: d.id,
                EVENT_HEADER: d.event,
                "User-Agent": "gridhub-market-hub",
            }
            assert self._client is not None
            try:  # checked again and sent to the address just checked (DNS rebinding)
                resp = self.config.guard.post(self._client, target.url, d.body, headers)
                code = resp.status_code
                if 200 <= code < 300:
                    answer = _answer(resp)
                else:
                    error = resp.text[:200] or resp.reason_phrase
            except WebhookRefused as exc:
                refused, error = True, str(exc)[:300]
            except (httpx.HTTPError, WebhookUnresolved) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
        self.sent += 1
        attempts = d.attempts + 1
        done = code is not None and 200 <= code < 300
        deadline = self._deadline_of(d)
        retry_at = now + timedelta(seconds=self._backoff(attempts))
        give_up = (
            refused
            or attempts >= self.config.max_attempts
            or (deadline is not None and retry_at >= deadline)
        )
        if done:
            status = DeliveryStatus.DELIVERED
        elif give_up:
            status = DeliveryStatus.FAILED
        else:
            status = DeliveryStatus.PENDING
        updated = replace(
            d,
            status=status,
            attempts=attempts,
            next_attempt=retry_at if status is DeliveryStatus.PENDING else d.next_attempt,
            last_code=code,
            last_error=error,
            delivered=now if done else None,
            answer=answer if answer is not None else d.answer,
            answered=now if answer is not None else d.answered,
        )
        try:
            self._store.update_delivery(updated)
        except Exception:  # the store is down: keep it pending in memory, try again later
            log.exception("cannot record webhook delivery %s; retrying", d.id)
            updated = replace(d, next_attempt=retry_at)
            status = DeliveryStatus.PENDING
        with self._cond:
            if status is DeliveryStatus.PENDING:
                self._known[d.id] = updated
                heapq.heappush(self._heap, (updated.next_attempt.timestamp(), d.id))
                self._cond.notify_all()
                if error:
                    log.info("webhook %s to %s: %s; retry %d", d.id, d.retailer, error, attempts)
                return
            self._known.pop(d.id, None)
        if done:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning("webhook %s to %s failed after %d attempts", d.id, d.retailer, attempts)
        self._on_final(updated)


def _answer(resp: httpx.Response) -> dict[str, Any] | None:
    """A JSON object in a 2xx answer (a retailer may answer an availability request inline)."""
    if not resp.content or len(resp.content) > MAX_ANSWER_BYTES:
        return None
    if "json" not in resp.headers.get("content-type", ""):
        return None
    try:
        value = json.loads(resp.content)
    except ValueError:
        return None
    return dict(value) if isinstance(value, Mapping) and value else None
