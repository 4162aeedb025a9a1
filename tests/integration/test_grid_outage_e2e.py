"""G1 end to end: the simulator cuts a feeder of the CIGRE LV grid, its meters' last gasps travel
over the real Mosquitto into the hub, and outage detection raises the outage at the right place,
visible through the alerts API — then ends it when supply is back, across a hub restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Tenant
from gridhub.domain.topology import NodeKind, Topology
from gridhub.hub import Hub, build_hub
from gridhub.sim.fleet import CUSTOM_IDENTIFIERS, Fleet
from gridhub.sim.incidents import meters_below, outage
from gridhub.sim.transport import MqttPublisher
from helpers import make_settings, wait_for

pytestmark = pytest.mark.integration
TENANT = "gridco"


def _start(
    data_dir: Path, mqtt_url: str, client_id: str, admin: str | None = None
) -> tuple[Hub, ApiServer, httpx.Client]:
    hub = build_hub(make_settings(data_dir, mqtt_url=mqtt_url, mqtt_client_id=client_id))
    admin = hub.ensure_admin_token() or admin
    hub.start()
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    return hub, server, client


def _stop(hub: Hub, server: ApiServer, client: httpx.Client) -> None:
    client.close()
    server.stop()
    hub.stop()


def _grid_alerts(client: httpx.Client, kind: str | None = None) -> list[dict[str, Any]]:
    """The outage alerts, oldest first, their metadata parsed."""
    alerts = client.get(f"/api/v1/tenants/{TENANT}/alerts", params={"limit": 1000}).json()
    found = [
        {**a, "metadata": json.loads(a["metadata"])}
        for a in alerts
        if a["type"].startswith("grid.outage.") and (kind is None or a["type"] == kind)
    ]
    return sorted(found, key=lambda a: (a["ts"], a["metadata"]["sequence"]))


def _ongoing(client: httpx.Client) -> dict[str, str]:
    """Outage id → where it is now, from the started / relocated / ended alerts (the
    detector reports a growing last-gasp storm as it grows: started, relocated, merged)."""
    alerts = _grid_alerts(client)
    # an end is stamped when supply came back, which may precede the moves seen on the way
    ended = {a["metadata"]["outage"] for a in alerts if a["type"] == "grid.outage.ended"}
    return {
        a["metadata"]["outage"]: a["metadata"]["node"]
        for a in alerts
        if a["metadata"]["outage"] not in ended
    }


def _feeder_with_households(topology: Topology, site_meters: dict[str, list[str]]) -> str:
    """The LV feeder with the most meters below it (at least three)."""
    feeders = topology.nodes_of_kind(NodeKind.LV_FEEDER)
    best = max(feeders, key=lambda f: len(meters_below(topology, f, site_meters)))
    assert len(meters_below(topology, best, site_meters)) >= 3
    return best


def test_feeder_outage_is_detected_located_and_ended(tmp_path: Path, mosquitto_url: str) -> None:
    client_id = f"gridhub-outage-{tmp_path.name}"[:60]
    hub, server, client = _start(tmp_path / "hub", mosquitto_url, client_id)
    fleet = Fleet(40, seed=4, zone="Europe/Brussels", tenant=TENANT)
    hub.registry.create_tenant(Tenant(TENANT, "Grid co", "Europe/Brussels"))
    hub.registry.ensure_identifiers(TENANT, CUSTOM_IDENTIFIERS)
    hub.registry.register_sites(fleet.sites())
    hub.registry.register_devices(fleet.devices())
    imported = client.post(
        f"/api/v1/tenants/{TENANT}/topology/import", json={"network": "cigre_lv"}
    )
    assert imported.status_code == 200, imported.text
    topology = hub.topologies.get(TENANT)
    site_meters: dict[str, list[str]] = {}
    for device in fleet.devices():
        if device.device_type == "smart-meter" and device.site is not None:
            site_meters.setdefault(device.site, []).append(device.hardware_id)
    feeder = _feeder_with_households(topology, site_meters)
    out = set(meters_below(topology, feeder, site_meters))
    publisher = MqttPublisher(mosquitto_url, TENANT)
    try:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        # one meter alone going dark elsewhere is not an outage of its feeder
        elsewhere = next(m for ms in site_meters.values() for m in ms if m not in out)
        lone = outage(
            topology,
            topology.site_node(_site_of(elsewhere, site_meters)),
            {_site_of(elsewhere, site_meters): [elsewhere]},
            start,
        )
        # the feeder: 20 % of its last gasps lost on the way, as on a real PLC network
        cut = outage(topology, feeder, site_meters, start, lost=0.2, seed=7)
        publisher.publish(lone + cut)
        gasped = {meter for meter, raw in cut if b"power.last.gasp" in raw}

        def settled() -> bool:
            """One outage, on the feeder, over every meter whose gasp got through (its lowest
            common node: with gasps lost, nobody can tell the fault was any higher)."""
            where = list(_ongoing(client).values())
            return len(where) == 1 and gasped <= set(meters_below(topology, where[0], site_meters))

        wait_for(settled, timeout=30, what="one outage covering the gasping meters")
        [(outage_id, located)] = _ongoing(client).items()
        assert located in topology.downstream(feeder)
        assert set(meters_below(topology, located, site_meters)) <= out
        latest = [a for a in _grid_alerts(client) if a["metadata"]["outage"] == outage_id][-1]
        assert latest["device"] == f"grid:{located}"
        assert latest["metadata"]["metersOut"] >= 0.6 * latest["metadata"]["metersTotal"]
        first = _grid_alerts(client, "grid.outage.started")[0]
        assert first["level"] == "Critical"
        assert start <= datetime.fromisoformat(first["ts"]) < start + timedelta(seconds=21)
        # the lone meter's gasp raised nothing where it is
        assert all(
            elsewhere not in meters_below(topology, n, site_meters)
            for n in _ongoing(client).values()
        )
        written = _grid_alerts(client)
    finally:
        publisher.close()
    admin = hub.admin_secret
    _stop(hub, server, client)

    # a restarted hub remembers the ongoing outage (replayed from the stored last gasps)
    hub, server, client = _start(tmp_path / "hub", mosquitto_url, client_id, admin)
    publisher = MqttPublisher(mosquitto_url, TENANT)
    try:
        back = start + timedelta(minutes=3)
        publisher.publish(
            [
                m
                for m in outage(topology, feeder, site_meters, start, back)
                if b"power.restored" in m[1]
            ]
        )
        wait_for(
            lambda: any(
                a["metadata"]["reason"] == "restored"
                for a in _grid_alerts(client, "grid.outage.ended")
            ),
            timeout=30,
            what="the outage's end",
        )
        [ended] = [
            a
            for a in _grid_alerts(client, "grid.outage.ended")
            if a["metadata"]["reason"] == "restored"
        ]
        assert ended["metadata"]["outage"] == outage_id  # shrunk as supply came back, then ended
        assert back <= datetime.fromisoformat(ended["ts"]) < back + timedelta(seconds=21)
        assert _ongoing(client) == {}
        # replaying the stored gasps after the restart wrote nothing again: what is new came
        # with the restores (the area shrinking as supply came back, then the end)
        new = [a for a in _grid_alerts(client) if a not in written]
        assert new and all(datetime.fromisoformat(a["ts"]) >= back for a in new)
    finally:
        publisher.close()
        _stop(hub, server, client)


def _site_of(meter: str, site_meters: dict[str, list[str]]) -> str:
    return next(site for site, meters in site_meters.items() if meter in meters)
