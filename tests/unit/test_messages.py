"""Canonical messages (P1): round trips for every type, and precise rejection reasons."""

from __future__ import annotations

import msgspec
import pytest

from gridhub.domain.messages import (
    Acknowledge,
    AcknowledgeRequest,
    AlertLevel,
    AlertRequest,
    CommandEnvelope,
    CommandInvocation,
    CommandMessage,
    CommandParameter,
    CommandSpec,
    DeviceAlert,
    DeviceMeasurements,
    MeasurementsRequest,
    decode,
    decode_command,
    encode,
    split_batch,
)
from gridhub.domain.rejections import RejectReason
from gridhub.errors import RejectedMessage

INBOUND = [
    DeviceMeasurements(
        "123-TEST-4567890",
        MeasurementsRequest(
            {
                "electricity.power.active.consumed.l1": 87.1,
                "electricity.power.active.consumed.total": 170,
            },
            updateState=True,
            eventDate="2016-02-10T19:40:03.391+02:00",
        ),
    ),
    DeviceAlert(
        "123-TEST-4567890",
        AlertRequest(
            "maximum.power.approaching",
            AlertLevel.WARNING,
            "Home power is close to max",
            True,
            "2016-02-10T19:40:03.391+02:00",
            {"name1": "value1"},
        ),
    ),
    Acknowledge(
        "123-TEST-4567890",
        AcknowledgeRequest(
            "56bf72cba76cfa4ff7901e8d", "Pinged Me!", False, "2016-02-13T18:15:39.563Z"
        ),
    ),
]


@pytest.mark.parametrize("message", INBOUND, ids=lambda m: type(m).__name__)
def test_inbound_round_trip(message: object) -> None:
    raw = encode(message)  # type: ignore[arg-type]
    assert decode(raw) == message
    assert encode(decode(raw)) == raw


def test_command_round_trip() -> None:
    message = CommandMessage(
        CommandEnvelope(
            CommandSpec(
                "blinkLed",
                [CommandParameter("color", "String", True), CommandParameter("count", "Int32")],
                namespace="http://www.test.com",
                description="Blinks an LED",
            ),
            CommandInvocation(
                "56bf7c84a76cfa4ff7901e94",
                "2016-02-13T13:57:08.274-0500",
                parameterValues={"color": "#ff0000", "count": "3"},
            ),
            {"color": "#ff0000", "count": 3},
        )
    )
    assert decode_command(encode(message)) == message


def test_seed_examples_decode_verbatim() -> None:
    """The examples of seed 002 §4.5, as printed there, are valid canonical messages."""
    raw = b"""{ "hardwareId" : "123-TEST-4567890", "type" : "DeviceMeasurements",
      "request" : { "measurements" : { "electricity.power.active.consumed.l1": 87.1,
      "electricity.power.active.consumed.total" : 170 }, "updateState": true,
      "eventDate" : "2016-02-10T19:40:03.391+02:00" } }"""
    message = decode(raw)
    assert isinstance(message, DeviceMeasurements)
    assert message.request.measurements["electricity.power.active.consumed.total"] == 170


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", RejectReason.MALFORMED_JSON),
        (
            b'{"hardwareId": "a", "type": "Telemetry", "request": {}}',
            RejectReason.UNKNOWN_MESSAGE_TYPE,
        ),
        (b'{"hardwareId": "a", "request": {"measurements": {}}}', RejectReason.INVALID_MESSAGE),
        (
            b'{"type": "DeviceMeasurements", "request": {"measurements": {}}}',
            RejectReason.INVALID_MESSAGE,
        ),
        (
            b'{"hardwareId": "a", "type": "DeviceMeasurements", "request": {"measurements": {},'
            b' "eventDate": 12}}',
            RejectReason.BAD_DATE,
        ),
        (
            b'{"hardwareId": "a", "type": "DeviceMeasurements", "request": {"measurements":'
            b' {"x": 1e999}}}',
            RejectReason.NON_FINITE_VALUE,
        ),
        (
            b'{"hardwareId": "a", "type": "DeviceAlert",'
            b' "request": {"type": "t", "level": "Loud"}}',
            RejectReason.INVALID_MESSAGE,
        ),
    ],
)
def test_decode_rejections(raw: bytes, reason: RejectReason) -> None:
    with pytest.raises(RejectedMessage) as caught:
        decode(raw)
    assert caught.value.reason is reason


def test_split_batch_keeps_each_message_bytes() -> None:
    one, two = encode(INBOUND[0]), encode(INBOUND[1])
    assert split_batch(b"[" + one + b", " + two + b"]") == [one, two]
    assert split_batch(one) is None
    with pytest.raises(RejectedMessage) as caught:
        split_batch(b"[" + one)
    assert caught.value.reason is RejectReason.MALFORMED_JSON


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    # msgspec raises RecursionError past its nesting limit: a 500 on POST .../events before
    deep = b"[" * 5000 + b"]" * 5000
    unknown_field = b'{"hardwareId":"m","extra":' + deep + b"}"  # skipped values recurse too
    for call, raw in ((split_batch, deep), (decode, unknown_field)):
        with pytest.raises(RejectedMessage) as caught:
            call(raw)
        assert caught.value.reason is RejectReason.MALFORMED_JSON
        assert "nested too deeply" in caught.value.detail


def test_alert_levels_are_the_four_of_the_spec() -> None:
    assert [level.value for level in AlertLevel] == ["Info", "Warning", "Error", "Critical"]
    assert msgspec.json.decode(b'"Critical"', type=AlertLevel) is AlertLevel.CRITICAL
