"""Market hub (O4) across a restart and from the command line: a delivery that could not be
made is resumed by the restarted hub from its stored state, a repeated request finds the stored
one, and ``gridhub simulate market`` drives every request type against a running hub."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import build_hub
from gridhub.sim.market_rp import RetailerPlatform
from helpers import Api, free_port, gridhub, make_settings, wait_for

pytestmark = pytest.mark.integration


def test_restart_resumes_deliveries_and_keeps_requests(tmp_path: Path) -> None:
    port = free_port()  # the retailer platform is down at first: nothing listens here
    settings = make_settings(tmp_path)
    hub = build_hub(settings)
    hub.ensure_admin_token()
    hub.start(mqtt=False)
    hub.registry.create_tenant(Tenant("rst", "Restart", "UTC"))
    hub.registry.register_sites([Site("rst", f"s{i}") for i in range(4)])
    hub.registry.register_devices(
        [Device("rst", f"s{i}-plug", "smart-plug", f"s{i}") for i in range(4)]
    )
    _rec, admin = hub.tokens.create("rst", "admin", "admin")
    _rec, dso = hub.tokens.create("rst", "dso", "dso")
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    body = {
        "area": {"sites": ["s0", "s1", "s2"]},
        "starts_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        "reason": "planned switching",
    }
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
            # who supplies whom: a retailer stakeholder and its contracts with the customers
            people = [{"id": "acme", "kind": "retailer"}] + [
                {"id": f"cust{i}", "kind": "customer", "site": f"s{i}"} for i in range(4)
            ]
            made = c.post("/api/v1/tenants/rst/stakeholders/bulk", json={"stakeholders": people})
            assert made.status_code == 201, made.text
            start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
            contracts = [
                {"customer": f"cust{i}", "supplier": "acme", "start": start} for i in range(4)
            ]
            made = c.post("/api/v1/tenants/rst/contracts/bulk", json={"contracts": contracts})
            assert made.status_code == 201, made.text
            record = c.put(
                "/api/v1/tenants/rst/market/retailers/acme",
                json={"webhook_url": f"http://127.0.0.1:{port}/hook"},
            ).json()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {dso}"}) as c:
            first = c.post(
                "/api/v1/tenants/rst/market/emergencies",
                json=body,
                headers={"Idempotency-Key": "k"},
            )
            assert first.status_code == 201, first.text
            rid = first.json()["id"]
            url = f"/api/v1/tenants/rst/market/requests/{rid}"
            wait_for(
                lambda: c.get(url).json()["deliveries"][0]["attempts"] >= 1, what="a failed try"
            )
            failed = c.get(url).json()
            assert failed["status"] == "open"
            assert failed["deliveries"][0]["status"] == "pending"
            assert failed["deliveries"][0]["last_error"]
    finally:
        server.stop()
        hub.stop()
    # the platform comes up; so does a new hub process over the same data directory
    platform = RetailerPlatform("acme", delay=(0.1, 0.11), secret=record["webhook_secret"])
    platform.start(port=port)
    hub = build_hub(settings)
    hub.start(mqtt=False)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {dso}"}) as c:
            wait_for(lambda: c.get(url).json()["status"] != "open", timeout=30, what="resumed")
            done = c.get(url).json()
            assert done["status"] == "completed"
            assert done["deliveries"][0]["attempts"] >= 2
            (notice,) = platform.events("emergency.announced")
            assert notice.body["request"] == rid and sorted(notice.body["clients"]) == [
                "s0",
                "s1",
                "s2",
            ]
            assert platform.refused == 0
            again = c.post(
                "/api/v1/tenants/rst/market/emergencies",
                json=body,
                headers={"Idempotency-Key": "k"},
            )
            assert again.status_code == 200 and again.json()["id"] == rid
            assert len(platform.events()) == 1  # the repeat sent nothing
    finally:
        server.stop()
        hub.stop()
        platform.stop()


def test_simulate_market_command_drives_every_request_type(api: Api, tmp_path: Path) -> None:
    token = api.admin.headers["Authorization"].removeprefix("Bearer ")
    out = tmp_path / "market.json"
    result = gridhub(
        "simulate",
        "market",
        "--tenant",
        "mktcli",
        "--clients",
        "20",
        "--retailers",
        "2",
        "--rate",
        "billing=60",
        "--rate",
        "profile=60",
        "--rate",
        "tariff=60",
        "--rate",
        "load_reduction=60",
        "--rate",
        "emergency=60",
        "--duration",
        "3",
        "--output",
        str(out),
        env={"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": token},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {
        "billing",
        "profile",
        "tariff",
        "load_reduction",
        "disconnection",
        "emergency",
    }
    for kind, row in summary.items():
        assert row["failed"] == 0, kind
    # a DSO request finishes only after the retailers' [100, 110) ms answer
    assert summary["emergency"]["p50_ms"] >= 100
    assert "p99 ms" in result.stdout
