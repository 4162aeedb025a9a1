"""What the ingest and import routes share: a bounded body read, submission to the pipeline
with a wait for durability, and the answer built from a receipt."""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridhub.api.schemas import IngestReceipt, RejectionPublic
from gridhub.domain.rejections import RejectReason
from gridhub.errors import StoreUnavailable
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import Envelope

_STATUS_FOR_REASON = {
    RejectReason.MALFORMED_JSON.value: 400,
    RejectReason.OVERSIZED_PAYLOAD.value: 413,
}


async def read_limited(request: Request, limit: int) -> tuple[bytes, int]:
    """The body, cut at ``limit`` bytes, and the bytes read (counted, not taken from headers).

    Reading stops as soon as the limit is passed: nobody can make us read gigabytes.
    """
    body = bytearray()
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if len(body) < limit:
            body += chunk[: limit - len(body)]
        if total > limit:
            break
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
