"""Decode + validate cost per inbound message: msgspec (what gridhub uses) against pydantic v2.

``gridhub.domain.messages`` chose msgspec for the hot ingest path by measurement; this is that
measurement, kept runnable so the choice can be checked again when either library moves (N1:
speed is measured by benchmarks, and the figures go to BENCHMARKS.md).

Both sides do the same work on the same bytes: parse the JSON, tell the message type by its
``type`` field, check every identifier against the tenant's :class:`IdentifierRegistry`, require
each value to be a finite number but not a bool, require ``eventDate`` to carry an offset (and
lie after 1970 and at most a day ahead), and produce the readings
``(identifier, µs since the epoch, value)``. The msgspec side is the real code
(``gridhub.domain.messages.decode``, then ``gridhub.domain.validation.measurement_readings``);
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
from datetime import UTC, datetime, timedelta, timezone
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
    root: Annotated[PDeviceMeasurements | PDeviceAlert | PAcknowledge, Field(discriminator="type")]


# --- the two paths under test ------------------------------------------------------------------


def msgspec_readings(
    raw: bytes, identifiers: IdentifierRegistry, received_us: int
) -> list[Reading] | None:
    """gridhub's own path: the readings of a measurements message, None for other types."""
    message = decode(raw)
    if type(message) is not DeviceMeasurements:
        return None
    return measurement_readings(message, identifiers, received_us)


def pydantic_readings(
    raw: bytes, identifiers: IdentifierRegistry, received_us: int
) -> list[Reading] | None:
    """The same job with the pydantic models above."""
    context = {"identifiers": identifiers, "received_us": received_us}
    message = PInbound.model_validate_json(raw, context=context).root
    if type(message) is not PDeviceMeasurements:
        return None
    request = message.request
    ts = received_us if request.eventDate is None else to_us(request.eventDate)
    return [(name, ts, value) for name, value in request.measurements.items()]


ReadingsOf = Callable[[bytes, IdentifierRegistry, int], "list[Reading] | None"]
PATHS: dict[str, ReadingsOf] = {"msgspec": msgspec_readings, "pydantic": pydantic_readings}


# --- messages ----------------------------------------------------------------------------------


def make_messages(count: int, readings: int, seed: int = 2016) -> list[bytes]:
    """Distinct meter messages: 500 meters, quarter-hour eventDates at +02:00, as in seed 002."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=2)))
    names = METER_IDENTIFIERS[:readings]
    result = []
    for i in range(count):
        moment = start + timedelta(minutes=15 * (i // 500))
        measurements = {name: round(rng.uniform(0.0, 9.0), 3) for name in names}
        request = MeasurementsRequest(
            measurements=measurements,
            updateState=True,
            eventDate=moment.isoformat(timespec="milliseconds"),
        )
        message = DeviceMeasurements(hardwareId=f"meter-{i % 500:05d}", request=request)
        result.append(encode(message))
    return result


# Messages both paths must refuse: each check named in the module docstring, once.
_MUST_REFUSE = {
    "unknown identifier": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.nonsense":1.0},"eventDate":"2024-05-01T10:00:00+02:00"}}',
    "bool value": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":true}}}',
    "string value": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":"50"}}}',
    "number beyond float": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":1e999}}}',
    "date without offset": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":50.0},"eventDate":"2024-05-01T10:00:00"}}',
    "not a date": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":50.0},"eventDate":"yesterday"}}',
    "date before 1970": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":50.0},"eventDate":"1969-12-31T23:00:00Z"}}',
    "no measurements": b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{}}}',
    "unknown type": b'{"type":"DeviceGossip","hardwareId":"m","request":{}}',
    "malformed JSON": b'{"type":"DeviceMeasurements",',
}
_MUST_ACCEPT = [
    b'{"type":"DeviceMeasurements","hardwareId":"m","request":'
    b'{"measurements":{"electricity.frequency":50}}}',  # an integer is a number
    b'{"type":"DeviceAlert","hardwareId":"m","request":{"type":"lastGasp","level":"Critical"}}',
    b'{"type":"Acknowledge","hardwareId":"m","request":{"originatingEventId":"c-1"}}',
]


def check_equivalence(
    samples: Sequence[bytes], identifiers: IdentifierRegistry, received_us: int
) -> None:
    """Refuse to time two paths that do not do the same job."""
    for raw in [*samples, *_MUST_ACCEPT]:
        expected = msgspec_readings(raw, identifiers, received_us)
        got = pydantic_readings(raw, identifiers, received_us)
        if expected != got:
            raise SystemExit(f"the paths disagree on {raw[:80]!r}: {expected} vs {got}")
    for case, raw in _MUST_REFUSE.items():
        for name, readings_of in PATHS.items():
            try:
                readings_of(raw, identifiers, received_us)
            except (RejectedMessage, ValidationError):
                continue
            raise SystemExit(f"{name} accepts a message with {case}: {raw!r}")


def run(
    readings_of: ReadingsOf,
    raws: Sequence[bytes],
    identifiers: IdentifierRegistry,
    received_us: int,
) -> int:
    """One pass; counts the readings so that no work can be skipped."""
    count = 0
    for raw in raws:
        readings = readings_of(raw, identifiers, received_us)
        if readings is not None:
            count += len(readings)
    return count


def best_us_per_message(
    readings_of: ReadingsOf,
    raws: Sequence[bytes],
    identifiers: IdentifierRegistry,
    received_us: int,
    runs: int,
) -> float:
    """Best of ``runs`` passes, in µs per message."""
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            run(readings_of, raws, identifiers, received_us)
            elapsed = time.perf_counter() - started
        finally:
            gc.enable()
        best = min(best, elapsed)
    return best / len(raws) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--messages", type=int, default=200_000, help="messages per pass")
    parser.add_argument("--runs", type=int, default=5, help="passes; the best one counts")
    args = parser.parse_args(argv)
    script = "benchmarks/bench_decode.py"  # as run from the repository root
    command = shlex.join(["python", script, *(sys.argv[1:] if argv is None else argv)])

    identifiers = IdentifierRegistry()
    received_us = to_us(datetime.now(UTC))
    figures: dict[str, dict[str, Any]] = {}
    rows: list[tuple[int, float, float]] = []
    for readings in READINGS_PER_MESSAGE:
        raws = make_messages(args.messages, readings)
        check_equivalence(raws[:200], identifiers, received_us)
        us = {
            name: best_us_per_message(readings_of, raws, identifiers, received_us, args.runs)
            for name, readings_of in PATHS.items()
        }
        for name, value in us.items():
            figures[f"decode_validate_us_{name}_{readings}"] = {
                "value": round(value, 3),
                "unit": "µs/msg",
                "command": command,
            }
        rows.append((readings, us["msgspec"], us["pydantic"]))

    print(
        f"decode + validate, best of {args.runs} passes over {args.messages:,} messages "
        f"(Python {sys.version.split()[0]}, msgspec {msgspec.__version__}, "
        f"pydantic {pydantic.VERSION})"
    )
    print(f"{'readings':>8}  {'msgspec µs/msg':>14}  {'pydantic µs/msg':>15}  {'ratio':>6}")
    for readings, fast, slow in rows:
        print(f"{readings:>8}  {fast:>14.2f}  {slow:>15.2f}  {slow / fast:>5.1f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", "utf-8")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
