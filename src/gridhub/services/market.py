"""The market hub (O4, seed 003): requests between the DSO and retailer platforms.

Flows (each routed only to the rightful stakeholders: who supplies whom is asked of
:mod:`market_directory`, i.e. of the access layer's customer ↔ retailer contracts):

- **billing**, **consumption profile** — a retailer asks for the energy of its own clients
  over a period; answered at once from the stored register (REST).
- **network tariff broadcast** — the DSO publishes a network tariff (the O2 tariff service:
  stored, sent to the devices) and each retailer with clients in the area gets it by webhook.
- **load reduction** — the DSO asks which clients of an area are available; each retailer with
  clients there gets the question by webhook and answers (in the webhook's 2xx body, or later
  over REST) until ``answer_by``; the DSO then asks for disconnection of appliances of available
  clients (commands to their devices, O1) and the retailers are told.
- **emergency-mode notice** — the DSO tells the retailers of the clients of an area, ahead of
  time, that the network goes into emergency mode from ``starts_at``.

Every request carries the caller's idempotency key. The request, its deliveries and the answers
are rows (:mod:`storage.market_store`) written before anything is sent, so a restart loses no
state and a caller repeats a failed request safely: the same key and content return the stored
request, the same key with other content is a 409. ``MarketFlows`` (market_flows.py) holds the
request types; this module holds the machinery they share.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gridhub.access.audit import AuditLog
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import ADMIN, Principal, TokenService
from gridhub.domain.market import (
    MAX_KEY,
    Delivery,
    DeliveryStatus,
    MarketRequest,
    RequestKind,
    RequestStatus,
    Retailer,
    fingerprint,
)
from gridhub.domain.tariffs import Target
from gridhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gridhub.grid.topologies import TopologyService
from gridhub.services.market_directory import ContractsMarketDirectory, retailer_of
from gridhub.services.webhooks import Refusal, WebhookConfig, WebhookDispatcher
from gridhub.services.webhooks import Target as HookTarget
from gridhub.storage.market_store import MarketStore
from gridhub.storage.registry import Registry

__all__ = ["DSO_ROLES", "READ_KINDS", "Area", "MarketCore", "RequestView"]

log = logging.getLogger(__name__)

DSO_ROLES = ("dso", "admin")
# requests whose result is client data: only their retailer (and tenant admins) see the result
READ_KINDS = (RequestKind.BILLING, RequestKind.PROFILE)
MAX_SITES = 10_000
MAX_URL = 2048
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class Area:
    """Which clients a DSO request is about: a topology node (every site downstream), a site
    attribute group (e.g. ``location``), or a list of sites — exactly one."""

    node: str | None = None
    attribute: str | None = None
    value: str | None = None
    sites: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = sum((self.node is not None, self.attribute is not None, bool(self.sites)))
        if given != 1:
            raise InvalidRequest("area: give exactly one of node, attribute/value or sites")
        if self.node is not None and not 1 <= len(self.node) <= 128:
            raise InvalidRequest("area: node id must be 1..128 characters")
        if self.attribute is not None or self.sites:
            Target(self.sites, self.attribute, self.value)  # its checks

    def describe(self) -> dict[str, Any]:
        if self.node is not None:
            return {"node": self.node}
        if self.attribute is not None:
            return {"attribute": self.attribute, "value": self.value}
        return {"sites": list(self.sites)}


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as a caller may see it: a retailer sees only its own deliveries."""

    request: MarketRequest
    deliveries: list[Delivery]


def _now() -> datetime:
    return datetime.now(UTC)


def check_key(key: str | None) -> str:
    if key is None or not 1 <= len(key) <= MAX_KEY:
        raise InvalidRequest(
            f"every market request needs an idempotency key (Idempotency-Key header or "
            f"idempotency_key), 1..{MAX_KEY} characters"
        )
    return key


class MarketCore:
    """Retailer platforms, routing, the request lifecycle and webhook deliveries.

    Who supplies whom comes from the access layer's contracts (``ContractsMarketDirectory``
    over ``access.directory``), and reads of client data go through ``access`` — the one
    enforcement point — and are recorded in ``audit``.
    """

    def __init__(
        self,
        store: MarketStore,
        registry: Registry,
        topologies: TopologyService,
        tokens: TokenService,
        access: AccessControl,
        audit: AuditLog | None = None,
        webhook_config: WebhookConfig | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._topologies = topologies
        self._tokens = tokens
        self.access = access
        self._audit = audit
        self.directory = ContractsMarketDirectory(access.directory)
        self._lock = threading.RLock()
        self._retailers: dict[tuple[str, str], Retailer] = {
            (r.tenant, r.id): r for r in store.retailers()
        }
        self._deadlines: dict[str, tuple[str, datetime]] = {}  # open request → tenant, deadline
        self.webhooks = WebhookDispatcher(
            store, self._hook_target, self._on_final, webhook_config, self._delivery_deadline
        )
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Resume: open requests' deadlines, and every pending delivery's retries."""
        for req in self._store.open_requests():
            if req.deadline is not None:
                self._deadlines[req.id] = (req.tenant, req.deadline)
            self._check(req.tenant, req.id)  # answers stored just before a crash
        self.webhooks.start()
        self._sweeper = threading.Thread(target=self._sweep, name="market-deadlines", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(5)
        self.webhooks.stop()

    def _sweep(self) -> None:
        while not self._stop.wait(0.5):
            now = _now()
            with self._lock:
                due = [(t, rid) for rid, (t, dl) in self._deadlines.items() if dl <= now]
            for tenant, rid in due:
                try:
                    self._check(tenant, rid)
                except Exception:
                    log.exception("market request %s: deadline check failed", rid)

    # -- who is calling ----------------------------------------------------------------------------

    def require_dso(self, who: Principal, tenant: str, action: str) -> None:
        who.require_tenant(tenant)
        if who.role not in DSO_ROLES:
            raise Forbidden(f"a {who.role} token cannot {action}; use a dso or admin token")
        self._registry.tenant(tenant)

    def retailer(self, who: Principal, tenant: str) -> str:
        """The retailer a token acts for: its stakeholder, an enabled retailer (403 if not)."""
        who.require_tenant(tenant)
        rid = retailer_of(who)
        if self.directory.retailer(tenant, rid) is None:
            raise Forbidden(f"stakeholder {rid!r} is no enabled retailer of tenant {tenant!r}")
        return rid

    # -- retailers ---------------------------------------------------------------------------------

    def register_retailer(
        self,
        who: Principal,
        tenant: str,
        retailer_id: str,
        *,
        name: str,
        webhook_url: str,
        issue_token: bool = True,
        rotate_secret: bool = False,
    ) -> tuple[Retailer, str | None]:
        """Register or update the platform of a retailer stakeholder (where its webhooks go);
        return it and, when new, a token acting for that stakeholder.

        The retailer must exist as an access stakeholder of kind ``retailer``: the id is the
        stakeholder's, and its clients are those it has contracts with. The webhook secret is
        made here (shown in the record to admins), so a retailer never picks a weak one. With
        ``issue_token=False`` the retailer uses tokens made for its stakeholder elsewhere.
        """
        who.require_admin(tenant)
        self._registry.tenant(tenant)
        if not retailer_id or len(retailer_id) > 64 or not set(retailer_id) <= _ID_CHARS:
            raise InvalidRequest("retailer id: 1..64 lowercase letters, digits, '-' or '_'")
        if self.directory.retailer(tenant, retailer_id) is None:
            raise NotFound(
                f"no enabled stakeholder {retailer_id!r} of kind retailer in tenant {tenant!r}; "
                "create it first (POST /api/v1/tenants/{tenant}/stakeholders)"
            )
        if len(name) > 200:
            raise InvalidRequest("name: at most 200 characters")
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(webhook_url) > MAX_URL:
            raise InvalidRequest(f"webhook_url must be an http(s) URL of at most {MAX_URL} chars")
        self.webhooks.config.guard.check(webhook_url)  # 422 naming the address and why (SSRF)
        with self._lock:
            old = self._retailers.get((tenant, retailer_id))
            token_secret = None
            token_id = old.token_id if old is not None else None
            if token_id is None and issue_token:
                record, token_secret = self._tokens.create(
                    tenant, "retailer", f"market retailer {retailer_id}", stakeholder=retailer_id
                )
                token_id = record.id
            secret = old.secret if old is not None and not rotate_secret else secrets.token_hex(32)
            r = Retailer(
                tenant,
                retailer_id,
                name or retailer_id,
                webhook_url,
                secret,
                token_id,
                old.created if old is not None else _now(),
            )
            self._store.put_retailer(r)
            self._retailers[(tenant, retailer_id)] = r
        return r, token_secret

    def retailers(self, who: Principal, tenant: str) -> list[Retailer]:
        self.require_dso(who, tenant, "list retailers")
        return sorted(
            (r for (t, _), r in self._retailers.items() if t == tenant), key=lambda r: r.id
        )

    def retailer_record(self, tenant: str, retailer_id: str) -> Retailer:
        found = self._retailers.get((tenant, retailer_id))
        if found is None:
            raise NotFound(f"retailer {retailer_id!r} not registered in tenant {tenant!r}")
        return found

    # -- areas and routing -------------------------------------------------------------------------

    def resolve(self, tenant: str, area: Area) -> list[str]:
        """The registered sites of an area."""
        if area.node is not None:
            topology = self._topologies.get(tenant)
            topology.node(area.node)  # NotFound for an unknown node
            sites = list(topology.sites_downstream(area.node))
            known = {s.id for s in self._registry.sites(tenant)}
            found = [s for s in sites if s in known]
        else:
            target = Target(area.sites, area.attribute, area.value)
            found = [s.id for s in target.select(self._registry.sites(tenant))]
        if len(found) > MAX_SITES:
            raise InvalidRequest(f"the area has {len(found)} sites; at most {MAX_SITES}")
        return found

    def by_retailer(self, tenant: str, sites: Iterable[str], at: datetime) -> dict[str, list[str]]:
        """Sites grouped by the retailer whose contract runs at ``at`` — only retailers with a
        registered platform (a webhook URL); a site without one is reached by nobody."""
        return {
            r: clients
            for r, clients in self.directory.by_retailer(tenant, sites, at).items()
            if (found := self._retailers.get((tenant, r))) is not None and not found.disabled
        }

    def devices_by_site(self, tenant: str, sites: Sequence[str]) -> dict[str, list[str]]:
        wanted = set(sites)
        out: dict[str, list[str]] = {}
        for d in self._registry.devices(tenant):
            if d.site in wanted:
                out.setdefault(d.site, []).append(d.hardware_id)
        return out

    # -- requests ----------------------------------------------------------------------------------

    def existing(
        self, tenant: str, issuer: str, key: str, kind: RequestKind, params: dict[str, Any]
    ) -> MarketRequest | None:
        """The request already made under this key (same content), or None; 409 if different."""
        found = self._store.find_request(tenant, issuer, key)
        if found is None:
            return None
        if found.kind is not kind or found.fingerprint != fingerprint(kind, params):
            raise Conflict(
                f"idempotency key {key!r} was used for another {found.kind.value} request "
                f"({found.id}) with different content"
            )
        return replace(found, repeated=True)

    def create(
        self,
        tenant: str,
        kind: RequestKind,
        issuer: str,
        key: str,
        params: dict[str, Any],
        *,
        result: dict[str, Any] | None = None,
        deadline: datetime | None = None,
        parent: str | None = None,
        hooks: Sequence[tuple[str, str, list[str], dict[str, Any]]] = (),
    ) -> MarketRequest:
        """Store a request and its webhooks (retailer, event, clients, payload); send them."""
        now = _now()
        rid = uuid.uuid4().hex
        deliveries = [
            Delivery(
                uuid.uuid4().hex,
                tenant,
                rid,
                retailer,
                event,
                _body(rid, tenant, retailer, event, clients, payload, now),
                DeliveryStatus.PENDING,
                now,
                now,
                clients=tuple(clients),
            )
            for retailer, event, clients, payload in hooks
        ]
        final = not deliveries
        req = MarketRequest(
            rid,
            tenant,
            kind,
            issuer,
            key,
            fingerprint(kind, params),
            now,
            RequestStatus.COMPLETED if final else RequestStatus.OPEN,
            params,
            result,
            deadline,
            now if final else None,
            parent,
        )
        with self._lock:
            try:
                self._store.create_request(req, deliveries)
            except Exception:
                # two callers raced on one key: the other one's request is the answer
                again = self._store.find_request(tenant, issuer, key)
                if again is None:
                    raise
                return self.existing(tenant, issuer, key, kind, params) or again
            if not final and deadline is not None:
                self._deadlines[rid] = (tenant, deadline)
        self.webhooks.submit(deliveries)
        return req

    def view(self, who: Principal, tenant: str, request_id: str) -> RequestView:
        who.require_tenant(tenant)
        req = self._store.request(tenant, request_id)
        if req is None:
            raise NotFound(f"market request {request_id!r} not found")
        deliveries = self._store.deliveries(tenant, request_id)
        if who.role in DSO_ROLES:
            if who.role != ADMIN and req.kind in READ_KINDS:
                # a billing or profile result is the clients' consumption: the DSO reads the
                # request's course, not the data (only its retailer and tenant admins do)
                req = replace(req, result=None)
            return RequestView(req, deliveries)
        rid = self.retailer(who, tenant)
        mine = [d for d in deliveries if d.retailer == rid]
        if req.issuer != rid and not mine:
            raise NotFound(f"market request {request_id!r} not found")
        return RequestView(req, mine)

    def list(
        self,
        who: Principal,
        tenant: str,
        *,
        kind: RequestKind | None = None,
        status: RequestStatus | None = None,
        limit: int = 100,
    ) -> list[MarketRequest]:
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be 1..1000")
        issuer = None if who.role in DSO_ROLES else self.retailer(who, tenant)
        who.require_tenant(tenant)
        return self._store.requests(tenant, kind=kind, issuer=issuer, status=status, limit=limit)

    # -- deliveries, answers, completion -----------------------------------------------------------

    def _hook_target(self, d: Delivery) -> HookTarget | Refusal | None:
        """Where an attempt goes — checked again at every attempt: a delivery naming a client
        the retailer no longer supplies (a switch since the request) is not sent at all."""
        r = self._retailers.get((d.tenant, d.retailer))
        if r is None or r.disabled:
            return None
        now = _now()
        for site in d.clients:
            if not self.directory.supplies(d.tenant, d.retailer, site, now):
                return Refusal(f"retailer no longer supplies client {site[:128]!r}")
        return HookTarget(r.webhook_url, r.secret)

    def _delivery_deadline(self, d: Delivery) -> datetime | None:
        found = self._deadlines.get(d.request)
        return found[1] if found is not None else None

    def _on_final(self, d: Delivery) -> None:
        self._check(d.tenant, d.request)

    def record_answer(
        self, tenant: str, request_id: str, retailer: str, answer: dict[str, Any]
    ) -> Delivery:
        """Store a retailer's answer on its delivery of the request (REST path)."""
        with self._lock:
            found = [
                d for d in self._store.deliveries(tenant, request_id) if d.retailer == retailer
            ]
            if not found:
                raise NotFound(f"request {request_id!r} asked nothing of retailer {retailer!r}")
            d = found[0]
            if d.answer is not None:
                if d.answer != answer:
                    raise Conflict(f"retailer {retailer!r} already answered request {request_id!r}")
                return d
            updated = replace(d, answer=answer, answered=_now())
            self._store.set_answer(d.id, answer, updated.answered or _now())
        self._check(tenant, request_id)
        return updated

    def _check(self, tenant: str, request_id: str) -> None:
        """Finish an open request when every retailer is done, or its deadline has passed."""
        with self._lock:
            req = self._store.request(tenant, request_id)
            if req is None or req.status is not RequestStatus.OPEN:
                self._deadlines.pop(request_id, None)
                return
            deliveries = self._store.deliveries(tenant, request_id)
            wants_answer = req.kind is RequestKind.LOAD_REDUCTION
            done = [
                d.status is DeliveryStatus.FAILED
                or (d.status is DeliveryStatus.DELIVERED and (not wants_answer or d.answer))
                or (wants_answer and d.answer is not None)
                for d in deliveries
            ]
            now = _now()
            late = req.deadline is not None and now >= req.deadline
            if not all(done) and not late:
                return
            ok = all(
                (d.answer is not None) if wants_answer else d.status is DeliveryStatus.DELIVERED
                for d in deliveries
            )
            status = RequestStatus.COMPLETED if ok else RequestStatus.PARTIAL
            self._store.finish_request(tenant, request_id, status, now)
            self._deadlines.pop(request_id, None)


def _body(
    request_id: str,
    tenant: str,
    retailer: str,
    event: str,
    clients: list[str],
    payload: dict[str, Any],
    now: datetime,
) -> bytes:
    filled = {
        k: v.replace("{request}", request_id) if isinstance(v, str) else v
        for k, v in payload.items()
    }
    return json.dumps(
        {
            "event": event,
            "request": request_id,
            "tenant": tenant,
            "retailer": retailer,
            "created": now.isoformat(),
            "clients": clients,
            **filled,
        },
        default=str,
        separators=(",", ":"),
    ).encode()
