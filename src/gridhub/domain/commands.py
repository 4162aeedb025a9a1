"""Commands (O1): typed specifications per device type, and the invocation state machine.

A :class:`Spec` names a command, its typed parameters and which are required. The built-in table
:data:`BUILTIN_SPECS` says which device types accept which commands (boiler set-point, whitegood
start/postpone, plug on/off, meter relay and limit); tenants add their own specs through the API.
:func:`check_parameters` turns the values a caller sent into typed values, or raises
:class:`~gridhub.errors.InvalidRequest` naming the command, the parameter and what was wrong.

An :class:`Invocation` moves through :class:`Status` by the pure functions at the bottom
(``mark_sent``, ``apply_ack``, ``next_action``): no I/O, no clock of their own, so the rules —
retries with backoff, a time to live, at most one final state — are unit-tested on their own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from gridhub.errors import InvalidRequest

__all__ = [
    "ANY_DEVICE",
    "BUILTIN_SPECS",
    "FAILURE_PREFIXES",
    "FINAL",
    "Action",
    "Invocation",
    "Param",
    "ParamType",
    "RetryPolicy",
    "Spec",
    "Status",
    "apply_ack",
    "check_parameters",
    "check_spec",
    "expire",
    "mark_sent",
    "mark_unsent",
    "next_action",
    "specs_for",
]

ANY_DEVICE = "*"  # a built-in spec every device type accepts (tariffs, control signals)
MAX_PARAMETERS = 32
MAX_STRING = 4096
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class ParamType(StrEnum):
    """Parameter types, spelled as seed 002 §4.5.3 spells them (``String``, ``Int32``)."""

    STRING = "String"
    INT32 = "Int32"
    INT64 = "Int64"
    DOUBLE = "Double"
    BOOLEAN = "Boolean"
    DATETIME = "DateTime"  # ISO 8601 with an offset
    JSON = "Json"  # an object or array (e.g. the periods of a tariff)


_INT_RANGE = {ParamType.INT32: 2**31, ParamType.INT64: 2**63}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Spec:
    """A command definition, independent of any invocation (seed 002's ``command.command``)."""

    name: str
    parameters: tuple[Param, ...] = ()
    description: str = ""
    device_types: tuple[str, ...] = (ANY_DEVICE,)
    builtin: bool = True

    def param(self, name: str) -> Param | None:
        return next((p for p in self.parameters if p.name == name), None)

    def applies_to(self, device_type: str) -> bool:
        return ANY_DEVICE in self.device_types or device_type in self.device_types


def _p(name: str, kind: ParamType, required: bool = False, description: str = "") -> Param:
    return Param(name, kind, required, description)


_S, _I, _F, _B, _T, _J = (
    ParamType.STRING,
    ParamType.INT32,
    ParamType.DOUBLE,
    ParamType.BOOLEAN,
    ParamType.DATETIME,
    ParamType.JSON,
)

# Device type → what it accepts. The device types are those of the registry and the simulator
# (``smart-meter``, ``smart-plug``, ``boiler``, ``whitegood``); ``*`` rows go to every device.
BUILTIN_SPECS: tuple[Spec, ...] = (
    Spec(
        "setSetpoint",
        (_p("temperature", _F, True, "°C"), _p("until", _T, description="revert after")),
        "Boiler set-point temperature.",
        ("boiler",),
    ),
    Spec("boilerOn", (), "Allow the boiler to heat.", ("boiler",)),
    Spec("boilerOff", (_p("until", _T),), "Stop the boiler heating.", ("boiler",)),
    Spec(
        "start",
        (_p("program", _S), _p("deadline", _T, description="finish before")),
        "Start the whitegood's programme (now, or planned so it ends by the deadline).",
        ("whitegood", "smart-plug"),
    ),
    Spec(
        "postpone",
        (_p("until", _T, True, "start no earlier than"),),
        "Postpone the whitegood's start.",
        ("whitegood", "smart-plug"),
    ),
    Spec("on", (), "Switch the plug on.", ("smart-plug",)),
    Spec(
        "off",
        (_p("duration", _I, description="seconds; none: until on"),),
        "Switch off.",
        ("smart-plug",),
    ),
    Spec(
        "setRelay",
        (_p("closed", _B, True, "true: supply connected"),),
        "Open or close the meter's breaker relay.",
        ("smart-meter",),
    ),
    Spec(
        "setLimit",
        (_p("limitKw", _F, True, "kW"), _p("until", _T)),
        "Limit the power the meter lets through.",
        ("smart-meter",),
    ),
    Spec("ping", (), "Ask the device to acknowledge (a reachability check).", (ANY_DEVICE,)),
    Spec(
        "setTariff",
        (
            _p("tariffId", _S, True),
            _p("kind", _S, True, "tou or network"),
            _p("day", _S, True, "local calendar day, YYYY-MM-DD"),
            _p("timezone", _S, False, "IANA zone of the day and its periods' local times"),
            _p("currency", _S, True),
            _p("unit", _S, True, "e.g. EUR/kWh"),
            _p("periods", _J, True, "[{start, end, price, label}]"),
        ),
        "A day-ahead time-of-use or network tariff (O2).",
        (ANY_DEVICE,),
    ),
    Spec(
        "setPowerLimit",
        (
            _p("signalId", _S, True),
            _p("direction", _S, True, "consumption or production"),
            _p("limitKw", _F, True),
            _p("validFrom", _T, True),
            _p("validUntil", _T),
        ),
        "A maximum consumption or production limit for the household (O3).",
        (ANY_DEVICE,),
    ),
)


def specs_for(device_type: str, tenant_specs: Mapping[str, Spec] = {}) -> dict[str, Spec]:
    """Every command a device of ``device_type`` accepts; a tenant's spec overrides a built-in."""
    found = {s.name: s for s in BUILTIN_SPECS if s.applies_to(device_type)}
    found.update({n: s for n, s in tenant_specs.items() if s.applies_to(device_type)})
    return found


def check_spec(spec: Spec) -> Spec:
    """Refuse a tenant-defined spec with a bad name, duplicate or too many parameters."""
    if not _NAME_RE.fullmatch(spec.name):
        raise InvalidRequest(
            f"command name {spec.name[:64]!r} must be a letter then up to 63 letters, digits, "
            "'_', '.' or '-'"
        )
    if len(spec.parameters) > MAX_PARAMETERS:
        raise InvalidRequest(f"command {spec.name!r}: at most {MAX_PARAMETERS} parameters")
    seen: set[str] = set()
    for param in spec.parameters:
        if not _NAME_RE.fullmatch(param.name):
            raise InvalidRequest(f"command {spec.name!r}: bad parameter name {param.name[:64]!r}")
        if param.name in seen:
            raise InvalidRequest(f"command {spec.name!r}: parameter {param.name!r} twice")
        seen.add(param.name)
    if not spec.device_types:
        raise InvalidRequest(f"command {spec.name!r}: name at least one device type (or '*')")
    return spec


def _typed(command: str, param: Param, value: Any) -> Any:
    where = f"command {command!r}, parameter {param.name!r}"
    kind = param.type
    if kind in _INT_RANGE:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{where}: expected {kind.value} (an integer), got {value!r:.64}")
        limit = _INT_RANGE[kind]
        if not -limit <= value < limit:
            raise InvalidRequest(f"{where}: {value} is out of the {kind.value} range")
        return value
    if kind is ParamType.DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{where}: expected Double (a number), got {value!r:.64}")
        if not math.isfinite(value):
            raise InvalidRequest(f"{where}: {value} is not a finite number")
        return float(value)
    if kind is ParamType.BOOLEAN:
        if not isinstance(value, bool):
            raise InvalidRequest(f"{where}: expected Boolean (true or false), got {value!r:.64}")
        return value
    if kind is ParamType.JSON:
        if not isinstance(value, dict | list):
            raise InvalidRequest(f"{where}: expected Json (an object or array), got {value!r:.64}")
        if len(json.dumps(value)) > 16 * MAX_STRING:
            raise InvalidRequest(f"{where}: larger than {16 * MAX_STRING} characters")
        return value
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: expected {kind.value} (a string), got {value!r:.64}")
    if len(value) > MAX_STRING:
        raise InvalidRequest(f"{where}: longer than {MAX_STRING} characters")
    if kind is ParamType.DATETIME:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(f"{where}: {value[:64]!r} is not an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise InvalidRequest(f"{where}: {value[:64]!r} needs a UTC offset")
    return value


def check_parameters(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The typed parameter values of an invocation of ``spec``, or a precise InvalidRequest."""
    unknown = sorted(set(values) - {p.name for p in spec.parameters})
    if unknown:
        known = ", ".join(p.name for p in spec.parameters) or "none"
        raise InvalidRequest(
            f"command {spec.name!r}: unknown parameter {unknown[0][:64]!r} (it takes: {known})"
        )
    typed: dict[str, Any] = {}
    for param in spec.parameters:
        if param.name not in values or values[param.name] is None:
            if param.required:
                raise InvalidRequest(
                    f"command {spec.name!r}: required parameter {param.name!r} "
                    f"({param.type.value}) is missing"
                )
            continue
        typed[param.name] = _typed(spec.name, param, values[param.name])
    return typed


# --- the invocation state machine -------------------------------------------------------------


class Status(StrEnum):
    PENDING = "pending"  # stored, not yet accepted by the broker
    SENT = "sent"  # the broker took it (PUBACK); waiting for the device's Acknowledge
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"  # the device acknowledged with a failure response
    EXPIRED = "expired"  # no acknowledgement within its time to live


FINAL = frozenset({Status.ACKNOWLEDGED, Status.FAILED, Status.EXPIRED})
# An Acknowledge whose response starts with one of these words reports a failure.
FAILURE_PREFIXES = ("error", "failed", "failure", "rejected", "nack", "unsupported")


class Action(StrEnum):
    WAIT = "wait"
    SEND = "send"
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Resend while unacknowledged: ``base_s``, then doubling, at most ``max_delay_s`` apart."""

    base_s: float = 30.0
    max_delay_s: float = 600.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th send before the next one."""
        return min(self.base_s * 2 ** max(attempts - 1, 0), self.max_delay_s)


@dataclass(frozen=True, slots=True)
class Invocation:
    """One command sent to one device. Times are seconds since the epoch (UTC)."""

    id: str
    tenant: str
    device: str
    command: str
    parameters: dict[str, Any]
    created: float
    expires: float
    max_attempts: int
    status: Status = Status.PENDING
    attempts: int = 0
    next_attempt: float = 0.0  # when to (re)send; 0 = now
    last_sent: float | None = None
    finished: float | None = None
    response: str | None = None
    initiator: str = ""
    idempotency_key: str | None = None
    origin: str | None = None  # the tariff or control signal this delivers, if any
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status in FINAL


def next_action(
    inv: Invocation, now: float, seen_at: float | None = None, resend_gap: float = 0.0
) -> Action:
    """What the dispatcher should do with ``inv`` at ``now``.

    Expire once the time to live is over; send when a timed (re)send is due and attempts
    remain. A device heard from (``seen_at``) after the last send has come back online: it gets
    one more send, at most one per ``resend_gap`` seconds and up to twice ``max_attempts``
    sends in all, even when the timed retries are used up.
    """
    if inv.final:
        return Action.WAIT
    if now >= inv.expires:
        return Action.EXPIRE
    if inv.attempts < inv.max_attempts and now >= inv.next_attempt:
        return Action.SEND
    if (
        seen_at is not None
        and inv.last_sent is not None
        and seen_at > inv.last_sent
        and now - inv.last_sent >= resend_gap
        and inv.attempts < 2 * inv.max_attempts
    ):
        return Action.SEND
    return Action.WAIT


def mark_sent(inv: Invocation, now: float, policy: RetryPolicy) -> Invocation:
    """The broker accepted a send: count it and schedule the next one."""
    if inv.final:
        return inv
    attempts = inv.attempts + 1
    return replace(
        inv,
        status=Status.SENT,
        attempts=attempts,
        last_sent=now,
        next_attempt=now + policy.delay(attempts),
    )


def mark_unsent(inv: Invocation, now: float, policy: RetryPolicy) -> Invocation:
    """The broker could not be reached: try again after a short backoff (no attempt counted)."""
    if inv.final:
        return inv
    return replace(inv, next_attempt=now + min(policy.base_s, 5.0))


def apply_ack(inv: Invocation, response: str, now: float) -> Invocation:
    """The device acknowledged: acknowledged, or failed if its response reports a failure.

    A final invocation stays as it is (a late or repeated acknowledgement changes nothing).
    """
    if inv.final:
        return inv
    word = response.strip().lower()
    failed = any(word.startswith(prefix) for prefix in FAILURE_PREFIXES)
    return replace(
        inv,
        status=Status.FAILED if failed else Status.ACKNOWLEDGED,
        finished=now,
        response=response[:MAX_STRING],
    )


def expire(inv: Invocation, now: float) -> Invocation:
    if inv.final:
        return inv
    return replace(inv, status=Status.EXPIRED, finished=now)
