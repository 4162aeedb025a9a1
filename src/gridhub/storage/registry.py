"""The registry (P5, P6): tenants, sites, devices and identifiers, cached in memory.

Validation of every inbound message asks "is this tenant known, this device registered, this
identifier allowed?"; answering from memory keeps the ingest path free of database round trips.
The catalog is the durable copy; this process is its only writer, so the cache stays exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace

from gridhub.domain.identifiers import Identifier, IdentifierRegistry, validate_custom
from gridhub.domain.registry import (
    Device,
    Site,
    Tenant,
    UnknownDevicePolicy,
    check_site_id,
    check_tenant_id,
    check_timezone,
)
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import Conflict, InvalidRequest, NotFound, RejectedMessage
from gridhub.storage.base import Catalog


class Registry:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.RLock()
        self._tenants: dict[str, Tenant] = {}
        self._identifiers: dict[str, IdentifierRegistry] = {}
        self._devices: dict[str, dict[str, Device]] = {}
        self._sites: dict[str, dict[str, Site]] = {}
        for tenant in catalog.tenants():
            self._load(tenant)

    def _load(self, tenant: Tenant) -> None:
        self._identifiers[tenant.id] = IdentifierRegistry(
            {i.name: i for i in self._catalog.identifiers(tenant.id)}
        )
        self._devices[tenant.id] = {d.hardware_id: d for d in self._catalog.devices(tenant.id)}
        self._sites[tenant.id] = {s.id: s for s in self._catalog.sites(tenant.id)}
        self._tenants[tenant.id] = tenant

    # -- tenants --------------------------------------------------------------------------------

    def create_tenant(self, tenant: Tenant, exist_ok: bool = False) -> Tenant:
        check_tenant_id(tenant.id)
        check_timezone(tenant.timezone)
        with self._lock:
            existing = self._tenants.get(tenant.id)
            if existing is not None:
                if exist_ok:
                    return existing
                raise Conflict(f"tenant {tenant.id!r} exists")
            self._catalog.put_tenant(tenant)
            # the maps first: a reader that finds the tenant must find its maps too
            self._identifiers[tenant.id] = IdentifierRegistry()
            self._devices[tenant.id] = {}
            self._sites[tenant.id] = {}
            self._tenants[tenant.id] = tenant
            return tenant

    def update_tenant(
        self, tenant_id: str, name: str | None = None, unknown: UnknownDevicePolicy | None = None
    ) -> Tenant:
        """Change a tenant's name or unknown-device policy (its time zone is fixed: day
        rollups are bucketed by it)."""
        with self._lock:
            tenant = self.tenant(tenant_id)
            updated = replace(
                tenant,
                name=name if name is not None else tenant.name,
                unknown_devices=unknown if unknown is not None else tenant.unknown_devices,
            )
            self._catalog.put_tenant(updated)
            self._tenants[tenant_id] = updated
            return updated

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return tenant

    def find_tenant(self, tenant_id: str) -> Tenant | None:
        return self._tenants.get(tenant_id)

    def tenants(self) -> list[Tenant]:
        return sorted(self._tenants.values(), key=lambda t: t.id)

    # -- identifiers ----------------------------------------------------------------------------

    def identifiers(self, tenant_id: str) -> IdentifierRegistry:
        registry = self._identifiers.get(tenant_id)
        if registry is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return registry

    def register_identifier(self, tenant_id: str, name: str, unit: str) -> Identifier:
        identifier = validate_custom(name, unit)
        with self._lock:
            registry = self.identifiers(tenant_id)
            existing = registry.get(name)
            if existing is not None and existing.unit == unit:
                return existing
            registry.add(identifier)
            self._catalog.put_identifier(tenant_id, identifier)
            return identifier

    def ensure_identifiers(self, tenant_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Register the (name, unit) identifiers an adapter emits, unless already there."""
        known = self.identifiers(tenant_id)
        for name, unit in pairs:
            if name not in known:
                self.register_identifier(tenant_id, name, unit)

    # -- sites and devices ----------------------------------------------------------------------

    def register_sites(self, sites: Sequence[Site]) -> None:
        for site in sites:
            self.tenant(site.tenant)
            check_site_id(site.id)
        with self._lock:
            self._catalog.put_sites(sites)
            for site in sites:
                self._sites[site.tenant][site.id] = site

    def sites(self, tenant_id: str) -> list[Site]:
        self.tenant(tenant_id)
        return sorted(self._sites[tenant_id].values(), key=lambda s: s.id)

    def site(self, tenant_id: str, site_id: str) -> Site:
        self.tenant(tenant_id)
        site = self._sites[tenant_id].get(site_id)
        if site is None:
            raise NotFound(f"site {site_id!r} not found in tenant {tenant_id!r}")
        return site

    def register_devices(self, devices: Sequence[Device]) -> None:
        for device in devices:
            self.tenant(device.tenant)
            try:
                check_hardware_id(device.hardware_id)
            except RejectedMessage as exc:
                raise InvalidRequest(exc.detail) from None
            if device.site is not None and device.site not in self._sites[device.tenant]:
                raise InvalidRequest(
                    f"device {device.hardware_id!r}: site {device.site!r} is not registered"
                )
        with self._lock:
            self._catalog.put_devices(devices)
            for device in devices:
                self._devices[device.tenant][device.hardware_id] = device

    def device(self, tenant_id: str, hardware_id: str) -> Device | None:
        devices = self._devices.get(tenant_id)
        return None if devices is None else devices.get(hardware_id)

    def devices(self, tenant_id: str, site: str | None = None) -> list[Device]:
        self.tenant(tenant_id)
        devices: Iterable[Device] = self._devices[tenant_id].values()
        if site is not None:
            devices = (d for d in devices if d.site == site)
        return sorted(devices, key=lambda d: d.hardware_id)

    def auto_register(self, tenant_id: str, hardware_id: str) -> Device:
        """Register an unknown device on first contact (tenant policy ``auto_register``)."""
        device = Device(tenant_id, hardware_id, device_type="auto-registered")
        with self._lock:
            known = self.device(tenant_id, hardware_id)
            if known is not None:
                return known
            self._catalog.put_devices([device])
            self._devices[tenant_id][hardware_id] = device
        return device
