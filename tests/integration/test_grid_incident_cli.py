"""``gridhub simulate incident``, run as an operator would against a running hub: attach sensors
to the demo grid (CIGRE LV), cause an LV fault, a fused luminaire and an outage over HTTP, and
find the services' alerts at the right place."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gridhub.domain.registry import Device, Site
from gridhub.domain.topology import NodeKind
from gridhub.hub import Hub
from helpers import Api, gridhub, seed_tenant, wait_for

pytestmark = pytest.mark.integration
TENANT = "cli"


def _alerts(client: httpx.Client, kind: str) -> list[dict[str, Any]]:
    alerts = client.get(f"/api/v1/tenants/{TENANT}/alerts", params={"limit": 1000}).json()
    return [{**a, "metadata": json.loads(a["metadata"])} for a in alerts if a["type"] == kind]


def test_sensors_then_fault_and_luminaire_incidents(hub: Hub, api: Api) -> None:
    token = seed_tenant(hub, tenant=TENANT)
    hub.registry.register_sites(
        [Site(TENANT, f"hh{i:03d}", f"Household {i}") for i in range(2, 31)]
    )
    hub.registry.register_devices(
        [Device(TENANT, f"hh{i:03d}-meter", "smart-meter", f"hh{i:03d}") for i in range(2, 31)]
    )
    env = {"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": token}
    client = api.client(token)
    imported = client.post(
        f"/api/v1/tenants/{TENANT}/topology/import", json={"network": "cigre_lv"}
    )
    assert imported.status_code == 200, imported.text

    def run(*args: str) -> str:
        result = gridhub("simulate", "incident", *args, "--tenant", TENANT, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    nodes = "Bus R1,Bus R4,Bus R6,Bus R9,Bus R15"
    assert "5 devices attached" in run("sensors", "--kind", "lv-sensor", "--nodes", nodes)
    assert "sent 10 messages over HTTP" in run("fault", "--node", "Bus R8", "--mode", "samples")
    wait_for(lambda: bool(_alerts(client, "grid.fault.located")), timeout=30, what="a location")
    located = max(_alerts(client, "grid.fault.located"), key=lambda a: a["metadata"]["sequence"])
    assert located["device"] == "grid:bus7"  # R6
    assert located["metadata"]["downstreamSensors"] == ["lv-bus10"]  # R9
    # lighting sensors attached while the hub runs (the services have looked at the tenant
    # already) are picked up at once: their burst of sets is not lost
    out = run("sensors", "--kind", "pl-sensor", "--nodes", "Bus R1,Bus R4,Bus R6,Bus R8")
    assert "9 devices attached" in out  # the LV sensors stay attached

    run("luminaire", "--after", "pl-bus7", "--bulbs", "4", "--sets", "30")
    wait_for(lambda: bool(_alerts(client, "grid.luminaire.fused")), timeout=30, what="a fuse")
    [fused] = _alerts(client, "grid.luminaire.fused")
    assert fused["device"] == "grid:bus7"
    assert (fused["metadata"]["upstreamSensor"], fused["metadata"]["downstreamSensor"]) == (
        "pl-bus7",
        "pl-bus9",
    )

    # an outage of the feeder with most households, then its end
    topology = hub.topologies.get(TENANT)
    feeder = max(
        topology.nodes_of_kind(NodeKind.LV_FEEDER),
        key=lambda f: len(topology.sites_downstream(f)),
    )
    assert len(topology.sites_downstream(feeder)) >= 3
    run("outage", "--node", feeder, "--ago", "2")
    wait_for(lambda: bool(_alerts(client, "grid.outage.started")), timeout=30, what="an outage")
    assert all(
        a["metadata"]["node"] in topology.downstream(feeder)
        for a in _alerts(client, "grid.outage.started")
    )
    run("outage", "--node", feeder, "--restore")
    wait_for(lambda: bool(_alerts(client, "grid.outage.ended")), timeout=60, what="its end")

    refused = gridhub("simulate", "incident", "fault", "--node", "Bus X", "--tenant", TENANT,
                      env=env)  # fmt: skip
    assert refused.returncode == 2 and "0 nodes named 'Bus X'" in refused.stderr
