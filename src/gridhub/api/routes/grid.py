"""Grid service routes (issue #7): run G4-G10 on a tenant's data, answer the typed result.

``POST /api/v1/tenants/{t}/grid/{service}`` runs one service (dso and admin tokens only), writes
its results back as ``grid:<node>`` series and alerts, and answers them; ``GET .../grid/latest``
lists the latest value of every grid result series. Runs go to a worker thread with a time
bound (:data:`RUN_TIMEOUT_S`) and at most :data:`MAX_CONCURRENT_RUNS` at once per hub (503
beyond). Models: ``api/routes/grid_models.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from gridhub.access.tokens import Principal
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.routes.grid_models import (
    BalanceBody,
    BalanceResult,
    DemandResponseBody,
    DemandResponsePlan,
    EstimateBody,
    EstimateResult,
    ForecastBody,
    ForecastResult,
    GridValue,
    LossesBody,
    LossesResult,
    PeriodBody,
    QualityBody,
    QualityResult,
    ReconfigureBody,
    ReconfigureResult,
    balance_result,
    estimate_result,
    forecast_result,
    losses_result,
    plan_result,
    quality_result,
    reconfigure_result,
)
from gridhub.domain.registry import GRID_DEVICE_PREFIX
from gridhub.errors import Forbidden, InvalidRequest, Overloaded
from gridhub.grid.run_inputs import Period
from gridhub.hub import Hub

router = APIRouter(prefix="/api/v1/tenants/{tenant}/grid", tags=["grid services"])
RUNNERS = ("admin", "dso")
RUN_TIMEOUT_S = 300.0
MAX_CONCURRENT_RUNS = 2
_slots = threading.BoundedSemaphore(MAX_CONCURRENT_RUNS)
T = TypeVar("T")


def _require_runner(who: Principal, tenant: str) -> None:
    who.require_tenant(tenant)
    if who.role not in RUNNERS:
        raise Forbidden(f"a {who.role} token cannot run grid services; use a dso or admin token")


async def _run(fn: Callable[[], T]) -> T:
    """In a worker thread, bounded in time and in number (the solvers take seconds)."""
    if not _slots.acquire(blocking=False):
        raise Overloaded(f"{MAX_CONCURRENT_RUNS} grid runs already in progress; retry later")

    def guarded() -> T:
        try:
            return fn()
        finally:
            _slots.release()

    try:
        return await asyncio.wait_for(run_in_threadpool(guarded), RUN_TIMEOUT_S)
    except TimeoutError:
        raise Overloaded(f"the run took longer than {RUN_TIMEOUT_S:g} s") from None


def _period(hub: Hub, tenant: str, body: PeriodBody) -> Period:
    start, end = hub.query.time_range(tenant, body.start, body.end, body.day)
    return Period(start, end)


@router.post("/losses", summary="G4: energy balance and fraud location per secondary substation")
async def run_losses(tenant: str, body: LossesBody, hub: HubDep, who: PrincipalDep) -> LossesResult:
    _require_runner(who, tenant)
    period = _period(hub, tenant, body)

    def run() -> Any:
        from gridhub.grid.losses import LossSettings

        settings = LossSettings(
            warning_sigma=body.warning_sigma,
            critical_sigma=body.critical_sigma,
            min_fraction=body.min_fraction,
        )
        if body.critical_sigma < body.warning_sigma:
            raise InvalidRequest("critical_sigma must be at least warning_sigma")
        return hub.grid_runs.losses(
            tenant,
            period,
            substation=body.substation,
            settings=settings,
            power_factor=body.power_factor,
        )

    return losses_result(await _run(run))


@router.post("/estimation", summary="G5: WLS state estimate from the meters over a period")
async def run_estimation(
    tenant: str, body: EstimateBody, hub: HubDep, who: PrincipalDep
) -> EstimateResult:
    _require_runner(who, tenant)
    period = _period(hub, tenant, body)
    result, written = await _run(lambda: hub.grid_runs.estimate(tenant, period))
    return estimate_result(result, written)


@router.post("/reconfiguration", summary="G6: loss-minimising radial configuration")
async def run_reconfiguration(
    tenant: str, body: ReconfigureBody, hub: HubDep, who: PrincipalDep
) -> ReconfigureResult:
    _require_runner(who, tenant)
    metered = body.day is not None or body.start is not None or body.end is not None
    period = _period(hub, tenant, body) if metered else None
    result, written = await _run(
        lambda: hub.grid_runs.reconfigure(
            tenant,
            period=period,
            all_lines_switchable=body.all_lines_switchable,
            threshold=body.threshold,
            max_load_flows=body.max_load_flows,
        )
    )
    return reconfigure_result(result, written)


@router.post("/demand-response", summary="G7: appliances to switch off to reach a target")
async def run_demand_response(
    tenant: str, body: DemandResponseBody, hub: HubDep, who: PrincipalDep
) -> DemandResponsePlan:
    _require_runner(who, tenant)
    plan, consumption, written = await _run(
        lambda: hub.grid_runs.demand_response(
            tenant, body.substation, body.target_kw, time_limit_s=body.time_limit_s
        )
    )
    return plan_result(plan, consumption, written)


@router.post("/quality", summary="G8: EN 50160 weekly voltage report of every site phase")
async def run_quality(
    tenant: str, body: QualityBody, hub: HubDep, who: PrincipalDep
) -> QualityResult:
    _require_runner(who, tenant)
    reports, written = await _run(
        lambda: hub.grid_runs.quality(
            tenant, body.week_start, node=body.node, nominal_v=body.nominal_v
        )
    )
    return quality_result(reports, written)


@router.post("/balancing", summary="G9: day-ahead balancing down the grid hierarchy")
async def run_balancing(
    tenant: str, body: BalanceBody, hub: HubDep, who: PrincipalDep
) -> BalanceResult:
    _require_runner(who, tenant)
    day = body.day or (datetime.now(hub.registry.tenant(tenant).zone) + timedelta(days=1)).date()
    result, written = await _run(
        lambda: hub.grid_runs.balance(
            tenant, day, flexibility=body.flexibility, desired=body.desired
        )
    )
    return balance_result(result, written)


@router.post("/forecast", summary="G10: consumption and PV forecasts per node, next hours")
async def run_forecast(
    tenant: str, body: ForecastBody, hub: HubDep, who: PrincipalDep
) -> ForecastResult:
    _require_runner(who, tenant)

    def run() -> Any:
        pv = None
        if body.latitude is not None and body.longitude is not None:
            from gridhub.grid.forecast import PvSystem

            pv = PvSystem(body.latitude, body.longitude, body.tilt_deg, body.azimuth_deg)
        return hub.grid_runs.forecast(tenant, body.hours, pv)

    return forecast_result(await _run(run))


@router.get("/latest", summary="The latest value of every grid result series, per node")
def latest(tenant: str, hub: HubDep, who: PrincipalDep) -> list[GridValue]:
    who.require_tenant(tenant)
    out = []
    for device in hub.registry.devices(tenant):
        if device.hardware_id.startswith(GRID_DEVICE_PREFIX):
            try:  # what the caller may read of each node, through the enforcement point
                states = hub.query.latest(who, tenant, device.hardware_id)
            except Forbidden:
                continue
            for state in states:
                if state.identifier.startswith("grid."):
                    out.append(
                        GridValue(
                            device=device.hardware_id,
                            identifier=state.identifier,
                            ts=state.ts,
                            value=state.value,
                        )
                    )
    return sorted(out, key=lambda v: (v.device, v.identifier))
