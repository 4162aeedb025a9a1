"""The enforcement point (A2, A3, A4): one place that decides who may read or write which values.

Every read path calls :meth:`AccessControl.authorize_read` with the principal, tenant, device,
identifier and time range, and gets back a :class:`ReadDecision` whose ``windows`` are the parts
of the range the caller may see — or an exception: :class:`~gridhub.errors.Forbidden` (403) when
no part is visible, :class:`~gridhub.errors.RateLimited` (429) when the owner's minimum delay
between reads has not passed yet. The read is then clipped to the windows (``services/query.py``
shows how). Paths that deliver values one by one (subscriptions, notifications) call
:meth:`AccessControl.may_read` per value; ``docs/access.md`` lists the calls.

What is visible, for the values of one series at time *t*:

1. the installation admin: everything; a tenant admin: everything of its tenant;
2. otherwise the caller's stakeholder, if an owner policy for it (or for ``*``) selects the
   series and has a version in force at *t*: that version's ``read``, whatever the defaults;
3. else the defaults (``DEFAULTS``): a customer reads its own site; a DSO reads grid
   measurements of every device and every identifier of devices no customer owns; a retailer,
   aggregator or ESCO reads its clients' consumption (and, for an aggregator, injection) for the
   *t* inside its contract with that client — a supplier switch at *s* ends the old supplier's
   window at *s* and keeps its earlier values visible to it.

Device tokens write; they read nothing. Time is the value's time: a read spanning a policy
change sees each value under the version valid at that value's time.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gridhub.access.directory import Directory
from gridhub.access.tokens import ADMIN, INGEST_ROLES, Principal
from gridhub.domain.access import (
    ALERTS,
    ANY,
    BEGINNING,
    FOREVER,
    Kind,
    PolicyVersion,
    Stakeholder,
    Window,
    from_us,
    subtract,
    to_us,
    union,
)
from gridhub.domain.messages import DeviceMeasurements, decode
from gridhub.domain.registry import Device
from gridhub.domain.validation import event_time_us
from gridhub.errors import Forbidden, RateLimited, RejectedMessage
from gridhub.storage.base import StateValue, StoredAlert
from gridhub.storage.registry import Registry

__all__ = [
    "CONSUMPTION",
    "DEFAULTS",
    "GRID",
    "INJECTION",
    "AccessControl",
    "ReadDecision",
]

# Identifier families of seed 002 Table 2 (globs; ``*`` also crosses dots).
CONSUMPTION = (
    "electricity.*.consumed*",
    "electricity.energy.blink",
    "heating.energy",
    "heating.power",
    "heating.volume",
    "heating.flowrate",
    "gas.volume",
    "gas.flowrate",
    "water.volume",
    "water.flowrate",
)
INJECTION = ("electricity.*.injected*",)
GRID = (
    "electricity.voltage.*",
    "electricity.current.*",
    "electricity.frequency",
    "electricity.powerFactor",
    "electricity.power.reactive.*",
    "electricity.power.apparent",
    ALERTS,
)
# What a supplier reads of its clients' sites while a contract runs, by supplier kind.
DEFAULTS: dict[Kind, tuple[str, ...]] = {
    Kind.RETAILER: CONSUMPTION,
    Kind.AGGREGATOR: CONSUMPTION + INJECTION,
    Kind.ESCO: CONSUMPTION,
}
ALL: list[tuple[int, int, float]] = [(BEGINNING, FOREVER, 0.0)]
MAX_RATE_ENTRIES = 200_000


@functools.lru_cache(maxsize=4096)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


def matches(patterns: tuple[str, ...], identifier: str | None) -> bool:
    """Whether ``identifier`` matches one of the globs (``None``: "some identifier" — yes)."""
    return identifier is None or _matcher(patterns)(identifier) is not None


@dataclass(frozen=True, slots=True)
class ReadDecision:
    """The parts of a requested time range a caller may read, and the owner's read delay."""

    windows: tuple[Window, ...]
    min_delay_s: float = 0.0
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return bool(self.windows)

    def spans(self) -> list[tuple[datetime, datetime]]:
        """The windows as aware datetimes (UTC), for clipping a store query."""
        return [(from_us(lo), from_us(hi)) for lo, hi in self.windows]

    def covers(self, moment: datetime) -> bool:
        us = to_us(moment)
        return any(lo <= us < hi for lo, hi in self.windows)


class AccessControl:
    """Decisions from the directory (stakeholders, contracts, policies) and the registry."""

    def __init__(
        self,
        directory: Directory,
        registry: Registry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self._registry = registry
        self._clock = clock
        self._rate_lock = threading.Lock()
        # (tenant, reader, device, identifier) -> (monotonic time of the last read, its delay)
        self._last_read: dict[tuple[str, str, str, str], tuple[float, float]] = {}

    # -- the one call of every read path --------------------------------------------------------

    def authorize_read(
        self,
        who: Principal,
        tenant: str,
        device: str,
        identifier: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ReadDecision:
        """Refuse (403), rate-limit (429), or return the windows of ``[start, end)`` to read."""
        decision = self.decide_read(who, tenant, device, identifier, start, end)
        if not decision.allowed:
            raise Forbidden(decision.reason)
        if decision.min_delay_s > 0:
            self._throttle(who, tenant, device, identifier, decision.min_delay_s)
        return decision

    def decide_read(
        self,
        who: Principal,
        tenant: str,
        device: str,
        identifier: str | None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> ReadDecision:
        """The decision without side effects (no rate accounting): for checks and tests."""
        lo = BEGINNING if start is None else to_us(start)
        hi = FOREVER if end is None else to_us(end)
        if who.tenant is not None and who.tenant != tenant:
            return ReadDecision((), reason=f"this token is scoped to tenant {who.tenant!r}")
        segments, why = self._segments(who, tenant, device, identifier)
        inside = [(max(a, lo), min(b, hi), d) for a, b, d in segments if a < hi and b > lo]
        if not inside:
            what = f"{device}/{identifier}" if identifier else device
            return ReadDecision((), reason=f"no read access to {what} in that time range: {why}")
        return ReadDecision(
            tuple(union((a, b) for a, b, _ in inside)), max(d for _, _, d in inside), "granted"
        )

    def may_read(
        self, who: Principal, tenant: str, device: str, identifier: str | None, at: datetime
    ) -> bool:
        """Whether one value at ``at`` may be delivered (subscriptions, notifications)."""
        us = to_us(at)
        if who.tenant is not None and who.tenant != tenant:
            return False
        segments, _ = self._segments(who, tenant, device, identifier)
        return any(a <= us < b for a, b, _ in segments)

    def filter_latest(
        self, who: Principal, tenant: str, device: str, values: Sequence[StateValue], now: datetime
    ) -> list[StateValue]:
        """Latest state: the values the caller may read, and only while a grant runs now
        (a retailer whose contract ended sees no latest state). 403 when nothing runs now."""
        if not self.may_read(who, tenant, device, None, now):
            raise Forbidden(f"no running read access to device {device!r}")
        visible = [
            v
            for v in values
            if self.may_read(who, tenant, device, v.identifier, v.ts)
            and self.may_read(who, tenant, device, v.identifier, now)
        ]
        if not visible:
            return []
        delayed = [v for v in visible if self._delay(who, tenant, device, v.identifier, v.ts) > 0]
        if not delayed:
            return visible
        allowed: list[StateValue] = []
        refusals: list[RateLimited] = []
        for v in visible:
            delay = self._delay(who, tenant, device, v.identifier, v.ts)
            try:
                if delay > 0:
                    self._throttle(who, tenant, device, v.identifier, delay)
                allowed.append(v)
            except RateLimited as exc:
                refusals.append(exc)
        if not allowed and refusals:
            raise max(refusals, key=lambda e: e.retry_after)
        return allowed

    def filter_alerts(
        self, who: Principal, tenant: str, alerts: Sequence[StoredAlert]
    ) -> list[StoredAlert]:
        """The alerts the caller may see (the pseudo identifier ``@alerts`` of their device)."""
        if self._is_admin(who, tenant):
            return list(alerts)
        return [a for a in alerts if self.may_read(who, tenant, a.device, ALERTS, a.ts)]

    def visible_devices(
        self, who: Principal, tenant: str, devices: Sequence[Device], now: datetime
    ) -> list[Device]:
        """The registry as a caller may see it: admins all devices; others those with some
        series they may read now (a customer its site's, a DSO all, a retailer its running
        clients')."""
        if self._is_admin(who, tenant):
            return list(devices)
        return [d for d in devices if self.may_read(who, tenant, d.hardware_id, None, now)]

    def authorize_write(self, who: Principal, tenant: str, *, service_writes: bool = False) -> bool:
        """Sending data into ``tenant``: its admins and devices (gateways) send anything
        (returns False: nothing more to check). With ``service_writes``, a stakeholder holding
        an owner policy with ``write`` may send too — then this returns True and the caller
        checks every value with :meth:`authorize_messages` before submitting."""
        who.require_tenant(tenant)
        if who.role in INGEST_ROLES:
            return False
        stakeholder = self._stakeholder(who, tenant)
        if service_writes and stakeholder is not None and self._writes_somewhere(stakeholder):
            return True
        raise Forbidden(
            f"a {who.role} token cannot send data; use a device or admin token, or get an "
            "owner policy with write"
        )

    def authorize_messages(
        self, who: Principal, tenant: str, raws: Sequence[bytes], received_us: int
    ) -> None:
        """A stakeholder's service writes (Q4): every reading of every measurement message
        must fall under an owner policy granting it ``write`` at the reading's time, else the
        whole request is refused (403) and nothing is stored. Messages that do not decode are
        left to the pipeline, which rejects them with their reason."""
        for raw in raws:
            try:
                message = decode(raw)
            except RejectedMessage:
                continue
            if not isinstance(message, DeviceMeasurements):
                raise Forbidden("a stakeholder's service writes measurements only")
            try:
                ts = event_time_us(message.request.eventDate, received_us)
            except RejectedMessage:
                continue
            at = from_us(ts)
            for identifier in message.request.measurements:
                if not self.decide_write(who, tenant, message.hardwareId, identifier, at):
                    raise Forbidden(
                        f"no owner policy lets {who.stakeholder!r} write "
                        f"{message.hardwareId[:128]}/{identifier[:128]} at {at.isoformat()}"
                    )

    def _writes_somewhere(self, stakeholder: Stakeholder) -> bool:
        index = self.directory.policies_of(stakeholder.tenant)
        return any(
            v.write
            for versions in index
            if versions[0].grantee in (stakeholder.id, ANY)
            for v in versions
        )

    def decide_write(
        self, who: Principal, tenant: str, device: str, identifier: str, at: datetime
    ) -> bool:
        """Whether a stakeholder's service may write one value (an owner policy with write)."""
        if who.tenant is not None and who.tenant != tenant:
            return False
        if self._is_admin(who, tenant) or who.role == "device":
            return True
        stakeholder = self._stakeholder(who, tenant)
        if stakeholder is None:
            return False
        site = self._site(tenant, device)
        us = to_us(at)
        explicit = self._explicit(who, stakeholder, tenant, site, device, identifier)
        return any(v.write for lo, hi, v in explicit if lo <= us < hi)

    # -- internals ------------------------------------------------------------------------------

    def _is_admin(self, who: Principal, tenant: str) -> bool:
        return who.role == ADMIN and who.tenant in (None, tenant)

    def _stakeholder(self, who: Principal, tenant: str) -> Stakeholder | None:
        if who.stakeholder is None:
            return None
        found = self.directory.find_stakeholder(tenant, who.stakeholder)
        return None if found is None or found.disabled else found

    def _site(self, tenant: str, device: str) -> str | None:
        known = self._registry.device(tenant, device)
        return None if known is None else known.site

    def _explicit(
        self,
        who: Principal,
        stakeholder: Stakeholder,
        tenant: str,
        site: str | None,
        device: str,
        identifier: str | None,
    ) -> list[tuple[int, int, PolicyVersion]]:
        """The versions of the owner policies selecting this series, each with its span."""
        out: list[tuple[int, int, PolicyVersion]] = []
        for grantee in (stakeholder.id, ANY):
            for versions in self.directory.policies_for(tenant, grantee, site):
                p = versions[0]
                if p.site is not None and p.site != site:
                    continue
                if p.device is not None and p.device != device:
                    continue
                if p.service != ANY and p.service != who.service:
                    continue
                if not matches((p.identifier,), identifier):
                    continue
                for i, v in enumerate(versions):
                    upper = to_us(versions[i + 1].valid_from) if i + 1 < len(versions) else FOREVER
                    out.append((to_us(v.valid_from), upper, v))
        return out

    def _defaults(
        self, stakeholder: Stakeholder, tenant: str, site: str | None, identifier: str | None
    ) -> list[Window]:
        kind = stakeholder.kind
        if kind is Kind.CUSTOMER:
            return [(BEGINNING, FOREVER)] if site is not None and stakeholder.site == site else []
        if kind is Kind.DSO:
            grid_device = site is None or site not in self.directory.customer_sites(tenant)
            return [(BEGINNING, FOREVER)] if grid_device or matches(GRID, identifier) else []
        patterns = DEFAULTS.get(kind)
        if patterns is None or site is None or not matches(patterns, identifier):
            return []
        return union(c.window() for c in self.directory.contracts_at(tenant, stakeholder.id, site))

    def _segments(
        self, who: Principal, tenant: str, device: str, identifier: str | None
    ) -> tuple[list[tuple[int, int, float]], str]:
        """Every span of value time the caller may read, with its minimum delay."""
        if self._is_admin(who, tenant):
            return ALL, ""
        if who.role == "device":
            return [], "device tokens send data; they read nothing"
        stakeholder = self._stakeholder(who, tenant)
        if stakeholder is None:
            return [], "this token acts for no stakeholder (create it with one)"
        site = self._site(tenant, device)
        explicit = self._explicit(who, stakeholder, tenant, site, device, identifier)
        defaults = self._defaults(stakeholder, tenant, site, identifier)
        if not explicit:
            return [(lo, hi, 0.0) for lo, hi in defaults], _no_default(stakeholder)
        granted = [(lo, hi, v.min_delay_s) for lo, hi, v in explicit if v.read and lo < hi]
        if identifier is None:  # "some identifier": a policy on one does not hide the others
            kept = [(lo, hi, 0.0) for lo, hi in defaults]
        else:
            covered = union((lo, hi) for lo, hi, _ in explicit)
            kept = [(lo, hi, 0.0) for lo, hi in subtract(defaults, covered)]
        return sorted(granted + kept), "the owner's policy does not grant it"

    def _delay(
        self, who: Principal, tenant: str, device: str, identifier: str, at: datetime
    ) -> float:
        us = to_us(at)
        segments, _ = self._segments(who, tenant, device, identifier)
        return max((d for lo, hi, d in segments if lo <= us < hi), default=0.0)

    def _throttle(
        self, who: Principal, tenant: str, device: str, identifier: str, delay: float
    ) -> None:
        """At most one read per ``delay`` seconds per (stakeholder, series)."""
        self._throttle_all(who, tenant, [(device, identifier, delay)])

    def count_reads(
        self, who: Principal, tenant: str, items: Sequence[tuple[str, str, float]]
    ) -> None:
        """The rate-limit half of :meth:`authorize_read` for a bulk read of many series (the
        market hub's billing and profiles): ``items`` are ``(device, identifier, min_delay_s)``
        of the granted series, from :meth:`decide_read`. Counts a read of every one, or of
        none: if one was read less than its delay ago, :class:`RateLimited` with the longest
        wait, and nothing is counted — so a caller repeating after ``Retry-After`` is not
        refused again for the series the first attempt would have counted."""
        self._throttle_all(who, tenant, items)

    def _throttle_all(
        self, who: Principal, tenant: str, items: Sequence[tuple[str, str, float]]
    ) -> None:
        reader = who.stakeholder or f"token:{who.token_id}"
        now = self._clock()
        with self._rate_lock:
            waits = []
            for device, identifier, delay in items:
                last = self._last_read.get((tenant, reader, device, identifier))
                if last is not None and now - last[0] < delay:
                    waits.append((delay - (now - last[0]), delay, device, identifier))
            if waits:
                wait, delay, device, identifier = max(waits)
                more = f" (and {len(waits) - 1} more series)" if len(waits) > 1 else ""
                raise RateLimited(
                    f"{device}/{identifier} may be read once every {delay:g} s "
                    f"(owner policy){more}; retry in {wait:.1f} s",
                    retry_after=wait,
                )
            if len(self._last_read) + len(items) > MAX_RATE_ENTRIES:
                self._last_read = {
                    k: (t, d) for k, (t, d) in self._last_read.items() if now - t < d
                }
            for device, identifier, delay in items:
                self._last_read[(tenant, reader, device, identifier)] = (now, delay)


def _no_default(stakeholder: Stakeholder) -> str:
    if stakeholder.kind in DEFAULTS:
        return f"no {stakeholder.kind.value} contract with this site's customer covers it"
    return f"a {stakeholder.kind.value} reads only what an owner policy grants"
