"""MQTT 3.1.1 and 5 packets for the ingest subscriber: encode what it sends, decode what it reads.

Pure functions, no I/O. The subscriber only ever sends CONNECT, SUBSCRIBE, PUBACK, PINGREQ and
DISCONNECT, and reads CONNACK, SUBACK, PUBLISH, PINGRESP and DISCONNECT, so that is all there is
here (OASIS MQTT 3.1.1 §2–3, MQTT 5.0 §2–3). Why not paho for this: measured under load, paho
spent most of the hub's GIL time per message on one ``recv`` per header byte, a ``select`` per
packet, a ``Properties`` object and a topic-matcher walk per PUBLISH and one ``send`` per PUBACK;
:class:`PacketReader` splits every packet out of one large ``recv`` and the PUBACKs of a whole
commit go out in one ``send``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# packet types (high nibble of the fixed header)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection, in both versions

# MQTT 5 property identifiers the subscriber sends
_SESSION_EXPIRY = 0x11
_RECEIVE_MAXIMUM = 0x21

# CONNACK return codes of MQTT 3.1.1, as text (MQTT 5's reason codes are looked up below)
_V3_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
_V5_REASONS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x97: "quota exceeded",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}


class MqttProtocolError(Exception):
    """The broker sent something this subscriber cannot accept (the connection is dropped)."""


def reason_text(code: int, v5: bool) -> str:
    """A CONNACK/SUBACK/DISCONNECT code as words, for logs and errors."""
    if v5:
        return f"{_V5_REASONS.get(code, 'reason')} (0x{code:02x})"
    return f"{_V3_CONNACK.get(code, 'refused')} ({code})"


def encode_varint(value: int) -> bytes:
    """MQTT's variable byte integer (§1.5.5 / §2.2.3): 7 bits a byte, at most four bytes."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    if len(data) > 65_535:
        raise ValueError("an MQTT string holds at most 65,535 bytes")
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    keepalive: int,
    v5: bool,
    clean_start: bool = False,
    username: str | None = None,
    password: str | None = None,
    receive_maximum: int = 65_535,
    session_expiry_s: int = 0,
) -> bytes:
    """CONNECT. With MQTT 5, ``receive_maximum`` and ``session_expiry_s`` go as properties."""
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = _string("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive)
    if v5:
        props = bytes([_SESSION_EXPIRY]) + struct.pack("!I", session_expiry_s)
        props += bytes([_RECEIVE_MAXIMUM]) + struct.pack("!H", receive_maximum)
        body += encode_varint(len(props)) + props
    body += _string(client_id)
    if username is not None:
        body += _string(username)
        if password is not None:
            raw = password.encode()
            body += struct.pack("!H", len(raw)) + raw
    return _packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, topic: str, qos: int, *, v5: bool) -> bytes:
    """SUBSCRIBE to one topic filter at ``qos`` (the subscription options byte in MQTT 5)."""
    body = struct.pack("!H", packet_id)
    if v5:
        body += b"\x00"  # no properties
    body += _string(topic) + bytes([qos])
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_publish(topic: str, payload: bytes, *, qos: int, packet_id: int, v5: bool) -> bytes:
    """PUBLISH (not retained, no properties). The hub never publishes through this module:
    it is the benchmarks' lean load generator and the tests' reference packet."""
    body = _string(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if v5:
        body += b"\x00"
    return _packet((PUBLISH << 4) | (qos << 1), body + payload)


def encode_pubacks(packet_ids: list[int]) -> bytes:
    """One PUBACK per id, concatenated for a single ``send``. Without a reason code, as both
    versions allow: MQTT 5 reads a two-byte PUBACK as success (§3.4.2.1)."""
    return b"".join(struct.pack("!BBH", PUBACK << 4, 2, mid) for mid in packet_ids)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 at QoS 0
    dup: bool


def decode_publish(flags: int, body: bytes | bytearray, *, v5: bool) -> Publish:
    """A PUBLISH's topic, packet id and payload; MQTT 5 properties are skipped unread."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MqttProtocolError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise MqttProtocolError("PUBLISH too short for its topic")
    topic_len = (body[0] << 8) | body[1]
    pos = 2 + topic_len
    try:
        topic = str(body[2:pos], "utf-8")
    except UnicodeDecodeError as exc:
        raise MqttProtocolError("PUBLISH topic is not UTF-8") from exc
    packet_id = 0
    if qos:
        if len(body) < pos + 2:
            raise MqttProtocolError("PUBLISH too short for its packet id")
        packet_id = (body[pos] << 8) | body[pos + 1]
        pos += 2
    if v5:
        length, pos = _read_varint(body, pos)
        pos += length
    if pos > len(body):
        raise MqttProtocolError("PUBLISH properties run past the packet")
    return Publish(topic, bytes(body[pos:]), qos, packet_id, bool(flags & 0x08))


def decode_connack(body: bytes | bytearray, *, v5: bool) -> tuple[bool, int]:
    """(session present, return/reason code)."""
    if len(body) < 2:
        raise MqttProtocolError("CONNACK too short")
    return bool(body[0] & 0x01), body[1]


def decode_suback(body: bytes | bytearray, *, v5: bool) -> tuple[int, list[int]]:
    """(packet id, one granted QoS or failure code per filter)."""
    if len(body) < 3:
        raise MqttProtocolError("SUBACK too short")
    packet_id = (body[0] << 8) | body[1]
    pos = 2
    if v5:
        length, pos = _read_varint(body, pos)
        pos += length
    return packet_id, list(body[pos:])


def decode_disconnect(body: bytes | bytearray, *, v5: bool) -> int:
    """A broker's DISCONNECT reason (MQTT 5 only; 0 when absent)."""
    return body[0] if v5 and len(body) >= 1 else 0


def _read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(4):
        if pos >= len(data):
            raise MqttProtocolError("variable byte integer runs past the packet")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MqttProtocolError("variable byte integer longer than four bytes")


class PacketReader:
    """Splits a byte stream into packets: feed it what ``recv`` returned, then iterate.

    Each packet comes out as (type, flags, body), the body a copy; a partial packet waits for
    the rest.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a packet."""
        return len(self._buf) - self._pos

    def packets(self) -> Iterator[tuple[int, int, bytearray]]:
        buf, end = self._buf, len(self._buf)
        while end - self._pos >= 2:
            pos = self._pos + 1
            length, shift = 0, 0
            while True:
                if pos >= end:
                    return  # the length itself is not complete yet
                byte = buf[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MqttProtocolError("remaining length longer than four bytes")
            if end - pos < length:
                return
            first = buf[self._pos]
            self._pos = pos + length
            yield first >> 4, first & 0x0F, buf[pos : pos + length]
