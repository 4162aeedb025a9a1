"""Tenants, sites (households) and devices (P5, P6): plain types and their naming rules."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from gridhub.domain.validation import ID_PATTERN
from gridhub.errors import InvalidRequest

#: hardwareIds of the virtual devices that carry a topology node's grid service results
GRID_DEVICE_PREFIX = "grid:"
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MAX_SITE_ID_LENGTH = 128


class UnknownDevicePolicy(StrEnum):
    """What to do with a message from a ``hardwareId`` the tenant has not registered."""

    REJECT = "reject"
    AUTO_REGISTER = "auto_register"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    timezone: str = "UTC"
    unknown_devices: UnknownDevicePolicy = UnknownDevicePolicy.REJECT

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Site:
    """A household or other connection point, with the attributes reports group by."""

    tenant: str
    id: str
    name: str = ""
    location: str = ""
    pilot_phase: str = ""
    experiment: str = ""
    appliance_types: tuple[str, ...] = field(default_factory=tuple)
    has_pv: bool = False


@dataclass(frozen=True, slots=True)
class Device:
    tenant: str
    hardware_id: str
    device_type: str = "unknown"
    site: str | None = None
    name: str = ""


def check_tenant_id(tenant_id: str) -> str:
    if not _SLUG_RE.fullmatch(tenant_id):
        raise InvalidRequest(
            f"tenant id {tenant_id[:64]!r} must be 1..63 lowercase letters, digits, '-' or '_'"
        )
    return tenant_id


def check_site_id(site_id: str) -> str:
    if len(site_id) > MAX_SITE_ID_LENGTH or not ID_PATTERN.fullmatch(site_id):
        raise InvalidRequest(
            f"site id {site_id[:64]!r} must be 1..128 letters, digits or . _ : @ -"
        )
    return site_id


def check_timezone(name: str) -> str:
    # zoneinfo reads files named by the key: a directory ("America") or an over-long name
    # raises OSError rather than ZoneInfoNotFoundError
    if not name or len(name) > 64 or name not in _zone_names():
        raise InvalidRequest(f"unknown IANA time zone {name[:64]!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest(f"unknown IANA time zone {name[:64]!r}") from None
    return name


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())
