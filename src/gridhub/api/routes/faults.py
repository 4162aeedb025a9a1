"""Fault injection (S3), for benchmarks and drills: off unless ``fault_injection`` is set.

Only the installation admin may call it, and only on a hub started with
``GRIDHUB_FAULT_INJECTION=true``; otherwise the route answers 404 as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.errors import NotFound

router = APIRouter(prefix="/api/v1/faults", tags=["operations"])


@router.post("/store-outage", summary="Make every store write fail for a while (S3)")
def store_outage(
    hub: HubDep, who: PrincipalDep, seconds: Annotated[float, Query(gt=0, le=3600)] = 60
) -> dict[str, float]:
    if not hub.settings.fault_injection:
        raise NotFound("not found")
    who.require_admin()
    hub.pipeline.simulate_store_outage(seconds)
    return {"store_outage_s": seconds}
