"""CSV history import: ``POST /api/v1/tenants/{tenant}/imports/csv`` (text/csv body).

Rows become canonical messages at the edge (``adapters.csv_history``) and then go through the
same pipeline as live data — same validation, same dead letters (source ``csv:<name>:<line>``
for rows that cannot be read), same dedupe, so re-importing a file stores nothing twice.
Large files are sent in chunks by ``gridhub import csv``, each chunk with the header line.
"""

from __future__ import annotations

import io
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from gridhub.adapters.csv_history import HistoryMessage, parse_history
from gridhub.adapters.green_button import (
    GREEN_BUTTON_CUSTOM_IDENTIFIERS,
    GreenButtonMessage,
    parse_green_button,
)
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.ingesting import read_limited, receipt_response, submit
from gridhub.api.schemas import IngestReceipt
from gridhub.errors import InvalidRequest
from gridhub.ingest.validate import Envelope

router = APIRouter(prefix="/api/v1/tenants", tags=["ingest"])


@router.post(
    "/{tenant}/imports/csv",
    summary="Import historical readings from CSV",
    description=(
        "Long layout `hardwareId,identifier,timestamp,value` or wide layout "
        "`hardwareId,timestamp,<identifier>,…`; `,` or `;` separated. Timestamps are ISO 8601; "
        "naive ones are read in `timezone` if given (ambiguous DST times are refused). "
        "`first_line` is the file line number of this chunk's first data row, for dead letters."
    ),
    response_model=IngestReceipt,
)
async def import_csv(
    tenant: str,
    request: Request,
    hub: HubDep,
    who: PrincipalDep,
    timezone: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str, Query(max_length=200)] = "upload.csv",
    first_line: Annotated[int, Query(ge=2)] = 2,
) -> JSONResponse:
    hub.access.authorize_write(who, tenant)
    hub.registry.tenant(tenant)
    limit = hub.settings.max_request_bytes
    body, total = await read_limited(request, limit)
    if total > limit:
        raise InvalidRequest(f"CSV chunk of {total} bytes; at most {limit} (send it in chunks)")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"CSV is not UTF-8: {exc}") from None
    received_us = time.time_ns() // 1000
    offset = first_line - 2  # line 2 of the chunk is the file's first_line
    envelopes: list[Envelope] = []
    for item in parse_history(io.StringIO(text), default_zone=timezone):
        if isinstance(item, HistoryMessage):
            envelopes.append(Envelope(f"csv:{name}", item.payload, tenant, received_us))
        else:
            envelopes.append(
                Envelope(
                    f"csv:{name}:{item.line + offset}",
                    item.raw,
                    tenant,
                    received_us,
                    problem=(item.reason, item.detail),
                )
            )
    if not envelopes:
        raise InvalidRequest("the CSV has a header but no rows")
    return receipt_response(await submit(hub.pipeline, envelopes, hub.settings.confirm_timeout_s))


@router.post(
    "/{tenant}/imports/green-button",
    summary="Import Green Button (NAESB ESPI) interval data (XML body)",
    description=(
        "An Atom feed of UsagePoint / MeterReading / ReadingType / IntervalBlock entries. "
        "Interval energy becomes `…interval` series (kWh) and mean power (kW); registers their "
        "Table 2 `.total`. `hardware_id` names the device instead of the UsagePoint id. The "
        "`…interval` identifiers are registered for the tenant on first use."
    ),
    response_model=IngestReceipt,
)
async def import_green_button(
    tenant: str,
    request: Request,
    hub: HubDep,
    who: PrincipalDep,
    hardware_id: Annotated[str | None, Query(max_length=128)] = None,
    name: Annotated[str, Query(max_length=200)] = "green-button.xml",
) -> JSONResponse:
    hub.access.authorize_write(who, tenant)
    hub.registry.tenant(tenant)
    limit = hub.settings.max_request_bytes
    body, total = await read_limited(request, limit)
    if total > limit:
        raise InvalidRequest(f"document of more than {limit} bytes; split the feed")
    await run_in_threadpool(
        hub.registry.ensure_identifiers, tenant, GREEN_BUTTON_CUSTOM_IDENTIFIERS
    )
    received_us = time.time_ns() // 1000

    def parse() -> list[Envelope]:
        out: list[Envelope] = []
        for item in parse_green_button(body, hardware_id=hardware_id):
            if isinstance(item, GreenButtonMessage):
                out.append(Envelope(f"green-button:{name}", item.payload, tenant, received_us))
            else:
                where = f"green-button:{name}" + (f": {item.where}" if item.where else "")
                out.append(
                    Envelope(
                        where[:300],
                        item.raw,
                        tenant,
                        received_us,
                        problem=(item.reason, item.detail),
                    )
                )
        return out

    envelopes = await run_in_threadpool(parse)
    if not envelopes:
        raise InvalidRequest("the document holds no interval readings")
    return receipt_response(await submit(hub.pipeline, envelopes, hub.settings.confirm_timeout_s))
