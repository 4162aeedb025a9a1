"""Topology routes (P5): a tenant's grid as a JSON document, or a pandapower reference grid."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gridhub.access.tokens import Principal
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.ingesting import read_limited
from gridhub.errors import Forbidden, InvalidRequest
from gridhub.grid.topologies import TopologySummary
from gridhub.grid.topology_import import REFERENCE_NETWORKS
from gridhub.grid.topology_json import MAX_DOCUMENT_BYTES

router = APIRouter(prefix="/api/v1/tenants/{tenant}/topology", tags=["topology"])
GRID_EDITORS = ("admin", "dso")
# the grid names every household's connection point: for the grid operator and research
GRID_READERS = ("admin", "dso", "researcher")


class TopologyImport(BaseModel):
    network: Literal["cigre_lv", "cigre_mv", "ieee_european_lv", "case33bw"] = Field(
        description=f"one of pandapower's reference grids: {', '.join(REFERENCE_NETWORKS)}"
    )
    attach_sites: bool = Field(
        True, description="place the tenant's registered households on its connection points"
    )
    strategy: Literal["load_share", "round_robin"] = "load_share"


class TopologySummaryPublic(BaseModel):
    name: str
    nodes: int
    connection_points: int
    lines: int
    transformers: int
    switches: int
    sites: int
    devices: int
    unknown_sites: list[str] = Field(description="attached but not registered (first 20)")
    unknown_devices: list[str] = Field(description="attached but not registered (first 20)")


def _summary(s: TopologySummary) -> TopologySummaryPublic:
    return TopologySummaryPublic(
        name=s.name,
        nodes=s.nodes,
        connection_points=s.connection_points,
        lines=s.lines,
        transformers=s.transformers,
        switches=s.switches,
        sites=s.sites,
        devices=s.devices,
        unknown_sites=list(s.unknown_sites),
        unknown_devices=list(s.unknown_devices),
    )


def _require_reader(who: Principal, tenant: str) -> None:
    who.require_tenant(tenant)
    if who.role not in GRID_READERS:
        raise Forbidden(f"a {who.role} token cannot read the topology")


def _require_editor(who: Principal, tenant: str) -> None:
    who.require_tenant(tenant)
    if who.role not in GRID_EDITORS:
        raise Forbidden(f"a {who.role} token cannot change the topology; use a dso or admin token")


@router.get("", summary="The tenant's topology as a JSON document (docs/topology.md)")
def get_topology(tenant: str, hub: HubDep, who: PrincipalDep) -> dict[str, Any]:
    _require_reader(who, tenant)
    return hub.topologies.document(tenant)


@router.get("/summary", summary="Counts of the tenant's topology, and unregistered attachments")
def topology_summary(tenant: str, hub: HubDep, who: PrincipalDep) -> TopologySummaryPublic:
    _require_reader(who, tenant)
    return _summary(hub.topologies.summary(tenant, hub.topologies.get(tenant)))


@router.put("", summary="Replace the topology with a JSON document (at most 16 MiB)")
async def put_topology(
    tenant: str, request: Request, hub: HubDep, who: PrincipalDep
) -> TopologySummaryPublic:
    _require_editor(who, tenant)
    body, total = await read_limited(request, MAX_DOCUMENT_BYTES)
    if total > MAX_DOCUMENT_BYTES:
        raise InvalidRequest(f"topology document larger than {MAX_DOCUMENT_BYTES} bytes")
    return _summary(await run_in_threadpool(hub.topologies.put, tenant, body))


@router.post("/import", summary="Replace the topology with a pandapower reference grid")
async def import_topology(
    tenant: str, body: TopologyImport, hub: HubDep, who: PrincipalDep
) -> TopologySummaryPublic:
    _require_editor(who, tenant)
    summary = await run_in_threadpool(
        lambda: hub.topologies.import_reference(
            tenant, body.network, attach_sites=body.attach_sites, strategy=body.strategy
        )
    )
    return _summary(summary)
