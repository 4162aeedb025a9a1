"""Raw meter telegrams over HTTP: DSMR P1 and IEC 62056-21 readouts (P2).

A P1 gateway or a script reading a meter's optical port POSTs the telegram exactly as read.
The adapters turn it into canonical messages at the edge; those then go through the same
pipeline as every other message. A telegram whose checksum fails, and each line that cannot be
read, is dead-lettered with its reason and its own bytes (source ``p1:<line>`` / ``iec62056``).
The tariff-register identifiers the OBIS table uses (``…consumed.t1`` …) are registered for the
tenant on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridhub.adapters.dsmr_p1 import P1Result, parse_telegram
from gridhub.adapters.iec62056 import IecResult, parse_readout
from gridhub.adapters.obis import OBIS_CUSTOM_IDENTIFIERS, ObisMessage, ObisRejection
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.ingesting import read_limited, receipt_response, submit
from gridhub.api.schemas import IngestReceipt
from gridhub.domain.rejections import RejectReason
from gridhub.ingest.validate import Envelope

router = APIRouter(prefix="/api/v1/tenants", tags=["ingest"])
MAX_TELEGRAM_BYTES = 64 * 1024


async def _ingest(
    hub: HubDep,
    tenant: str,
    request: Request,
    source: str,
    parse: Callable[[bytes, datetime], tuple[list[ObisMessage], list[ObisRejection]]],
) -> JSONResponse:
    hub.registry.tenant(tenant)
    received_us = time.time_ns() // 1000
    body, total = await read_limited(request, MAX_TELEGRAM_BYTES)
    envelopes: list[Envelope] = []
    if total > MAX_TELEGRAM_BYTES:
        detail = f"telegram of more than {MAX_TELEGRAM_BYTES} bytes"
        envelopes.append(
            Envelope(
                source, body, tenant, received_us, problem=(RejectReason.OVERSIZED_PAYLOAD, detail)
            )
        )
    else:
        await run_in_threadpool(hub.registry.ensure_identifiers, tenant, OBIS_CUSTOM_IDENTIFIERS)
        messages, rejections = await run_in_threadpool(
            parse, body, datetime.fromtimestamp(received_us / 1e6, UTC)
        )
        for message in messages:
            envelopes.append(Envelope(source, message.payload, tenant, received_us))
        for rejection in rejections:
            where = source if rejection.line is None else f"{source}:{rejection.line}"
            reason = RejectReason(rejection.reason)
            envelopes.append(
                Envelope(
                    where, rejection.raw, tenant, received_us, problem=(reason, rejection.detail)
                )
            )
    if not envelopes:
        envelopes.append(
            Envelope(
                source,
                body,
                tenant,
                received_us,
                problem=(RejectReason.MALFORMED_TELEGRAM, "no meter data in this telegram"),
            )
        )
    return receipt_response(await submit(hub.pipeline, envelopes, hub.settings.confirm_timeout_s))


class Protocol(StrEnum):
    DSMR = "dsmr"
    IEC62056 = "iec62056"


_PARSERS: dict[Protocol, Callable[..., P1Result | IecResult]] = {
    Protocol.DSMR: parse_telegram,
    Protocol.IEC62056: parse_readout,
}
_SOURCES = {Protocol.DSMR: "p1", Protocol.IEC62056: "iec62056"}


@router.post(
    "/{tenant}/telegrams/{protocol}",
    summary="Ingest one raw meter telegram: DSMR P1 or IEC 62056-21 mode C",
    description=(
        "`dsmr`: a P1 telegram as read from the port — DSMR 2.2 to 5, Belgian e-MUCS, "
        "Luxembourg Smarty (decrypted), Sweden, Hungary; CRC checked. `iec62056`: a mode C data "
        "readout from `/` to the BCC after ETX; BCC checked. `zone` is the meter's time zone "
        "(its clock is local time); `hardware_id` overrides the equipment id in the telegram."
    ),
    response_model=IngestReceipt,
)
async def telegram(
    tenant: str,
    protocol: Protocol,
    request: Request,
    hub: HubDep,
    who: PrincipalDep,
    zone: Annotated[str, Query(max_length=64)] = "Europe/Amsterdam",
    hardware_id: Annotated[str | None, Query(max_length=128)] = None,
) -> JSONResponse:
    hub.access.authorize_write(who, tenant)
    parser = _PARSERS[protocol]

    def parse(raw: bytes, now: datetime) -> tuple[list[ObisMessage], list[ObisRejection]]:
        result = parser(raw, hardware_id=hardware_id, zone=zone, received_at=now)
        return result.messages, result.rejections

    return await _ingest(hub, tenant, request, _SOURCES[protocol], parse)
