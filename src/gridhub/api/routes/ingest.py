"""HTTP ingest: ``POST /api/v1/tenants/{tenant}/events`` — one canonical message or a JSON array.

The answer comes only once the accepted messages (and the dead letters of the rejected ones) are
committed to the store: 200 when all were accepted; 422 (400 for malformed JSON, 413 for an
oversized body) when any was rejected, listing each by index with its reason — the valid ones of a
batch are stored all the same, and resending them is harmless (the store drops duplicates).
503 with ``Retry-After`` when the buffer is full or the store is down: nothing was confirmed.

Admin and device tokens send anything of their tenant; a stakeholder's service may send only
the values an owner policy with ``write`` grants it (access/enforce.py), else 403 and nothing
is stored.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.ingesting import read_limited, receipt_response, submit
from gridhub.api.schemas import IngestReceipt
from gridhub.domain.messages import split_batch
from gridhub.domain.rejections import RejectReason
from gridhub.errors import RejectedMessage
from gridhub.ingest.validate import Envelope

router = APIRouter(prefix="/api/v1/tenants", tags=["ingest"])


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
    check_each = hub.access.authorize_write(who, tenant, service_writes=True)
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
    if check_each:  # a stakeholder's service: every value under an owner policy with write
        raws = [e.raw for e in envelopes if e.problem is None]
        await run_in_threadpool(hub.access.authorize_messages, who, tenant, raws, received_us)
    receipt = await submit(hub.pipeline, envelopes, settings.confirm_timeout_s)
    return receipt_response(receipt)
