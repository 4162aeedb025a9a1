"""Commands (O1): invoke, deliver with retries, match acknowledgements, expire.

``invoke`` checks the call against the device type's spec, stores the invocation (``pending``)
and wakes the dispatcher. The dispatcher thread publishes what is due on the device's commands
topic at QoS 1 (``sent`` once the broker confirms), resends with backoff while unacknowledged,
resends when the device is heard from again, and expires what outlives its time to live. The
device's ``Acknowledge`` arrives through the normal ingest path; the pipeline tells this service
about it after the commit, and the invocation whose id is its ``originatingEventId`` (for the
same tenant and device) becomes ``acknowledged`` — or ``failed``, if the response says so.

Every status change is stored before anything else happens, so a restarted hub resumes the
retries and expiries where they were, and matches acknowledgements stored while it was not
looking. The invocation id travels in the message: a device executes each id at most once, and
an idempotency key given by the caller never yields two invocations.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridhub.access.tokens import Principal
from gridhub.config import Settings
from gridhub.domain import commands as cmd
from gridhub.domain.commands import Action, Invocation, RetryPolicy, Spec, Status
from gridhub.domain.mqtt_credentials import commands_topic
from gridhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gridhub.ingest.validate import Prepared
from gridhub.outbound.mqtt_publisher import Outgoing, Publisher
from gridhub.services.command_wire import to_message
from gridhub.storage.outbound_store import OutboundStore
from gridhub.storage.registry import Registry

__all__ = [
    "OUTBOUND_ROLES",
    "CommandConfig",
    "CommandService",
    "authorise_outbound",
    "command_config",
]

log = logging.getLogger(__name__)
OUTBOUND_ROLES = ("admin", "dso")
MAX_IDEMPOTENCY_KEY = 128
PUBLISH_CHUNK = 500
RESERVED = frozenset({"setTariff", "setPowerLimit"})  # the tariff and signal services' own


def authorise_outbound(who: Principal, tenant: str, action: str, subject: str) -> None:
    """The one place where sending a command, a tariff or a signal is allowed (and recorded).

    The tenant's admin and DSO tokens (and the installation admin); every request is also in
    the audit log (``access/audit.py``, action ``command``).
    """
    who.require_tenant(tenant)
    if who.role not in OUTBOUND_ROLES:
        raise Forbidden(f"a {who.role} token cannot {action}; use an admin or dso token")
    log.info(
        "outbound: token %s (%s) may %s in %s: %s",
        who.token_id,
        who.role,
        action,
        tenant,
        subject[:200],
    )


def authorise_outbound_read(who: Principal, tenant: str) -> None:
    """Who may list commands and their answers: those who may send them. A command names a
    household's device and what it was told to do; other roles read data, not orders."""
    who.require_tenant(tenant)
    if who.role not in OUTBOUND_ROLES:
        raise Forbidden(f"a {who.role} token cannot read commands; use an admin or dso token")


@dataclass(frozen=True, slots=True)
class CommandConfig:
    ttl_s: float = 3600.0
    max_ttl_s: float = 7 * 86_400.0
    max_attempts: int = 5
    max_attempts_limit: int = 50
    retry: RetryPolicy = RetryPolicy()
    publish_timeout_s: float = 10.0


def command_config(settings: Settings) -> CommandConfig:
    return CommandConfig(
        ttl_s=settings.command_ttl_s,
        max_attempts=settings.command_max_attempts,
        retry=RetryPolicy(settings.command_retry_s, settings.command_retry_max_s),
    )


class CommandService:
    def __init__(
        self,
        store: OutboundStore,
        registry: Registry,
        config: CommandConfig | None = None,
        clock: Any = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self.config = config or CommandConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._open: dict[str, Invocation] = {}
        self._by_device: dict[tuple[str, str], set[str]] = {}
        self._seen: dict[tuple[str, str], float] = {}
        self._events: deque[tuple[str, str, str, str]] = deque()  # acks: tenant, dev, id, resp
        self._publisher: Publisher | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._spec_cache: dict[str, dict[str, Spec]] = {}
        # counters for /metrics: sends the broker confirmed or not, and final states reached
        self.counts: dict[str, int] = dict.fromkeys(
            ("sent", "unsent", *(s.value for s in sorted(cmd.FINAL))), 0
        )

    # -- specs ----------------------------------------------------------------------------------

    def tenant_specs(self, tenant: str) -> dict[str, Spec]:
        with self._lock:
            cached = self._spec_cache.get(tenant)
            if cached is None:
                cached = {s.name: s for s in self._store.specs(tenant)}
                self._spec_cache[tenant] = cached
            return cached

    def specs(self, tenant: str, device_type: str | None = None) -> list[Spec]:
        """Built-in and tenant specs; for one device type, those it accepts."""
        self._registry.tenant(tenant)
        own = self.tenant_specs(tenant)
        if device_type is not None:
            return sorted(cmd.specs_for(device_type, own).values(), key=lambda s: s.name)
        merged = {s.name + "|" + ",".join(s.device_types): s for s in cmd.BUILTIN_SPECS}
        merged.update({f"{n}|tenant": s for n, s in own.items()})
        return sorted(merged.values(), key=lambda s: (s.name, s.builtin))

    def put_spec(self, who: Principal, tenant: str, spec: Spec) -> Spec:
        authorise_outbound(who, tenant, "define commands", spec.name)
        self._registry.tenant(tenant)
        cmd.check_spec(spec)
        if spec.name in RESERVED:
            raise InvalidRequest(f"{spec.name!r} is reserved: tariffs and signals are sent with it")
        with self._lock:
            self._store.put_spec(tenant, spec)
            self._spec_cache.pop(tenant, None)
        return spec

    def delete_spec(self, who: Principal, tenant: str, name: str) -> None:
        authorise_outbound(who, tenant, "define commands", name)
        if name not in self.tenant_specs(tenant):
            raise NotFound(f"command spec {name[:64]!r} not defined by tenant {tenant!r}")
        with self._lock:
            self._store.delete_spec(tenant, name)
            self._spec_cache.pop(tenant, None)

    def spec_for(self, tenant: str, device: str, command: str) -> Spec:
        """The spec of ``command`` for this device, or NotFound / InvalidRequest."""
        dev = self._registry.device(tenant, device)
        if dev is None:
            self._registry.tenant(tenant)
            raise NotFound(f"device {device[:128]!r} not found in tenant {tenant!r}")
        accepted = cmd.specs_for(dev.device_type, self.tenant_specs(tenant))
        spec = accepted.get(command)
        if spec is None:
            raise InvalidRequest(
                f"unknown command {command[:64]!r} for device {device!r} (type "
                f"{dev.device_type!r}); it accepts: {', '.join(sorted(accepted)) or 'none'}"
            )
        return spec

    # -- invoking -------------------------------------------------------------------------------

    def new_invocation(
        self,
        who: Principal,
        tenant: str,
        device: str,
        command: str,
        parameters: Mapping[str, Any],
        *,
        ttl_s: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        origin: str | None = None,
    ) -> Invocation:
        """A checked invocation, not yet stored (tariffs and signals store it with theirs)."""
        spec = self.spec_for(tenant, device, command)
        typed = cmd.check_parameters(spec, parameters)
        ttl = self.config.ttl_s if ttl_s is None else ttl_s
        if not 0 < ttl <= self.config.max_ttl_s:
            raise InvalidRequest(f"ttl must be in (0, {self.config.max_ttl_s:g}] seconds")
        attempts = self.config.max_attempts if max_attempts is None else max_attempts
        if not 1 <= attempts <= self.config.max_attempts_limit:
            raise InvalidRequest(f"max_attempts must be 1..{self.config.max_attempts_limit}")
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(f"idempotency key must be 1..{MAX_IDEMPOTENCY_KEY} characters")
        now = self._clock()
        return Invocation(
            id=uuid.uuid4().hex,
            tenant=tenant,
            device=device,
            command=spec.name,
            parameters=typed,
            created=now,
            expires=now + ttl,
            max_attempts=attempts,
            initiator=f"{who.role}:{who.token_id}",
            idempotency_key=idempotency_key,
            origin=origin,
        )

    def invoke(
        self,
        who: Principal,
        tenant: str,
        device: str,
        command: str,
        parameters: Mapping[str, Any],
        *,
        ttl_s: float | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Invocation, bool]:
        """Store and queue a command; return it and whether it is new (False: same key)."""
        authorise_outbound(who, tenant, "send commands", f"{command} to {device}")
        inv = self.new_invocation(
            who,
            tenant,
            device,
            command,
            parameters,
            ttl_s=ttl_s,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        with self._lock:  # check-and-insert of the idempotency key is atomic in this process
            stored = self._store.create(inv)
            if stored.id != inv.id:
                same = (stored.device, stored.command, stored.parameters) == (
                    inv.device,
                    inv.command,
                    inv.parameters,
                )
                if not same:
                    raise Conflict(
                        f"idempotency key {idempotency_key!r} was used for another command "
                        f"({stored.command} to {stored.device}, invocation {stored.id})"
                    )
                return stored, False
            self._track(inv)
            self._wake.notify_all()
        return inv, True

    def enqueue(self, invocations: Sequence[Invocation]) -> None:
        """Queue invocations already stored (by the tariff and signal services)."""
        with self._lock:
            for inv in invocations:
                self._track(inv)
            self._wake.notify_all()

    def get(self, tenant: str, invocation_id: str) -> Invocation:
        self._registry.tenant(tenant)
        with self._lock:
            live = self._open.get(invocation_id)
        if live is not None and live.tenant == tenant:
            return live
        found = self._store.get(tenant, invocation_id)
        if found is None:
            raise NotFound(f"command invocation {invocation_id[:64]!r} not found")
        return found

    def invocations(
        self,
        tenant: str,
        *,
        device: str | None = None,
        status: Status | None = None,
        origin: str | None = None,
        limit: int = 1000,
    ) -> list[Invocation]:
        self._registry.tenant(tenant)
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be 1..10000")
        return self._store.invocations(
            tenant, device=device, status=status, origin=origin, limit=limit
        )

    # -- what ingest tells us -------------------------------------------------------------------

    def observe(self, items: list[Prepared]) -> None:
        """Pipeline observer (writer thread): note acks and devices heard from; stay quick."""
        if not self._by_device:
            return
        now = self._clock()
        woken = False
        with self._lock:
            for item in items:
                if item.tenant is None or item.device is None:
                    continue
                key = (item.tenant, item.device)
                if key not in self._by_device:
                    continue
                self._seen[key] = now
                # only an ack from the device's own MQTT topic counts: over HTTP any device
                # token of the tenant could answer for another device
                if item.ack is not None and item.envelope.source.startswith("mqtt:"):
                    ack = item.ack
                    self._events.append(
                        (ack.tenant, ack.device, ack.originating_event_id, ack.response)
                    )
                woken = True
            if woken:
                self._wake.notify_all()

    # -- the dispatcher -------------------------------------------------------------------------

    def _track(self, inv: Invocation) -> None:
        if inv.final:
            self._forget(inv.id)
            return
        self._open[inv.id] = inv
        self._by_device.setdefault((inv.tenant, inv.device), set()).add(inv.id)

    def _forget(self, invocation_id: str) -> None:
        inv = self._open.pop(invocation_id, None)
        if inv is None:
            return
        key = (inv.tenant, inv.device)
        ids = self._by_device.get(key)
        if ids is not None:
            ids.discard(invocation_id)
            if not ids:
                del self._by_device[key]
                self._seen.pop(key, None)

    def start(self, publisher: Publisher | None) -> None:
        """Resume open invocations from the store (matching acks stored meanwhile), then run."""
        self._publisher = publisher
        opened = self._store.open_invocations()
        now = self._clock()
        stored_acks = self._store.acks_for(opened)
        with self._lock:
            for inv in opened:
                self._track(inv)
            by_id = {i.id: i for i in opened}
            changed = self._apply_acks(
                [
                    (by_id[eid].tenant, by_id[eid].device, eid, resp)
                    for eid, resp, _ts in stored_acks
                ],
                now,
            )
        self._commit(changed)
        log.info("commands: %d open invocations resumed", len(self._open))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gridhub-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _apply_acks(self, acks: list[tuple[str, str, str, str]], now: float) -> list[Invocation]:
        """The open invocations these acks finish (memory is changed by :meth:`_commit`)."""
        changed: dict[str, Invocation] = {}
        for tenant, device, event_id, response in acks:
            inv = self._open.get(event_id)
            if inv is None or (inv.tenant, inv.device) != (tenant, device) or event_id in changed:
                log.info(
                    "ack from %s/%s for %r matches no open command", tenant, device, event_id[:64]
                )
                continue
            changed[event_id] = cmd.apply_ack(inv, response, now)
        return list(changed.values())

    def _commit(self, finished: list[Invocation]) -> None:
        """Store final states first, then stop tracking them: if the store fails they stay
        open in memory and are decided again on the next tick."""
        if not finished:
            return
        self._store.save(finished)
        with self._lock:
            for inv in finished:
                self._forget(inv.id)
                self.counts[inv.status.value] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # the store is down, or a bug: keep the dispatcher alive
                log.exception("command dispatcher failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            with self._lock:
                if not self._events and not self._stop.is_set():
                    self._wake.wait(wait)

    def tick(self) -> float:
        """Handle acks, expiries and due sends once; return seconds until something is due."""
        now = self._clock()
        gap = self.config.retry.base_s
        with self._lock:
            acks = list(self._events)
            self._events.clear()
            changed = self._apply_acks(acks, now)
            to_send: list[Invocation] = []
            done = {i.id for i in changed}
            for inv in list(self._open.values()):
                if inv.id in done:
                    continue
                seen = self._seen.get((inv.tenant, inv.device))
                action = cmd.next_action(inv, now, seen, gap)
                if action is Action.EXPIRE:
                    changed.append(cmd.expire(inv, now))
                elif action is Action.SEND:
                    to_send.append(inv)
        try:
            self._commit(changed)
        except Exception:
            with self._lock:  # not stored: hand the acks back, decide again next tick
                self._events.extendleft(reversed(acks))
            raise
        for start in range(0, len(to_send), PUBLISH_CHUNK):
            self._send(to_send[start : start + PUBLISH_CHUNK])
        with self._lock:
            if not self._open:
                return 1.0
            soonest = min(
                min(i.expires, i.next_attempt if i.attempts < i.max_attempts else i.expires)
                for i in self._open.values()
            )
        return max(0.005, min(soonest - self._clock(), 1.0))

    def _send(self, batch: list[Invocation]) -> None:
        messages = []
        for inv in batch:
            spec = self._spec_or_builtin(inv)
            messages.append(Outgoing(commands_topic(inv.tenant, inv.device), to_message(inv, spec)))
        publisher = self._publisher
        results = (
            publisher.publish(messages, self.config.publish_timeout_s)
            if publisher is not None
            else [False] * len(messages)
        )
        now = self._clock()
        updated = []
        with self._lock:
            for inv, ok in zip(batch, results, strict=True):
                current = self._open.get(inv.id)
                if current is None:  # acknowledged (or expired) while we were publishing
                    continue
                if ok:
                    new = cmd.mark_sent(current, now, self.config.retry)
                else:
                    new = cmd.mark_unsent(current, now, self.config.retry)
                self.counts["sent" if ok else "unsent"] += 1
                self._open[inv.id] = new
                if new.status != current.status or new.attempts != current.attempts:
                    updated.append(new)
        if updated:
            self._store.save(updated)

    def render_metrics(self) -> str:
        """Prometheus text: sends, final states reached, and open invocations."""
        with self._lock:
            counts, open_now = dict(self.counts), len(self._open)
        lines = []
        for name, value in counts.items():
            metric = f"gridhub_commands_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        lines += ["# TYPE gridhub_commands_open gauge", f"gridhub_commands_open {open_now}"]
        return "\n".join(lines) + "\n"

    def _spec_or_builtin(self, inv: Invocation) -> Spec:
        own = self.tenant_specs(inv.tenant)
        if inv.command in own:
            return own[inv.command]
        builtin = next((s for s in cmd.BUILTIN_SPECS if s.name == inv.command), None)
        return builtin or Spec(inv.command, (), "", (cmd.ANY_DEVICE,), builtin=False)
