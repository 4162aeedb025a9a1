"""Registry routes: tenants, tokens, sites, devices (one by one and from CSV), identifiers."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from gridhub.access.tokens import TokenRecord
from gridhub.adapters.registry_csv import parse_registry
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.ingesting import read_limited
from gridhub.api.schemas import (
    DeviceBody,
    IdentifierBody,
    IdentifierPublic,
    ImportReport,
    SiteBody,
    TenantCreate,
    TenantPublic,
    TenantUpdate,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from gridhub.domain.access import check_name
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.errors import InvalidRequest

router = APIRouter(prefix="/api/v1/tenants", tags=["registry"])
MAX_CSV_BYTES = 32 * 1024 * 1024


def _tenant(t: Tenant) -> TenantPublic:
    return TenantPublic(
        id=t.id, name=t.name, timezone=t.timezone, unknown_devices=t.unknown_devices
    )


def _token(t: TokenRecord) -> TokenPublic:
    return TokenPublic(
        id=t.id,
        tenant=t.tenant,
        role=t.role,
        name=t.name,
        created=t.created,
        revoked=t.revoked,
        stakeholder=t.stakeholder,
        service=t.service,
        expires=t.expires,
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a tenant (admin)")
def create_tenant(body: TenantCreate, hub: HubDep, who: PrincipalDep) -> TenantPublic:
    who.require_admin()
    tenant = Tenant(body.id, body.name or body.id, body.timezone, body.unknown_devices)
    return _tenant(hub.registry.create_tenant(tenant))


@router.get("", summary="Tenants this token may see")
def list_tenants(hub: HubDep, who: PrincipalDep) -> list[TenantPublic]:
    return [_tenant(t) for t in hub.registry.tenants() if who.tenant in (None, t.id)]


@router.get("/{tenant}", summary="One tenant")
def get_tenant(tenant: str, hub: HubDep, who: PrincipalDep) -> TenantPublic:
    who.require_tenant(tenant)
    return _tenant(hub.registry.tenant(tenant))


@router.patch("/{tenant}", summary="Rename, or change the unknown-device policy")
def update_tenant(tenant: str, body: TenantUpdate, hub: HubDep, who: PrincipalDep) -> TenantPublic:
    who.require_admin(tenant)
    return _tenant(hub.registry.update_tenant(tenant, body.name, body.unknown_devices))


@router.post(
    "/{tenant}/tokens", status_code=status.HTTP_201_CREATED, summary="Create a tenant token"
)
def create_token(tenant: str, body: TokenCreate, hub: HubDep, who: PrincipalDep) -> TokenCreated:
    who.require_admin(tenant)
    hub.registry.tenant(tenant)
    role = body.role or "admin"
    if body.stakeholder is not None:
        stakeholder = hub.access.directory.stakeholder(tenant, body.stakeholder)
        if stakeholder.disabled:
            raise InvalidRequest(f"stakeholder {stakeholder.id!r} is disabled")
        if body.role is not None and body.role != stakeholder.kind.value:
            raise InvalidRequest(
                f"a token of {stakeholder.id!r} has its kind {stakeholder.kind.value!r} as role"
            )
        role = stakeholder.kind.value
    if body.service is not None:
        check_name("service", body.service)
    record, secret = hub.tokens.create(
        tenant,
        role,
        body.name,
        stakeholder=body.stakeholder,
        service=body.service,
        expires=body.expires,
    )
    return TokenCreated(**_token(record).model_dump(), token=secret)


@router.get("/{tenant}/tokens", summary="A tenant's tokens (never their secrets)")
def list_tokens(tenant: str, hub: HubDep, who: PrincipalDep) -> list[TokenPublic]:
    who.require_admin(tenant)
    return [_token(t) for t in hub.tokens.list(tenant)]


@router.delete("/{tenant}/tokens/{token_id}", summary="Revoke a token")
def revoke_token(tenant: str, token_id: str, hub: HubDep, who: PrincipalDep) -> TokenPublic:
    who.require_admin(tenant)
    return _token(hub.tokens.revoke(token_id, tenant))


@router.get("/{tenant}/identifiers", summary="Identifiers accepted: Table 2 and the tenant's")
def list_identifiers(tenant: str, hub: HubDep, who: PrincipalDep) -> list[IdentifierPublic]:
    who.require_tenant(tenant)
    return [
        IdentifierPublic(name=i.name, unit=i.unit, builtin=i.builtin)
        for i in hub.registry.identifiers(tenant).all()
    ]


@router.post(
    "/{tenant}/identifiers", status_code=status.HTTP_201_CREATED, summary="Register an identifier"
)
def register_identifier(
    tenant: str, body: IdentifierBody, hub: HubDep, who: PrincipalDep
) -> IdentifierPublic:
    who.require_admin(tenant)
    ident = hub.registry.register_identifier(tenant, body.name, body.unit)
    return IdentifierPublic(name=ident.name, unit=ident.unit, builtin=ident.builtin)


@router.get("/{tenant}/sites", summary="Sites (households) with their grouping attributes")
def list_sites(tenant: str, hub: HubDep, who: PrincipalDep) -> list[SiteBody]:
    who.require_tenant(tenant)
    # a stakeholder sees the sites of the devices it may read now (access/enforce.py)
    seen = {
        d.site
        for d in hub.access.visible_devices(
            who, tenant, hub.registry.devices(tenant), datetime.now(UTC)
        )
    }
    admin = who.role == "admin"
    return [
        SiteBody(
            id=s.id,
            name=s.name,
            location=s.location,
            pilot_phase=s.pilot_phase,
            experiment=s.experiment,
            appliance_types=list(s.appliance_types),
            has_pv=s.has_pv,
        )
        for s in hub.registry.sites(tenant)
        if admin or s.id in seen
    ]


@router.post("/{tenant}/sites", status_code=status.HTTP_201_CREATED, summary="Register a site")
def register_site(tenant: str, body: SiteBody, hub: HubDep, who: PrincipalDep) -> SiteBody:
    who.require_admin(tenant)
    hub.registry.register_sites(
        [
            Site(
                tenant,
                body.id,
                body.name,
                body.location,
                body.pilot_phase,
                body.experiment,
                tuple(body.appliance_types),
                body.has_pv,
            )
        ]
    )
    return body


@router.get(
    "/{tenant}/devices",
    summary="Devices, optionally of one site (a stakeholder sees those it may read now)",
)
def list_devices(
    tenant: str, hub: HubDep, who: PrincipalDep, site: str | None = None
) -> list[DeviceBody]:
    who.require_tenant(tenant)
    return [
        DeviceBody(hardware_id=d.hardware_id, device_type=d.device_type, site=d.site, name=d.name)
        for d in hub.access.visible_devices(
            who, tenant, hub.registry.devices(tenant, site), datetime.now(UTC)
        )
    ]


@router.post("/{tenant}/devices", status_code=status.HTTP_201_CREATED, summary="Register a device")
def register_device(tenant: str, body: DeviceBody, hub: HubDep, who: PrincipalDep) -> DeviceBody:
    who.require_admin(tenant)
    hub.device_types.check(tenant, body.device_type)
    hub.registry.register_devices(
        [Device(tenant, body.hardware_id, body.device_type, body.site, body.name)]
    )
    return body


@router.post(
    "/{tenant}/devices/import",
    summary="Bulk registration from CSV (text/csv body)",
    description="Columns: hardwareId, deviceType, site, name, location, pilotPhase, experiment, "
    "applianceTypes (| separated), hasPv. deviceType must be a built-in or tenant-defined type "
    "(GET .../device-types). Nothing is registered if any row is wrong; dry_run=true only "
    "reports.",
)
async def import_devices(
    tenant: str,
    request: Request,
    response: Response,
    hub: HubDep,
    who: PrincipalDep,
    dry_run: bool = Query(False),
) -> ImportReport:
    who.require_admin(tenant)
    hub.registry.tenant(tenant)
    body, total = await read_limited(request, MAX_CSV_BYTES)
    if total > MAX_CSV_BYTES:
        raise InvalidRequest(f"CSV larger than {MAX_CSV_BYTES} bytes")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"CSV is not UTF-8: {exc}") from None
    types = hub.device_types.names(tenant)
    parsed = await run_in_threadpool(
        lambda: parse_registry(io.StringIO(text), tenant, device_types=types)
    )
    errors = [f"line {e.line}: {e.message}" for e in parsed.errors]
    if errors:
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    elif not dry_run:
        await run_in_threadpool(hub.registry.register_sites, parsed.sites)
        await run_in_threadpool(hub.registry.register_devices, parsed.devices)
    return ImportReport(
        sites=len(parsed.sites),
        devices=len(parsed.devices),
        errors=errors,
        dry_run=dry_run or bool(errors),
    )
