"""HTTP ingest: ``POST /api/v1/tenants/{tenant}/events`` — one canonical message or a JSON array.

The answer comes only once the accepted messages (and the dead letters of the rejected ones) are
committed to the store: 200 when all were accepted; 422 (400 for malformed JSON, 413 for an
oversized body) when any was rejected, listing each by index with its reason — the valid ones of a
batch are stored all the same, and resending them is harmless (the store drops duplicates).
503 with ``Retry-After`` when the buffer is full or the store is down: nothing was confirmed.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.schemas import IngestReceipt, RejectionPublic
from gridhub.domain.messages import split_batch
from gridhub.domain.rejections import RejectReason
from gridhub.errors import RejectedMessage, StoreUnavailable
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import Envelope

router = APIRouter(prefix="/api/v1/tenants", tags=["ingest"])

_STATUS_FOR_REASON = {
    RejectReason.MALFORMED_JSON.value: 400,
    RejectReason.OVERSIZED_PAYLOAD.value: 413,
}


async def read_limited(request: Request, limit: int) -> tuple[bytes, int]:
    """The body, cut at ``limit`` bytes; and its full length (read, not trusted from headers)."""
    body = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if len(body) < limit:
            body += chunk[: limit - len(body)]
    return bytes(body), total


async def submit(pipeline: Pipeline, envelopes: list[Envelope], timeout: float) -> Receipt:
    """Queue envelopes and wait, off the event loop, until they are durable."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Receipt] = loop.create_future()

    def resolve(receipt: Receipt) -> None:
        if not done.done():  # the request may have timed out already
            done.set_result(receipt)

    def confirm(receipt: Receipt) -> None:
        loop.call_soon_threadsafe(resolve, receipt)

    # validation is CPU work: keep it off the event loop; timeout=0 → full buffer answers 503
    await run_in_threadpool(pipeline.submit, envelopes, confirm, timeout=0)
    try:
        receipt = await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise StoreUnavailable(
            f"not confirmed durable within {timeout:g} s; resending is safe", retry_after=5.0
        ) from None
    if receipt.error is not None:
        raise StoreUnavailable(f"not stored: {receipt.error}", retry_after=5.0)
    return receipt


@router.post(
    "/{tenant}/events",
    summary="Ingest one canonical message or a batch (JSON array)",
    response_model=IngestReceipt,
    responses={
        400: {"description": "malformed JSON (dead-lettered)"},
        413: {"description": "body or message too large (dead-lettered)"},
        422: {"description": "one or more messages rejected (dead-lettered), reasons by index"},
        503: {"description": "buffer full or store unavailable; retry after Retry-After"},
    },
)
async def ingest(tenant: str, request: Request, hub: HubDep, who: PrincipalDep) -> JSONResponse:
    who.require_tenant(tenant)
    hub.registry.tenant(tenant)
    settings = hub.settings
    received_us = time.time_ns() // 1000
    body, total = await read_limited(request, settings.max_request_bytes)
    source = "http"

    def whole(problem: tuple[RejectReason, str]) -> Envelope:
        return Envelope(source, body, tenant, received_us, problem=problem)

    envelopes: list[Envelope]
    if total > settings.max_request_bytes:
        envelopes = [
            whole(
                (
                    RejectReason.OVERSIZED_PAYLOAD,
                    f"body of {total} bytes; at most {settings.max_request_bytes}",
                )
            )
        ]
    else:
        try:
            parts = split_batch(body)
        except RejectedMessage as exc:
            parts = None
            envelopes = [whole((exc.reason, exc.detail))]
        else:
            if parts is None:
                envelopes = [Envelope(source, body, tenant, received_us)]
            elif not parts:
                envelopes = [whole((RejectReason.INVALID_MESSAGE, "empty batch"))]
            elif len(parts) > settings.max_batch_messages:
                envelopes = [
                    whole(
                        (
                            RejectReason.OVERSIZED_PAYLOAD,
                            f"{len(parts)} messages in one batch; at most "
                            f"{settings.max_batch_messages}",
                        )
                    )
                ]
            else:
                envelopes = [Envelope(source, p, tenant, received_us) for p in parts]
    receipt = await submit(hub.pipeline, envelopes, settings.confirm_timeout_s)
    return receipt_response(receipt)


def receipt_response(receipt: Receipt) -> JSONResponse:
    """200 when everything was accepted; else the status of the rejections, listed by index."""
    payload = IngestReceipt(
        accepted=receipt.accepted,
        readings=receipt.readings,
        rejected=[
            RejectionPublic(index=r.index, reason=r.reason, detail=r.detail)
            for r in receipt.rejected
        ],
    ).model_dump()
    if not receipt.rejected:
        return JSONResponse(payload, status_code=200)
    reasons = {r.reason for r in receipt.rejected}
    code = 422
    if len(reasons) == 1 and receipt.accepted == 0:
        code = _STATUS_FOR_REASON.get(next(iter(reasons)), 422)
    if len(receipt.rejected) == 1 and receipt.accepted == 0:
        payload["reason"] = receipt.rejected[0].reason
        payload["detail"] = receipt.rejected[0].detail
    return JSONResponse(payload, status_code=code)
