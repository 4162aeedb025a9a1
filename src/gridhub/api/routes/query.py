"""Query routes (Q1, Q2): series, latest state, alerts, dead letters."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.schemas import (
    AlertPublic,
    DeadLetterPublic,
    PointPublic,
    SeriesPublic,
    StatePublic,
)
from gridhub.domain.messages import AlertLevel
from gridhub.domain.timeutil import Function, Resolution
from gridhub.errors import InvalidRequest
from gridhub.storage.base import StoredDeadLetter

router = APIRouter(prefix="/api/v1/tenants", tags=["query"])


def parse_instant(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 instant with offset. A '+' that a URL turned into a space is put back."""
    if value is None:
        return None
    text = value.strip()
    if " " in value and len(text) > 10 and value[-6] == " ":
        text = value[:-6] + "+" + value[-5:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name}={value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name}={value!r} needs a UTC offset (e.g. 'Z' or '+01:00')")
    return moment


@router.get(
    "/{tenant}/devices/{device}/series",
    summary="A device's series for one identifier",
    description=(
        "Give `day` (a calendar day in the tenant's time zone) or `from` and `to` (ISO 8601 with "
        "offset; encode '+' as %2B). At a resolution other than raw, buckets whose start lies "
        "in [from, to) are returned, each reduced by `function`. Times come back in the "
        "tenant's zone."
    ),
    response_model_by_alias=True,
)
def series(
    tenant: str,
    device: str,
    hub: HubDep,
    who: PrincipalDep,
    identifier: Annotated[str, Query(max_length=128)],
    day: date | None = None,
    start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=64)] = None,
    resolution: Resolution = Resolution.RAW,
    function: Function = Function.AVG,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100_000,
) -> SeriesPublic:
    who.require_tenant(tenant)
    result = hub.query.series(
        who,
        tenant,
        device,
        identifier,
        start=parse_instant("from", start),
        end=parse_instant("to", end),
        day=day,
        resolution=resolution,
        function=function,
        limit=limit,
    )
    return SeriesPublic(
        tenant=result.tenant,
        device=result.device,
        identifier=result.identifier,
        unit=result.unit,
        start=result.start,
        end=result.end,
        resolution=result.resolution.value,
        function=result.function.value,
        timezone=result.timezone,
        count=len(result.points),
        points=[PointPublic(ts=p.ts, value=p.value) for p in result.points],
    )


@router.get("/{tenant}/devices/{device}/state", summary="Latest value per identifier")
def latest_state(tenant: str, device: str, hub: HubDep, who: PrincipalDep) -> list[StatePublic]:
    who.require_tenant(tenant)
    return [
        StatePublic(identifier=s.identifier, ts=s.ts, value=s.value, received=s.received)
        for s in hub.query.latest(who, tenant, device)
    ]


@router.get("/{tenant}/alerts", summary="Alerts by device, level and time, newest first")
def alerts(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    device: Annotated[str | None, Query(max_length=128)] = None,
    level: AlertLevel | None = None,
    start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AlertPublic]:
    who.require_tenant(tenant)
    found = hub.query.alerts(
        who,
        tenant,
        device=device,
        level=level.value if level else None,
        start=parse_instant("from", start),
        end=parse_instant("to", end),
        limit=limit,
    )
    zone = hub.registry.tenant(tenant).zone
    return [
        AlertPublic(
            device=a.device,
            ts=a.ts.astimezone(zone),
            type=a.type,
            level=a.level,
            message=a.message,
            metadata=a.metadata,
            received=a.received.astimezone(zone),
        )
        for a in found
    ]


@router.get(
    "/{tenant}/deadletters",
    summary="Rejected messages with reason and raw bytes (tenant admin)",
)
def dead_letters(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DeadLetterPublic]:
    who.require_admin(tenant)
    hub.registry.tenant(tenant)
    letters = hub.query.dead_letters(who, tenant, reason=reason, limit=limit)
    return [_dead_letter(d) for d in letters]


def _dead_letter(d: StoredDeadLetter) -> DeadLetterPublic:
    return DeadLetterPublic(
        id=d.id,
        tenant=d.tenant,
        source=d.source,
        received=d.received,
        reason=d.reason,
        detail=d.detail,
        raw=d.raw.decode("utf-8", errors="replace"),
    )


admin_router = APIRouter(prefix="/api/v1", tags=["query"])


@admin_router.get(
    "/deadletters",
    summary="Dead letters of every tenant, or those no tenant owns (installation admin)",
    description="`unowned=true` lists the messages that named no known tenant (unknown tenant, "
    "a topic that is not gridhub's): they belong to nobody, so only the installation admin sees "
    "them.",
)
def all_dead_letters(
    hub: HubDep,
    who: PrincipalDep,
    unowned: bool = False,
    reason: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DeadLetterPublic]:
    who.require_admin()
    letters = hub.query.dead_letters(
        who, None, reason=reason, limit=limit if not unowned else 10_000
    )
    if unowned:
        letters = [d for d in letters if d.tenant is None][:limit]
    return [_dead_letter(d) for d in letters]
