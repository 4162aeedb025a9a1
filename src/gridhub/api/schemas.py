"""Request and response schemas of the API (separate create and public shapes)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from gridhub.domain.registry import UnknownDevicePolicy


class TenantCreate(BaseModel):
    id: str = Field(description="lowercase slug, e.g. 'linear'", max_length=63)
    name: str = Field("", max_length=200)
    timezone: str = Field("UTC", description="IANA zone; days and rollups follow it", max_length=64)
    unknown_devices: UnknownDevicePolicy = UnknownDevicePolicy.REJECT


class TenantUpdate(BaseModel):
    name: str | None = Field(None, max_length=200)
    unknown_devices: UnknownDevicePolicy | None = None


class TenantPublic(BaseModel):
    id: str
    name: str
    timezone: str
    unknown_devices: UnknownDevicePolicy


class TokenCreate(BaseModel):
    role: str | None = Field(
        None,
        description="admin or device; a stakeholder's token takes the stakeholder's kind "
        "(default: admin without a stakeholder)",
        max_length=32,
    )
    name: str = Field("", max_length=200)
    stakeholder: str | None = Field(
        None, description="the stakeholder it acts for (its kind becomes the role)", max_length=128
    )
    service: str | None = Field(
        None, description="the stakeholder's service (owner policies may name it)", max_length=128
    )
    expires: datetime | None = Field(None, description="ISO 8601 with offset; none: no expiry")


class TokenPublic(BaseModel):
    id: str
    tenant: str | None
    role: str
    name: str
    created: datetime
    revoked: bool
    stakeholder: str | None = None
    service: str | None = None
    expires: datetime | None = None


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret; shown only in this answer")


class SiteBody(BaseModel):
    id: str = Field(max_length=128)
    name: str = Field("", max_length=200)
    location: str = Field("", max_length=200)
    pilot_phase: str = Field("", max_length=100)
    experiment: str = Field("", max_length=100)
    appliance_types: list[str] = Field(default_factory=list, max_length=50)
    has_pv: bool = False


class DeviceBody(BaseModel):
    hardware_id: str = Field(max_length=128)
    device_type: str = Field("unknown", max_length=100)
    site: str | None = Field(None, max_length=128)
    name: str = Field("", max_length=200)


class IdentifierBody(BaseModel):
    name: str = Field(max_length=128)
    unit: str = Field(max_length=32)


class IdentifierPublic(IdentifierBody):
    builtin: bool


class ImportReport(BaseModel):
    sites: int
    devices: int
    errors: list[str]
    dry_run: bool


class RejectionPublic(BaseModel):
    index: int
    reason: str
    detail: str


class IngestReceipt(BaseModel):
    accepted: int = Field(description="messages made durable")
    readings: int = Field(description="readings in the accepted messages")
    rejected: list[RejectionPublic] = Field(description="dead-lettered messages, by index")


class PointPublic(BaseModel):
    ts: datetime
    value: float


class SeriesPublic(BaseModel):
    tenant: str
    device: str
    identifier: str
    unit: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    resolution: str
    function: str
    timezone: str
    count: int
    points: list[PointPublic]


class StatePublic(BaseModel):
    identifier: str
    ts: datetime
    value: float
    received: datetime


class AlertPublic(BaseModel):
    device: str
    ts: datetime
    type: str
    level: str
    message: str
    metadata: str
    received: datetime


class DeadLetterPublic(BaseModel):
    id: int
    tenant: str | None
    source: str
    received: datetime
    reason: str
    detail: str
    raw: str = Field(description="the bytes as received, decoded as UTF-8 with replacement")
