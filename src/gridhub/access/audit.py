"""The audit log (A5): who read, wrote, changed or commanded what, when, with which result.

Recording is an append to an in-memory list under a lock (well under a microsecond); a
background thread writes what accumulated to the store as one Arrow batch every
``flush_interval_s`` (default 1 s) and when stopped, so auditing never puts a database write on
a request's path. An entry is durable within a second; a crash loses at most that second. When
the store is down the entries wait (at most ``max_pending``; beyond that the oldest are dropped,
counted in ``dropped`` and logged — the log never blocks ingest or reads).

HTTP requests are recorded by :class:`AuditMiddleware` (one entry per request: an ingest batch
is one entry, not one per reading); MQTT ingest per written batch and tenant
(:meth:`AuditLog.record_ingest`); other paths (subscriptions, exports, commands sent over
MQTT) call :meth:`AuditLog.record` themselves.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from gridhub.domain.access import AuditEntry
from gridhub.errors import GridhubError
from gridhub.storage.access_catalog import AccessCatalog, AuditQuery, AuditRow

__all__ = ["AuditLog", "AuditMiddleware", "classify"]

log = logging.getLogger(__name__)
MAX_TARGET = 512
MAX_DETAIL = 1024

# What an API path does, by its first matching segment; otherwise GET reads, the rest "admin".
_ACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/tokens(/|$)"), "token"),
    (re.compile(r"/stakeholders(/|$)"), "stakeholder"),
    (re.compile(r"/contracts(/|$)"), "contract"),
    (re.compile(r"/policies(/|$)"), "policy"),
    (re.compile(r"/commands(/|$)"), "command"),
    (re.compile(r"/(events|imports|telegrams)(/|$)"), "write"),
    (re.compile(r"/audit(/|$)"), "audit"),
    # the market hub's retailer requests answer with client data: reads, though POSTed
    (re.compile(r"/market/(billing|profiles)$"), "read"),
)
_TENANT_RE = re.compile(r"^/api/v1/tenants/([^/]+)")


def classify(method: str, path: str) -> str:
    for pattern, action in _ACTIONS:
        if pattern.search(path):
            return action
    return "read" if method in ("GET", "HEAD") else "admin"


class AuditLog:
    def __init__(
        self,
        catalog: AccessCatalog,
        *,
        flush_interval_s: float = 1.0,
        max_pending: int = 1_000_000,
    ) -> None:
        self._catalog = catalog
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: list[AuditRow] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0

    def record(
        self,
        tenant: str | None,
        actor: str,
        stakeholder: str | None,
        action: str,
        target: str,
        result: str,
        detail: str = "",
    ) -> None:
        entry: AuditRow = (
            time.time_ns() // 1000,
            tenant,
            actor,
            stakeholder,
            action,
            target[:MAX_TARGET],
            result,
            detail[:MAX_DETAIL],
        )
        with self._lock:
            self._pending.append(entry)
            if len(self._pending) > self._max_pending:
                excess = len(self._pending) - self._max_pending
                del self._pending[:excess]
                self.dropped += excess

    def record_ingest(self, items: Sequence[Any]) -> None:
        """One entry per tenant for the MQTT messages of a written batch (not per reading).

        ``items`` are the pipeline's prepared messages (``ingest.validate.Prepared``: duck-typed
        here, since ``access`` sits below ``ingest``)."""
        accepted: Counter[str | None] = Counter()
        rejected: Counter[str | None] = Counter()
        for item in items:
            if not item.envelope.source.startswith("mqtt"):
                continue
            (rejected if item.dead_letter is not None else accepted)[item.tenant] += 1
        for tenant in accepted.keys() | rejected.keys():
            self.record(
                tenant,
                "mqtt",
                None,
                "write",
                "mqtt ingest batch",
                "ok" if not rejected[tenant] else "partial",
                f"{accepted[tenant]} messages stored, {rejected[tenant]} dead-lettered",
            )

    def flush(self) -> int:
        """Write what is pending; on a store failure keep it for the next try."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self._catalog.append_audit(batch)
            except GridhubError as exc:
                log.warning("audit log not written yet (%d entries wait): %s", len(batch), exc)
                with self._lock:
                    self._pending[:0] = batch
                return 0
            self.written += len(batch)
            return len(batch)

    def query(self, query: AuditQuery) -> list[AuditEntry]:
        """Entries matching ``query``, newest first (pending ones are written first)."""
        self.flush()
        return self._catalog.audit(query)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gridhub-audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # never let the flusher die
                log.exception("audit flush failed")


class AuditMiddleware:
    """Pure ASGI middleware: one audit entry per ``/api`` request, with its final status.

    The principal is the one ``api/deps.get_principal`` left in the request state; a request
    without a valid token is recorded with actor ``-``.
    """

    def __init__(self, app: Any, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            path: str = scope["path"]
            method: str = scope["method"]
            query = scope.get("query_string", b"").decode("latin-1")
            who = scope.get("state", {}).get("principal")
            match = _TENANT_RE.match(path)
            self.audit.record(
                match.group(1)[:64] if match else (who.tenant if who is not None else None),
                who.token_id if who is not None else "-",
                who.stakeholder if who is not None else None,
                classify(method, path),
                f"{method} {path}" + (f"?{query}" if query else ""),
                str(status),
            )
