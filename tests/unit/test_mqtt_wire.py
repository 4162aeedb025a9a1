"""The ingest subscriber's MQTT codec: spec byte vectors, paho-built properties, any chunking."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gridhub.ingest import mqtt_wire as wire


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_variable_byte_integer_matches_the_spec_table(value: int, encoded: bytes) -> None:
    assert wire.encode_varint(value) == encoded  # MQTT 5 §1.5.5, MQTT 3.1.1 §2.2.3


def test_variable_byte_integer_out_of_range() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        wire.encode_varint(268_435_456)


def publish_packet(
    topic: str, payload: bytes, *, qos: int, mid: int = 0, dup: bool = False, props: bytes = b""
) -> bytes:
    """A PUBLISH built by hand from the spec; ``props`` (MQTT 5) already length-prefixed."""
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    body += props + payload
    return bytes([0x30 | (0x08 if dup else 0) | qos << 1]) + wire.encode_varint(len(body)) + body


def only_packet(data: bytes) -> tuple[int, int, bytearray]:
    reader = wire.PacketReader()
    reader.feed(data)
    packets = list(reader.packets())
    assert len(packets) == 1 and reader.buffered == 0
    return packets[0]


def test_publish_v311_qos1_with_dup() -> None:
    kind, flags, body = only_packet(
        publish_packet("gridhub/t/m1/events", b'{"a":1}', qos=1, mid=513, dup=True)
    )
    assert kind == wire.PUBLISH
    p = wire.decode_publish(flags, body, v5=False)
    assert (p.topic, p.payload, p.qos, p.packet_id, p.dup) == (
        "gridhub/t/m1/events",
        b'{"a":1}',
        1,
        513,
        True,
    )


def test_publish_v5_skips_properties_paho_wrote() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    props.UserProperty = ("site", "s1")
    packed = props.pack()  # paho's own encoding, length prefix included
    assert len(packed) > 20
    _kind, flags, body = only_packet(
        publish_packet("gridhub/t/m1/events", b"payload", qos=1, mid=7, props=packed)
    )
    p = wire.decode_publish(flags, body, v5=True)
    assert (p.topic, p.payload, p.packet_id, p.dup) == ("gridhub/t/m1/events", b"payload", 7, False)


def test_publish_qos0_has_no_packet_id() -> None:
    _kind, flags, body = only_packet(publish_packet("a/b", b"xyz", qos=0, props=b"\x00"))
    p = wire.decode_publish(flags, body, v5=True)
    assert (p.qos, p.packet_id, p.payload) == (0, 0, b"xyz")


@pytest.mark.parametrize(
    ("flags", "body", "message"),
    [
        (0x02, b"\x00\x03ab", "too short for its packet id"),
        (0x06, b"\x00\x01a\x00\x01", "QoS 3"),
        (0x02, b"\x00\x02\xff\xfe\x00\x01", "not UTF-8"),
        (0x02, b"\x00\x01a\x00\x01\x09\x01", "run past"),
        (0x00, b"\x00", "too short for its topic"),
    ],
)
def test_malformed_publish_is_a_protocol_error(flags: int, body: bytes, message: str) -> None:
    with pytest.raises(wire.MqttProtocolError, match=message):
        wire.decode_publish(flags, bytearray(body), v5=True)


def test_remaining_length_longer_than_four_bytes_is_refused() -> None:
    reader = wire.PacketReader()
    reader.feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(wire.MqttProtocolError, match="four bytes"):
        list(reader.packets())


def test_pubacks_go_out_as_one_buffer() -> None:
    assert wire.encode_pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_connect_v5_layout() -> None:
    packet = wire.encode_connect(
        "hub",
        keepalive=30,
        v5=True,
        username="u",
        password="p",
        receive_maximum=65_535,
        session_expiry_s=604_800,
    )
    kind, flags, body = only_packet(packet)
    assert (kind, flags) == (wire.CONNECT, 0)
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0xC0  # user name and password, clean start off
    assert body[8:10] == b"\x00\x1e"
    # properties: session expiry 604,800 s and receive maximum 65,535, as §3.1.2.11 lays out
    assert bytes(body[10:19]) == b"\x08\x11\x00\x09\x3a\x80\x21\xff\xff"
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 604_800
    props.ReceiveMaximum = 65_535
    assert bytes(body[10:19]) == props.pack()  # the same bytes paho would send
    assert bytes(body[19:]) == b"\x00\x03hub\x00\x01u\x00\x01p"


def test_connect_v311_clean_session_off_without_login() -> None:
    _kind, _flags, body = only_packet(wire.encode_connect("hub", keepalive=60, v5=False))
    assert bytes(body) == b"\x00\x04MQTT\x04\x00\x00\x3c\x00\x03hub"


@pytest.mark.parametrize(
    ("v5", "expected"),
    [
        (False, b"\x82\x0a\x00\x01\x00\x05a/+/b\x01"),
        (True, b"\x82\x0b\x00\x01\x00\x00\x05a/+/b\x01"),
    ],
)
def test_subscribe_bytes(v5: bool, expected: bytes) -> None:
    assert wire.encode_subscribe(1, "a/+/b", 1, v5=v5) == expected


def test_suback_v5_with_a_reason_string() -> None:
    props = Properties(PacketTypes.SUBACK)
    props.ReasonString = "ok"
    body = bytearray(b"\x00\x01" + props.pack() + b"\x87")
    assert wire.decode_suback(body, v5=True) == (1, [0x87])
    assert wire.decode_suback(bytearray(b"\x00\x02\x01"), v5=False) == (2, [1])


def test_connack_and_disconnect_codes() -> None:
    assert wire.decode_connack(bytearray(b"\x01\x00\x00"), v5=True) == (True, 0)
    assert wire.decode_connack(bytearray(b"\x00\x05"), v5=False) == (False, 5)
    assert "not authorised" in wire.reason_text(5, False)
    assert "session taken over" in wire.reason_text(0x8E, True)
    assert wire.decode_disconnect(bytearray(b"\x8b"), v5=True) == 0x8B
    assert wire.decode_disconnect(bytearray(b""), v5=True) == 0


STREAM = [
    publish_packet(f"gridhub/t/m{i}/events", bytes([i]) * (i * 37 % 300), qos=1, mid=i + 1)
    for i in range(40)
] + [b"\xd0\x00", publish_packet("x", b"\x00" * 20_000, qos=1, mid=999)]


@given(st.lists(st.integers(min_value=1, max_value=25_000), max_size=60))
def test_any_chunking_yields_the_same_packets(cuts: list[int]) -> None:
    """However TCP splits the stream, the reader returns every packet once, whole, in order."""
    data = b"".join(STREAM)
    reader = wire.PacketReader()
    got: list[bytes] = []
    pos = 0
    for size in cuts + [len(data)]:
        reader.feed(data[pos : pos + size])
        pos += size
        for kind, flags, body in reader.packets():
            got.append(bytes([kind << 4 | flags]) + wire.encode_varint(len(body)) + bytes(body))
        if pos >= len(data):
            break
    assert got == STREAM
    assert reader.buffered == 0


@pytest.mark.parametrize("v5", [False, True])
@pytest.mark.parametrize("qos", [0, 1])
def test_encode_publish_matches_the_hand_built_packet(v5: bool, qos: int) -> None:
    expected = publish_packet(
        "gridhub/t/m1/events",
        b"x" * 200,
        qos=qos,
        mid=42 if qos else 0,
        props=b"\x00" if v5 else b"",
    )
    packet = wire.encode_publish("gridhub/t/m1/events", b"x" * 200, qos=qos, packet_id=42, v5=v5)
    assert packet == expected
    _kind, flags, body = only_packet(packet)
    assert wire.decode_publish(flags, body, v5=v5).payload == b"x" * 200
