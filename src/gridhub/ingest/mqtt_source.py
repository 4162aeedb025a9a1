"""The MQTT source: ``gridhub/<tenant>/<hardwareId>/events`` at QoS 1, confirmed when durable.

The client uses a persistent session (``clean_session=False``, a fixed client id) and paho's
manual acknowledgement: a PUBACK goes back only after the pipeline has committed the message
(or its dead letter) to the store. If the hub dies before that, the broker redelivers, and the
store's dedupe drops what was already written. When the buffer is full, ``on_message`` waits for
room, which stops paho reading from the socket: the broker holds the backlog, not our memory.

MQTT 5 is used where the broker speaks it, for one reason: a v5 client announces its *Receive
Maximum*, the number of unacknowledged QoS 1 messages it accepts. Mosquitto otherwise allows a
subscriber only 20 messages in flight (``max_inflight_messages``); since we acknowledge only after
a commit, 20 in flight would cap ingest at 20 messages per store write, and Mosquitto drops what
overflows its per-client queue (``max_queued_messages``, 1000 by default). With a Receive Maximum
of 65,535 the in-flight window is as wide as a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridhub.domain.rejections import RejectReason
from gridhub.errors import GridhubError
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import Envelope

log = logging.getLogger(__name__)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or (
        8883 if parsed.scheme == "mqtts" else 1883
    )


def set_up_client(
    client: mqtt.Client,
    url: str,
    username: str | None,
    password: str | None,
    ca_file: str | None,
) -> None:
    """What every hub connection does alike (ingest and the outbound publisher): log in when
    given a user, TLS for ``mqtts://`` (``ca_file``, else the system's CAs), reconnect backoff."""
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


def topic_parts(topic: str) -> tuple[str, str] | None:
    """(tenant, hardwareId) of an events topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "gridhub" or parts[3] != "events":
        return None
    if not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class MqttSource:
    def __init__(
        self,
        pipeline: Pipeline,
        url: str,
        *,
        client_id: str = "gridhub-ingest",
        topic: str = "gridhub/+/+/events",
        mqtt5: bool = True,
        receive_maximum: int = 65_535,
        session_expiry_s: int = 7 * 86_400,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        """``mqtts://`` URLs connect with TLS, verifying the broker against ``ca_file`` (else
        the system's CAs); ``username``/``password`` log in (a broker with ``mqtt_auth``)."""
        self._pipeline = pipeline
        self.host, self.port = parse_mqtt_url(url)
        self.url = url
        self._topic = topic
        self.connected = threading.Event()
        # Packet ids are only meaningful on the connection that delivered them: an ack from an
        # earlier connection could confirm a different message that reuses the id. Each connect
        # starts a new generation, and confirmations of older generations are not sent (the
        # broker redelivers those messages on the new connection anyway).
        self._generation = 0
        self._connect_properties: Properties | None = None
        if mqtt5:
            self._client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = receive_maximum
            props.SessionExpiryInterval = session_expiry_s  # keep the session while we are away
            self._connect_properties = props
        else:
            self._client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=client_id,
                clean_session=False,
                manual_ack=True,
            )
        set_up_client(self._client, url, username, password, ca_file)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raise if the broker is not reachable within ``timeout``."""
        if self._connect_properties is not None:
            self._client.connect_async(
                self.host,
                self.port,
                keepalive=30,
                clean_start=False,
                properties=self._connect_properties,
            )
        else:
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
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s refused: %s", self.url, reason_code)
            return
        self._generation += 1
        client.subscribe(self._topic, qos=1)
        log.info("MQTT ingest subscribed to %s on %s", self._topic, self.url)
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        self.connected.clear()
        if reason_code.is_failure:
            log.warning("MQTT disconnected from %s: %s; reconnecting", self.url, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received_us = time.time_ns() // 1000
        mid, qos, generation = msg.mid, msg.qos, self._generation

        def confirm(receipt: Receipt) -> None:
            if receipt.error is None and generation == self._generation:
                client.ack(mid, qos)

        parts = topic_parts(msg.topic)
        tenant, device = parts if parts is not None else (None, None)
        env = Envelope(
            f"mqtt:{msg.topic[:200]}",
            bytes(msg.payload),
            tenant,
            received_us,
            device,
            redelivered=bool(msg.dup),
        )
        if parts is None:  # not one of ours (a misconfigured subscription): keep it all the same
            env.problem = (RejectReason.BAD_TOPIC, "topic is not gridhub/<tenant>/<id>/events")
        try:
            self._pipeline.submit([env], confirm, timeout=None)
        except GridhubError as exc:  # shutting down: unconfirmed, redelivered after reconnect
            log.warning("MQTT message %s on %s not queued: %s", mid, msg.topic, exc)
        except Exception:  # a bug; still unconfirmed, so the broker keeps the message
            log.exception("could not queue MQTT message %s on %s", mid, msg.topic)
