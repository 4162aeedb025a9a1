"""Subscription routes (Q3): subscribe (event, periodic), list, unsubscribe, delivery log, and
the WebSocket a subscriber listens on."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, Field

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.domain.subscriptions import (
    Channel,
    Kind,
    Op,
    PeriodicFunction,
    Subscription,
    make_condition,
)
from gridhub.errors import AccessDenied, GridhubError, InvalidRequest
from gridhub.hub import Hub
from gridhub.services.subscription_delivery import Connection
from gridhub.services.subscriptions import NewSubscription

router = APIRouter(prefix="/api/v1/tenants", tags=["subscriptions"])
MAX_WS_PER_TOKEN = 10
POLICY_VIOLATION = 1008  # WebSocket close code


class ConditionBody(BaseModel):
    op: Op
    value: float | None = Field(None, description="threshold for above, below, equal")
    lo: float | None = Field(None, description="outside: the range's low end")
    hi: float | None = Field(None, description="outside: the range's high end")
    tolerance: float | None = Field(None, description="equal: |value - x| <= tolerance")


class SubscriptionBody(BaseModel):
    kind: Kind
    device: str = Field(max_length=128)
    identifier: str = Field(max_length=128)
    channel: Channel
    condition: ConditionBody | None = Field(None, description="event subscriptions")
    period_s: float | None = Field(None, description="periodic: seconds between notifications")
    function: PeriodicFunction | None = Field(
        None, description="periodic: latest (default) or an aggregate over each period"
    )
    url: str | None = Field(None, max_length=2048, description="webhook: where to POST")


class SubscriptionPublic(BaseModel):
    id: str
    kind: Kind
    device: str
    identifier: str
    channel: Channel
    condition: dict[str, Any] | None
    period_s: float | None
    function: PeriodicFunction | None
    url: str | None
    mqtt_topic: str | None
    websocket: str | None
    created: datetime
    token_id: str
    stats: dict[str, int] = Field(default_factory=dict)


class SubscriptionCreated(SubscriptionPublic):
    webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 key of the webhook signatures; shown only now"
    )


class DeliveryPublic(BaseModel):
    delivery: str
    attempt: int
    at: datetime
    outcome: str
    status: int | None
    detail: str


def _public(sub: Subscription, stats: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": sub.id,
        "kind": sub.kind,
        "device": sub.device,
        "identifier": sub.identifier,
        "channel": sub.channel,
        "condition": sub.condition.as_dict() if sub.condition is not None else None,
        "period_s": sub.period_s,
        "function": sub.function or (PeriodicFunction.LATEST if sub.period_s else None),
        "url": sub.webhook_url,
        "mqtt_topic": sub.mqtt_topic if sub.channel is Channel.MQTT else None,
        "websocket": f"/api/v1/tenants/{sub.tenant}/subscriptions/{sub.id}/ws"
        if sub.channel is Channel.WEBSOCKET
        else None,
        "created": datetime.fromtimestamp(sub.created, UTC),
        "token_id": sub.token_id,
        "stats": stats or {},
    }


@router.post(
    "/{tenant}/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    summary="Subscribe to an event or a periodic notification (a webhook's secret is shown once)",
)
def create_subscription(
    tenant: str, body: SubscriptionBody, hub: HubDep, who: PrincipalDep
) -> dict[str, Any]:
    condition = None
    if body.condition is not None:
        c = body.condition
        try:
            condition = make_condition(c.op, value=c.value, lo=c.lo, hi=c.hi, tolerance=c.tolerance)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
    new = NewSubscription(
        body.kind,
        body.device,
        body.identifier,
        body.channel,
        condition,
        body.period_s,
        body.function or (PeriodicFunction.LATEST if body.kind is Kind.PERIODIC else None),
        body.url,
    )
    sub = hub.subscriptions.create(who, tenant, new)
    return {**_public(sub), "webhook_secret": sub.webhook_secret}


@router.get("/{tenant}/subscriptions", response_model=list[SubscriptionPublic])
def list_subscriptions(tenant: str, hub: HubDep, who: PrincipalDep) -> list[dict[str, Any]]:
    subs = hub.subscriptions
    return [_public(s, subs.stats(s.id)) for s in subs.visible(who, tenant)]


@router.get("/{tenant}/subscriptions/{subscription_id}", response_model=SubscriptionPublic)
def get_subscription(
    tenant: str, subscription_id: str, hub: HubDep, who: PrincipalDep
) -> dict[str, Any]:
    sub = hub.subscriptions.get(who, tenant, subscription_id)
    return _public(sub, hub.subscriptions.stats(sub.id))


@router.delete(
    "/{tenant}/subscriptions/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unsubscribe",
)
def delete_subscription(
    tenant: str, subscription_id: str, hub: HubDep, who: PrincipalDep
) -> Response:
    hub.subscriptions.delete(who, tenant, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{tenant}/subscriptions/{subscription_id}/deliveries",
    response_model=list[DeliveryPublic],
    summary="Webhook delivery log, newest first",
)
def deliveries(
    tenant: str,
    subscription_id: str,
    hub: HubDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return [
        {
            "delivery": r.delivery,
            "attempt": r.attempt,
            "at": r.at,
            "outcome": r.outcome,
            "status": r.status,
            "detail": r.detail,
        }
        for r in hub.subscriptions.deliveries(who, tenant, subscription_id, limit)
    ]


# -- WebSocket -------------------------------------------------------------------------------------


@router.websocket("/{tenant}/subscriptions/ws")
async def all_subscriptions_ws(websocket: WebSocket, tenant: str) -> None:
    """Every WebSocket subscription of the connecting token in ``tenant``."""
    await _serve(websocket, tenant, None)


@router.websocket("/{tenant}/subscriptions/{subscription_id}/ws")
async def one_subscription_ws(websocket: WebSocket, tenant: str, subscription_id: str) -> None:
    await _serve(websocket, tenant, subscription_id)


def _token(websocket: WebSocket) -> str | None:
    """``Authorization: Bearer …``, or ``?token=`` for browsers (which cannot set headers)."""
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return websocket.query_params.get("token")


async def _serve(websocket: WebSocket, tenant: str, subscription_id: str | None) -> None:
    hub: Hub = websocket.app.state.hub
    try:
        who = hub.tokens.authenticate(_token(websocket))
        if subscription_id is None:
            who.require_tenant(tenant)
        else:
            sub = hub.subscriptions.get(who, tenant, subscription_id)
            if sub.channel is not Channel.WEBSOCKET:
                raise InvalidRequest(f"subscription {sub.id} delivers over {sub.channel.value}")
        if hub.subscriptions.ws.connections(who.token_id) >= MAX_WS_PER_TOKEN:
            raise InvalidRequest(f"at most {MAX_WS_PER_TOKEN} WebSocket connections per token")
    except GridhubError as exc:
        # before accept: the client gets an HTTP 403 for the handshake
        code = POLICY_VIOLATION if isinstance(exc, AccessDenied) else 1003
        await websocket.close(code=code, reason=str(exc)[:120])
        return
    conn = Connection(tenant, who.token_id, subscription_id, asyncio.get_running_loop())
    hub.subscriptions.ws.register(conn)  # before accept: a connected client misses nothing
    try:
        await websocket.accept()
    except Exception:
        hub.subscriptions.ws.unregister(conn)
        raise
    reader = asyncio.create_task(_drain_client(websocket))
    try:
        while True:
            getter = asyncio.create_task(conn.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:  # the client went away
                getter.cancel()
                break
            item = getter.result()
            if item is None:  # the token lost its rights, or the subscription is gone
                code, reason = conn.close_reason
                await websocket.close(code=code, reason=reason)
                break
            await websocket.send_text(item.decode())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.subscriptions.ws.unregister(conn)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _drain_client(websocket: WebSocket) -> None:
    """The client sends nothing we use; reading tells us when it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
