"""Publish command messages on ``gridhub/<tenant>/<hardwareId>/commands`` at QoS 1.

A send counts only once the broker has confirmed it (PUBACK): until then the invocation stays
``pending`` and is tried again. Messages are never retained — a retained command would be
executed again by every new subscriber. Delivery to a device that is offline relies on two
things (docs/outbound.md): the device's persistent MQTT session, in which the broker queues
QoS 1 messages while the device is away, and the hub's own resend when it next hears from the
device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from gridhub.ingest.mqtt_source import parse_mqtt_url

__all__ = ["MqttPublisher", "Outgoing", "Publisher"]

log = logging.getLogger(__name__)


def set_up_client(
    client: mqtt.Client,
    url: str,
    username: str | None,
    password: str | None,
    ca_file: str | None,
) -> None:
    """Log in when given a user, TLS for ``mqtts://`` (``ca_file``, else the system's CAs),
    reconnect backoff."""
    if username is not None:
        client.username_pw_set(username, password)
    if urlparse(url).scheme == "mqtts":
        client.tls_set(ca_certs=ca_file)
    client.reconnect_delay_set(min_delay=1, max_delay=10)


def run_until_connected(
    client: mqtt.Client, connected: threading.Event, url: str, timeout: float
) -> None:
    """Start paho's network thread; raise if the broker does not accept us in ``timeout``."""
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise ConnectionError(f"MQTT broker {url} not reachable within {timeout:g} s")


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes


class Publisher(Protocol):
    """What the command service needs from a transport: send, and say what the broker took."""

    def publish(self, messages: Sequence[Outgoing], timeout: float) -> list[bool]: ...


class MqttPublisher:
    """A paho client of its own (clean session: an unconfirmed send is simply sent again)."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        """Connects like the MQTT source: TLS for ``mqtts://`` (``ca_file`` or the system's
        CAs), a login when the broker wants one."""
        self.host, self.port = parse_mqtt_url(url)
        self.url = url
        self.connected = threading.Event()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        self._client.max_inflight_messages_set(1000)
        set_up_client(self._client, url, username, password, ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def start(self, timeout: float = 10.0) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        run_until_connected(self._client, self.connected, self.url, timeout)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if rc.is_failure:
            log.error("MQTT publisher connect to %s refused: %s", self.url, rc)
            return
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        self.connected.clear()
        if rc.is_failure:
            log.warning("MQTT publisher disconnected from %s: %s", self.url, rc)

    def publish(self, messages: Sequence[Outgoing], timeout: float) -> list[bool]:
        """Publish all, then wait (up to ``timeout`` s in all) for each broker confirmation."""
        if not self.connected.is_set():
            return [False] * len(messages)
        infos: list[mqtt.MQTTMessageInfo | None] = []
        for message in messages:
            try:
                info = self._client.publish(message.topic, message.payload, qos=1, retain=False)
            except (ValueError, RuntimeError) as exc:
                log.warning("cannot publish on %s: %s", message.topic, exc)
                info = None
            ok = info is not None and info.rc == mqtt.MQTT_ERR_SUCCESS
            infos.append(info if ok else None)
        deadline = time.monotonic() + timeout
        confirmed: list[bool] = []
        for info in infos:
            if info is None:
                confirmed.append(False)
                continue
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.0))
            except (RuntimeError, ValueError):
                pass
            confirmed.append(info.is_published())
        return confirmed
