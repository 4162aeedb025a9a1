"""Per-device MQTT credentials and TLS against a real, private Mosquitto (issue #6).

The hub runs its embedded Mosquitto with ``mqtt_auth`` and a TLS listener made from
``gridhub certs dev`` certificates; the machine's Mosquitto on 1883 is never touched. Shows that
a device can publish only to its own events topic, cannot subscribe to ``#`` or another device's
commands, that a rotated password replaces the old one after the automatic reload, and that
MQTTS and HTTPS work with the dev CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from gridhub.access.dev_certs import DevCerts, make_dev_certs
from gridhub.access.mqtt_auth import verify_password
from gridhub.cli.server import ApiServer
from gridhub.hub import Hub, build_hub
from gridhub.ingest.embedded_broker import (
    EmbeddedBroker,
    MosquittoAuth,
    MosquittoTls,
    _find_mosquitto,
)
from gridhub.ingest.mqtt_source import parse_mqtt_url
from gridhub.outbound.mqtt_publisher import Outgoing
from helpers import make_settings, require, seed_tenant, wait_for

pytestmark = pytest.mark.integration
TENANT = "linear"
P = "electricity.power.active.consumed.total"


def payload(device: str, value: float, minute: int = 0) -> bytes:
    return json.dumps(
        {
            "hardwareId": device,
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: value},
                "updateState": True,
                "eventDate": f"2026-11-20T10:{minute:02d}:00+01:00",
            },
        }
    ).encode()


class Device:
    """A paho client logging in as a device; records connect results and SUBACK codes."""

    def __init__(
        self, url: str, username: str | None, password: str | None, ca: Path | None = None
    ) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"dev-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if url.startswith("mqtts://"):
            self.client.tls_set(ca_certs=str(ca) if ca else None)
        self.result: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.subacks: dict[int, list[mqtt.ReasonCode]] = {}
        self.suback_event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.result = reason_code
        if not reason_code.is_failure:
            self.connected.set()
        self.answered.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        self.subacks[mid] = list(reason_codes)
        self.suback_event.set()

    def connect(self) -> bool:
        """True if the broker accepted the login."""
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.answered.wait(10):
            pytest.fail("no CONNACK within 10 s")
        if not self.connected.is_set():
            self.close()
        return self.connected.is_set()

    def subscribe(self, topic: str) -> mqtt.ReasonCode:
        _rc, mid = self.client.subscribe(topic, qos=1)
        wait_for(lambda: mid in self.subacks, what=f"SUBACK for {topic}")
        return self.subacks[mid][0]

    def publish(self, topic: str, data: bytes) -> None:
        info = self.client.publish(topic, data, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def certs(tmp_path: Path) -> DevCerts:
    return make_dev_certs(tmp_path / "certs", ("localhost", "127.0.0.1"))


@pytest.fixture
def secured(tmp_path: Path, certs: DevCerts) -> Iterator[tuple[Hub, dict[str, str]]]:
    require(_find_mosquitto() is not None, "no mosquitto binary installed")
    settings = make_settings(
        tmp_path / "data",
        mqtt_auth=True,
        tls_cert=certs.cert,
        tls_key=certs.key,
        mqtts_port=0,
    )
    hub = build_hub(settings)
    hub.ensure_admin_token()
    seed_tenant(hub, TENANT, devices=("meter-a", "meter-b"))
    passwords = {hw: hub.mqtt_credentials.issue(TENANT, hw)[1] for hw in ("meter-a", "meter-b")}
    hub.start(mqtt=True)
    try:
        yield hub, passwords
    finally:
        hub.stop()


def stored(hub: Hub, device: str) -> list[float]:
    return [s.value for s in hub.store.latest(TENANT, device)]


def test_device_publishes_only_as_itself_and_cannot_read_others(
    secured: tuple[Hub, dict[str, str]],
) -> None:
    hub, passwords = secured
    assert hub.broker is not None and hub.broker.kind == "mosquitto"
    a = Device(hub.broker.url, f"{TENANT}/meter-a", passwords["meter-a"])
    assert a.connect()
    try:
        # as another device: the broker drops it (ACL); then its own, which arrives
        a.publish(f"gridhub/{TENANT}/meter-b/events", payload("meter-b", 666.0))
        a.publish(f"gridhub/{TENANT}/meter-a/events", payload("meter-a", 1.5))
        wait_for(lambda: stored(hub, "meter-a") == [1.5], what="meter-a's own reading")
        assert stored(hub, "meter-b") == []
        # the hub's pipeline saw only the permitted message: nothing was dead-lettered either
        assert hub.store.dead_letters(TENANT, 10) == []

        # Mosquitto's acl_file grants a SUBSCRIBE and filters at delivery, by the read rules:
        # a device subscribed to # (or to another's topics) receives nothing but its own commands
        received: list[str] = []
        a.client.on_message = lambda _c, _u, msg: received.append(msg.topic)
        for topic in ("#", "gridhub/+/+/events", f"gridhub/{TENANT}/meter-b/commands"):
            a.subscribe(topic)
        b = Device(hub.broker.url, f"{TENANT}/meter-b", passwords["meter-b"])
        assert b.connect()
        try:
            b.publish(f"gridhub/{TENANT}/meter-b/events", payload("meter-b", 2.0))
            wait_for(lambda: stored(hub, "meter-b") == [2.0], what="meter-b's reading")
        finally:
            b.close()
        assert hub.publisher is not None  # the hub's own (outbound) user may write commands
        sent = hub.publisher.publish(  # meter-a's last: once it arrives, all were sent
            [Outgoing(f"gridhub/{TENANT}/{d}/commands", b"{}") for d in ("meter-b", "meter-a")],
            10,
        )
        assert sent == [True, True]
        wait_for(lambda: f"gridhub/{TENANT}/meter-a/commands" in received, what="own command")
        assert received == [f"gridhub/{TENANT}/meter-a/commands"]
    finally:
        a.close()


def test_logins_are_checked(secured: tuple[Hub, dict[str, str]]) -> None:
    hub, passwords = secured
    assert hub.broker is not None
    url = hub.broker.url
    assert not Device(url, None, None).connect()  # anonymous
    assert not Device(url, f"{TENANT}/meter-a", passwords["meter-b"]).connect()
    assert not Device(url, f"{TENANT}/meter-c", passwords["meter-a"]).connect()
    ok = Device(url, f"{TENANT}/meter-b", passwords["meter-b"])
    assert ok.connect()
    ok.close()


def test_rotation_replaces_the_password_after_reload(secured: tuple[Hub, dict[str, str]]) -> None:
    hub, passwords = secured
    assert hub.broker is not None
    url = hub.broker.url
    old = passwords["meter-a"]
    username, new = hub.mqtt_credentials.issue(TENANT, "meter-a", rotate=True)
    assert new != old
    stored_hash = hub.mqtt_credentials.find(username)
    assert stored_hash is not None and verify_password(new, stored_hash.hash)
    assert not verify_password(old, stored_hash.hash)
    # the reload (SIGHUP) is asynchronous: wait until the old password stops working
    wait_for(lambda: not Device(url, username, old).connect(), what="old password refused")
    fresh = Device(url, username, new)
    assert fresh.connect()
    fresh.close()
    # the other device is untouched
    b = Device(url, f"{TENANT}/meter-b", passwords["meter-b"])
    assert b.connect()
    b.close()


def test_mqtts_with_the_dev_ca(secured: tuple[Hub, dict[str, str]], certs: DevCerts) -> None:
    hub, passwords = secured
    assert hub.broker is not None and hub.broker.tls_url is not None
    tls_url = hub.broker.tls_url
    a = Device(tls_url, f"{TENANT}/meter-a", passwords["meter-a"], ca=certs.ca_cert)
    assert a.connect()
    try:
        a.publish(f"gridhub/{TENANT}/meter-a/events", payload("meter-a", 7.25, 15))
        wait_for(lambda: stored(hub, "meter-a") == [7.25], what="a reading over MQTTS")
    finally:
        a.close()
    # a client that does not trust the dev CA cannot complete the handshake
    host, port = parse_mqtt_url(tls_url)
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def test_https_with_the_dev_ca(tmp_path: Path, certs: DevCerts) -> None:
    hub = build_hub(make_settings(tmp_path / "data"))
    hub.ensure_admin_token()
    hub.start(mqtt=False)
    server = ApiServer(hub, "127.0.0.1", 0, tls_cert=certs.cert, tls_key=certs.key)
    server.start()
    try:
        assert server.url.startswith("https://")
        response = httpx.get(
            f"{server.url}/health", verify=ssl.create_default_context(cafile=str(certs.ca_cert))
        )
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health")  # the system CAs do not know the dev CA
    finally:
        server.stop()
        hub.stop()


def test_hub_ingests_from_an_external_broker_over_mqtts_with_its_own_user(
    tmp_path: Path, certs: DevCerts
) -> None:
    """mqtt_url = mqtts://…, mqtt_ca_file, mqtt_username/password: the hub as a TLS client of
    a Mosquitto it does not run (here a private one with the files the hub wrote)."""
    require(_find_mosquitto() is not None, "no mosquitto binary installed")
    # the installation whose credentials the external broker uses
    first = build_hub(make_settings(tmp_path / "first"))
    seed_tenant(first, TENANT, devices=("meter-a",))
    _user, device_password = first.mqtt_credentials.issue(TENANT, "meter-a")
    hub_user, hub_password = first.mqtt_credentials.issue_hub()
    # the command publisher has a user of its own: the broker takes usernames as client ids
    out_user, out_password = first.mqtt_credentials.issue_hub("gridhub-out")
    files = first.mqtt_credentials.write_files(tmp_path / "broker")
    first.stop()

    auth = MosquittoAuth(files.password_file, files.acl_file)
    tls = MosquittoTls(certs.cert, certs.key)
    with EmbeddedBroker(prefer="mosquitto", auth=auth, tls=tls) as broker:
        assert broker.tls_url is not None
        settings = make_settings(
            tmp_path / "first",
            mqtt_url=broker.tls_url,
            mqtt_ca_file=certs.ca_cert,
            mqtt_username=hub_user,
            mqtt_password=hub_password,
            mqtt_out_username=out_user,
            mqtt_out_password=out_password,
        )
        hub = build_hub(settings)
        hub.start(mqtt=True)
        try:
            device = Device(broker.tls_url, f"{TENANT}/meter-a", device_password, certs.ca_cert)
            assert device.connect()
            device.publish(f"gridhub/{TENANT}/meter-a/events", payload("meter-a", 3.5, 30))
            device.close()
            wait_for(lambda: stored(hub, "meter-a") == [3.5], what="the reading via mqtts")
            # both hub connections stayed up: neither threw the other off the broker
            assert hub.publisher is not None and hub.publisher.connected.is_set()
            assert hub.mqtt is not None and hub.mqtt._generation == 1
        finally:
            hub.stop()
