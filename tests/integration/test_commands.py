"""Commands end to end (O1) over the real Mosquitto: invoke over HTTP, devices acknowledge
(or not) over MQTT, statuses follow, and survive a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridhub.access.tokens import Principal
from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import Hub, build_hub
from gridhub.storage.base import AckRecord, WriteBatch
from helpers import make_settings, wait_for
from outbound_devices import SimDevice

pytestmark = pytest.mark.integration
FAST = {"command_retry_s": 0.2, "command_retry_max_s": 0.4}


@dataclass
class Running:
    hub: Hub
    server: ApiServer
    client: httpx.Client
    tenant: str
    url: str
    devices: list[SimDevice]

    def device(self, hardware_id: str, **kwargs: Any) -> SimDevice:
        dev = SimDevice(self.url, self.tenant, hardware_id, **kwargs)
        self.devices.append(dev)
        return dev

    def invoke(self, device: str, command: str, **body: Any) -> httpx.Response:
        return self.client.post(
            f"/api/v1/tenants/{self.tenant}/devices/{device}/commands",
            json={"command": command, **body},
        )

    def status(self, invocation: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/tenants/{self.tenant}/commands/{invocation}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def stop(self) -> None:
        for dev in self.devices:
            dev.disconnect()
        self.client.close()
        self.server.stop()
        self.hub.stop()


def start_hub(data_dir: Path, url: str, tenant: str | None = None) -> Running:
    """A hub on ``data_dir`` with MQTT on ``url``; with ``tenant``, that tenant is created."""
    hub = build_hub(make_settings(data_dir, mqtt_url=url, **FAST))
    hub.ensure_admin_token()
    tenant_id = tenant or f"ob{uuid.uuid4().hex[:10]}"
    if hub.registry.find_tenant(tenant_id) is None:
        hub.registry.create_tenant(Tenant(tenant_id, "Outbound", "Europe/Brussels"))
        hub.registry.register_sites([Site(tenant_id, "hh1", location="Genk")])
        hub.registry.register_devices(
            [
                Device(tenant_id, "hh1-boiler", "boiler", "hh1"),
                Device(tenant_id, "hh1-plug", "smart-plug", "hh1"),
                Device(tenant_id, "hh1-meter", "smart-meter", "hh1"),
            ]
        )
    _record, secret = hub.tokens.create(tenant_id, "admin", "outbound test")
    hub.start(mqtt=True)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    return Running(hub, server, client, tenant_id, url, [])


@pytest.fixture
def running(tmp_path: Path, mosquitto_url: str) -> Iterator[Running]:
    run = start_hub(tmp_path, mosquitto_url)
    yield run
    run.stop()


def test_device_that_acknowledges(running: Running) -> None:
    boiler = running.device("hh1-boiler")
    boiler.connect()
    r = running.invoke("hh1-boiler", "setSetpoint", parameters={"temperature": 55})
    assert r.status_code == 201, r.text
    inv = r.json()
    assert inv["status"] in ("pending", "sent") and inv["parameters"] == {"temperature": 55.0}
    wait_for(lambda: running.status(inv["id"])["status"] == "acknowledged", what="the ack")
    done = running.status(inv["id"])
    # a resend may cross the ack (retries are 0.2 s apart here); the device runs it once
    assert done["response"] == "done" and done["attempts"] >= 1 and done["finished"]
    message = boiler.executed[0]["command"]
    assert message["invocation"]["id"] == inv["id"]
    assert message["command"]["name"] == "setSetpoint"
    assert message["command"]["parameters"] == [
        {"name": "temperature", "type": "Double", "required": True},
        {"name": "until", "type": "DateTime", "required": False},
    ]
    assert message["parameters"] == {"temperature": 55.0}
    assert message["invocation"]["parameterValues"] == {"temperature": "55.0"}
    assert boiler.ids() == [inv["id"]]


def test_device_reporting_failure(running: Running) -> None:
    running.device("hh1-meter", behaviour="fail").connect()
    inv = running.invoke("hh1-meter", "setRelay", parameters={"closed": False}).json()
    wait_for(lambda: running.status(inv["id"])["status"] == "failed", what="the failure")
    assert running.status(inv["id"])["response"].startswith("error")


def test_silent_device_expires_after_retries(running: Running) -> None:
    plug = running.device("hh1-plug", behaviour="silent")
    plug.connect()
    inv = running.invoke("hh1-plug", "on", ttl_s=3, max_attempts=3).json()
    wait_for(lambda: running.status(inv["id"])["status"] == "expired", what="the expiry")
    final = running.status(inv["id"])
    assert final["attempts"] == 3
    assert len(plug.received) == 3  # three sends, each delivered
    assert plug.ids() == [inv["id"]]  # executed once
    listed = running.client.get(
        f"/api/v1/tenants/{running.tenant}/commands", params={"status": "expired"}
    ).json()
    assert [i["id"] for i in listed] == [inv["id"]]


def test_offline_device_gets_it_on_reconnect(running: Running) -> None:
    """Persistent session: the broker queues the sends while the device is away."""
    plug = running.device("hh1-plug", persistent=True)
    plug.connect()
    plug.disconnect()
    inv = running.invoke("hh1-plug", "off", parameters={"duration": 600}, ttl_s=60,
                         max_attempts=3).json()  # fmt: skip
    wait_for(lambda: running.status(inv["id"])["attempts"] == 3, what="three sends")
    assert running.status(inv["id"])["status"] == "sent"
    plug.connect()
    wait_for(lambda: running.status(inv["id"])["status"] == "acknowledged", what="the ack")
    wait_for(lambda: len(plug.received) == 3, what="the queued copies")
    assert plug.ids() == [inv["id"]] and plug.acks_sent == 1  # no second execution


def test_device_heard_from_again_gets_a_resend(running: Running) -> None:
    """No persistent session: the sends are lost, the hub resends when the device speaks."""
    inv = running.invoke("hh1-boiler", "boilerOn", ttl_s=60, max_attempts=2).json()
    wait_for(lambda: running.status(inv["id"])["attempts"] == 2, what="two sends")
    boiler = running.device("hh1-boiler")
    boiler.connect()
    assert boiler.received == []
    boiler.send_measurement()
    wait_for(lambda: running.status(inv["id"])["status"] == "acknowledged", what="the ack")
    assert running.status(inv["id"])["attempts"] == 3 and boiler.ids() == [inv["id"]]


@pytest.mark.parametrize(
    ("device", "body", "status", "detail"),
    [
        ("hh1-boiler", {"command": "launch"}, 422,
         "unknown command 'launch' for device 'hh1-boiler' (type 'boiler'); it accepts: "),
        ("hh1-boiler", {"command": "setSetpoint"}, 422,
         "command 'setSetpoint': required parameter 'temperature' (Double) is missing"),
        ("hh1-boiler", {"command": "setSetpoint", "parameters": {"temperature": "hot"}}, 422,
         "command 'setSetpoint', parameter 'temperature': expected Double (a number), got 'hot'"),
        ("hh1-plug", {"command": "setSetpoint", "parameters": {"temperature": 50}}, 422,
         "unknown command 'setSetpoint' for device 'hh1-plug'"),
        ("hh1-plug", {"command": "on", "ttl_s": 0}, 422, "ttl must be in"),
        ("nope", {"command": "on"}, 404, "device 'nope' not found"),
    ],
)  # fmt: skip
def test_invocation_errors(
    running: Running, device: str, body: dict[str, Any], status: int, detail: str
) -> None:
    r = running.client.post(
        f"/api/v1/tenants/{running.tenant}/devices/{device}/commands", json=body
    )
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert running.client.get(f"/api/v1/tenants/{running.tenant}/commands").json() == []


def test_only_admin_and_dso_may_command(running: Running) -> None:
    _r, researcher = running.hub.tokens.create(running.tenant, "researcher", "r")
    _r, dso = running.hub.tokens.create(running.tenant, "dso", "d")
    _r, other = running.hub.tokens.create(None, "admin", "other")  # unused: installation
    path = f"/api/v1/tenants/{running.tenant}/devices/hh1-plug/commands"
    with httpx.Client(base_url=running.server.url, timeout=30) as c:
        r = c.post(path, json={"command": "on"}, headers={"Authorization": f"Bearer {researcher}"})
        assert r.status_code == 403 and "researcher token cannot send commands" in r.text
        r = c.post(path, json={"command": "on"}, headers={"Authorization": f"Bearer {dso}"})
        assert r.status_code == 201
        running.hub.registry.create_tenant(Tenant("ob-other", "Other"), exist_ok=True)
        _r, foreign = running.hub.tokens.create("ob-other", "admin", "f")
        r = c.post(path, json={"command": "on"}, headers={"Authorization": f"Bearer {foreign}"})
        assert r.status_code == 403


def test_idempotency_key_never_creates_two(running: Running) -> None:
    body = {"command": "setLimit", "parameters": {"limitKw": 3.5}, "idempotency_key": "k-1"}
    first = running.invoke("hh1-meter", **body)
    again = running.invoke("hh1-meter", **body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    clash = running.invoke("hh1-meter", "setLimit", parameters={"limitKw": 9},
                           idempotency_key="k-1")  # fmt: skip
    assert clash.status_code == 409 and first.json()["id"] in clash.json()["detail"]
    header = running.client.post(
        f"/api/v1/tenants/{running.tenant}/devices/hh1-meter/commands",
        json={"command": "setLimit", "parameters": {"limitKw": 3.5}},
        headers={"Idempotency-Key": "k-1"},
    )
    assert header.status_code == 200 and header.json()["id"] == first.json()["id"]
    listed = running.client.get(f"/api/v1/tenants/{running.tenant}/commands").json()
    assert len(listed) == 1


def test_tenant_defined_spec(running: Running) -> None:
    path = f"/api/v1/tenants/{running.tenant}/command-specs/setMode"
    spec = {
        "description": "Boiler comfort mode",
        "device_types": ["boiler"],
        "parameters": [{"name": "mode", "type": "String", "required": True}],
    }
    assert running.client.put(path, json=spec).status_code == 200
    reserved = running.client.put(path.replace("setMode", "setTariff"), json=spec)
    assert reserved.status_code == 422 and "reserved" in reserved.json()["detail"]
    specs = running.client.get(
        f"/api/v1/tenants/{running.tenant}/command-specs", params={"device_type": "boiler"}
    ).json()
    assert "setMode" in {s["name"] for s in specs}
    boiler = running.device("hh1-boiler")
    boiler.connect()
    r = running.invoke("hh1-boiler", "setMode", parameters={"mode": 3})
    assert r.status_code == 422 and "expected String" in r.json()["detail"]
    inv = running.invoke("hh1-boiler", "setMode", parameters={"mode": "eco"}).json()
    wait_for(lambda: running.status(inv["id"])["status"] == "acknowledged", what="the ack")
    assert boiler.executed[0]["command"]["command"]["description"] == "Boiler comfort mode"
    assert running.client.delete(path).status_code == 204
    assert running.invoke("hh1-boiler", "setMode", parameters={"mode": "eco"}).status_code == 422


def test_statuses_and_retries_survive_a_restart(tmp_path: Path, mosquitto_url: str) -> None:
    first = start_hub(tmp_path, mosquitto_url)
    tenant = first.tenant
    try:
        boiler = first.device("hh1-boiler")
        boiler.connect()
        done = first.invoke("hh1-boiler", "boilerOn").json()
        wait_for(lambda: first.status(done["id"])["status"] == "acknowledged", what="the ack")
        boiler.disconnect()
        # nobody listens on the plug: sends go nowhere; one left to expire while we are down
        waiting = first.invoke("hh1-plug", "on", ttl_s=120, max_attempts=50).json()
        doomed = first.invoke("hh1-meter", "setRelay", parameters={"closed": True}, ttl_s=2,
                              max_attempts=1).json()  # fmt: skip
        wait_for(lambda: first.status(waiting["id"])["attempts"] >= 1, what="a first send")
    finally:
        first.stop()
    second = start_hub(tmp_path, mosquitto_url, tenant)
    try:
        assert second.status(done["id"])["status"] == "acknowledged"
        assert second.status(waiting["id"])["status"] in ("sent", "acknowledged")
        wait_for(lambda: second.status(doomed["id"])["status"] == "expired", what="the expiry")
        plug = second.device("hh1-plug")
        plug.connect()  # the restarted hub keeps resending until the plug answers
        wait_for(
            lambda: second.status(waiting["id"])["status"] == "acknowledged",
            timeout=20,
            what="the resumed retry",
        )
        assert plug.ids() == [waiting["id"]]
    finally:
        second.stop()


def test_ack_stored_while_down_is_matched_on_start(tmp_path: Path) -> None:
    """An Acknowledge committed but not yet applied (a crash in between) is found on start."""
    hub = build_hub(make_settings(tmp_path))
    hub.registry.create_tenant(Tenant("acks", "Acks"))
    hub.registry.register_devices([Device("acks", "m1", "smart-meter")])
    hub.start(mqtt=False)  # no transport: the command stays pending
    who = Principal("t1", "acks", "admin")
    inv, created = hub.commands.invoke(who, "acks", "m1", "ping", {})
    other, _ = hub.commands.invoke(who, "acks", "m1", "ping", {})
    assert created and hub.commands.get("acks", inv.id).status == "pending"
    hub.stop()
    hub = build_hub(make_settings(tmp_path))
    try:
        now_us = int(inv.created * 1e6)
        hub.store.write(
            WriteBatch(
                acks=[
                    AckRecord("acks", "m1", now_us, inv.id, "pong", now_us),
                    AckRecord("acks", "m2", now_us, other.id, "not its device", now_us),
                ]
            )
        )
        hub.start(mqtt=False)
        assert hub.commands.get("acks", inv.id).status == "acknowledged"
        assert hub.commands.get("acks", inv.id).response == "pong"
        assert hub.commands.get("acks", other.id).status == "pending"
    finally:
        hub.stop()


def gridhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridhub.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_command_send_status_and_tariff(running: Running) -> None:
    boiler = running.device("hh1-boiler")
    boiler.connect()
    secret = running.client.headers["Authorization"].removeprefix("Bearer ")
    common = ["--tenant", running.tenant, "--url", running.server.url, "--token", secret]
    sent = gridhub("command", "send", "hh1-boiler", "setSetpoint", "-p", "temperature=55",
                   "--wait", "30", *common)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "acknowledged" in sent.stdout and "setSetpoint → hh1-boiler" in sent.stdout
    invocation = sent.stdout.split()[0]
    shown = gridhub("command", "status", invocation, *common)
    assert shown.returncode == 0 and "acknowledged" in shown.stdout
    bad = gridhub("command", "send", "hh1-boiler", "setSetpoint", "-p", "temperature=hot",
                  *common)  # fmt: skip
    assert bad.returncode == 1 and "expected Double" in bad.stderr
    day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    published = gridhub("tariff", "publish", "--site", "hh1", "--day", day,
                        "--period", "00:00-07:00=0.18:night", "--period", "07:00-24:00=0.3",
                        *common)  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert f"tou {day}  1 households, 3 devices" in published.stdout
    listed = gridhub("tariff", "list", "--from", day, "--to", day, *common)
    assert listed.returncode == 0 and "00:00-07:00=0.18 07:00-24:00=0.3" in listed.stdout
    wrong = gridhub("tariff", "publish", "--site", "hh1", "--day", day,
                    "--period", "00:00-07:00=0.18", *common)  # fmt: skip
    assert wrong.returncode == 1 and "must end at 24:00" in wrong.stderr
