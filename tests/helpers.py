"""Helpers shared by the tests (imported as ``helpers``; ``tests`` is on the pytest path)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gridhub.config import Settings
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import Hub

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip when a service is missing; fail instead under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} — CI=true requires it", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "http_port": 0,
        "mqtt_client_id": f"gridhub-test-{uuid.uuid4().hex[:10]}",
        # the tests' webhook receivers (retailer platforms, subscribers) listen on 127.0.0.1
        "webhook_allow": ["127.0.0.1"],
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Api:
    """A running API server: its URL, an installation-admin client, and clients per token."""

    url: str
    admin: httpx.Client
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in (*self.clients, self.admin):
            client.close()


def seed_tenant(
    hub: Hub,
    tenant: str = "linear",
    zone: str = "Europe/Brussels",
    devices: tuple[str, ...] = ("hh001-meter",),
) -> str:
    """Create a tenant with one site and devices; return a tenant admin token."""
    hub.registry.create_tenant(Tenant(tenant, tenant.title(), zone))
    hub.registry.register_sites([Site(tenant, "hh001", "Household 1", has_pv=True)])
    hub.registry.register_devices([Device(tenant, d, "smart-meter", "hh001") for d in devices])
    _record, secret = hub.tokens.create(tenant, "admin", "test")
    return secret


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def gridhub(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``gridhub`` command line as a user would: a real process."""
    return subprocess.run(
        [sys.executable, "-m", "gridhub.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def stakeholder_token(hub: Hub, tenant: str, kind: str, name: str = "test") -> str:
    """A token acting for a new stakeholder of ``kind`` (dso, retailer, …): what it reads
    follows the kind's default rights (docs/access.md)."""
    from gridhub.domain.access import Kind

    existing = {s.id for s in hub.access.directory.stakeholders(tenant)}
    sid = next(f"{kind}-{i}" for i in range(1, 10_000) if f"{kind}-{i}" not in existing)
    stakeholder = hub.access.directory.create_stakeholder(tenant, sid, Kind(kind), name)
    return hub.tokens.create(tenant, kind, name, stakeholder=stakeholder.id)[1]
