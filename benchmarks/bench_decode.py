"""Decode + validate cost per inbound message: msgspec (what gridhub uses) against pydantic v2.

``gridhub.domain.messages`` chose msgspec for the hot ingest path by measurement; this is that
measurement, kept runnable so the choice can be checked again when either library moves (N1:
speed is measured by benchmarks, and the figures go to BENCHMARKS.md).

Both sides do the same work on the same bytes: parse the JSON, tell the message type by its
``type`` field, check every identifier against the tenant's :class:`IdentifierRegistry`, require
each value to be a finite number but not a bool, require ``eventDate`` to carry an offset (and
lie after 1970 and at most a day ahead), and produce the readings
``(identifier, µs since the epoch, value)``. The msgspec side is the real code
(:func:`gridhub.domain.messages.decode` then :func:`gridhub.domain.validation.measurement_readings`);
the pydantic side is the idiomatic equivalent (a discriminated union on ``type``,
``model_validate_json``, the registry passed as validation context). Before timing, both are
shown to accept and refuse the same messages.

Each timing is the best of ``--runs`` passes over ``--messages`` distinct messages (1 and 10
readings of seed 002 Table 2 meter identifiers), with the garbage collector paused as ``timeit``
does, so the figure is the decoder's cost rather than a collection that happened to fall in it.

    python benchmarks/bench_decode.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    RootModel,
    ValidationError,
    ValidationInfo,
)

from gridhub.domain.identifiers import IdentifierRegistry
from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, decode, encode
from gridhub.domain.validation import (
    MAX_MEASUREMENTS_PER_MESSAGE,
    Reading,
    measurement_readings,
    to_us,
)
from gridhub.errors import RejectedMessage

# Meter identifiers of seed 002 Table 2, as a three-phase smart meter reports them.
METER_IDENTIFIERS = (
    "electricity.power.active.consumed.total",
    "electricity.power.active.consumed.l1",
    "electricity.power.active.consumed.l2",
    "electricity.power.active.consumed.l3",
    "electricity.power.active.injected.total",
    "electricity.energy.active.consumed.total",
    "electricity.energy.active.injected.total",
    "electricity.voltage.rms.l1",
    "electricity.current.rms.l1",
    "electricity.frequency",
)
READINGS_PER_MESSAGE = (1, 10)
MAX_FUTURE_S = 86400.0
EPOCH_YEAR = 1970


# --- the pydantic v2 equivalent ----------------------------------------------------------------


def _known_identifiers(measurements: dict[str, float], info: ValidationInfo) -> dict[str, float]:
    identifiers: IdentifierRegistry = info.context["identifiers"]
    for name in measurements:
        if name not in identifiers:
            raise ValueError(f"identifier {name[:128]!r} is not registered")
    return measurements


def _plausible_date(moment: datetime | None, info: ValidationInfo) -> datetime | None:
    if moment is None:
        return None
    if moment.year < EPOCH_YEAR:
        raise ValueError("eventDate is before 1970")
    if to_us(moment) > info.context["received_us"] + int(MAX_FUTURE_S * 1e6):
        raise ValueError("eventDate is more than a day in the future")
    return moment


# strict: a JSON true is not 1.0 and "1" is not a number; allow_inf_nan: 1e999 is refused.
FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]
EventDate = Annotated[AwareDatetime | None, AfterValidator(_plausible_date)]


class PMeasurementsRequest(BaseModel):
    measurements: Annotated[
        dict[str, FiniteNumber],
        Field(min_length=1, max_length=MAX_MEASUREMENTS_PER_MESSAGE),
        AfterValidator(_known_identifiers),
    ]
    updateState: bool = False
    eventDate: EventDate = None
    metadata: dict[str, Any] | None = None


class PDeviceMeasurements(BaseModel):
    type: Literal["DeviceMeasurements"]
    hardwareId: str
    request: PMeasurementsRequest


class PAlertRequest(BaseModel):
    type: str
    level: Literal["Info", "Warning", "Error", "Critical"]
    message: str = ""
    updateState: bool = False
    eventDate: EventDate = None
    metadata: dict[str, Any] | None = None


class PDeviceAlert(BaseModel):
    type: Literal["DeviceAlert"]
    hardwareId: str
    request: PAlertRequest


class PAcknowledgeRequest(BaseModel):
    originatingEventId: str
    response: str = ""
    updateState: bool = False
    eventDate: EventDate = None


class PAcknowledge(BaseModel):
    type: Literal["Acknowledge"]
    hardwareId: str
    request: PAcknowledgeRequest


class PInbound(RootModel[Any]):
    root: Annotated[
        PDeviceMeasurements | PDeviceAlert | PAcknowledge, Field(discriminator="type")
    ]


# --- the two paths under test ------------------------------------------------------------------

Path_ = Callable[[Sequence[bytes], IdentifierRegistry, int], int]


def run_msgspec(raws: Sequence[bytes], identifiers: IdentifierRegistry, received_us: int) -> int:
    """gridhub's own path; returns the number of readings so no work can be skipped."""
    count = 0
    for raw in raws:
        message = decode(raw)
        if type(message) is DeviceMeasurements:
            count += len(measurement_readings(message, identifiers, received_us))
    return count


def pydantic_readings(
    raw: bytes, identifiers: IdentifierRegistry, received_us: int
) -> list[Reading] | None:
    context = {"identifiers": identifiers, "received_us": received_us}
    message = PInbound.model_validate_json(raw, context=context).root
    if type(message) is not PDeviceMeasurements:
        return None
    request = message.request
    ts = received_us if request.eventDate is None else to_us(request.eventDate)
    return [(name, ts, value) for name, value in request.measurements.items()]


def run_pydantic(raws: Sequence[bytes], identifiers: IdentifierRegistry, received_us: int) -> int:
    count = 0
    validate = PInbound.model_validate_json
    context = {"identifiers": identifiers, "received_us": received_us}
    for raw in raws:
        message = validate(raw, context=context).root
        if type(message) is PDeviceMeasurements:
            request = message.request
            ts = received_us if request.eventDate is None else to_us(request.eventDate)
            count += len([(name, ts, value) for name, value in request.measurements.items()])
    return count


# --- messages ----------------------------------------------------------------------------------


def make_messages(count: int, readings: int, seed: int = 2016) -> list[bytes]:
    """Distinct meter messages: 500 meters, quarter-hour eventDates with an offset."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    offset = timedelta(hours=2)
    names = METER_IDENTIFIERS[:readings]
    result = []
    for i in range(count):
        moment = (start + timedelta(minutes=15 * (i // 500))).astimezone(
            datetime.now(UTC).astimezone().tzinfo if False else _FIXED_ZONE
        )
        measurements = {name: round(rng.uniform(0.0, 9.0), 3) for name in names}
        if "electricity.frequency" in measurements:
            measurements["electricity.frequency"] = round(rng.uniform(49.9, 50.1), 3)
        request = MeasurementsRequest(
            measurements=measurements,
            updateState=True,
            eventDate=moment.isoformat(timespec="milliseconds"),
        )
        result.append(encode(DeviceMeasurements(hardwareId=f"meter-{i % 500:05d}", request=request)))
    del offset
    return result
