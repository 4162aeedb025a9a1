"""The exception tree of gridhub.

::

    GridhubError
    ├── ConfigError              settings that cannot work (bad path, data dir in use)
    ├── RejectedMessage          an inbound message that fails validation; carries a RejectReason
    ├── NotFound                 a tenant, device, site or token unknown (to the caller)
    ├── Conflict                 creating something that already exists
    ├── InvalidRequest           well-formed, but values we cannot use (bad range, CSV row)
    ├── AccessDenied
    │   ├── Unauthenticated      missing, unknown or revoked token → 401
    │   └── Forbidden            a valid token outside its scope → 403
    ├── RateLimited              reads faster than the owner's policy allows; retry later → 429
    ├── Overloaded               the ingest buffer is full; retry after ``retry_after`` s → 503
    ├── StoreUnavailable         the store cannot be reached or written right now → 503
    └── StoreRejected            the store refuses a batch's content; retrying cannot help

API routes map these to HTTP status codes in one place (``api/errors.py``); nothing else
should reach a client as a 500.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridhub.domain.rejections import RejectReason


class GridhubError(Exception):
    """Base class of every error gridhub raises on purpose."""


class ConfigError(GridhubError):
    """The configuration cannot work."""


class RejectedMessage(GridhubError):
    """An inbound message failed validation.

    ``reason`` is a stable machine-readable code; ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class NotFound(GridhubError):
    """The thing asked for does not exist, or is not visible to the caller."""


class Conflict(GridhubError):
    """The thing to create exists already."""


class InvalidRequest(GridhubError):
    """The request is well formed but its values cannot be used."""


class AccessDenied(GridhubError):
    """Base of authentication and authorisation failures."""


class Unauthenticated(AccessDenied):
    """No token, or a token we do not know (or that was revoked)."""


class Forbidden(AccessDenied):
    """A valid token that is not allowed to do this."""


class RateLimited(GridhubError):
    """A read sooner than the owner policy's minimum delay between reads (seed 004 §4.4.2)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(GridhubError):
    """The bounded ingest buffer is full: the caller should retry later."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(GridhubError):
    """The store failed; the data was not confirmed and may be resent."""

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreRejected(GridhubError):
    """The store refused what it was given (a value it cannot hold, or a bug): not transient.

    The pipeline then writes the submissions of the batch one by one, and dead-letters the
    messages of any submission the store still refuses, so one bad message cannot stall ingest.
    """
