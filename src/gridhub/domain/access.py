"""Access model (A1, A3, A4): stakeholders, contracts, owner policies, and time windows.

Plain frozen types, no storage: the enforcement point (``access/enforce.py``) decides from them,
the directory (``access/directory.py``) keeps them, ``storage/access_catalog.py`` persists them.

Time windows are half-open ``[lo, hi)`` pairs of µs since the epoch (UTC), sorted and disjoint;
``FOREVER`` stands for an open end. Integers keep the per-read check cheap (no datetime
arithmetic on the hot path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from gridhub.domain.validation import ID_PATTERN
from gridhub.errors import InvalidRequest

__all__ = [
    "ALERTS",
    "ANY",
    "AuditEntry",
    "BEGINNING",
    "FOREVER",
    "Contract",
    "Kind",
    "PolicyVersion",
    "Stakeholder",
    "Window",
    "check_glob",
    "check_name",
    "from_us",
    "intersect",
    "subtract",
    "to_us",
    "union",
]

Window = tuple[int, int]
BEGINNING = -(2**62)
FOREVER = 2**62
ANY = "*"
# the pseudo identifier under which a device's alerts are granted (a policy for "*" covers it)
ALERTS = "@alerts"
MAX_NAME = 128
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_GLOB_RE = re.compile(r"[A-Za-z0-9_.@*:-]{1,128}")


class Kind(StrEnum):
    """What a stakeholder is (SPEC P5); the kind decides its default rights."""

    DSO = "dso"
    RETAILER = "retailer"
    AGGREGATOR = "aggregator"
    ESCO = "esco"
    CUSTOMER = "customer"
    RESEARCHER = "researcher"
    ADMIN = "admin"


# who can be the supplier side of a contract with a customer
SUPPLIER_KINDS = (Kind.RETAILER, Kind.AGGREGATOR, Kind.ESCO)


@dataclass(frozen=True, slots=True)
class Stakeholder:
    tenant: str
    id: str
    kind: Kind
    name: str = ""
    site: str | None = None  # a customer's site (household); None for every other kind
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Contract:
    """A customer's contract with a supplier (retailer, aggregator, ESCO) over ``[start, end)``."""

    tenant: str
    id: str
    customer: str
    supplier: str
    start: datetime
    end: datetime | None = None  # None: open-ended, still running
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)

    def window(self) -> Window:
        return (to_us(self.start), FOREVER if self.end is None else to_us(self.end))


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of an owner policy (seed 004 §4.4.2): who may do what with which series.

    The series are selected by ``site``, ``device`` (None: any) and an ``identifier`` glob (``*``
    wildcards, e.g. ``electricity.*.consumed.*``); the grantee is a stakeholder id or ``*`` (every
    stakeholder of the tenant), ``service`` one of its services or ``*``. A version holds for the
    values whose time lies in ``[valid_from, next version's valid_from)``.
    """

    tenant: str
    id: str
    version: int
    grantee: str
    service: str
    identifier: str
    read: bool
    write: bool
    min_delay_s: float
    valid_from: datetime
    site: str | None = None
    device: str | None = None
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what, when, with which result (A5). ``id`` is given by the store."""

    ts: datetime
    tenant: str | None
    actor: str  # token id ("-" when no valid token was shown)
    stakeholder: str | None
    action: str  # read, write, token, stakeholder, contract, policy, command, admin
    target: str  # what was touched: a path with its query, or a series
    result: str  # an HTTP status code, or ok / denied / rate_limited
    detail: str = ""
    id: int = 0


def to_us(moment: datetime) -> int:
    """Exact µs since the epoch (integer arithmetic: floats would round some instants)."""
    if moment.tzinfo is None:
        raise InvalidRequest("a time needs a UTC offset")
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def check_name(what: str, value: str) -> str:
    """Ids of stakeholders, contracts and policies: the registry's id alphabet, ≤ 128 chars."""
    if len(value) > MAX_NAME or not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{what} {value[:64]!r} must be 1..128 letters, digits or . _ : @ -")
    return value


def check_glob(value: str) -> str:
    if not _GLOB_RE.fullmatch(value):
        raise InvalidRequest(
            f"identifier pattern {value[:64]!r} must be 1..128 letters, digits, . _ @ : - or *"
        )
    return value


# -- window arithmetic (sorted, disjoint, half-open) ----------------------------------------------


def union(windows: Iterable[Window]) -> list[Window]:
    out: list[Window] = []
    for lo, hi in sorted(w for w in windows if w[0] < w[1]):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def intersect(windows: Sequence[Window], lo: int, hi: int) -> list[Window]:
    return [(max(a, lo), min(b, hi)) for a, b in windows if a < hi and b > lo]


def subtract(windows: Sequence[Window], holes: Sequence[Window]) -> list[Window]:
    """``windows`` minus ``holes`` (both sorted and disjoint)."""
    out: list[Window] = []
    for lo, hi in windows:
        start = lo
        for h_lo, h_hi in holes:
            if h_hi <= start or h_lo >= hi:
                continue
            if h_lo > start:
                out.append((start, h_lo))
            start = max(start, h_hi)
            if start >= hi:
                break
        if start < hi:
            out.append((start, hi))
    return out
