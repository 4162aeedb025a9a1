"""Simulated devices for the outbound tests: subscribe to their commands topic, execute each
invocation id at most once, and acknowledge (or not) on their events topic."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from gridhub.ingest.mqtt_source import parse_mqtt_url


class SimDevice:
    """``behaviour``: "ack" acknowledges each execution, "fail" reports a failure, "silent"
    never answers. ``persistent``: an MQTT session the broker keeps while the device is away."""

    def __init__(
        self,
        url: str,
        tenant: str,
        hardware_id: str,
        *,
        behaviour: str = "ack",
        persistent: bool = False,
    ) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.tenant, self.hardware_id = tenant, hardware_id
        self.behaviour = behaviour
        self.persistent = persistent
        self.client_id = f"sim-{hardware_id}-{uuid.uuid4().hex[:8]}"
        self.received: list[dict[str, Any]] = []  # every copy delivered
        self.executed: list[dict[str, Any]] = []  # each invocation id once
        self.acks_sent = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    @property
    def commands_topic(self) -> str:
        return f"gridhub/{self.tenant}/{self.hardware_id}/commands"

    @property
    def events_topic(self) -> str:
        return f"gridhub/{self.tenant}/{self.hardware_id}/events"

    def connect(self) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not self.persistent,
        )
        client.on_connect = lambda c, *_: c.subscribe(self.commands_topic, qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        self._subscribed.clear()
        self.client = client  # before connecting: queued commands may arrive before the SUBACK
        client.connect(self.host, self.port)
        client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"{self.hardware_id}: no SUBACK")

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def ids(self) -> list[str]:
        with self._lock:
            return [m["command"]["invocation"]["id"] for m in self.executed]

    def _publish(self, message: dict[str, Any]) -> None:
        assert self.client is not None
        self.client.publish(self.events_topic, json.dumps(message).encode(), qos=1)

    def send_measurement(self, value: float = 1.0) -> None:
        self._publish(
            {
                "hardwareId": self.hardware_id,
                "type": "DeviceMeasurements",
                "request": {"measurements": {"electricity.power.active.consumed.total": value}},
            }
        )

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        message = json.loads(msg.payload)
        invocation_id = message["command"]["invocation"]["id"]
        with self._lock:
            self.received.append(message)
            if invocation_id in {m["command"]["invocation"]["id"] for m in self.executed}:
                return  # at most one execution per invocation id
            self.executed.append(message)
        if self.behaviour == "silent":
            return
        response = "done" if self.behaviour == "ack" else "error: not possible now"
        self._publish(
            {
                "hardwareId": self.hardware_id,
                "type": "Acknowledge",
                "request": {"originatingEventId": invocation_id, "response": response},
            }
        )
        with self._lock:
            self.acks_sent += 1
