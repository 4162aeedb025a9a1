"""Liveness, readiness and metrics: no token needed (they reveal no tenant data)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from gridhub.api.deps import HubDep
from gridhub.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is alive")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The hub can take data: store reachable, writer and MQTT running")
def ready(hub: HubDep) -> JSONResponse:
    checks: dict[str, bool] = {"writer": hub.pipeline.running, "store": True}
    try:
        hub.store.ping()
    except StoreUnavailable:
        checks["store"] = False
    checks["store_writes"] = hub.pipeline.store_healthy
    if hub.mqtt is not None:
        checks["mqtt"] = hub.mqtt.connected.is_set()
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus text metrics", response_class=PlainTextResponse)
def metrics(hub: HubDep) -> PlainTextResponse:
    return PlainTextResponse(
        hub.pipeline.metrics.render()
        + hub.commands.render_metrics()
        + hub.subscriptions.render_metrics()
    )
