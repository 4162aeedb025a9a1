"""The embedded amqtt broker, driven the way the hub drives it: paho-mqtt 2.x, QoS 1, manual ack.

These tests pin down what the hub relies on when no external broker is configured: the broker
starts on a free port even when others are taken, delivers QoS 1 messages that the subscriber
acknowledges itself, keeps a persistent session's messages while the subscriber is away, and
frees its port on stop. The last test records a gap of amqtt 0.12 (in-flight messages are not
redelivered after a reconnect) as a strict xfail, so an amqtt that fixes it is noticed.

Every wait has a deadline; nothing sleeps to wait for something to happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from gridhub.ingest import embedded_broker
from gridhub.ingest.embedded_broker import EmbeddedBroker

TOPIC_FILTER = "gridhub/+/+/events"
DEADLINE_S = 5.0


# -- helpers ---------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.005)
    return True


def broker_session_state(broker: EmbeddedBroker, client_id: str) -> tuple[str, int] | None:
    """(state, messages awaiting PUBACK) of a client's session, read on the broker's own loop.

    Reaches into amqtt on purpose: it is the only way to see that the broker really waits for
    the subscriber's PUBACK and when it considers a session disconnected.
    """

    async def read() -> tuple[str, int] | None:
        entry = broker._broker.sessions.get(client_id) if broker._broker else None
        if entry is None:
            return None
        session = entry[0]
        return session.transitions.state, len(session.inflight_out)

    assert broker._loop is not None
    return asyncio.run_coroutine_threadsafe(read(), broker._loop).result(DEADLINE_S)


class Subscriber:
    """The hub's subscriber: persistent session, QoS 1, acknowledges each message itself.

    Every :meth:`connect` uses a fresh paho client with the same client id, as a restarted hub
    would (paho 2.2 leaks a socket pair when ``loop_start()`` runs twice on one client).
    """

    def __init__(self, broker: EmbeddedBroker, client_id: str, *, auto_ack: bool = True) -> None:
        self.broker = broker
        self.client_id = client_id
        self.auto_ack = auto_ack
        self.lock = threading.Lock()
        self.messages: list[mqtt.MQTTMessage] = []
        self.session_present: bool | None = None
        self.subscribe_on_connect = True
        self.subscribed = threading.Event()
        self.disconnected = threading.Event()
        self.client: mqtt.Client | None = None

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.session_present = flags.session_present
        if self.subscribe_on_connect and not reason.is_failure:
            client.subscribe(TOPIC_FILTER, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if all(not reason.is_failure and reason.value == 1 for reason in reasons):
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(message)
        if self.auto_ack:  # in the hub: only once the message is durable
            client.ack(message.mid, message.qos)

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected.set()

    def connect(self, *, subscribe: bool = True) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self.client = client
        self.subscribe_on_connect = subscribe
        self.session_present = None
        self.subscribed.clear()
        self.disconnected.clear()
        client.connect(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        if subscribe:
            assert self.subscribed.wait(DEADLINE_S), "no QoS 1 SUBACK from the broker"
        else:
            assert wait_until(lambda: self.session_present is not None), "no CONNACK"

    def disconnect(self) -> None:
        assert self.client is not None
        self.client.disconnect()
        assert self.disconnected.wait(DEADLINE_S), "paho did not report the disconnect"
        self.client.loop_stop()

    def payloads(self) -> list[int]:
        with self.lock:
            return [int(message.payload) for message in self.messages]

    def qos_levels(self) -> set[int]:
        with self.lock:
            return {message.qos for message in self.messages}

    def ack_all(self) -> None:
        assert self.client is not None
        with self.lock:
            pending = list(self.messages)
        for message in pending:
            self.client.ack(message.mid, message.qos)


@contextlib.contextmanager
def publisher(broker: EmbeddedBroker) -> Iterator[mqtt.Client]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="meter-gateway")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish_all(client: mqtt.Client, count: int) -> None:
    """Publish ``count`` QoS 1 messages and wait until the broker acknowledged every one."""
    infos = [
        client.publish(f"gridhub/tenant-a/meter-{i % 7}/events", str(i).encode(), qos=1)
        for i in range(count)
    ]
    for info in infos:
        info.wait_for_publish(DEADLINE_S)
        assert info.is_published(), f"broker did not PUBACK message {info.mid}"


@contextlib.contextmanager
def occupied_port(preferred: int) -> Iterator[int]:
    """Listen on ``preferred`` if it is free (else on any port) so that the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
    finally:
        sock.close()


def refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


# -- tests -----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_free_port_despite_taken_ports_and_200_qos1_messages_with_manual_ack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_pick = embedded_broker._pick_free_port
    picked: list[int] = []

    with occupied_port(1883) as mqtt_default, occupied_port(0) as busy:
        # Simulate the race: the first "free" port is taken before amqtt binds it.
        def pick(host: str) -> int:
            port = busy if not picked else real_pick(host)
            picked.append(port)
            return port

        monkeypatch.setattr(embedded_broker, "_pick_free_port", pick)
        with EmbeddedBroker() as broker:
            assert picked[0] == busy and len(picked) >= 2, "the taken port was not retried"
            assert broker.port not in (0, busy, mqtt_default)
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"

            hub = Subscriber(broker, "gridhub-ingest", auto_ack=False)
            hub.connect()
            try:
                with publisher(broker) as pub:
                    publish_all(pub, 200)
                assert wait_until(lambda: len(hub.payloads()) >= 200), (
                    f"received {len(hub.payloads())} of 200"
                )
                # Nothing acknowledged yet: the broker holds all 200 in flight (manual ack works,
                # paho did not acknowledge on its own).
                assert broker_session_state(broker, "gridhub-ingest") == ("connected", 200)
                hub.ack_all()
                assert wait_until(
                    lambda: broker_session_state(broker, "gridhub-ingest") == ("connected", 0)
                ), "the broker did not take the manual PUBACKs"
                payloads = hub.payloads()
                assert sorted(payloads) == list(range(200)), "lost or duplicated messages"
                assert hub.qos_levels() == {1}
            finally:
                hub.disconnect()


@pytest.mark.integration
def test_persistent_session_gets_messages_published_while_disconnected() -> None:
    with EmbeddedBroker() as broker:
        hub = Subscriber(broker, "gridhub-ingest")
        hub.connect()
        assert hub.session_present is False
        hub.disconnect()
        # Publish only once the broker itself sees the session as disconnected; until then it
        # would still write to the closing socket (see the xfail test below).
        assert wait_until(
            lambda: broker_session_state(broker, "gridhub-ingest") == ("disconnected", 0)
        )

        with publisher(broker) as pub:
            publish_all(pub, 50)

            # Reconnect without subscribing again: the subscription is part of the session.
            hub.connect(subscribe=False)
            try:
                assert hub.session_present is True
                assert wait_until(lambda: len(hub.payloads()) >= 50), (
                    f"received {len(hub.payloads())} of 50 queued messages"
                )
                assert wait_until(
                    lambda: broker_session_state(broker, "gridhub-ingest") == ("connected", 0)
                ), "the broker did not take the PUBACKs"
                assert sorted(hub.payloads()) == list(range(50)), "lost or duplicated messages"
                assert hub.qos_levels() == {1}
            finally:
                hub.disconnect()


@pytest.mark.integration
def test_stop_frees_the_port_and_is_idempotent() -> None:
    broker = EmbeddedBroker()
    broker.stop()  # never started: nothing to do
    broker.start()
    assert broker.running
    host, port = broker.host, broker.port
    hub = Subscriber(broker, "gridhub-ingest")
    hub.connect()  # a live connection must not keep the port busy after stop

    broker.stop()
    assert not broker.running
    assert hub.disconnected.wait(DEADLINE_S), "the client was not disconnected by stop()"
    assert hub.client is not None
    hub.client.loop_stop()
    broker.stop()  # second stop: no error, nothing left to do
    assert broker.port == port, "the port stays readable after stop"
    assert refuses_connections(host, port)

    # The port can be bound again, by anyone and by a broker asked for exactly that port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    with EmbeddedBroker(port=port) as again:
        assert again.url == f"mqtt://{host}:{port}"
        again.stop()  # explicit stop inside the with block, then __exit__ stops again
    assert refuses_connections(host, port)


@pytest.mark.integration
def test_a_taken_fixed_port_is_a_clear_error() -> None:
    with occupied_port(0) as busy:
        broker = EmbeddedBroker(port=busy)
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{busy}.*in use"):
            broker.start()
        assert not broker.running
        broker.stop()


@pytest.mark.integration
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="amqtt 0.12 drops QoS 1 messages still awaiting PUBACK when the subscriber "
    "disconnects (ProtocolHandler._handle_qos1_message_flow pops inflight_out in 'finally'); "
    "they are not redelivered on reconnect",
)
def test_unacknowledged_messages_are_redelivered_after_reconnect() -> None:
    with EmbeddedBroker() as broker:
        hub = Subscriber(broker, "gridhub-ingest", auto_ack=False)
        hub.connect()
        with publisher(broker) as pub:
            publish_all(pub, 5)
            assert wait_until(lambda: len(hub.payloads()) >= 5)
            assert broker_session_state(broker, "gridhub-ingest") == ("connected", 5)
            hub.disconnect()  # the hub stops before its store confirmed the batch

            again = Subscriber(broker, "gridhub-ingest")
            again.connect(subscribe=False)
            try:
                assert wait_until(lambda: len(again.payloads()) >= 5, timeout=2.0), (
                    f"redelivered {len(again.payloads())} of 5 unacknowledged messages"
                )
            finally:
                again.disconnect()
