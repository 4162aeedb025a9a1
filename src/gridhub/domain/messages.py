"""Canonical messages (P1): the JSON format of seed 002 §4.5, as typed msgspec structs.

Inbound: :class:`DeviceMeasurements`, :class:`DeviceAlert`, :class:`Acknowledge`, told apart by
their ``type`` field. Outbound: :class:`CommandMessage`, a command invocation as §4.5.3 shows it.

msgspec was chosen over pydantic v2 by measurement (``benchmarks/bench_decode.py``; figures in
BENCHMARKS.md): it decodes and validates these messages 2–3× faster than the pydantic v2
equivalent, which matters on the hot ingest path. Field names keep the seed's camelCase so
that the wire format *is* the type.

Values that the structs cannot check by type alone — identifiers against the tenant's registry,
finite numbers, dates with an offset — are checked by :mod:`gridhub.domain.validation`, which
turns a decoded message into rows or a precise :class:`~gridhub.errors.RejectedMessage`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from gridhub.domain.rejections import RejectReason
from gridhub.errors import RejectedMessage


class AlertLevel(StrEnum):
    INFO = "Info"
    WARNING = "Warning"
    ERROR = "Error"
    CRITICAL = "Critical"


class MeasurementsRequest(msgspec.Struct, omit_defaults=True):
    # Values are typed ``Any`` on purpose: a wrong type or a non-finite number must be rejected
    # with its own reason (``wrong_value_type``, ``non_finite_value``), not a generic one.
    measurements: dict[str, Any]
    updateState: bool = False
    eventDate: str | None = None
    metadata: dict[str, Any] | None = None


class DeviceMeasurements(msgspec.Struct, tag="DeviceMeasurements", tag_field="type"):
    hardwareId: str
    request: MeasurementsRequest


class AlertRequest(msgspec.Struct, omit_defaults=True):
    type: str
    level: AlertLevel
    message: str = ""
    updateState: bool = False
    eventDate: str | None = None
    metadata: dict[str, Any] | None = None


class DeviceAlert(msgspec.Struct, tag="DeviceAlert", tag_field="type"):
    hardwareId: str
    request: AlertRequest


class AcknowledgeRequest(msgspec.Struct, omit_defaults=True):
    originatingEventId: str
    response: str = ""
    updateState: bool = False
    eventDate: str | None = None


class Acknowledge(msgspec.Struct, tag="Acknowledge", tag_field="type"):
    hardwareId: str
    request: AcknowledgeRequest


InboundMessage = DeviceMeasurements | DeviceAlert | Acknowledge
INBOUND_TYPES: tuple[type, ...] = (DeviceMeasurements, DeviceAlert, Acknowledge)


# --- outbound: command invocation (seed 002 §4.5.3) -------------------------------------------


class CommandParameter(msgspec.Struct):
    name: str
    type: str
    required: bool = False


class CommandSpec(msgspec.Struct, omit_defaults=True):
    name: str
    parameters: list[CommandParameter] = msgspec.field(default_factory=list)
    namespace: str | None = None
    description: str | None = None
    token: str | None = None
    specificationToken: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class CommandInvocation(msgspec.Struct, omit_defaults=True):
    id: str
    eventDate: str
    commandToken: str | None = None
    eventType: str = "CommandInvocation"
    initiator: str = "REST"
    initiatorId: str | None = None
    target: str = "Assignment"
    parameterValues: dict[str, str] = msgspec.field(default_factory=dict)
    status: str = "Pending"
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


class CommandEnvelope(msgspec.Struct):
    command: CommandSpec
    invocation: CommandInvocation
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class CommandMessage(msgspec.Struct):
    """What gridhub publishes on ``gridhub/<tenant>/<hardwareId>/commands``."""

    command: CommandEnvelope


# --- codecs -----------------------------------------------------------------------------------

TOO_DEEP = "JSON nested too deeply"
_single_decoder = msgspec.json.Decoder(InboundMessage)
_batch_decoder = msgspec.json.Decoder(list[InboundMessage])
_raw_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_command_decoder = msgspec.json.Decoder(CommandMessage)
_encoder = msgspec.json.Encoder()


def encode(message: InboundMessage | CommandMessage) -> bytes:
    """Canonical JSON bytes of a message."""
    return _encoder.encode(message)


def _reason_for(error: msgspec.ValidationError) -> RejectReason:
    text = str(error)
    if "`$.type`" in text or "`$[...].type`" in text:
        return RejectReason.UNKNOWN_MESSAGE_TYPE
    if "Number out of range" in text:
        return RejectReason.NON_FINITE_VALUE
    if "eventDate" in text:
        return RejectReason.BAD_DATE
    return RejectReason.INVALID_MESSAGE


def decode(raw: bytes) -> InboundMessage:
    """Decode one inbound message, or raise :class:`RejectedMessage` with a precise reason."""
    try:
        return _single_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise RejectedMessage(_reason_for(exc), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise RejectedMessage(RejectReason.MALFORMED_JSON, str(exc)) from None
    except RecursionError:  # msgspec's nesting limit: a malformed message, not a crash
        raise RejectedMessage(RejectReason.MALFORMED_JSON, TOO_DEEP) from None


def split_batch(raw: bytes) -> list[bytes] | None:
    """Split a JSON array of messages into each message's raw bytes.

    Returns ``None`` when ``raw`` is not a JSON array (then it is a single message). Raises
    :class:`RejectedMessage` if the bytes are not JSON at all. Keeping each element's own bytes
    lets one bad message of a batch be dead-lettered exactly as it was sent.
    """
    start = raw.lstrip()[:1]
    if start != b"[":
        return None
    try:
        return [bytes(part) for part in _raw_decoder.decode(raw)]
    except msgspec.DecodeError as exc:
        raise RejectedMessage(RejectReason.MALFORMED_JSON, str(exc)) from None
    except RecursionError:
        raise RejectedMessage(RejectReason.MALFORMED_JSON, TOO_DEEP) from None


def decode_command(raw: bytes) -> CommandMessage:
    """Decode a command message (what a device receives)."""
    return _command_decoder.decode(raw)
