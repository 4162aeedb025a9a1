"""Tariff and control-signal routes (O2, O3): publish to households, query over a period."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.routes.query import parse_instant
from gridhub.domain.tariffs import (
    MAX_PERIODS,
    ControlSignal,
    Direction,
    Period,
    Target,
    Tariff,
    TariffKind,
)
from gridhub.errors import InvalidRequest
from gridhub.services.tariffs import MAX_DAYS, TariffDay

router = APIRouter(prefix="/api/v1/tenants", tags=["tariffs"])


class TargetBody(BaseModel):
    """One household (``site``), a cluster (``sites``) or a group (``attribute`` = ``value``)."""

    site: str | None = Field(None, max_length=128)
    sites: list[str] | None = Field(None, max_length=10_000)
    attribute: str | None = Field(
        None, description="location, pilot_phase, experiment, appliance_type or has_pv"
    )
    value: str | None = Field(None, max_length=200)

    def target(self) -> Target:
        if self.site is not None and self.sites is not None:
            raise InvalidRequest("target: give site or sites, not both")
        sites = (self.site,) if self.site is not None else tuple(self.sites or ())
        return Target(sites, self.attribute, self.value)


class PeriodBody(BaseModel):
    start: str = Field(max_length=5, description="HH:MM, local time")
    end: str = Field(max_length=5, description="HH:MM or 24:00")
    price: float
    label: str = Field("", max_length=64)


class DayBody(BaseModel):
    day: date
    periods: list[PeriodBody] = Field(min_length=1, max_length=MAX_PERIODS)


class TariffCreate(BaseModel):
    kind: TariffKind = TariffKind.TOU
    target: TargetBody
    currency: str = Field("EUR", max_length=16)
    unit: str = Field("EUR/kWh", max_length=16)
    days: list[DayBody] = Field(min_length=1, max_length=MAX_DAYS)
    ttl_s: float | None = Field(None, description="default: until the end of the day")


class TargetPublic(BaseModel):
    sites: list[str]
    attribute: str | None
    value: str | None


class TariffPublic(BaseModel):
    id: str
    kind: TariffKind
    day: date
    target: TargetPublic
    sites: list[str]
    currency: str
    unit: str
    periods: list[PeriodBody]
    published: datetime
    publisher: str
    delivery: dict[str, int] = Field(description="device invocations per status")


class SignalCreate(BaseModel):
    direction: Direction
    limit_kw: float
    target: TargetBody
    start: str | None = Field(None, max_length=64, description="ISO 8601 with offset; now")
    end: str | None = Field(None, max_length=64, description="none: until replaced")
    ttl_s: float | None = None


class SignalPublic(BaseModel):
    id: str
    direction: Direction
    limit_kw: float
    start: datetime
    end: datetime | None
    target: TargetPublic
    sites: list[str]
    created: datetime
    issuer: str
    delivery: dict[str, int] = Field(description="device invocations per status")


def _target_public(t: Target) -> TargetPublic:
    return TargetPublic(sites=list(t.sites), attribute=t.attribute, value=t.value)


@router.post(
    "/{tenant}/tariffs",
    status_code=status.HTTP_201_CREATED,
    summary="Publish day-ahead tariffs (time-of-use or DSO network) to households",
    description="Each day's periods must cover 00:00–24:00 (local time) without gap or overlap. "
    "Every device of the target's households receives a setTariff command.",
)
def publish_tariff(
    tenant: str, body: TariffCreate, hub: HubDep, who: PrincipalDep
) -> list[TariffPublic]:
    tariffs = hub.tariffs.publish_tariff(
        who,
        tenant,
        kind=body.kind,
        target=body.target.target(),
        currency=body.currency,
        unit=body.unit,
        days=[
            TariffDay(d.day, [Period(p.start, p.end, p.price, p.label) for p in d.periods])
            for d in body.days
        ],
        ttl_s=body.ttl_s,
    )
    return [_tariff_public(d.item, d.delivery) for d in tariffs]


def _tariff_public(t: Tariff, delivery: dict[str, int]) -> TariffPublic:
    return TariffPublic(
        id=t.id,
        kind=t.kind,
        day=t.day,
        target=_target_public(t.target),
        sites=list(t.sites),
        currency=t.currency,
        unit=t.unit,
        periods=[
            PeriodBody(start=p.start, end=p.end, price=p.price, label=p.label) for p in t.periods
        ],
        published=t.published,
        publisher=t.publisher,
        delivery=delivery,
    )


@router.get("/{tenant}/tariffs", summary="Tariffs of the days from..to (the newest per day)")
def list_tariffs(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    start: Annotated[date, Query(alias="from")],
    end: Annotated[date, Query(alias="to")],
    site: Annotated[str | None, Query(max_length=128)] = None,
    kind: TariffKind | None = None,
) -> list[TariffPublic]:
    who.require_tenant(tenant)
    return [
        _tariff_public(d.item, d.delivery)
        for d in hub.tariffs.tariffs(tenant, start, end, site=site, kind=kind)
    ]


@router.post(
    "/{tenant}/control-signals",
    status_code=status.HTTP_201_CREATED,
    summary="Send a maximum consumption or production limit to a household or a cluster",
)
def send_signal(tenant: str, body: SignalCreate, hub: HubDep, who: PrincipalDep) -> SignalPublic:
    signal = hub.tariffs.send_signal(
        who,
        tenant,
        direction=body.direction,
        limit_kw=body.limit_kw,
        target=body.target.target(),
        start=parse_instant("start", body.start),
        end=parse_instant("end", body.end),
        ttl_s=body.ttl_s,
    )
    return _signal_public(signal.item, signal.delivery)


def _signal_public(s: ControlSignal, delivery: dict[str, int]) -> SignalPublic:
    return SignalPublic(
        id=s.id,
        direction=s.direction,
        limit_kw=s.limit_kw,
        start=s.start,
        end=s.end,
        target=_target_public(s.target),
        sites=list(s.sites),
        created=s.created,
        issuer=s.issuer,
        delivery=delivery,
    )


@router.get("/{tenant}/control-signals", summary="Control signals in force during from..to")
def list_signals(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    start: Annotated[str, Query(alias="from", max_length=64)],
    end: Annotated[str, Query(alias="to", max_length=64)],
    site: Annotated[str | None, Query(max_length=128)] = None,
) -> list[SignalPublic]:
    who.require_tenant(tenant)
    lo, hi = parse_instant("from", start), parse_instant("to", end)
    if lo is None or hi is None:  # required query parameters: never None here
        raise InvalidRequest("give from and to")
    return [
        _signal_public(d.item, d.delivery) for d in hub.tariffs.signals(tenant, lo, hi, site=site)
    ]
