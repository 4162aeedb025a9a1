"""Market hub (O4, seed 003): the plain types of its requests and webhook deliveries.

A *request* is what a stakeholder asks of the hub — a retailer's billing or consumption-profile
request, a DSO's network tariff broadcast, load reduction (availability, then disconnection) or
emergency-mode notice. Each is stored under the caller's idempotency key with a fingerprint of
its content, so a repeat returns the stored request and a different request under the same key
is a conflict. A *delivery* is one signed webhook call to one retailer for one request, stored
with its body so that every retry sends the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gridhub.errors import InvalidRequest

__all__ = [
    "DELIVERY_FINAL",
    "MAX_KEY",
    "Delivery",
    "DeliveryStatus",
    "MarketRequest",
    "RequestKind",
    "RequestStatus",
    "Retailer",
    "aware",
    "fingerprint",
    "period",
]

MAX_KEY = 128  # idempotency key length


class RequestKind(StrEnum):
    BILLING = "billing"
    PROFILE = "profile"
    TARIFF = "tariff"
    LOAD_REDUCTION = "load_reduction"
    DISCONNECTION = "disconnection"
    EMERGENCY = "emergency"


class RequestStatus(StrEnum):
    OPEN = "open"  # waiting for retailers (deliveries or answers)
    COMPLETED = "completed"  # every retailer got it (and answered, where an answer is asked)
    PARTIAL = "partial"  # deadline passed or deliveries failed: some retailers did not


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not yet accepted by the retailer; retried with backoff
    DELIVERED = "delivered"  # the retailer answered 2xx
    FAILED = "failed"  # attempts exhausted or the request's deadline passed


DELIVERY_FINAL = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})


@dataclass(frozen=True, slots=True)
class Retailer:
    """A retailer platform (seed 003's RP): where its webhooks go and how they are signed. Its
    id is that of an access stakeholder of kind retailer; its clients come from contracts."""

    tenant: str
    id: str
    name: str
    webhook_url: str
    secret: str
    token_id: str | None  # the stakeholder token issued at registration (None: none asked)
    created: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class MarketRequest:
    id: str
    tenant: str
    kind: RequestKind
    issuer: str  # "dso", or the retailer's id
    key: str  # the caller's idempotency key
    fingerprint: str
    created: datetime
    status: RequestStatus
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    deadline: datetime | None = None
    finished: datetime | None = None
    parent: str | None = None  # a disconnection's load reduction
    repeated: bool = False  # returned for a repeat of the same key (not stored)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant: str
    request: str
    retailer: str
    event: str  # e.g. "load_reduction.availability_requested"
    body: bytes
    status: DeliveryStatus
    created: datetime
    next_attempt: datetime
    attempts: int = 0
    last_code: int | None = None
    last_error: str | None = None
    delivered: datetime | None = None
    answer: dict[str, Any] | None = None  # what the retailer answered (availability)
    answered: datetime | None = None
    clients: tuple[str, ...] = ()  # the retailer's clients this delivery is about


def fingerprint(kind: RequestKind, params: dict[str, Any]) -> str:
    """A stable digest of a request's content: the same key with another content is a conflict."""
    canonical = json.dumps({"kind": kind.value, **params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def aware(name: str, moment: datetime) -> datetime:
    """A caller's instant in UTC; 422 without an offset."""
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name} needs a UTC offset")
    return moment.astimezone(UTC)


def period(start: datetime, end: datetime, max_days: int) -> tuple[datetime, datetime]:
    """A caller's ``[from, to)``: both with offsets, ``to`` after ``from``, at most so long."""
    lo, hi = aware("from", start), aware("to", end)
    if hi <= lo or hi - lo > timedelta(days=max_days):
        raise InvalidRequest(f"to must be after from, at most {max_days} days")
    return lo, hi
