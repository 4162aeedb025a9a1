"""Report routes (R1–R6): the JSON the dashboard draws, exports, and the SQL console.

Thin over :class:`~gridhub.services.reports.ReportService` and
:class:`~gridhub.services.sql_console.SqlConsole`; each route checks the caller's tenant first.
Days (``day``, ``from``, ``to``) are calendar days in the tenant's zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from gridhub.access.scope import ReadScope
from gridhub.access.tokens import Principal
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.errors import Forbidden, InvalidRequest, NotFound
from gridhub.hub import Hub
from gridhub.services.export import ExportFormat, encode, table_of
from gridhub.services.report_types import (
    Aggregates,
    Completeness,
    FleetOverview,
    HouseholdView,
    Missing,
    Timelines,
)
from gridhub.services.sql_console import MAX_ROWS, MAX_SQL_CHARS, MAX_TIMEOUT_S, json_rows

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["reports"])

FromDay = Annotated[date | None, Query(alias="from")]
ToDay = Annotated[date | None, Query(alias="to")]


@dataclass(frozen=True, slots=True)
class WhoAmI:
    token_id: str
    tenant: str | None
    role: str


@router.get("/whoami", summary="The calling token: its tenant (none: installation) and role")
def whoami(who: PrincipalDep) -> WhoAmI:
    return WhoAmI(who.token_id, who.tenant, who.role)


@router.get("/tenants/{tenant}/reports/overview", summary="Fleet overview")
def overview(tenant: str, hub: HubDep, who: PrincipalDep) -> FleetOverview:
    return hub.reports.overview(
        tenant, installation_admin=who.is_installation_admin, scope=_scope(hub, who, tenant)
    )


@router.get(
    "/tenants/{tenant}/reports/household/{site}",
    summary="A household's quarter-hours (R1): meter and plugs on one grid, for 1..31 days",
)
def household(
    tenant: str,
    site: str,
    hub: HubDep,
    who: PrincipalDep,
    day: date,
    days: Annotated[int, Query(ge=1, le=31)] = 1,
) -> HouseholdView:
    return hub.reports.household(tenant, site, day, days, scope=_scope(hub, who, tenant))


@router.get(
    "/tenants/{tenant}/reports/timelines/{site}",
    summary="Boiler state of charge and temperature, whitegood cycles and runs (R2)",
)
def timelines(tenant: str, site: str, hub: HubDep, who: PrincipalDep, day: date) -> Timelines:
    return hub.reports.timelines(tenant, site, day, scope=_scope(hub, who, tenant))


@router.get(
    "/tenants/{tenant}/reports/aggregates",
    summary="Energy per appliance type and per household group over local days (R3)",
)
def aggregates(
    tenant: str, hub: HubDep, who: PrincipalDep, start: FromDay = None, end: ToDay = None
) -> Aggregates:
    return hub.reports.aggregates(tenant, start, end, scope=_scope(hub, who, tenant))


@router.get(
    "/tenants/{tenant}/reports/completeness",
    summary="Received vs expected slots per device per local day (R4), DST-aware",
)
def completeness(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    start: FromDay = None,
    end: ToDay = None,
    threshold: Annotated[float, Query(ge=0, le=1)] = 0.9,
    site: Annotated[str | None, Query(max_length=128)] = None,
) -> Completeness:
    scope = _scope(hub, who, tenant)
    return hub.reports.completeness(tenant, start, end, threshold, site, scope=scope)


@router.get(
    "/tenants/{tenant}/reports/completeness/{device}/missing",
    summary="The quarter-hours of a device's day with no reading",
)
def missing(tenant: str, device: str, hub: HubDep, who: PrincipalDep, day: date) -> Missing:
    return hub.reports.missing(tenant, device, day, scope=_scope(hub, who, tenant))


class SqlRequest(BaseModel):
    sql: str = Field(max_length=MAX_SQL_CHARS)
    limit: int = Field(1000, ge=1, le=MAX_ROWS)
    timeout_s: float = Field(MAX_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class SqlPublic:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool
    seconds: float


@router.post(
    "/tenants/{tenant}/sql",
    summary="Read-only SQL over the tenant's views (researcher and admin tokens)",
    description="One SELECT over measurements, state, alerts, devices, sites and identifiers — "
    "the caller's tenant only; a statement timeout and a row limit apply. "
    "`format=csv|parquet` downloads the result instead.",
)
def sql(
    tenant: str,
    body: SqlRequest,
    hub: HubDep,
    who: PrincipalDep,
    format: ExportFormat | None = None,
) -> Any:
    scope = _scope(hub, who, tenant)
    if not scope.reads_everything(hub.registry.devices(tenant)):
        raise Forbidden(
            "the SQL console reads the tenant's tables directly: it needs read access to every "
            "series of the tenant (an owner policy on '*', docs/access.md)"
        )
    result = hub.sql.run(who, tenant, body.sql, limit=body.limit, timeout_s=body.timeout_s)
    if format is not None:
        return _download(result, format, f"{tenant}-sql")
    return SqlPublic(
        result.columns,
        result.types,
        json_rows(result),
        result.truncated,
        round(result.seconds, 4),
    )


# -- export: each view's data, by the same service call ------------------------------------------


@dataclass(frozen=True, slots=True)
class _Params:
    site: str | None
    device: str | None
    day: date | None
    days: int
    start: date | None
    end: date | None
    threshold: float


def _need(value: Any, name: str) -> Any:
    if value is None:
        raise InvalidRequest(f"this export needs {name}")
    return value


_VIEWS: dict[str, Callable[[Hub, ReadScope, _Params], object]] = {
    "household": lambda hub, sc, p: hub.reports.household(
        sc.tenant, _need(p.site, "site"), _need(p.day, "day"), p.days, scope=sc
    ),
    "timelines": lambda hub, sc, p: hub.reports.timelines(
        sc.tenant, _need(p.site, "site"), _need(p.day, "day"), scope=sc
    ),
    "aggregates": lambda hub, sc, p: hub.reports.aggregates(sc.tenant, p.start, p.end, scope=sc),
    "completeness": lambda hub, sc, p: hub.reports.completeness(
        sc.tenant, p.start, p.end, p.threshold, p.site, scope=sc
    ),
    "missing": lambda hub, sc, p: hub.reports.missing(
        sc.tenant, _need(p.device, "device"), _need(p.day, "day"), scope=sc
    ),
}


@router.get(
    "/tenants/{tenant}/reports/export/{view}",
    summary="A view's data as CSV or Parquet",
    description="`view`: " + ", ".join(_VIEWS) + "; the view's own parameters apply.",
)
def export(
    tenant: str,
    view: str,
    hub: HubDep,
    who: PrincipalDep,
    format: ExportFormat = ExportFormat.CSV,
    site: Annotated[str | None, Query(max_length=128)] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    day: date | None = None,
    days: Annotated[int, Query(ge=1, le=31)] = 1,
    start: FromDay = None,
    end: ToDay = None,
    threshold: Annotated[float, Query(ge=0, le=1)] = 0.9,
) -> Response:
    scope = _scope(hub, who, tenant)
    make = _VIEWS.get(view)
    if make is None:
        raise NotFound(f"no view {view[:64]!r}; one of {', '.join(_VIEWS)}")
    data = make(hub, scope, _Params(site, device, day, days, start, end, threshold))
    name = "-".join(str(x) for x in (tenant, view, site or device, day or start) if x)
    return _download(data, format, name)


def _scope(hub: Hub, who: Principal, tenant: str) -> ReadScope:
    """The caller's read scope in the tenant, from the one enforcement point (docs/access.md)."""
    return ReadScope(hub.access, who, tenant)


def _download(data: object, fmt: ExportFormat, name: str) -> Response:
    body = encode(table_of(data), fmt)
    return Response(
        body,
        media_type=fmt.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt.value}"'},
    )
