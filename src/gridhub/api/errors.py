"""One place that maps gridhub's exception tree to HTTP answers."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gridhub.errors import (
    Conflict,
    Forbidden,
    GridhubError,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    RejectedMessage,
    StoreUnavailable,
    Unauthenticated,
)

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[GridhubError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidRequest, 422),
    (RateLimited, 429),
    (RejectedMessage, 422),
    (Overloaded, 503),
    (StoreUnavailable, 503),
)


def error_response(exc: GridhubError) -> JSONResponse:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
    body: dict[str, object] = {"error": type(exc).__name__, "detail": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, RejectedMessage):
        body["reason"] = exc.reason.value
        body["detail"] = exc.detail
    if isinstance(exc, Overloaded | StoreUnavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, RateLimited):  # rounded up: retrying at Retry-After must succeed
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=headers)


def _finite(value: object) -> object:
    """JSON-safe: a non-finite float (a body's ``NaN``/``Infinity``, which Python's JSON parser
    accepts) becomes its string, so echoing the rejected input cannot fail the answer."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 answer, with the rejected inputs made JSON-safe (its own handler answers
    500 when the input it echoes is ``NaN`` or ``Infinity``)."""
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, GridhubError):  # registered for GridhubError only
            raise exc
        return error_response(exc)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RequestValidationError):  # registered for it only
            raise exc
        return validation_response(exc)

    app.add_exception_handler(GridhubError, handle)
    app.add_exception_handler(RequestValidationError, invalid)
