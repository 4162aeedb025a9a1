"""Provisioning over HTTP and the CLI (issue #6): device types, the CSV dry run, expected
readings, MQTT credentials issued, rotated and written for an external Mosquitto."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gridhub.access.mqtt_auth import verify_password
from gridhub.hub import Hub
from gridhub.ingest.embedded_broker import EmbeddedBroker, MosquittoAuth, _find_mosquitto
from gridhub.ingest.mqtt_source import parse_mqtt_url
from helpers import Api, require, seed_tenant

pytestmark = pytest.mark.integration
T = "/api/v1/tenants/linear"


def test_device_types_and_the_csv_dry_run(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    types = {t["name"]: t for t in client.get(f"{T}/device-types").json()}
    assert types["smart-meter"]["interval_s"] == 900 and types["smart-meter"]["builtin"]
    assert types["gateway"]["identifiers"] == []

    assert client.post(f"{T}/identifiers", json={"name": "hp.cop", "unit": "#"}).status_code == 201
    body = {"name": "heat-pump", "identifiers": ["hp.cop"], "interval_s": 300}
    made = client.post(f"{T}/device-types", json=body)
    assert made.status_code == 201 and made.json()["builtin"] is False
    assert client.post(f"{T}/device-types", json={**body, "name": "boiler"}).status_code == 409
    bad = client.post(f"{T}/device-types", json={**body, "name": "hp2", "identifiers": ["x.y"]})
    assert bad.status_code == 422 and "unknown identifier" in bad.text
    other = api.client(seed_tenant(hub, "other"))
    assert other.post(f"{T}/device-types", json=body).status_code == 403
    assert "heat-pump" not in {
        t["name"] for t in other.get("/api/v1/tenants/other/device-types").json()
    }

    sheet = (
        "hardwareId,deviceType,site\n"
        "hp-001,heat-pump,hh001\n"
        "hp-002,heatpump,hh001\n"  # misspelt: line 3
        "m-003,smart-meter,hh001\n"
    )
    dry = client.post(f"{T}/devices/import?dry_run=true", content=sheet)
    assert dry.status_code == 422
    assert dry.json()["errors"] == [
        "line 3: deviceType 'heatpump' is not a device type of this tenant"
    ]
    fixed = sheet.replace("heatpump", "heat-pump")
    dry = client.post(f"{T}/devices/import?dry_run=true", content=fixed)
    assert dry.json() == {"sites": 1, "devices": 3, "errors": [], "dry_run": True}
    assert "hp-001" not in {d["hardware_id"] for d in client.get(f"{T}/devices").json()}
    assert client.post(f"{T}/devices/import", content=fixed).json()["dry_run"] is False
    assert "hp-001" in {d["hardware_id"] for d in client.get(f"{T}/devices").json()}

    one = client.post(f"{T}/devices", json={"hardware_id": "x1", "device_type": "toaster"})
    assert one.status_code == 422 and "unknown deviceType" in one.text

    # expected readings per local day, for completeness (Europe/Brussels: DST on 2026-03-29)
    spring = client.get(f"{T}/devices/hh001-meter/expected", params={"day": "2026-03-29"}).json()
    assert spring == {
        "electricity.energy.active.consumed.total": 92,
        "electricity.energy.active.injected.total": 92,
    }
    autumn = client.get(f"{T}/devices/hp-001/expected", params={"day": "2026-10-25"}).json()
    assert autumn == {"hp.cop": 300}  # 25 h / 5 min
    device = hub.registry.device("linear", "hp-001")
    assert device is not None
    june = hub.device_types.expected_per_day(device, date(2026, 6, 1), "Europe/Brussels")
    assert june == {"hp.cop": 288}


def test_credentials_are_shown_once_and_rotated(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub, devices=("hh001-meter", "aa:bb:cc")))
    url = f"{T}/devices/hh001-meter/mqtt-credentials"
    issued = client.post(url)
    assert issued.status_code == 201
    first = issued.json()
    assert first["username"] == "linear/hh001-meter"
    assert first["events_topic"] == "gridhub/linear/hh001-meter/events"
    assert client.post(url).status_code == 409  # one credential per device: rotate it
    rotated = client.post(url, params={"rotate": "true"}).json()
    assert rotated["password"] != first["password"]
    stored = hub.mqtt_credentials.find("linear/hh001-meter")
    assert stored is not None and verify_password(rotated["password"], stored.hash)
    assert not verify_password(first["password"], stored.hash)
    listed = client.get(f"{T}/mqtt-credentials").json()
    assert [c["username"] for c in listed] == ["linear/hh001-meter"]
    assert "password" not in listed[0] and "hash" not in listed[0]
    assert client.post(f"{T}/devices/nope/mqtt-credentials").status_code == 404
    colon = client.post(f"{T}/devices/aa:bb:cc/mqtt-credentials")
    assert colon.status_code == 422 and "':'" in colon.text
    other = api.client(seed_tenant(hub, "other"))
    assert other.post(url, params={"rotate": "true"}).status_code == 403
    # tenant admins may not read the installation's files
    assert client.get("/api/v1/mqtt/auth-files").status_code == 403
    assert client.delete(url).status_code == 204
    assert hub.mqtt_credentials.find("linear/hh001-meter") is None


def test_cli_writes_files_an_external_mosquitto_enforces(
    hub: Hub, api: Api, tmp_path: Path
) -> None:
    require(_find_mosquitto() is not None, "no mosquitto binary installed")
    seed_tenant(hub, devices=("hh001-meter", "hh002-meter"))
    assert hub.admin_secret is not None
    out = tmp_path / "mosquitto"
    result = subprocess.run(
        [sys.executable, "-m", "gridhub.cli.main", "mqtt", "credentials", "--out", str(out),
         "--issue", "linear/hh001-meter", "--issue", "linear/hh002-meter", "--hub-user"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "300", "GRIDHUB_URL": api.url,
             "GRIDHUB_TOKEN": hub.admin_secret},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    passwords = dict(re.findall(r"(\S+)\s+password \(shown once\): (\S+)", result.stdout))
    assert set(passwords) == {
        "linear/hh001-meter",
        "linear/hh002-meter",
        "gridhub-hub",
        "gridhub-hub-out",  # the command publisher's own user
    }
    assert "systemctl reload mosquitto" in result.stdout and "kill -HUP" in result.stdout
    assert "wrote" in result.stdout and "(4 users)" in result.stdout

    auth = MosquittoAuth(out / "mosquitto.passwd", out / "mosquitto.acl")
    with EmbeddedBroker(prefer="mosquitto", auth=auth) as broker:
        host, port = parse_mqtt_url(broker.url)

        def login(user: str, password: str) -> bool:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.username_pw_set(user, password)
            try:
                return client.connect(host, port) == 0 and _connack_ok(client)
            finally:
                client.disconnect()

        for user, password in passwords.items():
            assert login(user, password), user
        assert not login("linear/hh001-meter", passwords["linear/hh002-meter"])


def _connack_ok(client: mqtt.Client) -> bool:
    """Run the network loop until the CONNACK arrives; whether it accepted the login."""
    outcome: list[bool] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: outcome.append(not rc.is_failure)
    for _ in range(100):
        client.loop(0.1)
        if outcome:
            return outcome[0]
    pytest.fail("no CONNACK")
