"""The MQTT source: ``gridhub/<tenant>/<hardwareId>/events`` at QoS 1, confirmed when durable.

The subscriber uses a persistent session (``clean_session=False`` / ``clean_start=False`` with a
session expiry, and a fixed client id) and confirms by hand: the PUBACK for a message goes back
only after the pipeline has committed it (or its dead letter) to the store. If the hub dies
before that, the broker redelivers, and the store's dedupe drops what was already written.
When the buffer is full, the network thread waits for room and stops reading the socket: the
broker holds the backlog, not our memory.

MQTT 5 is used where the broker speaks it, for one reason: a v5 client announces its *Receive
Maximum*, the number of unacknowledged QoS 1 messages it accepts. Mosquitto otherwise allows a
subscriber only 20 messages in flight (``max_inflight_messages``); since we acknowledge only after
a commit, 20 in flight would cap ingest at 20 messages per store write, and Mosquitto drops what
overflows its per-client queue (``max_queued_messages``, 1000 by default). With a Receive Maximum
of 65,535 the in-flight window is as wide as a batch.

The connection is our own, on :mod:`gridhub.ingest.mqtt_wire`, not paho's (which the hub still
uses to publish): profiled at 10,000 messages/s, paho's network thread held the GIL for 56 % of
the hub's time — a ``recv`` per header byte, a ``select`` per packet, per-message property and
topic-matcher objects, one ``send`` per PUBACK. Here one ``recv`` of up to 64 KiB yields every
packet in it, they go to the pipeline as one submission, and the PUBACKs of one commit leave in
one ``send``.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from gridhub.domain.rejections import RejectReason
from gridhub.errors import GridhubError
from gridhub.ingest import mqtt_wire as wire
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import Envelope

log = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024  # one read: a few hundred messages at most, handed over together
CONNECT_TIMEOUT_S = 10.0
_SSL_RETRY = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or (
        8883 if parsed.scheme == "mqtts" else 1883
    )


def topic_parts(topic: str) -> tuple[str, str] | None:
    """(tenant, hardwareId) of an events topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "gridhub" or parts[3] != "events":
        return None
    if not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def envelope(publish: wire.Publish, received_us: int) -> Envelope:
    """A received PUBLISH as the pipeline takes it; a topic that is not an events topic is
    kept all the same, as a dead letter (a misconfigured subscription)."""
    parts = topic_parts(publish.topic)
    tenant, device = parts if parts is not None else (None, None)
    env = Envelope(
        f"mqtt:{publish.topic[:200]}",
        publish.payload,
        tenant,
        received_us,
        device,
        redelivered=publish.dup,
    )
    if parts is None:
        env.problem = (RejectReason.BAD_TOPIC, "topic is not gridhub/<tenant>/<id>/events")
    return env


def _wake_pair() -> tuple[socket.socket, socket.socket]:
    """A socket pair that lets another thread interrupt the network thread's ``select``."""
    read, write = socket.socketpair()
    read.setblocking(False)
    write.setblocking(False)
    return read, write


@dataclass
class _Connection:
    """One broker connection's state, owned by the network thread."""

    sock: socket.socket
    reader: wire.PacketReader
    generation: int
    out: bytearray = field(default_factory=bytearray)
    last_sent: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None


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
        keepalive_s: int = 30,
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
        self._v5 = mqtt5
        self._connect_packet = wire.encode_connect(
            client_id,
            keepalive=keepalive_s,
            v5=mqtt5,
            username=username,
            password=password,
            receive_maximum=receive_maximum,
            session_expiry_s=session_expiry_s,  # keep the session while we are away
        )
        self._keepalive = float(keepalive_s)
        self._tls = (
            ssl.create_default_context(cafile=ca_file) if urlparse(url).scheme == "mqtts" else None
        )
        self.connected = threading.Event()
        self.last_error: str | None = None
        # Packet ids are only meaningful on the connection that delivered them: an ack from an
        # earlier connection could confirm a different message that reuses the id. Each connect
        # starts a new generation, and confirmations of older generations are not sent (the
        # broker redelivers those messages on the new connection anyway).
        self._generation = 0
        self._acks: list[int] = []  # confirmed packet ids the network thread has yet to send
        self._acks_lock = threading.Lock()
        self._wake_r, self._wake_w = _wake_pair()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; raise if the broker is not reachable within ``timeout``."""
        self._stop.clear()
        if self._wake_r.fileno() < 0:  # started again after a stop
            self._wake_r, self._wake_w = _wake_pair()
        self._thread = threading.Thread(target=self._run, name="gridhub-mqtt-ingest", daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout):
            self.stop()
            why = f": {self.last_error}" if self.last_error else ""
            raise ConnectionError(f"MQTT broker {self.url} not reachable within {timeout:g} s{why}")

    def stop(self) -> None:
        """Disconnect (unconfirmed messages stay with the broker) and end the network thread."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(CONNECT_TIMEOUT_S + 5)
            if self._thread.is_alive():
                log.warning("the MQTT network thread did not end in time")
                return  # it still uses the wake-up pair
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    # -- the network thread ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                conn = self._open()
            except (OSError, wire.MqttProtocolError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("MQTT connect to %s failed: %s; again in %g s", self.url, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 1.0
            try:
                self._serve(conn)
            except (OSError, wire.MqttProtocolError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if not self._stop.is_set():
                    log.warning("MQTT connection to %s lost: %s; reconnecting", self.url, exc)
            finally:
                self.connected.clear()
                conn.sock.close()
            if not self._stop.is_set():
                self._stop.wait(delay)  # a broker that drops us at once is not hammered

    def _open(self) -> _Connection:
        """Connect, log in and subscribe; return once the broker accepted the connection."""
        raw = sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:  # the TLS socket takes over the connection
                sock = self._tls.wrap_socket(raw, server_hostname=self.host)
            sock.sendall(self._connect_packet)
            reader = wire.PacketReader()
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("the broker closed the connection before CONNACK")
                reader.feed(data)
                packet = next(reader.packets(), None)
                if packet is not None:
                    break
            kind, _flags, body = packet
            if kind != wire.CONNACK:
                raise wire.MqttProtocolError(f"expected CONNACK, got packet type {kind}")
            _present, code = wire.decode_connack(body, v5=self._v5)
            if code:
                raise ConnectionRefusedError(
                    f"the broker refused us: {wire.reason_text(code, self._v5)}"
                )
            sock.sendall(wire.encode_subscribe(1, self._topic, 1, v5=self._v5))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raw.close()
            raise
        with self._acks_lock:  # acks still queued belong to the last connection
            self._generation += 1
            self._acks.clear()
            generation = self._generation
        return _Connection(sock, reader, generation)

    def _serve(self, conn: _Connection) -> None:
        """Read, hand over, confirm and keep alive until the connection ends or we stop."""
        with selectors.DefaultSelector() as sel:
            sel.register(conn.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            writing = False
            self._handle(conn)  # what arrived with the CONNACK
            while not self._stop.is_set():
                since = conn.ping_sent or min(conn.last_sent, conn.last_heard)  # ping due or late
                wait = max(0.0, since + self._keepalive - time.monotonic())
                for key, _mask in sel.select(min(wait, 1.0)):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._read(conn)
                self._flush(conn)
                if writing != bool(conn.out):
                    writing = bool(conn.out)
                    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
                    sel.modify(conn.sock, events)
            try:  # a polite goodbye; the session and its unconfirmed messages stay
                conn.sock.send(bytes(conn.out) + wire.DISCONNECT_PACKET)
            except OSError:
                pass

    def _read(self, conn: _Connection) -> None:
        """One ``recv`` (then back to sending PUBACKs); with TLS, also what it left decrypted
        in the TLS buffer, which ``select`` cannot see."""
        while True:
            try:
                data = conn.sock.recv(RECV_BYTES)
            except (BlockingIOError, *_SSL_RETRY):
                return
            if not data:
                raise ConnectionError("the broker closed the connection")
            conn.last_heard = time.monotonic()
            conn.reader.feed(data)
            self._handle(conn)
            if not (isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()):
                return

    def _handle(self, conn: _Connection) -> None:
        """Every complete packet read so far; PUBLISHes go to the pipeline as one submission."""
        envelopes: list[Envelope] = []
        packet_ids: list[int] = []
        received_us = time.time_ns() // 1000
        for kind, flags, body in conn.reader.packets():
            if kind == wire.PUBLISH:
                publish = wire.decode_publish(flags, body, v5=self._v5)
                if publish.qos == 2:
                    raise wire.MqttProtocolError("a QoS 2 PUBLISH on a QoS 1 subscription")
                envelopes.append(envelope(publish, received_us))
                if publish.qos:
                    packet_ids.append(publish.packet_id)
            elif kind == wire.PINGRESP:
                conn.ping_sent = None
            elif kind == wire.SUBACK:
                _id, codes = wire.decode_suback(body, v5=self._v5)
                if not codes or codes[0] >= 0x80:
                    why = wire.reason_text(codes[0] if codes else 0x80, True)
                    log.error("MQTT subscription to %s refused: %s", self._topic, why)
                    raise wire.MqttProtocolError(f"subscription to {self._topic} refused: {why}")
                log.info("MQTT ingest subscribed to %s on %s", self._topic, self.url)
                self.connected.set()
            elif kind == wire.DISCONNECT:
                code = wire.decode_disconnect(body, v5=self._v5)
                raise ConnectionError(f"the broker disconnected us: {wire.reason_text(code, True)}")
            else:
                raise wire.MqttProtocolError(f"unexpected packet type {kind} from the broker")
        if envelopes:
            self._submit(envelopes, packet_ids, conn.generation)

    def _submit(self, envelopes: list[Envelope], packet_ids: list[int], generation: int) -> None:
        def confirm(receipt: Receipt) -> None:
            if receipt.error is None and packet_ids:
                self._confirm(packet_ids, generation)

        try:  # waits for room when the buffer is full: we stop reading, the broker holds on
            self._pipeline.submit(envelopes, confirm, timeout=None)
        except GridhubError as exc:  # shutting down: unconfirmed, redelivered after reconnect
            log.warning("%d MQTT message(s) not queued: %s", len(envelopes), exc)
        except Exception:  # a bug; still unconfirmed, so the broker keeps the messages
            log.exception("could not queue %d MQTT message(s)", len(envelopes))

    def _confirm(self, packet_ids: list[int], generation: int) -> None:
        """Queue PUBACKs for durable messages (the pipeline's writer thread calls this); the
        network thread sends them. Ids of an earlier connection are dropped."""
        with self._acks_lock:
            if generation != self._generation:
                return
            self._acks.extend(packet_ids)
        self._wake()

    def _flush(self, conn: _Connection) -> None:
        """Send queued PUBACKs (one ``send`` for all) and a PINGREQ when it is time."""
        with self._acks_lock:
            packet_ids, self._acks = self._acks, []
        if packet_ids:
            conn.out += wire.encode_pubacks(packet_ids)
        now = time.monotonic()
        if conn.ping_sent is not None and now - conn.ping_sent > self._keepalive:
            raise ConnectionError(f"no PINGRESP within {self._keepalive:g} s")
        # a ping when we have sent nothing for a keepalive (MQTT's rule), or heard nothing (a
        # broker gone silent while we only send PUBACKs is found out all the same)
        quiet_since = min(conn.last_sent, conn.last_heard)
        if conn.ping_sent is None and now - quiet_since >= self._keepalive:
            conn.out += wire.PINGREQ_PACKET
            conn.ping_sent = now
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, *_SSL_RETRY):
                return
            del conn.out[:sent]
            conn.last_sent = now

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (the pipe is full) or closed

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
