"""MQTT ingest end to end: paho publishes to a real broker, the hub stores, HTTP reads back.

Runs against the machine's Mosquitto (127.0.0.1:1883) and against the embedded broker that
``gridhub serve`` starts when no broker is configured.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gridhub.cli.server import ApiServer
from gridhub.errors import StoreUnavailable
from gridhub.hub import Hub, build_hub
from gridhub.ingest.mqtt_source import MqttSource, parse_mqtt_url
from helpers import Api, make_settings, port_open, seed_tenant, wait_for

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"


class Publisher:
    """A device-side paho client that waits for each PUBACK."""

    def __init__(self, url: str) -> None:
        host, port = parse_mqtt_url(url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-dev-{uuid.uuid4().hex[:8]}"
        )
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def quarter(device: str, i: int, value: float) -> bytes:
    hour, minute = divmod(i * 15, 60)
    return json.dumps(
        {
            "hardwareId": device,
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: value},
                "updateState": True,
                "eventDate": f"2026-11-20T{hour:02d}:{minute:02d}:00+01:00",
            },
        }
    ).encode()


def mqtt_hub(tmp_path: Path, mqtt_url: str | None) -> tuple[Hub, ApiServer]:
    hub = build_hub(make_settings(tmp_path, mqtt_url=mqtt_url))
    hub.ensure_admin_token()
    hub.start(mqtt=True)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    return hub, server


@pytest.fixture(params=["mosquitto", "embedded"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Hub, Api, str]]:
    url = request.getfixturevalue("mosquitto_url") if request.param == "mosquitto" else None
    hub, server = mqtt_hub(tmp_path, url)
    assert hub.mqtt_url is not None
    api = Api(server.url, __import__("httpx").Client(base_url=server.url))
    try:
        yield hub, api, hub.mqtt_url
    finally:
        api.close()
        server.stop()
        hub.stop()


def test_publish_over_mqtt_then_read_over_http(running: tuple[Hub, Api, str]) -> None:
    hub, api, url = running
    client = api.client(seed_tenant(hub))
    publisher = Publisher(url)
    try:
        for i in range(96):
            publisher.publish("gridhub/linear/hh001-meter/events", quarter("hh001-meter", i, i))
        wait_for(lambda: hub.pipeline.metrics.stored_readings >= 96, what="96 stored readings")
        series = client.get(
            "/api/v1/tenants/linear/devices/hh001-meter/series",
            params={"identifier": P, "day": "2026-11-20", "resolution": "15m"},
        ).json()
        assert series["count"] == 96
        assert [p["value"] for p in series["points"]] == [float(i) for i in range(96)]

        # the same message again: acknowledged, not stored twice
        publisher.publish("gridhub/linear/hh001-meter/events", quarter("hh001-meter", 0, 0))
        wait_for(lambda: hub.pipeline.metrics.duplicate_readings >= 1, what="a duplicate")
        assert hub.pipeline.metrics.stored_readings == 96
    finally:
        publisher.close()


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("gridhub/linear/hh001-plug/events", quarter("hh001-meter", 1, 1.0), "topic_mismatch"),
        ("gridhub/linear/hh777-meter/events", quarter("hh777-meter", 1, 1.0), "unknown_device"),
        ("gridhub/linear/hh001-meter/events", b"\x00\x01 not json", "malformed_json"),
        ("gridhub/linear/hh001-meter/events", b"{" + b" " * 70_000 + b"}", "oversized_payload"),
    ],
)
def test_mqtt_rejections_are_dead_lettered(
    running: tuple[Hub, Api, str], topic: str, payload: bytes, reason: str
) -> None:
    hub, api, url = running
    client = api.client(seed_tenant(hub, devices=("hh001-meter", "hh001-plug")))
    publisher = Publisher(url)
    try:
        publisher.publish(topic, payload)
        wait_for(lambda: hub.pipeline.metrics.dead_lettered >= 1, what="a dead letter")
    finally:
        publisher.close()
    letters = client.get("/api/v1/tenants/linear/deadletters").json()
    assert [d["reason"] for d in letters] == [reason]
    assert letters[0]["source"] == f"mqtt:{topic}"


def test_embedded_broker_does_not_need_port_1883(tmp_path: Path) -> None:
    """``serve`` without a broker URL never fails because 1883 is taken."""
    blocker = None
    if not port_open("127.0.0.1", 1883):  # make sure it is taken
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 1883))
        blocker.listen()
    hub, server = mqtt_hub(tmp_path, None)
    try:
        assert hub.broker is not None and hub.broker.port != 1883
        assert hub.mqtt is not None and hub.mqtt.connected.is_set()
    finally:
        server.stop()
        hub.stop()
        if blocker is not None:
            blocker.close()


def test_unconfirmed_message_is_redelivered_after_restart(
    tmp_path: Path, mosquitto_url: str
) -> None:
    """No PUBACK before commit: a message the store never took comes back to the next hub."""
    client_id = f"gridhub-test-{uuid.uuid4().hex[:10]}"
    first = build_hub(
        make_settings(tmp_path / "a", mqtt_url=mosquitto_url, mqtt_client_id=client_id)
    )
    seed_tenant(first)

    def store_down(batch: object) -> None:
        raise StoreUnavailable("simulated outage")

    first.store.write = store_down  # type: ignore[assignment,method-assign]
    first.start(mqtt=True)
    publisher = Publisher(mosquitto_url)
    try:
        publisher.publish("gridhub/linear/hh001-meter/events", quarter("hh001-meter", 3, 3.0))
        wait_for(lambda: first.pipeline.metrics.store_errors >= 1, what="a failed write")
        first.stop()  # the write never succeeded: no PUBACK went to the broker

        second = build_hub(
            make_settings(tmp_path / "b", mqtt_url=mosquitto_url, mqtt_client_id=client_id)
        )
        seed_tenant(second)
        second.start(mqtt=True)
        try:
            wait_for(
                lambda: second.pipeline.metrics.stored_readings == 1, what="the redelivered message"
            )
        finally:
            second.stop()
    finally:
        publisher.close()


def test_keepalive_pings_hold_an_idle_connection(mosquitto_url: str, tmp_path: Path) -> None:
    """With a 1 s keepalive the broker drops a client silent for 1.5 s; PINGREQs keep this one
    connected for 4 s, on the same connection, and it still takes messages afterwards."""
    hub = build_hub(make_settings(tmp_path, mqtt_url=mosquitto_url))
    hub.start(mqtt=False)
    seed_tenant(hub)
    source = MqttSource(
        hub.pipeline, mosquitto_url, client_id=f"ka-{uuid.uuid4().hex[:8]}", keepalive_s=1
    )
    source.start()
    publisher = Publisher(mosquitto_url)
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert source.connected.is_set()
            time.sleep(0.1)
        assert source._generation == 1  # never reconnected
        publisher.publish("gridhub/linear/hh001-meter/events", quarter("hh001-meter", 3, 7.5))
        wait_for(lambda: hub.pipeline.metrics.stored_readings >= 1, what="the reading")
    finally:
        publisher.close()
        source.stop()
        hub.stop()


def test_unreachable_broker_fails_start_with_the_reason(tmp_path: Path) -> None:
    hub = build_hub(make_settings(tmp_path))
    hub.start(mqtt=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    source = MqttSource(hub.pipeline, f"mqtt://127.0.0.1:{port}", client_id="nobody")
    try:
        with pytest.raises(ConnectionError, match=r"not reachable within 1 s: .*refused"):
            source.start(timeout=1)
        assert not source.connected.is_set()
    finally:
        hub.stop()
