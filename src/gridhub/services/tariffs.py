"""Tariffs (O2) and control signals (O3): store them, send them to the devices, answer queries.

A tariff day or a control signal names a target — one household, a cluster of households, or a
group by site attribute — resolved to sites when it is published. Each device of those sites
gets it as a command invocation (``setTariff``, ``setPowerLimit``), so delivery has the same
guarantees as any command: QoS 1, retries, acknowledgement, expiry, one execution per id. The
record and its invocations are stored in one transaction; queries answer over a period (a month
of tariffs and signals for the dashboard) with how far each has been delivered.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Generic, TypeVar

from gridhub.access.tokens import Principal
from gridhub.domain.commands import Invocation
from gridhub.domain.tariffs import (
    ControlSignal,
    Direction,
    Period,
    Target,
    Tariff,
    TariffKind,
    check_periods,
)
from gridhub.domain.timeutil import checked_day
from gridhub.errors import InvalidRequest
from gridhub.services.commands import CommandService, authorise_outbound
from gridhub.storage.outbound_store import OutboundStore
from gridhub.storage.registry import Registry

__all__ = ["Delivered", "TariffDay", "TariffService"]

MAX_DAYS = 31  # one request: at most a month of days
MAX_QUERY_DAYS = 400
MAX_DEVICES = 50_000  # invocations one publication may create
MAX_LIMIT_KW = 1e6


@dataclass(frozen=True, slots=True)
class TariffDay:
    day: date
    periods: list[Period]


T = TypeVar("T", Tariff, ControlSignal)


@dataclass(frozen=True, slots=True)
class Delivered(Generic[T]):
    """A tariff or signal with how many of its device invocations are in each status."""

    item: T
    delivery: dict[str, int]


def _pending(invocations: list[Invocation], origin: str) -> dict[str, int]:
    n = sum(1 for i in invocations if i.origin == origin)
    return {"pending": n} if n else {}


class TariffService:
    def __init__(self, store: OutboundStore, registry: Registry, commands: CommandService) -> None:
        self._store = store
        self._registry = registry
        self._commands = commands

    def _sites(self, tenant: str, target: Target) -> tuple[str, ...]:
        sites = target.select(self._registry.sites(tenant))
        if not sites:
            raise InvalidRequest(f"target {target.describe()[:200]!r} matches no household")
        return tuple(s.id for s in sites)

    def _invocations(
        self,
        who: Principal,
        tenant: str,
        sites: tuple[str, ...],
        command: str,
        parameters: dict[str, object],
        origin: str,
        ttl_s: float,
    ) -> list[Invocation]:
        wanted = set(sites)  # one pass over the tenant's devices, not one per site
        devices = [d for d in self._registry.devices(tenant) if d.site in wanted]
        if len(devices) > MAX_DEVICES:
            raise InvalidRequest(f"target has {len(devices)} devices; at most {MAX_DEVICES}")
        return [
            self._commands.new_invocation(
                who, tenant, d.hardware_id, command, parameters, ttl_s=ttl_s, origin=origin
            )
            for d in devices
        ]

    # -- tariffs --------------------------------------------------------------------------------

    def publish_tariff(
        self,
        who: Principal,
        tenant: str,
        *,
        kind: TariffKind,
        target: Target,
        currency: str,
        unit: str,
        days: list[TariffDay],
        ttl_s: float | None = None,
    ) -> list[Delivered[Tariff]]:
        """Store a tariff per day for the target's households and send it to their devices.

        A day published again for the same kind and target supersedes the earlier one (both
        are kept; queries give the newest).
        """
        authorise_outbound(who, tenant, f"publish {kind.value} tariffs", target.describe())
        zone = self._registry.tenant(tenant).zone
        if not 1 <= len(days) <= MAX_DAYS:
            raise InvalidRequest(f"give 1..{MAX_DAYS} days")
        if len({d.day for d in days}) != len(days):
            raise InvalidRequest("a day is given twice")
        for field, text in (("currency", currency), ("unit", unit)):
            if not 1 <= len(text) <= 16:
                raise InvalidRequest(f"{field} must be 1..16 characters")
        for d in days:
            checked_day(d.day, f"day {d.day}")  # its end in the tenant's zone must not overflow
            try:
                check_periods(d.periods)
            except InvalidRequest as exc:
                raise InvalidRequest(f"day {d.day}: {exc}") from None
        sites = self._sites(tenant, target)
        devices = sum(len(self._registry.devices(tenant, site=site)) for site in sites)
        if devices * len(days) > MAX_DEVICES:  # checked before anything is built
            raise InvalidRequest(
                f"{len(days)} days × {devices} devices is {devices * len(days)} commands; "
                f"at most {MAX_DEVICES} per request (send fewer days at once)"
            )
        now = datetime.now(UTC)
        tariffs: list[Tariff] = []
        invocations: list[Invocation] = []
        for d in sorted(days, key=lambda d: d.day):
            tariff = Tariff(
                uuid.uuid4().hex,
                tenant,
                kind,
                d.day,
                target,
                sites,
                currency,
                unit,
                tuple(d.periods),
                now,
                f"{who.role}:{who.token_id}",
            )
            day_end = datetime.combine(d.day + timedelta(days=1), time(), zone)
            # worth delivering until the day is over (a day-ahead tariff is useless after)
            ttl = ttl_s if ttl_s is not None else (day_end - now).total_seconds()
            if ttl <= 0:
                raise InvalidRequest(f"day {d.day} is over in the tenant's time zone")
            params: dict[str, object] = {
                "tariffId": tariff.id,
                "kind": kind.value,
                "day": d.day.isoformat(),
                # periods are local times: the zone lets a device place them on DST days
                "timezone": zone.key,
                "currency": currency,
                "unit": unit,
                "periods": [asdict(p) for p in d.periods],
            }
            ttl = min(ttl, self._commands.config.max_ttl_s)
            invocations += self._invocations(
                who, tenant, sites, "setTariff", params, tariff.id, ttl
            )
            tariffs.append(tariff)
        self._store.put_tariffs(tariffs, invocations)
        self._commands.enqueue(invocations)
        return [Delivered(t, _pending(invocations, t.id)) for t in tariffs]

    def tariffs(
        self,
        tenant: str,
        start: date,
        end: date,
        *,
        site: str | None = None,
        kind: TariffKind | None = None,
    ) -> list[Delivered[Tariff]]:
        self._registry.tenant(tenant)
        if site is not None:
            self._registry.site(tenant, site)
        if end < start or (end - start).days > MAX_QUERY_DAYS:
            raise InvalidRequest(f"to must be on or after from, at most {MAX_QUERY_DAYS} days")
        found = self._store.tariffs(tenant, start, end, site=site, kind=kind)
        counts = self._store.delivery(tenant, [t.id for t in found])
        return [Delivered(t, counts.get(t.id, {})) for t in found]

    # -- control signals ------------------------------------------------------------------------

    def send_signal(
        self,
        who: Principal,
        tenant: str,
        *,
        direction: Direction,
        limit_kw: float,
        target: Target,
        start: datetime | None = None,
        end: datetime | None = None,
        ttl_s: float | None = None,
    ) -> Delivered[ControlSignal]:
        """Store a consumption/production limit and send it to every device of the target."""
        authorise_outbound(who, tenant, f"send {direction.value} limits", target.describe())
        self._registry.tenant(tenant)
        if not 0 <= limit_kw <= MAX_LIMIT_KW:
            raise InvalidRequest(f"limit_kw must be in [0, {MAX_LIMIT_KW:g}]")
        now = datetime.now(UTC)
        begin = start or now
        for name, moment in (("start", start), ("end", end)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidRequest(f"{name} needs a UTC offset")
        if end is not None and end <= begin:
            raise InvalidRequest("end must be after start")
        sites = self._sites(tenant, target)
        signal = ControlSignal(
            uuid.uuid4().hex,
            tenant,
            direction,
            limit_kw,
            begin,
            end,
            target,
            sites,
            now,
            f"{who.role}:{who.token_id}",
        )
        # real time: worth delivering while in force; an open-ended one for the default TTL
        if ttl_s is None:
            ttl_s = (end - now).total_seconds() if end is not None else self._commands.config.ttl_s
        if ttl_s <= 0:
            raise InvalidRequest("the signal is over already")
        params: dict[str, object] = {
            "signalId": signal.id,
            "direction": direction.value,
            "limitKw": limit_kw,
            "validFrom": begin.isoformat(),
        }
        if end is not None:
            params["validUntil"] = end.isoformat()
        ttl = min(ttl_s, self._commands.config.max_ttl_s)
        invocations = self._invocations(who, tenant, sites, "setPowerLimit", params, signal.id, ttl)
        self._store.put_signal(signal, invocations)
        self._commands.enqueue(invocations)
        return Delivered(signal, _pending(invocations, signal.id))

    def signals(
        self, tenant: str, start: datetime, end: datetime, *, site: str | None = None
    ) -> list[Delivered[ControlSignal]]:
        self._registry.tenant(tenant)
        if site is not None:
            self._registry.site(tenant, site)
        if end <= start or end - start > timedelta(days=MAX_QUERY_DAYS):
            raise InvalidRequest(f"to must be after from, at most {MAX_QUERY_DAYS} days")
        found = self._store.signals(tenant, start, end, site=site)
        counts = self._store.delivery(tenant, [s.id for s in found])
        return [Delivered(s, counts.get(s.id, {})) for s in found]
