"""Publishing the outbox over MQTT at QoS 1: a row is deleted when its PUBACK arrives.

One thread (the gateway's main loop) calls :meth:`Forwarder.step`: it takes the PUBACKs that
arrived, deletes those rows from the outbox, and hands the next rows (in id order) to paho, at
most ``window`` unacknowledged at a time, so a backlog of days waits on disk, not in memory.

Each row is handed to paho once per process. paho keeps unacknowledged QoS 1 messages across
reconnections and sends them again (with DUP) in their original order when the connection comes
back, and it queues what is published while disconnected; so a broker outage needs nothing from
us but patience. A restart of the gateway starts again from the lowest id in the outbox.

The broker's PUBACK means the broker has the message: delivery to the hub from there is the
broker's and the hub's job (persistent session, acknowledgement after commit). A message can
reach the hub twice — in flight at a disconnection, or acknowledged just before a crash and not
yet deleted — and the hub stores a reading once per device, identifier and timestamp, so that
costs nothing. The gateway stamps readings whose telegram has no clock (DSMR 2.2, IEC readouts)
with the time it read them, so a replayed reading keeps its time and is recognised as the same.

MQTT 5 is the default because its PUBACK carries a reason code: a broker that refuses a message
(an ACL forbidding the topic, a quota) says so, and the message goes to the rejects file instead
of being taken as delivered (an MQTT 3.1.1 broker acknowledges and drops it in silence).
paho's callbacks only record what happened, under a lock that is never held while calling into
paho; all outbox work happens in :meth:`step`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from gridhub.gateway.outbox import Entry, Outbox

log = logging.getLogger(__name__)

__all__ = ["Forwarder", "default_client_id"]

_UNSUPPORTED_PROTOCOL = 0x84  # MQTT 5 CONNACK: unsupported protocol version


def default_client_id(hardware_id: str | None = None) -> str:
    """``gridhub-gw-<hardware id or host name>``: stable across restarts, unique per gateway."""
    base = hardware_id or socket.gethostname() or "gateway"
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in base)[:40]
    return f"gridhub-gw-{cleaned}"


class Forwarder:
    def __init__(
        self,
        outbox: Outbox,
        url: str,
        *,
        client_id: str,
        protocol: str = "5",
        window: int = 200,
        keepalive_s: int = 30,
        on_refused: Callable[[Entry, str], None] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT url must be mqtt://host:port or mqtts://host:port, not {url!r}")
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol is 5 or 3.1.1, not {protocol!r}")
        if not 1 <= window <= 10_000:
            raise ValueError("the publication window is 1..10000 messages")
        secure = parts.scheme in ("mqtts", "ssl")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if secure else 1883)
        self.url = f"{parts.scheme}://{self._host}:{self._port}"  # for logs: no credentials
        self.outbox, self.window, self._keepalive = outbox, window, keepalive_s
        self._on_refused = on_refused
        self._v5 = protocol == "5"
        if self._v5:  # MQTT 5 has no clean_session argument; a new session is the default
            self._client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:
            self._client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
            )
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if secure:
            self._client.tls_set()
        self._client.max_inflight_messages_set(0)  # our window bounds it; see MqttPublisher
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self.connected = threading.Event()
        self._cond = threading.Condition()
        self._acks: list[tuple[int, str | None]] = []  # (mid, failure reason or None)
        self._receive_maximum = min(window, 20)  # until a CONNACK names its own
        self._inflight: dict[int, Entry] = {}  # mid → row, handed to paho, no PUBACK yet
        self._last_id = 0  # highest outbox id handed to paho
        self.published = self.acked = self.refused = 0
        self.connects = self.disconnects = 0
        self._closing = False

    # --- paho callbacks (paho's thread) ----------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            hint = ""
            if getattr(reason, "value", None) == _UNSUPPORTED_PROTOCOL:
                hint = " (a broker without MQTT 5, e.g. amqtt: use --mqtt-protocol 3.1.1)"
            log.error("MQTT connect to %s refused: %s%s", self.url, reason, hint)
            return
        maximum = getattr(props, "ReceiveMaximum", None) if props is not None else None
        with self._cond:
            self._receive_maximum = min(self.window, int(maximum or self.window))
            self.connects += 1
            self.connected.set()
            self._cond.notify_all()
        log.info(
            "MQTT connected to %s; %d messages in flight, %d in the outbox",
            self.url,
            len(self._inflight),
            len(self.outbox),
        )

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._closing:
            self.disconnects += 1
            log.warning(
                "MQTT connection to %s lost (%s); buffering in the outbox, reconnecting",
                self.url,
                reason,
            )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        failure = str(reason) if reason is not None and reason.is_failure else None
        with self._cond:
            self._acks.append((mid, failure))
            self._cond.notify_all()

    # --- the forwarding loop (one thread) ---------------------------------------------------

    def start(self) -> None:
        """Connect in the background: the gateway buffers from the start, broker or not."""
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self._client.loop_start()

    def wake(self) -> None:
        """New rows in the outbox: let :meth:`wait` return."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Until a PUBACK or :meth:`wake`, at most ``timeout`` seconds."""
        with self._cond:
            if not self._acks:
                self._cond.wait(timeout)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def step(self, *, publish: bool = True) -> int:
        """Settle the PUBACKs that arrived, publish what the window allows; rows published."""
        with self._cond:
            acks, self._acks = self._acks, []
            room = self._receive_maximum - len(self._inflight) if publish else 0
        done: list[int] = []
        for mid, failure in acks:
            entry = self._inflight.pop(mid, None)
            if entry is None:  # not ours (cannot happen: rows are recorded before settling)
                log.debug("PUBACK for unknown message id %d ignored", mid)
                continue
            done.append(entry.id)
            if failure is None:
                self.acked += 1
                continue
            self.refused += 1
            log.error("broker refused the message on %s: %s", entry.topic, failure)
            if self._on_refused is not None:
                self._on_refused(entry, failure)  # written down before the row goes
        if done:
            self.outbox.ack(done)
        if room <= 0:
            return 0
        published: list[int] = []
        for entry in self.outbox.pending(self._last_id, room):
            info = self._client.publish(entry.topic, entry.payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # paho still holds that message id
                break
            self._inflight[info.mid] = entry
            self._last_id = entry.id
            published.append(entry.id)
        self.outbox.mark_sent(published)
        self.published += len(published)
        return len(published)

    def settle(self, timeout: float) -> None:
        """Wait (bounded) for the PUBACKs of what is in flight, so a clean stop resends less."""
        deadline = time.monotonic() + timeout
        while self._inflight and self.connected.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.wait(min(0.1, left))
            self.step(publish=False)

    def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
