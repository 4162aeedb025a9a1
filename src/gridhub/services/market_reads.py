"""A retailer's reads of its clients' data (seed 003 use cases a, b): billing and consumption
profiles, through the one enforcement point.

What a retailer gets of a client's energy register over ``[from, to)`` is, per device, the
intersection of

1. its *supply windows* for the client's site — the parts of the period its customer ↔ retailer
   contract ran (``ContractsMarketDirectory``; after a supplier switch the old retailer keeps
   its own period only, the new one gets only its own), and
2. what the enforcement point (``access/enforce.py``, the one the series API uses) lets it read
   of that device's series: the owner's policies, versioned by value time, narrow or widen the
   contract defaults; the owner's minimum delay between reads applies (all the request's series
   or none are counted; a series read too recently makes the request a 429).

A site asked for by name that the retailer did not supply, or may read nothing of, in the period
is a 403 and nothing is stored; without a list, only the sites it may read are answered. Every
answered request is one audit entry (action ``read``) naming the sites read; the HTTP request is
audited as well, like every API call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gridhub.access.audit import AuditLog
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal, TokenService
from gridhub.domain.market import MarketRequest, RequestKind, period
from gridhub.errors import Forbidden, InvalidRequest, NotFound
from gridhub.grid.topologies import TopologyService
from gridhub.services.market import MAX_SITES, MarketCore, check_key
from gridhub.services.market_billing import billing_lines, profile_lines
from gridhub.services.webhooks import WebhookConfig
from gridhub.storage.market_readings import MarketReadings
from gridhub.storage.market_store import MarketStore
from gridhub.storage.registry import Registry

__all__ = ["ENERGY_IDENTIFIER", "MarketReads", "Readable", "clip"]

ENERGY_IDENTIFIER = "electricity.energy.active.consumed.total"
MAX_BILLING_DAYS = 400
MAX_PROFILE_DAYS = 31
MAX_AUDITED_SITES = 60  # sites named in the audit entry's detail (the count is always there)

Window = tuple[datetime, datetime]


def clip(windows: list[Window], others: list[Window]) -> list[Window]:
    """The parts of ``windows`` inside ``others`` (both sorted and disjoint), in UTC."""
    out = []
    for lo, hi in windows:
        for o_lo, o_hi in others:
            a, b = max(lo, o_lo), min(hi, o_hi)
            if a < b:
                out.append((a.astimezone(UTC), b.astimezone(UTC)))
    return sorted(out)


@dataclass
class Readable:
    """What a reading request may read: per site, per device, the windows of the period; and
    the series under an owner's minimum delay, ``(device, identifier, delay)``, to count."""

    allowed: dict[str, dict[str, list[Window]]] = field(default_factory=dict)
    delayed: list[tuple[str, str, float]] = field(default_factory=list)


class MarketReads(MarketCore):
    """The retailer requests; :class:`~gridhub.services.market_flows.MarketService` adds the
    DSO's."""

    def __init__(
        self,
        store: MarketStore,
        readings: MarketReadings,
        registry: Registry,
        topologies: TopologyService,
        tokens: TokenService,
        access: AccessControl,
        audit: AuditLog | None = None,
        webhook_config: WebhookConfig | None = None,
    ) -> None:
        super().__init__(store, registry, topologies, tokens, access, audit, webhook_config)
        self._readings = readings

    def readable(
        self,
        who: Principal,
        tenant: str,
        retailer: str,
        sites: list[str] | None,
        identifier: str,
        lo: datetime,
        hi: datetime,
    ) -> Readable:
        """Per site, per device: the windows of ``[lo, hi)`` the retailer may read (see the
        module docstring); 403 for a site asked by name that it may read nothing of. Decides
        only: the caller counts ``delayed`` (``AccessControl.count_reads``) before reading."""
        if sites is None:
            candidates = [s.id for s in self._registry.sites(tenant)]
        else:
            if not 1 <= len(sites) <= MAX_SITES:
                raise InvalidRequest(f"sites: 1..{MAX_SITES} site ids")
            candidates = list(dict.fromkeys(sites))
        supply: dict[str, list[Window]] = {}
        for site in candidates:
            ws = self.directory.supply_windows(tenant, retailer, site, lo, hi)
            if ws:
                supply[site] = ws
            elif sites is not None:
                raise Forbidden(
                    f"site {site[:128]!r} is not a client of {retailer!r} in that period"
                )
        devices = self.devices_by_site(tenant, list(supply))
        out = Readable()
        for site, windows in supply.items():
            mine: dict[str, list[Window]] = {}
            for device in devices.get(site, []):
                decision = self.access.decide_read(who, tenant, device, identifier, lo, hi)
                ws = clip(windows, decision.spans()) if decision.allowed else []
                if ws:
                    mine[device] = ws
                    if decision.min_delay_s > 0:
                        out.delayed.append((device, identifier, decision.min_delay_s))
            if mine:
                out.allowed[site] = mine
            elif sites is not None and devices.get(site):
                raise Forbidden(
                    f"no read access to {identifier[:128]} of site {site[:128]!r} in that "
                    "period (the owner's policy does not grant it)"
                )
        return out

    def _reading_request(
        self,
        kind: RequestKind,
        who: Principal,
        tenant: str,
        key: str | None,
        start: datetime,
        end: datetime,
        sites: list[str] | None,
        identifier: str | None,
    ) -> MarketRequest:
        retailer = self.retailer(who, tenant)
        key = check_key(key)
        max_days = MAX_BILLING_DAYS if kind is RequestKind.BILLING else MAX_PROFILE_DAYS
        lo, hi = period(start, end, max_days)
        ident = identifier or ENERGY_IDENTIFIER
        if ident not in self._registry.identifiers(tenant):
            raise NotFound(f"identifier {ident[:128]!r} unknown in tenant {tenant!r}")
        params: dict[str, Any] = {
            "from": lo.isoformat(),
            "to": hi.isoformat(),
            "sites": sites,
            "identifier": ident,
        }
        found = self.existing(tenant, retailer, key, kind, params)
        if found is not None:
            return found
        readable = self.readable(who, tenant, retailer, sites, ident, lo, hi)
        if readable.delayed:  # all or none: 429 and nothing counted if one is too soon
            self.access.count_reads(who, tenant, readable.delayed)
        compute = billing_lines if kind is RequestKind.BILLING else profile_lines
        lines = compute(self._readings, tenant, ident, readable.allowed)
        unit = self._registry.identifiers(tenant).get(ident)
        result = {"unit": unit.unit if unit is not None else "", "clients": lines}
        req = self.create(tenant, kind, retailer, key, params, result=result)
        self._audit_read(who, tenant, req, ident, sorted(readable.allowed))
        return req

    def _audit_read(
        self, who: Principal, tenant: str, req: MarketRequest, identifier: str, sites: list[str]
    ) -> None:
        """One audit entry per answered request: what was read, of which clients."""
        if self._audit is None or req.repeated:
            return
        named = ",".join(sites[:MAX_AUDITED_SITES])
        extra = len(sites) - MAX_AUDITED_SITES
        more = f" (+{extra} more)" if extra > 0 else ""
        self._audit.record(
            tenant,
            who.token_id,
            who.stakeholder,
            "read",
            f"market {req.kind.value} {req.id} {identifier} "
            f"{req.params['from']}..{req.params['to']}",
            "ok",
            f"{len(sites)} sites: {named}{more}",
        )

    def billing(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        start: datetime,
        end: datetime,
        sites: list[str] | None = None,
        identifier: str | None = None,
    ) -> MarketRequest:
        """Energy per client over [start, end) for the retailer's own clients (use case a)."""
        return self._reading_request(
            RequestKind.BILLING, who, tenant, key, start, end, sites, identifier
        )

    def profile(
        self,
        who: Principal,
        tenant: str,
        key: str | None,
        start: datetime,
        end: datetime,
        sites: list[str] | None = None,
        identifier: str | None = None,
    ) -> MarketRequest:
        """Quarter-hour consumption per client over [start, end) (use case b), ≤ 31 days."""
        return self._reading_request(
            RequestKind.PROFILE, who, tenant, key, start, end, sites, identifier
        )
