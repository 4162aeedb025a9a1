"""The market hub's DSO request types (seed 003), over the machinery of :mod:`services.market`;
the retailers' reads are in :mod:`services.market_reads`.

Each method takes the caller, the tenant and the caller's idempotency key, checks the caller may
make the request, and either returns the request already made under that key or makes it. The
checks come first, so a refused request stores nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from gridhub.access.audit import AuditLog
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal, TokenService
from gridhub.domain.market import MarketRequest, RequestKind, RequestStatus, aware, period
from gridhub.domain.tariffs import Target, TariffKind
from gridhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gridhub.grid.topologies import TopologyService
from gridhub.services.commands import CommandService
from gridhub.services.market import Area, RequestView, check_key
from gridhub.services.market_reads import ENERGY_IDENTIFIER, MarketReads
from gridhub.services.tariffs import TariffDay, TariffService
from gridhub.services.webhooks import WebhookConfig
from gridhub.storage.market_readings import MarketReadings
from gridhub.storage.market_store import MarketStore
from gridhub.storage.outbound_store import OutboundStore
from gridhub.storage.registry import Registry

__all__ = ["APPLIANCE_OFF", "ENERGY_IDENTIFIER", "MarketService"]

MAX_ANSWER_S = 3600
MAX_NOTICE = timedelta(days=7)
MAX_DISCONNECT_S = 24 * 3600
MAX_REASON = 500


def _until(duration_s: int, now: datetime) -> str:
    return (now + timedelta(seconds=duration_s)).isoformat()


# device type → (command, parameters for a disconnection of ``duration_s`` from ``now``): which
# appliances a load reduction switches off, and how. Meters are not appliances: cutting a meter's
# relay would disconnect the whole household, which is not what a client offered.
APPLIANCE_OFF = {
    "smart-plug": ("off", lambda s, now: {"duration": s}),
    "boiler": ("boilerOff", lambda s, now: {"until": _until(s, now)}),
    "whitegood": ("postpone", lambda s, now: {"until": _until(s, now)}),
}


class MarketService(MarketReads):
    """The market hub: the retailer requests of :class:`MarketReads` and the DSO's here."""

    def __init__(
        self,
        store: MarketStore,
        readings: MarketReadings,
        registry: Registry,
        topologies: TopologyService,
        tokens: TokenService,
        tariffs: TariffService,
        commands: CommandService,
        outbound: OutboundStore,
        access: AccessControl,
        audit: AuditLog | None = None,
        webhook_config: WebhookConfig | None = None,
    ) -> None:
        super().__init__(
            store, readings, registry, topologies, tokens, access, audit, webhook_config
        )
        self._tariffs = tariffs
        self._commands = commands
        self._outbound = outbound

    # -- DSO requests ------------------------------------------------------------------------------

    def broadcast_tariff(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        area: Area,
        *,
        currency: str,
        unit: str,
        days: list[TariffDay],
    ) -> MarketRequest:
        """Publish a network tariff for an area (O2: stored, sent to the devices) and send it to
        each retailer with clients there, with the list of its clients concerned."""
        self.require_dso(who, tenant, "broadcast network tariffs")
        key = check_key(key)
        params: dict[str, Any] = {
            "area": area.describe(),
            "currency": currency,
            "unit": unit,
            "days": [
                {"day": d.day.isoformat(), "periods": [asdict(p) for p in d.periods]} for d in days
            ],
        }
        found = self.existing(tenant, "dso", key, RequestKind.TARIFF, params)
        if found is not None:
            return found
        sites = self.resolve(tenant, area)
        if not sites:
            raise InvalidRequest("the area holds no registered site")
        published = self._tariffs.publish_tariff(
            who,
            tenant,
            kind=TariffKind.NETWORK,
            target=Target(tuple(sites)),
            currency=currency,
            unit=unit,
            days=days,
        )
        tariffs = [
            {
                "id": t.item.id,
                "day": t.item.day.isoformat(),
                "periods": [asdict(p) for p in t.item.periods],
            }
            for t in published
        ]
        payload = {"kind": "network", "currency": currency, "unit": unit, "tariffs": tariffs}
        hooks = [
            (r, "tariff.network_published", clients, payload)
            for r, clients in self.by_retailer(tenant, sites, datetime.now(UTC)).items()
        ]
        result = {"tariffs": [t["id"] for t in tariffs], "sites": len(sites)}
        return self.create(
            tenant, RequestKind.TARIFF, "dso", key, params, result=result, hooks=hooks
        )

    def load_reduction(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        area: Area,
        *,
        start: datetime,
        end: datetime,
        reduction_kw: float | None = None,
        answer_within_s: float = 60,
    ) -> MarketRequest:
        """Ask each retailer with clients in the area which of them are available for a load
        reduction over [start, end); answers are due within ``answer_within_s``."""
        self.require_dso(who, tenant, "request load reductions")
        key = check_key(key)
        lo, hi = period(start, end, 1)
        if reduction_kw is not None and not (
            math.isfinite(reduction_kw) and 0 < reduction_kw <= 1e6
        ):
            raise InvalidRequest("reduction_kw must be in (0, 1e6]")
        if not 1 <= answer_within_s <= MAX_ANSWER_S:
            raise InvalidRequest(f"answer_within_s must be 1..{MAX_ANSWER_S}")
        params: dict[str, Any] = {
            "area": area.describe(),
            "from": lo.isoformat(),
            "to": hi.isoformat(),
            "reduction_kw": reduction_kw,
            "answer_within_s": answer_within_s,
        }
        found = self.existing(tenant, "dso", key, RequestKind.LOAD_REDUCTION, params)
        if found is not None:
            return found
        sites = self.resolve(tenant, area)
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=answer_within_s)
        payload = {
            "from": lo.isoformat(),
            "to": hi.isoformat(),
            "reduction_kw": reduction_kw,
            "answer_by": deadline.isoformat(),
            "answer_path": (
                f"/api/v1/tenants/{tenant}/market/load-reductions/{{request}}/availability"
            ),
        }
        hooks = [
            (r, "load_reduction.availability_requested", clients, payload)
            for r, clients in self.by_retailer(tenant, sites, now).items()
        ]
        return self.create(
            tenant, RequestKind.LOAD_REDUCTION, "dso", key, params, deadline=deadline, hooks=hooks
        )

    def answer_availability(
        self,
        who: Principal,
        tenant: str,
        request_id: str,
        available: list[str],
        available_kw: float | None = None,
    ) -> RequestView:
        """A retailer's answer: which of the clients it was asked about are available."""
        retailer = self.retailer(who, tenant)
        view = self.view(who, tenant, request_id)
        if view.request.kind is not RequestKind.LOAD_REDUCTION:
            raise InvalidRequest(f"request {request_id!r} is a {view.request.kind.value} request")
        mine = view.deliveries[0] if view.deliveries else None
        if mine is None:
            raise NotFound(f"request {request_id!r} asked nothing of retailer {retailer!r}")
        answer = self._check_answer(
            mine.clients, {"available": available, "available_kw": available_kw}
        )
        if view.request.status is not RequestStatus.OPEN and mine.answer is None:
            raise Conflict(f"request {request_id!r} is {view.request.status.value}: too late")
        self.record_answer(tenant, request_id, retailer, answer)
        return self.view(who, tenant, request_id)

    @staticmethod
    def _check_answer(asked: tuple[str, ...], raw: dict[str, Any]) -> dict[str, Any]:
        available = raw.get("available")
        if not isinstance(available, list) or not all(isinstance(s, str) for s in available):
            raise InvalidRequest("available must be a list of site ids")
        unknown = sorted(set(available) - set(asked))
        if unknown:
            raise Forbidden(f"site {unknown[0][:128]!r} was not asked of this retailer")
        kw = raw.get("available_kw")
        if kw is not None and not (isinstance(kw, int | float) and math.isfinite(kw) and kw >= 0):
            raise InvalidRequest("available_kw must be a number ≥ 0")
        return {"available": sorted(set(available)), "available_kw": kw}

    def availability(self, view: RequestView) -> dict[str, Any]:
        """The load reduction's answers so far: available clients per retailer."""
        per: dict[str, Any] = {}
        for d in view.deliveries:
            if d.answer is None:
                per[d.retailer] = None
                continue
            try:
                per[d.retailer] = self._check_answer(d.clients, d.answer)
            except (InvalidRequest, Forbidden) as exc:  # an inline answer that was not valid
                per[d.retailer] = {"available": [], "available_kw": None, "refused": str(exc)}
        return per

    def disconnect(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        request_id: str,
        sites: list[str],
        duration_s: int,
    ) -> MarketRequest:
        """Switch off the appliances of available clients of a load reduction for a while
        (commands to their devices, O1), and tell their retailers."""
        self.require_dso(who, tenant, "disconnect appliances")
        key = check_key(key)
        if not 1 <= duration_s <= MAX_DISCONNECT_S:
            raise InvalidRequest(f"duration_s must be 1..{MAX_DISCONNECT_S}")
        if not 1 <= len(sites) <= 10_000:
            raise InvalidRequest("sites: 1..10000 site ids")
        params: dict[str, Any] = {
            "request": request_id,
            "sites": sorted(set(sites)),
            "duration_s": duration_s,
        }
        found = self.existing(tenant, "dso", key, RequestKind.DISCONNECTION, params)
        if found is not None:
            return found
        view = self.view(who, tenant, request_id)
        if view.request.kind is not RequestKind.LOAD_REDUCTION:
            raise InvalidRequest(f"request {request_id!r} is not a load reduction")
        offered = {
            s: r
            for r, a in self.availability(view).items()
            if a is not None
            for s in a["available"]
        }
        missing = sorted(set(sites) - set(offered))
        if missing:
            raise Forbidden(f"site {missing[0][:128]!r} was not offered as available")
        now = datetime.now(UTC)
        # an offer stands only while the retailer that made it still supplies the client: after
        # a switch its old retailer must not be told about the client (nor act for it)
        for site in params["sites"]:
            if not self.directory.supplies(tenant, offered[site], site, now):
                raise Conflict(
                    f"site {site[:128]!r} changed supplier since {offered[site]!r} offered it; "
                    "ask for availability again"
                )
        by_site = self.devices_by_site(tenant, params["sites"])
        invocations = []
        for site in params["sites"]:
            for hw in by_site.get(site, []):
                device = self._registry.device(tenant, hw)
                rule = APPLIANCE_OFF.get(device.device_type) if device is not None else None
                if rule is None:
                    continue
                command, make = rule
                invocations.append(
                    self._commands.new_invocation(
                        who,
                        tenant,
                        hw,
                        command,
                        make(duration_s, now),
                        ttl_s=min(duration_s, self._commands.config.max_ttl_s),
                        idempotency_key=f"market:{key[:80]}:{hw}"[:128],
                        origin=request_id,
                    )
                )
        new, _repeated = self._outbound.create_many(invocations)
        self._commands.enqueue(new)
        grouped: dict[str, list[str]] = {}
        for site in params["sites"]:
            grouped.setdefault(offered[site], []).append(site)
        payload = {
            "load_reduction": request_id,
            "duration_s": duration_s,
            "until": _until(duration_s, now),
        }
        hooks = [
            (r, "load_reduction.disconnection", c, payload) for r, c in sorted(grouped.items())
        ]
        result = {"commands": [i.id for i in invocations], "devices": len(invocations)}
        return self.create(
            tenant,
            RequestKind.DISCONNECTION,
            "dso",
            key,
            params,
            result=result,
            parent=request_id,
            hooks=hooks,
        )

    def emergency(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        area: Area,
        *,
        starts_at: datetime,
        ends_at: datetime | None = None,
        limit_kw: float | None = None,
        reason: str = "",
    ) -> MarketRequest:
        """Tell the clients of an area, through their retailers and ahead of time, that the
        network goes into emergency mode at ``starts_at`` (optionally with a power limit)."""
        self.require_dso(who, tenant, "announce emergency mode")
        key = check_key(key)
        begin = aware("starts_at", starts_at)
        now = datetime.now(UTC)
        if not now < begin <= now + MAX_NOTICE:
            raise InvalidRequest("starts_at must lie in the future, at most 7 days ahead")
        finish = aware("ends_at", ends_at) if ends_at is not None else None
        if finish is not None and finish <= begin:
            raise InvalidRequest("ends_at must be after starts_at")
        if limit_kw is not None and not (math.isfinite(limit_kw) and 0 <= limit_kw <= 1e6):
            raise InvalidRequest("limit_kw must be in [0, 1e6]")
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"reason: at most {MAX_REASON} characters")
        params: dict[str, Any] = {
            "area": area.describe(),
            "starts_at": begin.isoformat(),
            "ends_at": finish.isoformat() if finish is not None else None,
            "limit_kw": limit_kw,
            "reason": reason,
        }
        found = self.existing(tenant, "dso", key, RequestKind.EMERGENCY, params)
        if found is not None:
            return found
        sites = self.resolve(tenant, area)
        payload = {k: v for k, v in params.items() if k != "area"}
        hooks = [
            (r, "emergency.announced", clients, payload)
            for r, clients in self.by_retailer(tenant, sites, now).items()
        ]
        # delivering after the emergency began is pointless: that is the deadline
        return self.create(
            tenant,
            RequestKind.EMERGENCY,
            "dso",
            key,
            params,
            result={"sites": len(sites)},
            deadline=begin,
            hooks=hooks,
        )
