"""Device provisioning services (P6, issue #6): device types and per-device MQTT credentials.

:class:`DeviceTypes` answers "what should this device send, how often?" for completeness
(:meth:`DeviceTypes.expected_per_day`) and checks the types named at registration.
:class:`MqttCredentials` issues, rotates and revokes MQTT passwords, keeps only their hashes and
rewrites the broker's password and ACL files after each change, calling ``on_change`` (the hub
reloads its embedded Mosquitto there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gridhub.access.mqtt_auth import (
    HUB_USERNAME,
    AuthFiles,
    MqttCredential,
    acl_file,
    check_username,
    device_username,
    hash_password,
    new_password,
    password_file,
    write_auth_files,
)
from gridhub.domain.device_types import (
    BUILTIN_DEVICE_TYPES,
    DeviceType,
    expected_per_day,
    validate_custom_type,
)
from gridhub.domain.registry import Device
from gridhub.errors import Conflict, InvalidRequest, NotFound
from gridhub.storage.devices_catalog import DevicesCatalog
from gridhub.storage.registry import Registry

__all__ = ["DeviceTypes", "MqttCredentials"]


class DeviceTypes:
    """Built-in and tenant-defined device types, cached in memory (this process is the writer)."""

    def __init__(self, catalog: DevicesCatalog, registry: Registry) -> None:
        self._catalog = catalog
        self._registry = registry
        self._lock = threading.Lock()
        self._custom: dict[str, dict[str, DeviceType]] = {}
        for tenant, device_type in catalog.device_types():
            self._custom.setdefault(tenant, {})[device_type.name] = device_type

    def all(self, tenant: str) -> list[DeviceType]:
        """The built-ins, then the tenant's own types by name."""
        self._registry.tenant(tenant)
        custom = self._custom.get(tenant, {})
        return [*BUILTIN_DEVICE_TYPES.values(), *sorted(custom.values(), key=lambda t: t.name)]

    def names(self, tenant: str) -> frozenset[str]:
        return frozenset(t.name for t in self.all(tenant))

    def find(self, tenant: str, name: str) -> DeviceType | None:
        return BUILTIN_DEVICE_TYPES.get(name) or self._custom.get(tenant, {}).get(name)

    def get(self, tenant: str, name: str) -> DeviceType:
        found = self.find(tenant, name)
        if found is None:
            raise NotFound(f"device type {name[:80]!r} is not defined for tenant {tenant!r}")
        return found

    def check(self, tenant: str, name: str) -> str:
        """``name`` if it is a type of ``tenant``; :class:`InvalidRequest` naming the choices."""
        if self.find(tenant, name) is None:
            raise InvalidRequest(
                f"unknown deviceType {name[:80]!r}; known: {', '.join(sorted(self.names(tenant)))}"
            )
        return name

    def define(
        self,
        tenant: str,
        name: str,
        description: str,
        identifiers: Iterable[str],
        interval_s: int | None,
    ) -> DeviceType:
        """Create or replace a tenant-defined type (its identifiers must be known already)."""
        known = self._registry.identifiers(tenant)
        device_type = validate_custom_type(
            name, description, identifiers, interval_s, {i.name for i in known.all()}
        )
        with self._lock:
            self._catalog.put_device_type(tenant, device_type)
            self._custom.setdefault(tenant, {})[name] = device_type
        return device_type

    def expected_per_day(self, device: Device, day: date, zone: ZoneInfo | str) -> dict[str, int]:
        """Expected readings per identifier for ``device`` on local ``day`` in ``zone``.

        Empty for a type that expects nothing (gateway, unknown, or a type since removed).
        A 15-minute series expects 96 on an ordinary day and 92 / 100 on DST change days.
        """
        device_type = self.find(device.tenant, device.device_type)
        if device_type is None:
            return {}
        count = expected_per_day(device_type, day, zone)
        if count == 0:
            return {}
        return dict.fromkeys(device_type.identifiers, count)


class MqttCredentials:
    """MQTT users of the broker: one per device, plus the hub's; hashes only."""

    def __init__(
        self,
        catalog: DevicesCatalog,
        registry: Registry,
        auth_dir: Path | None = None,
        on_change: Callable[[AuthFiles], None] | None = None,
    ) -> None:
        self._catalog = catalog
        self._registry = registry
        self._auth_dir = auth_dir
        self.on_change = on_change
        self._lock = threading.Lock()
        self._runtime: dict[str, MqttCredential] = {}  # not persisted: the hub's per-run user

    def list(self, tenant: str | None = None) -> list[MqttCredential]:
        creds = self._catalog.mqtt_credentials()
        return [c for c in creds if tenant is None or c.tenant == tenant]

    def find(self, username: str) -> MqttCredential | None:
        return self._catalog.mqtt_credential(username)

    def issue(self, tenant: str, hardware_id: str, *, rotate: bool = False) -> tuple[str, str]:
        """(username, password) for a registered device; the password is never stored.

        Refuses a second credential for the same device unless ``rotate`` (which replaces the
        old password at once: the device must be given the new one).
        """
        username = device_username(tenant, hardware_id)
        if self._registry.device(tenant, hardware_id) is None:
            raise NotFound(f"device {hardware_id!r} is not registered in tenant {tenant!r}")
        with self._lock:
            existing = self.find(username)
            if existing is not None and not rotate:
                raise Conflict(f"{username!r} has an MQTT credential already; rotate it instead")
            if existing is None and rotate:
                raise NotFound(f"{username!r} has no MQTT credential to rotate")
            password = new_password()
            now = datetime.now(UTC)
            created = existing.created if existing is not None else now
            cred = MqttCredential(
                username, "device", hash_password(password), created, now, tenant, hardware_id
            )
            self._catalog.put_mqtt_credential(cred)
            self._publish()
        return username, password

    def issue_hub(self, username: str = HUB_USERNAME) -> tuple[str, str]:
        """Create or rotate the stored credential of the hub's subscriber (external broker)."""
        check_username(username)
        with self._lock:
            existing = self.find(username)
            if existing is not None and existing.role != "hub":
                raise Conflict(f"{username!r} is a device's username")
            password = new_password()
            now = datetime.now(UTC)
            created = existing.created if existing is not None else now
            self._catalog.put_mqtt_credential(
                MqttCredential(username, "hub", hash_password(password), created, now)
            )
            self._publish()
        return username, password

    def runtime_hub_credential(self, username: str = HUB_USERNAME) -> tuple[str, str]:
        """A fresh hub credential for this run only (the embedded broker), not persisted."""
        check_username(username)
        password = new_password()
        now = datetime.now(UTC)
        with self._lock:
            self._runtime[username] = MqttCredential(
                username, "hub", hash_password(password), now, now
            )
        return username, password

    def revoke(self, tenant: str, hardware_id: str) -> None:
        username = device_username(tenant, hardware_id)
        with self._lock:
            if self.find(username) is None:
                raise NotFound(f"{username!r} has no MQTT credential")
            self._catalog.delete_mqtt_credential(username)
            self._publish()

    def render(self) -> tuple[str, str]:
        """(password file, ACL file) of the stored credentials: what an external Mosquitto
        needs (hashes only; the embedded broker's per-run hub user is not among them)."""
        creds = self._catalog.mqtt_credentials()
        return password_file(creds), acl_file(creds)

    def write_files(self, directory: Path | None = None) -> AuthFiles:
        """Write the password and ACL files (to ``directory``, else the configured one)."""
        target = directory or self._auth_dir
        if target is None:
            raise InvalidRequest("no directory for the MQTT password and ACL files")
        creds = {c.username: c for c in self._catalog.mqtt_credentials()}
        creds.update(self._runtime)  # the running hub's own user wins over a stored one
        return write_auth_files(target, creds.values())

    def _publish(self) -> None:
        if self._auth_dir is None:
            return
        files = self.write_files()
        if self.on_change is not None:
            self.on_change(files)
