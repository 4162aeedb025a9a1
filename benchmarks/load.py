"""Load for the benchmarks: canonical messages of a 1,000-meter fleet, and a publisher process.

The publisher is lean on purpose: every PUBLISH is encoded before the clock starts and sent in
windows of 1,000 over one socket, the PUBACKs read in bulk (``gridhub.ingest.mqtt_wire``). With
paho, the load generator itself took 0.8 of the machine's two cores at 14,000 msg/s and capped
both the bare pipe and the hub; this one takes a few percent, so the figures are the subscriber's.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
from datetime import UTC, datetime
from urllib.parse import urlparse

from gridhub.ingest import mqtt_wire as wire

METER_IDS = [
    "electricity.power.active.consumed.l1",
    "electricity.power.active.consumed.l2",
    "electricity.power.active.consumed.l3",
    "electricity.power.active.consumed.total",
    "electricity.power.active.injected.total",
    "electricity.voltage.rms.l1",
    "electricity.voltage.rms.l2",
    "electricity.voltage.rms.l3",
    "electricity.energy.active.consumed.total",
    "electricity.frequency",
]
T0_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
WINDOW = 1000  # PUBLISHes awaiting their PUBACK at once


def message(device: int, tick: int, readings: int) -> bytes:
    ts = datetime.fromtimestamp(T0_US / 1e6 + tick * 900, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = ",".join(
        f'"{METER_IDS[k]}":{(device * 7 + tick + k) % 1000 / 10}' for k in range(readings)
    )
    return (
        f'{{"hardwareId":"m{device:05d}","type":"DeviceMeasurements","request":'
        f'{{"measurements":{{{values}}},"eventDate":"{ts}"}}}}'
    ).encode()


def live_message(device: int, at_ms: int) -> bytes:
    """One reading stamped with the wall clock (to the millisecond: a meter of a fast fleet
    sends several a second), as live meters send."""
    ts = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
    value = (device * 7 + at_ms) % 1000 / 10
    return (
        f'{{"hardwareId":"m{device:05d}","type":"DeviceMeasurements","request":'
        f'{{"measurements":{{"{METER_IDS[3]}":{value}}},"eventDate":"{ts}"}}}}'
    ).encode()


class RawPublisher:
    """One MQTT 3.1.1 connection publishing pre-encoded QoS 1 packets, ``WINDOW`` in flight."""

    def __init__(self, url: str, client_id: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 1883), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = wire.PacketReader()
        self.sock.sendall(wire.encode_connect(client_id, keepalive=600, v5=False, clean_start=True))
        self._await(wire.CONNACK, 1)
        self.packet_id = 0

    def packet(self, device: int, tick: int, readings: int) -> bytes:
        self.packet_id = self.packet_id % 65_535 + 1
        return wire.encode_publish(
            f"gridhub/bench/m{device:05d}/events",
            message(device, tick, readings),
            qos=1,
            packet_id=self.packet_id,
            v5=False,
        )

    def live_packet(self, device: int, at_ms: int) -> bytes:
        self.packet_id = self.packet_id % 65_535 + 1
        return wire.encode_publish(
            f"gridhub/bench/m{device:05d}/events",
            live_message(device, at_ms),
            qos=1,
            packet_id=self.packet_id,
            v5=False,
        )

    def publish(self, packets: list[bytes]) -> None:
        """Send all; return once each has its PUBACK."""
        sent = acked = 0
        while acked < len(packets):
            if sent < len(packets) and sent - acked < WINDOW:
                n = min(len(packets) - sent, WINDOW - (sent - acked))
                self.sock.sendall(b"".join(packets[sent : sent + n]))
                sent += n
            acked += self._await(wire.PUBACK, 1)

    def _await(self, kind: int, at_least: int) -> int:
        """Read until ``at_least`` packets of ``kind`` arrived; how many did."""
        got = 0
        while got < at_least:
            data = self.sock.recv(65_536)
            if not data:
                raise ConnectionError("the broker closed the publisher's connection")
            self.reader.feed(data)
            for packet_kind, _flags, _body in self.reader.packets():
                if packet_kind != kind:
                    raise ConnectionError(f"expected packet type {kind}, got {packet_kind}")
                got += 1
        return got

    def close(self) -> None:
        self.sock.sendall(wire.DISCONNECT_PACKET)
        self.sock.close()


def publish_all(url: str, count: int, readings: int, devices: int, ready: mp.Event) -> None:
    """A device fleet in one process: ``count`` QoS 1 messages, encoded before ``ready``."""
    publisher = RawPublisher(url, f"bench-fleet-{count}-{readings}")
    packets = [publisher.packet(i % devices, i // devices, readings) for i in range(count)]
    ready.set()
    try:
        publisher.publish(packets)
    finally:
        publisher.close()
