"""Command routes (O1): specs per device type, invoke a command, follow its status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, Field

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.domain.commands import MAX_PARAMETERS, Invocation, Param, ParamType, Spec, Status
from gridhub.services.commands import authorise_outbound_read

router = APIRouter(prefix="/api/v1/tenants", tags=["commands"])


class ParamBody(BaseModel):
    name: str = Field(max_length=64)
    type: ParamType
    required: bool = False
    description: str = Field("", max_length=500)


class SpecBody(BaseModel):
    description: str = Field("", max_length=1000)
    device_types: list[str] = Field(
        min_length=1, max_length=100, description="device types that accept it; ['*'] for all"
    )
    parameters: list[ParamBody] = Field(default_factory=list, max_length=MAX_PARAMETERS)


class SpecPublic(SpecBody):
    name: str
    builtin: bool


class InvokeBody(BaseModel):
    command: str = Field(max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=MAX_PARAMETERS)
    ttl_s: float | None = Field(None, description="time to live; default from the settings")
    max_attempts: int | None = Field(None, description="timed sends before it may expire")
    idempotency_key: str | None = Field(
        None, max_length=128, description="the same key never creates a second invocation"
    )


class InvocationPublic(BaseModel):
    id: str
    device: str
    command: str
    parameters: dict[str, Any]
    status: Status
    attempts: int
    max_attempts: int
    created: datetime
    expires: datetime
    last_sent: datetime | None
    finished: datetime | None
    response: str | None
    initiator: str
    idempotency_key: str | None
    origin: str | None


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def invocation_public(inv: Invocation) -> InvocationPublic:
    return InvocationPublic(
        id=inv.id,
        device=inv.device,
        command=inv.command,
        parameters=inv.parameters,
        status=inv.status,
        attempts=inv.attempts,
        max_attempts=inv.max_attempts,
        created=datetime.fromtimestamp(inv.created, UTC),
        expires=datetime.fromtimestamp(inv.expires, UTC),
        last_sent=_dt(inv.last_sent),
        finished=_dt(inv.finished),
        response=inv.response,
        initiator=inv.initiator,
        idempotency_key=inv.idempotency_key,
        origin=inv.origin,
    )


def _spec_public(spec: Spec) -> SpecPublic:
    return SpecPublic(
        name=spec.name,
        builtin=spec.builtin,
        description=spec.description,
        device_types=list(spec.device_types),
        parameters=[
            ParamBody(name=p.name, type=p.type, required=p.required, description=p.description)
            for p in spec.parameters
        ],
    )


@router.get("/{tenant}/command-specs", summary="Command specs (built-in and the tenant's)")
def list_specs(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    device_type: Annotated[str | None, Query(max_length=100)] = None,
) -> list[SpecPublic]:
    who.require_tenant(tenant)
    return [_spec_public(s) for s in hub.commands.specs(tenant, device_type)]


@router.put("/{tenant}/command-specs/{name}", summary="Define or replace a tenant command spec")
def put_spec(tenant: str, name: str, body: SpecBody, hub: HubDep, who: PrincipalDep) -> SpecPublic:
    spec = Spec(
        name,
        tuple(Param(p.name, p.type, p.required, p.description) for p in body.parameters),
        body.description,
        tuple(body.device_types),
        builtin=False,
    )
    return _spec_public(hub.commands.put_spec(who, tenant, spec))


@router.delete(
    "/{tenant}/command-specs/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a tenant command spec",
)
def delete_spec(tenant: str, name: str, hub: HubDep, who: PrincipalDep) -> None:
    hub.commands.delete_spec(who, tenant, name)


@router.post(
    "/{tenant}/devices/{device}/commands",
    status_code=status.HTTP_201_CREATED,
    summary="Invoke a command on a device",
    description="Validated against the device type's spec, stored, then published on "
    "gridhub/<tenant>/<hardwareId>/commands (QoS 1) until acknowledged or expired. With an "
    "idempotency key (body or Idempotency-Key header) a repeated request returns the first "
    "invocation (200) instead of creating another.",
)
def invoke(
    tenant: str,
    device: str,
    body: InvokeBody,
    response: Response,
    hub: HubDep,
    who: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> InvocationPublic:
    inv, created = hub.commands.invoke(
        who,
        tenant,
        device,
        body.command,
        body.parameters,
        ttl_s=body.ttl_s,
        max_attempts=body.max_attempts,
        idempotency_key=body.idempotency_key or idempotency_key,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return invocation_public(inv)


@router.get("/{tenant}/commands", summary="Command invocations, newest first")
def list_invocations(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    device: Annotated[str | None, Query(max_length=128)] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    origin: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[InvocationPublic]:
    authorise_outbound_read(who, tenant)
    return [
        invocation_public(i)
        for i in hub.commands.invocations(
            tenant, device=device, status=status_, origin=origin, limit=limit
        )
    ]


@router.get("/{tenant}/commands/{invocation}", summary="One command invocation and its status")
def get_invocation(
    tenant: str, invocation: str, hub: HubDep, who: PrincipalDep
) -> InvocationPublic:
    authorise_outbound_read(who, tenant)
    return invocation_public(hub.commands.get(tenant, invocation))
