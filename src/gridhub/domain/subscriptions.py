"""Subscriptions (Q3, seed 004 §3.2.3–3.2.6): what a subscriber asked for, and pure rules on it.

An *event* subscription names a series (device, identifier) and a condition on each new value
(above, below, outside a range, equal within a tolerance); a *periodic* one names a period and
what to send each period (the latest value or an aggregate over the period). Either is delivered
over one channel: a WebSocket, an MQTT topic, or a signed webhook. Everything here is pure: the
service evaluates, the channels deliver.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Channel",
    "Condition",
    "Kind",
    "Op",
    "PeriodicFunction",
    "Subscription",
    "aggregate",
    "make_condition",
    "retry_delay",
    "sign",
    "verify",
    "window_of",
]

SIGNATURE_PREFIX = "sha256="
MAX_REPLAY_S = 300.0  # a receiver refuses a signed webhook older (or newer) than this


class Kind(StrEnum):
    EVENT = "event"
    PERIODIC = "periodic"


class Channel(StrEnum):
    WEBSOCKET = "websocket"
    MQTT = "mqtt"
    WEBHOOK = "webhook"


class Op(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    OUTSIDE = "outside"
    EQUAL = "equal"


class PeriodicFunction(StrEnum):
    LATEST = "latest"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on one value; build it with :func:`make_condition`, which checks the fields."""

    op: Op
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    tolerance: float = 0.0

    def holds(self, value: float) -> bool:
        return _TESTS[self.op](self, value)

    def as_dict(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"op": self.op.value}
        for name in _NEEDS[self.op]:
            out[name] = getattr(self, name)
        if self.op is Op.EQUAL:
            out["tolerance"] = self.tolerance
        return out


def _num(x: float | None) -> float:
    if x is None:  # make_condition guarantees the fields an op needs
        raise ValueError("condition field missing")
    return x


# op → the test, and the fields it needs (declarative, not an if-chain)
_TESTS: dict[Op, Callable[[Condition, float], bool]] = {
    Op.ABOVE: lambda c, v: v > _num(c.value),
    Op.BELOW: lambda c, v: v < _num(c.value),
    Op.OUTSIDE: lambda c, v: v < _num(c.lo) or v > _num(c.hi),
    # equal within the tolerance, plus a hair for binary rounding (1.0 - 0.99 > 0.01 in floats)
    Op.EQUAL: lambda c, v: abs(v - _num(c.value)) <= c.tolerance + 1e-9 * max(1.0, abs(v)),
}
_NEEDS: dict[Op, tuple[str, ...]] = {
    Op.ABOVE: ("value",),
    Op.BELOW: ("value",),
    Op.OUTSIDE: ("lo", "hi"),
    Op.EQUAL: ("value",),
}


def make_condition(
    op: Op | str,
    *,
    value: float | None = None,
    lo: float | None = None,
    hi: float | None = None,
    tolerance: float | None = None,
) -> Condition:
    """A checked condition; ``ValueError`` says precisely what is wrong."""
    try:
        op = Op(op)
    except ValueError:
        raise ValueError(f"unknown condition op {op!r}; one of {', '.join(Op)}") from None
    given = {"value": value, "lo": lo, "hi": hi}
    for name, x in (*given.items(), ("tolerance", tolerance)):
        if x is not None and not math.isfinite(x):
            raise ValueError(f"condition {name} must be a finite number")
    needs = _NEEDS[op]
    for name in needs:
        if given[name] is None:
            raise ValueError(f"condition {op.value!r} needs {' and '.join(needs)}")
    for name, x in given.items():
        if name not in needs and x is not None:
            raise ValueError(f"condition {op.value!r} takes {' and '.join(needs)}, not {name}")
    if tolerance is not None and op is not Op.EQUAL:
        raise ValueError("tolerance applies to the 'equal' condition only")
    if tolerance is not None and tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    if op is Op.OUTSIDE and _num(lo) >= _num(hi):
        raise ValueError("condition 'outside' needs lo < hi")
    return Condition(op, value, lo, hi, tolerance or 0.0)


_AGGREGATES: dict[PeriodicFunction, Callable[[Sequence[float]], float]] = {
    PeriodicFunction.AVG: lambda v: math.fsum(v) / len(v),
    PeriodicFunction.MIN: min,
    PeriodicFunction.MAX: max,
    PeriodicFunction.SUM: math.fsum,
    PeriodicFunction.COUNT: lambda v: float(len(v)),
    PeriodicFunction.FIRST: lambda v: v[0],
    PeriodicFunction.LAST: lambda v: v[-1],
    PeriodicFunction.LATEST: lambda v: v[-1],
}


def aggregate(function: PeriodicFunction, values: Sequence[float]) -> float | None:
    """``function`` over values in time order; None when there are none (count gives 0)."""
    if not values:
        return 0.0 if function is PeriodicFunction.COUNT else None
    return _AGGREGATES[function](values)


def window_of(now_s: float, period_s: float) -> tuple[float, float]:
    """The last whole period before ``now_s``, aligned to the epoch: [start, end) in seconds.

    Aligned windows make aggregates comparable across subscribers and restarts (a 15-minute
    subscription always reports quarter-hours).
    """
    end = math.floor(now_s / period_s) * period_s
    return end - period_s, end


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    tenant: str
    token_id: str  # who subscribed: its rights are checked again for every notification
    kind: Kind
    device: str
    identifier: str
    channel: Channel
    created: float  # seconds since the epoch
    condition: Condition | None = None  # event
    period_s: float | None = None  # periodic
    function: PeriodicFunction | None = None  # periodic
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    @property
    def series(self) -> tuple[str, str, str]:
        return (self.tenant, self.device, self.identifier)

    @property
    def mqtt_topic(self) -> str:
        return f"gridhub/{self.tenant}/subscriptions/{self.id}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over ``"<timestamp>." + body``: the timestamp is signed too, so an old
    notification cannot be replayed with a fresh timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    now_s: float,
    max_age_s: float = MAX_REPLAY_S,
) -> bool:
    """What a webhook receiver does: a valid signature on a timestamp close to now."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - ts) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff: ``base_s`` after the first failure, doubling, at most ``max_s``."""
    return float(min(max_s, base_s * 2 ** max(0, attempt - 1)))
