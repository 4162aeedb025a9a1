"""Subscriptions (Q3): event and periodic notifications on a series, and unsubscribe.

The pipeline calls :meth:`SubscriptionService.observe` after each committed batch; it only
queues the readings of watched series (a bounded queue). The service's own thread evaluates:
each new reading of a series is tested against the conditions of its event subscriptions (a
reading counts as *new* when it is later than the last one the subscription saw, so redelivered
duplicates and back-filled history do not fire again); each periodic subscription sends, once per
period aligned to the epoch, the latest value or an aggregate over the period just ended.

Every notification passes the policy check (:func:`may_read`, the seam to the enforcement point)
with the subscriber's *current* rights — the token is looked up again, so a revoked or expired
token stops deliveries at once — when it is made and again at every send
(:mod:`gridhub.services.subscription_delivery`). Subscriptions are stored and restored on start.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gridhub.access.tokens import Principal, TokenService
from gridhub.domain.subscriptions import (
    Channel,
    Kind,
    PeriodicFunction,
    Subscription,
    aggregate,
    window_of,
)
from gridhub.domain.validation import from_us, to_us
from gridhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gridhub.ingest.validate import Prepared
from gridhub.outbound.mqtt_publisher import Publisher
from gridhub.services.subscription_access import (
    MayRead,
    NotifyHook,
    TokenView,
    may_read,
    principal_of,
)
from gridhub.services.subscription_delivery import Note, Sender, WebSocketHub, body
from gridhub.services.subscription_requests import (
    MAX_PERIOD_S,
    NewSubscription,
    SubscriptionConfig,
    check_channel,
    check_kind,
    subscription_config,
)
from gridhub.storage.base import SeriesQuery, Store
from gridhub.storage.registry import Registry
from gridhub.storage.subscriptions_store import DeliveryRecord, SubscriptionStore

# the seam and the request types are re-exported: callers (hub.py, routes) import them here
__all__ = [
    "MayRead",
    "NewSubscription",
    "NotifyHook",
    "SubscriptionConfig",
    "SubscriptionService",
    "may_read",
    "principal_of",
    "subscription_config",
]

log = logging.getLogger(__name__)
MAX_QUEUED_READINGS = 200_000
MAX_POINTS = 100_000
LATEST_LOOKBACK_S = 86_400.0  # a periodic "latest" with nothing seen yet looks back this far


@dataclass(slots=True)
class _Stats:
    notified: int = 0
    suppressed: int = 0  # over the rate limit
    refused: int = 0  # the policy check said no
    no_listener: int = 0  # WebSocket notifications while no connection was open
    last_ts_us: int | None = None  # event: the latest reading seen
    next_due: float = 0.0  # periodic: when the next window closes (+ grace)
    last_window: float = 0.0
    bucket: float = 0.0  # rate limit: notifications still allowed
    bucket_at: float = 0.0

    def public(self) -> dict[str, int]:
        return {
            "notified": self.notified,
            "suppressed": self.suppressed,
            "refused": self.refused,
            "no_listener": self.no_listener,
        }


class SubscriptionService:
    def __init__(
        self,
        store: SubscriptionStore,
        data: Store,
        registry: Registry,
        tokens: TokenService,
        config: SubscriptionConfig | None = None,
        may_read: MayRead = may_read,
        clock: Callable[[], float] = time.time,
        on_notify: NotifyHook | None = None,
    ) -> None:
        """``may_read`` is the policy check (the seam); ``on_notify`` is told of every
        notification that passed it, with the subscriber and the payload (the audit log, A5, hooks
        in there)."""
        self._store = store
        self._data = data
        self._registry = registry
        self._tokens = tokens
        self.config = config or SubscriptionConfig()
        self._may_read = may_read
        self._clock = clock
        self._on_notify = on_notify
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._subs: dict[str, Subscription] = {}
        self._stats: dict[str, _Stats] = {}
        self._events: dict[tuple[str, str, str], list[Subscription]] = {}
        self._watched: dict[tuple[str, str], frozenset[str]] = {}  # (tenant, device) → ids
        self._latest: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._queue: deque[tuple[str, str, str, int, float]] = deque()
        self.overflow = 0  # readings not evaluated because the queue was full
        self.ws = WebSocketHub()
        self.sender = Sender(store, self.authorise, self.is_active, self.config.sender)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- the policy check ------------------------------------------------------------------------

    def principal(self, token_id: str, view: TokenView | None = None) -> Principal | None:
        """The subscriber as it stands now (None: revoked, expired or deleted)."""
        record = (view or TokenView(self._tokens)).get(token_id)
        return principal_of(record, datetime.now(UTC)) if record is not None else None

    def authorise(self, sub: Subscription, at: datetime, view: TokenView | None = None) -> bool:
        """May the subscriber receive this subscription's value at ``at``, now?"""
        who = self.principal(sub.token_id, view)
        if who is None:
            self.ws.close_token(sub.token_id)
            return False
        return self._may_read(who, sub.tenant, sub.device, sub.identifier, at)

    def is_active(self, subscription_id: str) -> bool:
        return subscription_id in self._subs

    # -- subscribe, list, unsubscribe ------------------------------------------------------------

    def create(self, who: Principal, tenant: str, new: NewSubscription) -> Subscription:
        """Check and store a subscription; a webhook's secret is in the result (shown once)."""
        who.require_tenant(tenant)
        self._registry.tenant(tenant)
        if self._registry.device(tenant, new.device) is None:
            raise NotFound(f"device {new.device!r} not found in tenant {tenant!r}")
        if new.identifier not in self._registry.identifiers(tenant):
            raise NotFound(f"identifier {new.identifier!r} unknown in tenant {tenant!r}")
        if not self._may_read(who, tenant, new.device, new.identifier, datetime.now(UTC)):
            raise Forbidden(f"this token may not read {new.device}/{new.identifier}")
        check_kind(new, self.config)
        url = check_channel(new, self.config.sender.guard)
        sub = Subscription(
            id=f"sub_{secrets.token_hex(8)}",
            tenant=tenant,
            token_id=who.token_id,
            kind=new.kind,
            device=new.device,
            identifier=new.identifier,
            channel=new.channel,
            created=self._clock(),
            condition=new.condition,
            period_s=new.period_s,
            function=new.function,
            webhook_url=url,
            webhook_secret=f"whsec_{secrets.token_urlsafe(32)}" if url is not None else None,
        )
        with self._lock:  # checks and insert under one lock: two racing requests get one each
            mine = [s for s in self._subs.values() if s.token_id == who.token_id]
            if len(mine) >= self.config.max_per_token:
                raise InvalidRequest(f"at most {self.config.max_per_token} subscriptions per token")
            in_tenant = sum(1 for s in self._subs.values() if s.tenant == tenant)
            if in_tenant >= self.config.max_per_tenant:
                raise InvalidRequest(
                    f"at most {self.config.max_per_tenant} subscriptions per tenant"
                )
            if sub.kind is Kind.PERIODIC:
                twin = next(
                    (s for s in mine if s.kind is Kind.PERIODIC and s.series == sub.series), None
                )
                if twin is not None:
                    raise Conflict(
                        f"a periodic subscription of {sub.device}/{sub.identifier} exists "
                        f"already ({twin.id}): one per subscriber and series; delete it first"
                    )
            self._store.add(sub)
            self._index(sub)
            self._wake.notify_all()
        log.info(
            "subscription %s: %s %s/%s/%s", sub.id, sub.kind, tenant, sub.device, sub.identifier
        )
        return sub

    def _visible(self, who: Principal, tenant: str, subscription_id: str) -> Subscription:
        who.require_tenant(tenant)
        sub = self._subs.get(subscription_id)
        if sub is None or sub.tenant != tenant or not self._owns(who, sub):
            raise NotFound(f"subscription {subscription_id!r} not found")
        return sub

    @staticmethod
    def _owns(who: Principal, sub: Subscription) -> bool:
        return who.role == "admin" or sub.token_id == who.token_id

    def visible(self, who: Principal, tenant: str) -> list[Subscription]:
        """The caller's subscriptions in ``tenant`` (an admin sees all of the tenant's)."""
        who.require_tenant(tenant)
        with self._lock:
            subs = [s for s in self._subs.values() if s.tenant == tenant and self._owns(who, s)]
        return sorted(subs, key=lambda s: (s.created, s.id))

    def get(self, who: Principal, tenant: str, subscription_id: str) -> Subscription:
        return self._visible(who, tenant, subscription_id)

    def stats(self, subscription_id: str) -> dict[str, int]:
        with self._lock:
            st = self._stats.get(subscription_id)
            return st.public() if st is not None else {}

    def delete(self, who: Principal, tenant: str, subscription_id: str) -> None:
        """Unsubscribe: nothing more is evaluated or sent, queued retries included."""
        sub = self._visible(who, tenant, subscription_id)
        with self._lock:
            self._store.delete(tenant, sub.id)
            self._unindex(sub)
        self.ws.close_subscription(sub)
        log.info("subscription %s deleted by token %s", sub.id, who.token_id)

    def deliveries(
        self, who: Principal, tenant: str, subscription_id: str, limit: int = 100
    ) -> list[DeliveryRecord]:
        sub = self._visible(who, tenant, subscription_id)
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be 1..1000")
        return self._store.deliveries(tenant, sub.id, limit)

    def _index(self, sub: Subscription) -> None:  # under the lock
        self._subs[sub.id] = sub
        now = self._clock()
        st = _Stats(bucket=float(self.config.max_per_minute), bucket_at=now)
        if sub.kind is Kind.PERIODIC and sub.period_s is not None:
            # window_of gives the last closed period; the first report is the one under way now
            _start, end = window_of(now, sub.period_s)
            st.last_window = end
            st.next_due = end + sub.period_s + _grace(sub.period_s)
        self._stats[sub.id] = st
        self._reindex()

    def _unindex(self, sub: Subscription) -> None:  # under the lock
        self._subs.pop(sub.id, None)
        self._stats.pop(sub.id, None)
        self._reindex()

    def _reindex(self) -> None:
        events: dict[tuple[str, str, str], list[Subscription]] = {}
        watched: dict[tuple[str, str], set[str]] = {}
        for s in self._subs.values():
            if s.kind is Kind.EVENT:
                events.setdefault(s.series, []).append(s)
            watched.setdefault((s.tenant, s.device), set()).add(s.identifier)
        self._events = events
        self._watched = {k: frozenset(v) for k, v in watched.items()}

    # -- what ingest tells us (writer thread: queue only) ----------------------------------------

    def observe(self, items: list[Prepared]) -> None:
        watched = self._watched
        if not watched:
            return
        found: list[tuple[str, str, str, int, float]] = []
        for item in items:
            if item.readings is None or item.tenant is None or item.device is None:
                continue
            ids = watched.get((item.tenant, item.device))
            if ids is None:
                continue
            found.extend(
                (item.tenant, item.device, ident, ts, value)
                for ident, ts, value in item.readings
                if ident in ids
            )
        if not found:
            return
        with self._lock:
            room = MAX_QUEUED_READINGS - len(self._queue)
            if room < len(found):
                self.overflow += len(found) - max(room, 0)
                found = found[: max(room, 0)]
            self._queue.extend(found)
            self._wake.notify_all()

    # -- the evaluator thread --------------------------------------------------------------------

    def start(self, publisher: Publisher | None) -> None:
        """Restore the stored subscriptions, then evaluate and deliver."""
        restored = self._store.all()
        with self._lock:
            for sub in restored:
                self._index(sub)
        log.info("subscriptions: %d restored", len(restored))
        self.sender.start(publisher)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gridhub-subscriptions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.sender.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # the store is down, or a bug: keep evaluating
                log.exception("subscription evaluation failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            with self._lock:
                if not self._queue and not self._stop.is_set():
                    self._wake.wait(wait)

    def tick(self) -> float:
        """Evaluate queued readings and due periodic reports once; seconds until the next."""
        with self._lock:
            readings = list(self._queue)
            self._queue.clear()
            events = self._events
        view = TokenView(self._tokens)  # tokens as they stand now, listed once per round
        for tenant, device, ident, ts, value in readings:
            key = (tenant, device, ident)
            seen = self._latest.get(key)
            if seen is None or ts >= seen[0]:
                self._latest[key] = (ts, value)
            for sub in events.get(key, ()):
                self._on_reading(sub, ts, value, view)
        self._close_revoked(view)
        return self._periodic(view)

    def _close_revoked(self, view: TokenView) -> None:
        """End the WebSocket connections of tokens revoked or expired meanwhile, even idle ones
        (the evaluator runs at least once a second)."""
        now = datetime.now(UTC)
        for token_id in self.ws.tokens():
            record = view.get(token_id)
            if record is None or principal_of(record, now) is None:
                self.ws.close_token(token_id)

    def _on_reading(self, sub: Subscription, ts: int, value: float, view: TokenView) -> None:
        st = self._stats.get(sub.id)
        if st is None or sub.condition is None:
            return
        if st.last_ts_us is not None and ts <= st.last_ts_us:
            return  # not new: a duplicate, or history arriving late
        st.last_ts_us = ts
        if sub.condition.holds(value):
            payload = self._payload(sub, "ok", value, from_us(ts))
            payload["condition"] = sub.condition.as_dict()
            self._notify(sub, f"{sub.id}.{ts}", from_us(ts), payload, view)

    def _periodic(self, view: TokenView) -> float:
        now = self._clock()
        soonest = now + 1.0
        with self._lock:
            periodic = [
                (s, self._stats[s.id]) for s in self._subs.values() if s.kind is Kind.PERIODIC
            ]
        for sub, st in periodic:
            period = sub.period_s or MAX_PERIOD_S
            if now >= st.next_due:
                start, end = window_of(now - _grace(period), period)
                if end > st.last_window:
                    st.last_window = end
                    self._report(sub, start, end, view)
                st.next_due = end + period + _grace(period)
            soonest = min(soonest, st.next_due)
        return max(0.005, soonest - self._clock())

    def _report(self, sub: Subscription, start: float, end: float, view: TokenView) -> None:
        function = sub.function or PeriodicFunction.LATEST
        lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        who = self.principal(sub.token_id, view)
        if who is None:
            self.ws.close_token(sub.token_id)
            self._refused(sub)
            return
        if function is PeriodicFunction.LATEST:
            latest = self._latest.get(sub.series) or self._latest_stored(sub, end)
            if latest is None:
                payload = self._payload(sub, "no_data", None, None)
                at = hi
            else:
                at = from_us(latest[0])
                payload = self._payload(sub, "ok", latest[1], at)
        else:
            points = self._data.series(
                SeriesQuery(sub.tenant, sub.device, sub.identifier, lo, hi, limit=MAX_POINTS), "UTC"
            )
            # the policy decides per value: only values the subscriber may read are aggregated
            readable = [
                p
                for p in points
                if self._may_read(who, sub.tenant, sub.device, sub.identifier, p.ts)
            ]
            value = aggregate(function, [p.value for p in readable])
            payload = self._payload(sub, "ok" if readable else "no_data", value, hi)
            payload["count"] = len(readable)
            # checked again at send time at its newest value (the end of the period if none)
            at = readable[-1].ts if readable else datetime.fromtimestamp(end - 1e-6, UTC)
        payload.update({"function": function.value, "from": lo.isoformat(), "to": hi.isoformat()})
        self._notify(sub, f"{sub.id}.{to_us(hi)}", at, payload, view)

    def _latest_stored(self, sub: Subscription, end: float) -> tuple[int, float] | None:
        lo = datetime.fromtimestamp(end - LATEST_LOOKBACK_S, UTC)
        hi = datetime.fromtimestamp(end, UTC)
        points = self._data.series(
            SeriesQuery(sub.tenant, sub.device, sub.identifier, lo, hi, limit=MAX_POINTS), "UTC"
        )
        return (to_us(points[-1].ts), points[-1].value) if points else None

    @staticmethod
    def _payload(
        sub: Subscription, result: str, value: float | None, ts: datetime | None
    ) -> dict[str, Any]:
        """Seed 004 §3.2.6 Notify(requestID, result, variable, location, value, timestamp)."""
        return {
            "subscription": sub.id,
            "kind": sub.kind.value,
            "result": result,
            "tenant": sub.tenant,
            "device": sub.device,
            "identifier": sub.identifier,
            "value": value,
            "ts": ts.isoformat() if ts is not None else None,
        }

    def _refused(self, sub: Subscription) -> None:
        with self._lock:
            st = self._stats.get(sub.id)
            if st is not None:
                st.refused += 1

    def _notify(
        self,
        sub: Subscription,
        delivery: str,
        at: datetime,
        payload: dict[str, Any],
        view: TokenView,
    ) -> None:
        now = self._clock()
        with self._lock:
            st = self._stats.get(sub.id)
            if st is None:  # unsubscribed meanwhile
                return
            rate = self.config.max_per_minute
            st.bucket = min(float(rate), st.bucket + (now - st.bucket_at) * rate / 60.0)
            st.bucket_at = now
            if st.bucket < 1.0:
                st.suppressed += 1
                return
            st.bucket -= 1.0
        who = self.principal(sub.token_id, view)
        if who is None:
            self.ws.close_token(sub.token_id)
        if who is None or not self._may_read(who, sub.tenant, sub.device, sub.identifier, at):
            self._refused(sub)
            return
        payload["delivery"] = delivery
        if self._on_notify is not None:
            try:
                self._on_notify(sub, who, payload)
            except Exception:  # the hook must not stop notifications
                log.exception("subscription notify hook failed")
        note = Note(delivery, at, body(payload))
        listeners = 1
        if sub.channel is Channel.WEBSOCKET:
            listeners = self.ws.push(sub, note.body)
        elif not self.sender.submit(sub, note):
            listeners = 0
        with self._lock:
            st.notified += 1
            if listeners == 0:
                st.no_listener += 1

    def render_metrics(self) -> str:
        """Prometheus text: subscriptions, notifications, and the sender's outcomes."""
        with self._lock:
            total = len(self._subs)
            notified = sum(s.notified for s in self._stats.values())
        lines = [
            "# TYPE gridhub_subscriptions gauge",
            f"gridhub_subscriptions {total}",
            "# TYPE gridhub_subscription_notifications_total counter",
            f"gridhub_subscription_notifications_total {notified}",
            "# TYPE gridhub_subscription_readings_overflow_total counter",
            f"gridhub_subscription_readings_overflow_total {self.overflow}",
        ]
        for name, value in self.sender.counts.items():
            metric = f"gridhub_subscription_sends_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        return "\n".join(lines) + "\n"


def _grace(period_s: float) -> float:
    """Wait this long after a period closes before reporting it, for its last readings."""
    return min(2.0, period_s / 10)
