"""Market hub routes (O4): retailer and DSO endpoints; thin over ``services/market_flows.py``.

Every request-making POST needs an idempotency key (``Idempotency-Key`` header or
``idempotency_key`` in the body): the first call answers 201, a repeat with the same content 200
with the same request, the same key with other content 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, Field

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.routes.tariffs import DayBody
from gridhub.domain.market import (
    MAX_KEY,
    Delivery,
    MarketRequest,
    RequestKind,
    RequestStatus,
    Retailer,
)
from gridhub.domain.tariffs import Period
from gridhub.services.market import Area, RequestView
from gridhub.services.tariffs import MAX_DAYS, TariffDay

router = APIRouter(prefix="/api/v1/tenants/{tenant}/market", tags=["market hub"])

KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY)]


class AreaBody(BaseModel):
    """A topology ``node`` (every site downstream), a site group (``attribute`` = ``value``),
    or a list of ``sites`` — exactly one."""

    node: str | None = Field(None, max_length=128)
    attribute: str | None = Field(None, max_length=64)
    value: str | None = Field(None, max_length=200)
    sites: list[str] | None = Field(None, max_length=10_000)

    def area(self) -> Area:
        return Area(self.node, self.attribute, self.value, tuple(self.sites or ()))


class Keyed(BaseModel):
    idempotency_key: str | None = Field(None, max_length=MAX_KEY)


class RetailerBody(BaseModel):
    name: str = Field("", max_length=200)
    webhook_url: str = Field(max_length=2048)
    issue_token: bool = Field(
        True, description="the first time: a token acting for the retailer stakeholder"
    )
    rotate_secret: bool = False


class ReadingRequest(Keyed):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    sites: list[str] | None = Field(None, max_length=10_000, description="default: all clients")
    identifier: str | None = Field(None, max_length=128)


class TariffBroadcast(Keyed):
    area: AreaBody
    currency: str = Field("EUR", max_length=16)
    unit: str = Field("EUR/kWh", max_length=16)
    days: list[DayBody] = Field(min_length=1, max_length=MAX_DAYS)


class LoadReductionBody(Keyed):
    area: AreaBody
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    reduction_kw: float | None = None
    answer_within_s: float = Field(60, description="retailers answer within this (1..3600 s)")


class AvailabilityBody(BaseModel):
    available: list[str] = Field(max_length=10_000)
    available_kw: float | None = None


class DisconnectionBody(Keyed):
    sites: list[str] = Field(min_length=1, max_length=10_000)
    duration_s: int = Field(gt=0, le=86_400)


class EmergencyBody(Keyed):
    area: AreaBody
    starts_at: datetime
    ends_at: datetime | None = None
    limit_kw: float | None = None
    reason: str = Field("", max_length=500)


def _retailer(r: Retailer, *, secret: bool = False, token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "webhook_url": r.webhook_url,
        "token_id": r.token_id,
        "created": r.created.isoformat(),
        "disabled": r.disabled,
    }
    if secret:
        out["webhook_secret"] = r.secret
    if token is not None:
        out["token"] = token
    return out


def _delivery(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "retailer": d.retailer,
        "event": d.event,
        "status": d.status.value,
        "attempts": d.attempts,
        "last_code": d.last_code,
        "last_error": d.last_error,
        "created": d.created.isoformat(),
        "delivered": d.delivered.isoformat() if d.delivered else None,
        "answered": d.answered.isoformat() if d.answered else None,
        "clients": len(d.clients),
    }


def _request(req: MarketRequest) -> dict[str, Any]:
    latency = (req.finished - req.created).total_seconds() if req.finished else None
    return {
        "id": req.id,
        "kind": req.kind.value,
        "issuer": req.issuer,
        "idempotency_key": req.key,
        "status": req.status.value,
        "created": req.created.isoformat(),
        "finished": req.finished.isoformat() if req.finished else None,
        "latency_s": latency,
        "deadline": req.deadline.isoformat() if req.deadline else None,
        "parent": req.parent,
        "params": req.params,
        "result": req.result,
        "repeated": req.repeated,
    }


def _answer(response: Response, req: MarketRequest) -> dict[str, Any]:
    if req.repeated:
        response.status_code = status.HTTP_200_OK
    return _request(req)


# -- retailer platforms ----------------------------------------------------------------------------


@router.put("/retailers/{retailer}")
def put_retailer(
    tenant: str, retailer: str, body: RetailerBody, who: PrincipalDep, hub: HubDep
) -> dict[str, Any]:
    """Register or update the platform of a retailer stakeholder (tenant admin): where its
    webhooks go. The webhook secret and, the first time, a token acting for the stakeholder are
    in the answer; store them. Its clients are those of its contracts (``…/contracts``)."""
    r, token = hub.market.register_retailer(
        who,
        tenant,
        retailer,
        name=body.name,
        webhook_url=body.webhook_url,
        issue_token=body.issue_token,
        rotate_secret=body.rotate_secret,
    )
    return _retailer(r, secret=True, token=token)


@router.get("/retailers")
def list_retailers(tenant: str, who: PrincipalDep, hub: HubDep) -> list[dict[str, Any]]:
    return [_retailer(r) for r in hub.market.retailers(who, tenant)]


# -- retailer requests -----------------------------------------------------------------------------


@router.post("/billing", status_code=status.HTTP_201_CREATED)
def billing(
    tenant: str,
    body: ReadingRequest,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    """Energy per own client over [from, to) (retailer token)."""
    req = hub.market.billing(
        who, tenant, body.idempotency_key or key, body.start, body.end, body.sites, body.identifier
    )
    return _answer(response, req)


@router.post("/profiles", status_code=status.HTTP_201_CREATED)
def profiles(
    tenant: str,
    body: ReadingRequest,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    """Quarter-hour consumption per own client over [from, to), ≤ 31 days (retailer token)."""
    req = hub.market.profile(
        who, tenant, body.idempotency_key or key, body.start, body.end, body.sites, body.identifier
    )
    return _answer(response, req)


@router.post("/load-reductions/{request_id}/availability")
def availability(
    tenant: str, request_id: str, body: AvailabilityBody, who: PrincipalDep, hub: HubDep
) -> dict[str, Any]:
    """A retailer's answer to a load reduction (repeating the same answer is safe)."""
    view = hub.market.answer_availability(
        who, tenant, request_id, body.available, body.available_kw
    )
    return _view(hub, view)


# -- DSO requests ----------------------------------------------------------------------------------


@router.post("/tariffs", status_code=status.HTTP_201_CREATED)
def broadcast_tariff(
    tenant: str,
    body: TariffBroadcast,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    days = [
        TariffDay(d.day, [Period(p.start, p.end, p.price, p.label) for p in d.periods])
        for d in body.days
    ]
    req = hub.market.broadcast_tariff(
        who,
        tenant,
        body.idempotency_key or key,
        body.area.area(),
        currency=body.currency,
        unit=body.unit,
        days=days,
    )
    return _answer(response, req)


@router.post("/load-reductions", status_code=status.HTTP_201_CREATED)
def load_reduction(
    tenant: str,
    body: LoadReductionBody,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    req = hub.market.load_reduction(
        who,
        tenant,
        body.idempotency_key or key,
        body.area.area(),
        start=body.start,
        end=body.end,
        reduction_kw=body.reduction_kw,
        answer_within_s=body.answer_within_s,
    )
    return _answer(response, req)


@router.post("/load-reductions/{request_id}/disconnections", status_code=status.HTTP_201_CREATED)
def disconnect(
    tenant: str,
    request_id: str,
    body: DisconnectionBody,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    req = hub.market.disconnect(
        who, tenant, body.idempotency_key or key, request_id, body.sites, body.duration_s
    )
    return _answer(response, req)


@router.post("/emergencies", status_code=status.HTTP_201_CREATED)
def emergency(
    tenant: str,
    body: EmergencyBody,
    who: PrincipalDep,
    hub: HubDep,
    response: Response,
    key: KeyHeader = None,
) -> dict[str, Any]:
    req = hub.market.emergency(
        who,
        tenant,
        body.idempotency_key or key,
        body.area.area(),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        limit_kw=body.limit_kw,
        reason=body.reason,
    )
    return _answer(response, req)


# -- reading requests back -------------------------------------------------------------------------


def _view(hub: HubDep, view: RequestView) -> dict[str, Any]:
    out = _request(view.request)
    out["deliveries"] = [_delivery(d) for d in view.deliveries]
    if view.request.kind is RequestKind.LOAD_REDUCTION:
        out["availability"] = hub.market.availability(view)
    return out


@router.get("/requests")
def list_requests(
    tenant: str,
    who: PrincipalDep,
    hub: HubDep,
    kind: RequestKind | None = None,
    status_: Annotated[RequestStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Requests of the tenant (DSO, admin) or the caller's own (retailer), newest first."""
    found = hub.market.list(who, tenant, kind=kind, status=status_, limit=limit)
    return [{k: v for k, v in _request(r).items() if k != "result"} for r in found]


@router.get("/requests/{request_id}")
def get_request(tenant: str, request_id: str, who: PrincipalDep, hub: HubDep) -> dict[str, Any]:
    """A request with its delivery log (a retailer sees only its own deliveries)."""
    return _view(hub, hub.market.view(who, tenant, request_id))
