"""Rules that turn a decoded message into storable values, or a precise rejection.

Pure functions: the caller passes the tenant's identifiers and the receive time, so the same rules
serve MQTT, HTTP, CSV import and the simulator, and are unit-tested without any I/O.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from gridhub.domain.identifiers import IdentifierRegistry
from gridhub.domain.messages import DeviceMeasurements
from gridhub.domain.rejections import RejectReason
from gridhub.errors import RejectedMessage

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
MAX_MEASUREMENTS_PER_MESSAGE = 1000
MAX_HARDWARE_ID_LENGTH = 128
# MQTT topic levels must not contain wildcards or separators; keep ids printable and short.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
"""Device and site ids: safe as an MQTT topic level and in a URL path."""

_FLOAT = {float}
Reading = tuple[str, int, float]
"""(identifier, timestamp in µs since the epoch (UTC), value)."""


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def check_hardware_id(hardware_id: str) -> str:
    if not hardware_id or len(hardware_id) > MAX_HARDWARE_ID_LENGTH:
        raise RejectedMessage(
            RejectReason.INVALID_MESSAGE,
            f"hardwareId must be 1..{MAX_HARDWARE_ID_LENGTH} characters",
        )
    if not ID_PATTERN.fullmatch(hardware_id):
        raise RejectedMessage(
            RejectReason.INVALID_MESSAGE,
            f"hardwareId {hardware_id[:64]!r} may hold only letters, digits and . _ : @ -",
        )
    return hardware_id


_parsed: dict[str, int] = {}
_PARSED_MAX = 8192


def _parse_event_date(event_date: str) -> int:
    """µs since the epoch of an ISO 8601 date-time with offset (cached: a fleet reporting at
    the same tick sends the same string thousands of times)."""
    us = _parsed.get(event_date)
    if us is not None:
        return us
    try:
        moment = datetime.fromisoformat(event_date)
    except ValueError:
        raise RejectedMessage(
            RejectReason.BAD_DATE, f"eventDate {event_date[:64]!r} is not an ISO 8601 date-time"
        ) from None
    if moment.tzinfo is None:
        raise RejectedMessage(
            RejectReason.MISSING_OFFSET,
            f"eventDate {event_date[:64]!r} has no UTC offset (add 'Z' or e.g. '+01:00')",
        )
    if moment.year < 1970:
        raise RejectedMessage(RejectReason.BAD_DATE, f"eventDate {event_date!r} is before 1970")
    us = to_us(moment)
    if len(_parsed) >= _PARSED_MAX:
        _parsed.clear()
    _parsed[event_date] = us
    return us


def event_time_us(event_date: str | None, received_us: int, max_future_s: float = 86400.0) -> int:
    """The event time of a message in µs since the epoch.

    A missing ``eventDate`` means the receive time (seed 002 §4.5). A date without a UTC offset
    is rejected rather than guessed: the same wall-clock time happens twice on a DST night.
    """
    if event_date is None:
        return received_us
    us = _parse_event_date(event_date)
    if us > received_us + int(max_future_s * 1e6):
        raise RejectedMessage(
            RejectReason.BAD_DATE,
            f"eventDate {event_date!r} is more than {max_future_s:g} s in the future",
        )
    return us


def measurement_readings(
    message: DeviceMeasurements,
    identifiers: IdentifierRegistry,
    received_us: int,
    max_future_s: float = 86400.0,
) -> list[Reading]:
    """Validate a ``DeviceMeasurements`` message and return its readings."""
    request = message.request
    measurements = request.measurements
    if not measurements:
        raise RejectedMessage(RejectReason.INVALID_MESSAGE, "request.measurements is empty")
    if len(measurements) > MAX_MEASUREMENTS_PER_MESSAGE:
        raise RejectedMessage(
            RejectReason.INVALID_MESSAGE,
            f"{len(measurements)} measurements in one message; at most "
            f"{MAX_MEASUREMENTS_PER_MESSAGE}",
        )
    ts = event_time_us(request.eventDate, received_us, max_future_s)
    values = measurements.values()
    # the common case checked at C speed: every identifier known, every value a finite float
    # (a sum is finite only if each term is; an overflowing sum just takes the long way)
    if (
        identifiers.knows_all(measurements.keys())
        and set(map(type, values)) == _FLOAT
        and math.isfinite(sum(values))
    ):
        return [(name, ts, value) for name, value in measurements.items()]
    readings: list[Reading] = []
    for name, value in measurements.items():
        if name not in identifiers:
            raise RejectedMessage(
                RejectReason.UNKNOWN_IDENTIFIER,
                f"identifier {name[:128]!r} is neither in seed 002 Table 2 nor registered "
                "by this tenant",
            )
        if type(value) is float:
            if not math.isfinite(value):
                raise RejectedMessage(
                    RejectReason.NON_FINITE_VALUE, f"{name}: {value!r} is not a finite number"
                )
        elif type(value) is int:
            try:
                value = float(value)
            except OverflowError:
                raise RejectedMessage(
                    RejectReason.NON_FINITE_VALUE, f"{name}: integer beyond the float range"
                ) from None
        else:
            raise RejectedMessage(
                RejectReason.WRONG_VALUE_TYPE,
                f"{name}: expected a number, got {type(value).__name__} {str(value)[:32]!r}",
            )
        readings.append((name, ts, value))
    return readings
