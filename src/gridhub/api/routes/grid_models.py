"""Request and response models of the grid service routes, and the result → model mapping."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gridhub.grid.runs import LossRun, Written


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeriodBody(_Body):
    """A local calendar ``day`` of the tenant, or ``start``/``end`` with UTC offsets, on
    quarter-hours, at most 31 days."""

    day: date | None = None
    start: datetime | None = None
    end: datetime | None = None


class LossesBody(PeriodBody):
    substation: str | None = Field(None, min_length=1, max_length=128, description="one only")
    warning_sigma: float = Field(2.0, gt=0, le=100)
    critical_sigma: float = Field(3.0, gt=0, le=100)
    min_fraction: float = Field(0.01, ge=0, lt=1, description="no alarm below this share")
    power_factor: float = Field(0.95, gt=0, le=1)


class EstimateBody(PeriodBody):
    pass


class ReconfigureBody(PeriodBody):
    """Without a period: the topology's nominal loads; with one: the sites' metered power."""

    all_lines_switchable: bool = False
    threshold: float = Field(0.01, ge=0, lt=1, description="least loss reduction to accept")
    max_load_flows: int = Field(400, ge=1, le=2000)


class DemandResponseBody(_Body):
    substation: str = Field(min_length=1, max_length=128)
    target_kw: float = Field(ge=0, le=1e6)
    time_limit_s: float = Field(30.0, gt=0, le=120)


class QualityBody(_Body):
    week_start: date = Field(description="first local day of the week judged")
    node: str | None = Field(None, min_length=1, max_length=128)
    nominal_v: float = Field(230.0, ge=50, le=1000)


class BalanceBody(_Body):
    day: date | None = Field(None, description="local day; default tomorrow")
    flexibility: float = Field(0.2, ge=0, le=1)
    desired: list[float] | None = Field(None, max_length=7 * 96, description="kW per quarter")


class ForecastBody(_Body):
    hours: int = Field(24, ge=1, le=24)
    latitude: float | None = Field(None, ge=-90, le=90, description="with longitude: PV too")
    longitude: float | None = Field(None, ge=-180, le=180)
    tilt_deg: float = Field(35.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, le=360)


class WrittenOut(BaseModel):
    series_values: int
    alerts: int
    devices: list[str]
    beyond_horizon: int = Field(description="values not written: too far ahead for the hub")


def _written(w: Written) -> WrittenOut:
    return WrittenOut(
        series_values=w.series, alerts=w.alerts, devices=w.devices, beyond_horizon=w.beyond_horizon
    )


class Suspect(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    section: str
    method: str
    score: float
    unexplained_kwh: float | None
    voltage_residual_pu: float | None
    sites: int


class LossReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    substation: str
    hours: float
    energy_in_kwh: float
    metered_kwh: float
    technical_losses_kwh: float
    unexplained_kwh: float
    unexplained_std_kwh: float
    unexplained_fraction: float
    level: str
    missing_sites: list[str]
    suspects: list[Suspect]


class Skipped(BaseModel):
    substation: str
    reason: str


class LossesResult(BaseModel):
    start: datetime
    end: datetime
    reports: list[LossReportOut]
    skipped: list[Skipped]
    written: WrittenOut


def losses_result(run: LossRun) -> LossesResult:
    return LossesResult(
        start=run.period.start,
        end=run.period.end,
        reports=[LossReportOut.model_validate(r) for r in run.reports],
        skipped=[Skipped(substation=s, reason=why) for s, why in run.skipped],
        written=_written(run.written),
    )


class NodeStateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    node: str
    vm_pu: float
    vm_std_pu: float
    va_degree: float
    p_mw: float
    p_std_mw: float
    q_mvar: float
    group: str


class RemovedOut(BaseModel):
    node: str
    kind: str
    value: float
    ref: str
    normalized_residual: float


class EstimateResult(BaseModel):
    grid: str
    iterations: int
    objective: float
    degrees_of_freedom: int
    chi2_threshold: float
    bad_data: bool
    measurements_used: int
    removed: list[RemovedOut]
    nodes: list[NodeStateOut]
    written: WrittenOut


def estimate_result(result: Any, written: Written) -> EstimateResult:
    return EstimateResult(
        grid=result.grid,
        iterations=result.iterations,
        objective=result.objective,
        degrees_of_freedom=result.degrees_of_freedom,
        chi2_threshold=result.chi2_threshold,
        bad_data=result.bad_data,
        measurements_used=result.measurements_used,
        removed=[
            RemovedOut(
                node=b.measurement.node,
                kind=b.measurement.kind,
                value=b.measurement.value,
                ref=b.measurement.ref,
                normalized_residual=b.normalized_residual,
            )
            for b in result.removed
        ],
        nodes=[NodeStateOut.model_validate(n) for n in result.nodes],
        written=_written(written),
    )


class SwitchChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    switch: str
    line: str
    closed: bool


class ReconfigureResult(BaseModel):
    grid: str
    accepted: bool
    reason: str
    base_losses_kw: float
    losses_kw: float
    reduction: float
    open_lines: list[str]
    changes: list[SwitchChangeOut]
    load_flows: int
    min_vm_pu_before: float
    min_vm_pu_after: float
    written: WrittenOut


def reconfigure_result(r: Any, written: Written) -> ReconfigureResult:
    return ReconfigureResult(
        grid=r.grid,
        accepted=r.accepted,
        reason=r.reason,
        base_losses_kw=r.base_losses_mw * 1000,
        losses_kw=r.losses_mw * 1000,
        reduction=r.reduction,
        open_lines=list(r.open_lines),
        changes=[SwitchChangeOut.model_validate(c) for c in r.changes],
        load_flows=r.load_flows,
        min_vm_pu_before=r.min_vm_pu_before,
        min_vm_pu_after=r.min_vm_pu_after,
        written=_written(written),
    )


class ApplianceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    customer: str
    appliance: str
    power_kw: float


class DemandResponsePlan(BaseModel):
    substation: str
    status: str
    consumption_kw: float
    needed_kw: float
    shed_kw: float
    shortfall_kw: float
    available_kw: float
    customers: list[str]
    curtailed: list[ApplianceOut]
    proven_stages: int
    written: WrittenOut


def plan_result(plan: Any, consumption: float, written: Written) -> DemandResponsePlan:
    return DemandResponsePlan(
        substation=plan.substation,
        status=plan.status,
        consumption_kw=consumption,
        needed_kw=plan.needed_kw,
        shed_kw=plan.shed_kw,
        shortfall_kw=plan.shortfall_kw,
        available_kw=plan.available_kw,
        customers=list(plan.customers),
        curtailed=[ApplianceOut.model_validate(a) for a in plan.curtailed],
        proven_stages=plan.proven_stages,
        written=_written(written),
    )


class QualityResult(BaseModel):
    points: int
    compliant: int
    not_compliant: int
    insufficient_data: int
    reports: list[dict[str, str | int | float | None]]
    written: WrittenOut


def quality_result(reports: Sequence[Any], written: Written) -> QualityResult:
    from gridhub.grid.quality import report_rows

    statuses = [r.status for r in reports]
    return QualityResult(
        points=len(reports),
        compliant=statuses.count("compliant"),
        not_compliant=statuses.count("not_compliant"),
        insufficient_data=statuses.count("insufficient_data"),
        reports=report_rows(reports),
        written=_written(written),
    )


class UnitPlanOut(BaseModel):
    unit: str
    level: str
    parent: str | None
    distance_kw: float
    max_gap_kw: float
    predicted_kwh: float
    planned: list[float]


class BalanceResult(BaseModel):
    start: datetime
    slots: int
    units: list[UnitPlanOut]
    written: WrittenOut


def balance_result(result: Any, written: Written) -> BalanceResult:
    hours = result.resolution.total_seconds() / 3600
    units = [
        UnitPlanOut(
            unit=p.unit,
            level=p.level.value,
            parent=p.parent,
            distance_kw=p.distance_kw,
            max_gap_kw=p.max_gap_kw,
            predicted_kwh=sum(p.predicted) * hours,
            planned=[round(v, 4) for v in p.planned],
        )
        for p in result.units.values()
    ]
    slots = len(next(iter(result.units.values())).planned) if result.units else 0
    return BalanceResult(start=result.start, slots=slots, units=units, written=_written(written))


class ForecastResult(BaseModel):
    start: datetime
    end: datetime
    sites: int
    consumption_kw: dict[str, list[float]]
    production_kw: dict[str, list[float]]
    written: WrittenOut


def forecast_result(run: Any) -> ForecastResult:
    return ForecastResult(
        start=run.start,
        end=run.end,
        sites=run.sites,
        consumption_kw=run.consumption,
        production_kw=run.production,
        written=_written(run.written),
    )


class GridValue(BaseModel):
    device: str
    identifier: str
    ts: datetime
    value: float
