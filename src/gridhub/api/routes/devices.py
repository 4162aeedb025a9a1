"""Provisioning routes (P6, issue #6): device types, expected readings, MQTT credentials."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from gridhub.access.mqtt_auth import HUB_USERNAME, MqttCredential
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.domain.device_types import DeviceType
from gridhub.domain.mqtt_credentials import commands_topic, events_topic
from gridhub.errors import NotFound

router = APIRouter(prefix="/api/v1/tenants", tags=["devices"])
admin_router = APIRouter(prefix="/api/v1/mqtt", tags=["devices"])


class DeviceTypeBody(BaseModel):
    name: str = Field(max_length=64)
    description: str = Field("", max_length=500)
    identifiers: list[str] = Field(default_factory=list, max_length=64)
    interval_s: int | None = Field(None, ge=1, le=7 * 86_400)


class DeviceTypePublic(DeviceTypeBody):
    builtin: bool


class MqttCredentialPublic(BaseModel):
    username: str
    hardware_id: str | None
    role: str
    created: datetime
    rotated: datetime


class MqttCredentialIssued(BaseModel):
    username: str
    password: str = Field(description="shown once; only its hash is kept")
    events_topic: str | None = None
    commands_topic: str | None = None


class MqttAuthFiles(BaseModel):
    password_file: str
    acl_file: str


def _type(t: DeviceType) -> DeviceTypePublic:
    return DeviceTypePublic(
        name=t.name,
        description=t.description,
        identifiers=list(t.identifiers),
        interval_s=t.interval_s,
        builtin=t.builtin,
    )


def _cred(c: MqttCredential) -> MqttCredentialPublic:
    return MqttCredentialPublic(
        username=c.username,
        hardware_id=c.hardware_id,
        role=c.role,
        created=c.created,
        rotated=c.rotated,
    )


@router.get("/{tenant}/device-types", summary="Built-in and tenant-defined device types")
def list_device_types(tenant: str, hub: HubDep, who: PrincipalDep) -> list[DeviceTypePublic]:
    who.require_tenant(tenant)
    return [_type(t) for t in hub.device_types.all(tenant)]


@router.post(
    "/{tenant}/device-types",
    status_code=status.HTTP_201_CREATED,
    summary="Define (or redefine) a device type: expected identifiers and reporting interval",
)
def define_device_type(
    tenant: str, body: DeviceTypeBody, hub: HubDep, who: PrincipalDep
) -> DeviceTypePublic:
    who.require_admin(tenant)
    return _type(
        hub.device_types.define(
            tenant, body.name, body.description, body.identifiers, body.interval_s
        )
    )


@router.get(
    "/{tenant}/devices/{hardware_id}/expected",
    summary="Readings expected per identifier on one local day (DST-aware: 92/96/100 at 15 min)",
)
def expected_readings(
    tenant: str, hardware_id: str, day: date, hub: HubDep, who: PrincipalDep
) -> dict[str, int]:
    who.require_tenant(tenant)
    device = hub.registry.device(tenant, hardware_id)
    if device is None:
        raise NotFound(f"device {hardware_id!r} not found in tenant {tenant!r}")
    return hub.device_types.expected_per_day(device, day, hub.registry.tenant(tenant).zone)


@router.get("/{tenant}/mqtt-credentials", summary="The tenant's MQTT users (never a password)")
def list_credentials(tenant: str, hub: HubDep, who: PrincipalDep) -> list[MqttCredentialPublic]:
    who.require_admin(tenant)
    hub.registry.tenant(tenant)
    return [_cred(c) for c in hub.mqtt_credentials.list(tenant)]


@router.post(
    "/{tenant}/devices/{hardware_id}/mqtt-credentials",
    status_code=status.HTTP_201_CREATED,
    summary="Issue (or with rotate=true replace) a device's MQTT password; shown once",
)
def issue_credential(
    tenant: str,
    hardware_id: str,
    hub: HubDep,
    who: PrincipalDep,
    rotate: Annotated[bool, Query()] = False,
) -> MqttCredentialIssued:
    who.require_admin(tenant)
    username, password = hub.mqtt_credentials.issue(tenant, hardware_id, rotate=rotate)
    return MqttCredentialIssued(
        username=username,
        password=password,
        events_topic=events_topic(tenant, hardware_id),
        commands_topic=commands_topic(tenant, hardware_id),
    )


@router.delete(
    "/{tenant}/devices/{hardware_id}/mqtt-credentials",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a device's MQTT credential",
)
def revoke_credential(tenant: str, hardware_id: str, hub: HubDep, who: PrincipalDep) -> Response:
    who.require_admin(tenant)
    hub.mqtt_credentials.revoke(tenant, hardware_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.post(
    "/hub-credential",
    status_code=status.HTTP_201_CREATED,
    summary="Create or rotate the hub subscriber's user on an external broker (installation admin)",
)
def issue_hub_credential(
    hub: HubDep,
    who: PrincipalDep,
    role: Annotated[Literal["ingest", "publisher"], Query()] = "ingest",
) -> MqttCredentialIssued:
    """``ingest``: the subscriber (``mqtt_username``); ``publisher``: the command publisher
    (``mqtt_out_username``) — two users, since the broker takes usernames as client ids."""
    who.require_admin()
    name = HUB_USERNAME if role == "ingest" else f"{HUB_USERNAME}-out"
    username, password = hub.mqtt_credentials.issue_hub(name)
    return MqttCredentialIssued(username=username, password=password)


@admin_router.get(
    "/auth-files",
    summary="Mosquitto password and ACL files of every stored credential (installation admin)",
)
def auth_files(hub: HubDep, who: PrincipalDep) -> MqttAuthFiles:
    who.require_admin()
    passwd, acl = hub.mqtt_credentials.render()
    return MqttAuthFiles(password_file=passwd, acl_file=acl)
