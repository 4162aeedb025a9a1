"""Market hub (O4) end to end: the market simulator's retailer platforms are real HTTP webhook
servers (signatures checked, [100, 110) ms answer delay), the DSO and retailers call the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gridhub.hub import Hub
from gridhub.sim.market import MarketSimulation
from helpers import Api, wait_for

pytestmark = pytest.mark.integration
CLIENTS, RETAILERS = 12, 2


def _sim(api: Api, tenant: str, **kw: Any) -> MarketSimulation:
    assert api.admin.headers["Authorization"].startswith("Bearer ")
    token = api.admin.headers["Authorization"].removeprefix("Bearer ")
    sim = MarketSimulation(api.url, token, tenant, CLIENTS, RETAILERS, seed=3, **kw)
    sim.setup()
    return sim


@pytest.fixture
def sim(api: Api) -> Iterator[MarketSimulation]:
    s = _sim(api, "mkt")
    yield s
    s.close()


def _dso(api: Api, hub: Hub, tenant: str = "mkt") -> httpx.Client:
    _rec, secret = hub.tokens.create(tenant, "dso", "test dso")
    return api.client(secret)


def _retailer(api: Api, sim: MarketSimulation, n: int) -> httpx.Client:
    token = sim.platforms[n].token
    assert token is not None
    return api.client(token)


def _wait(client: httpx.Client, request_id: str, tenant: str = "mkt") -> dict[str, Any]:
    url = f"/api/v1/tenants/{tenant}/market/requests/{request_id}"
    wait_for(
        lambda: client.get(url).json()["status"] != "open", timeout=30, what="request finished"
    )
    return dict(client.get(url).json())


def _day(sim: MarketSimulation) -> dict[str, str]:
    start = datetime.combine(sim.day, datetime.min.time(), UTC)
    return {"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()}


def _own(sim: MarketSimulation, retailer: str) -> list[str]:
    return sorted(s for s, r in sim.supplier.items() if r == retailer)


def test_billing_and_profile_answer_own_clients_only(api: Api, sim: MarketSimulation) -> None:
    r1 = _retailer(api, sim, 0)
    mine, theirs = _own(sim, "r01"), _own(sim, "r02")
    body = {**_day(sim), "sites": mine[:3]}
    first = r1.post(
        "/api/v1/tenants/mkt/market/billing", json=body, headers={"Idempotency-Key": "b1"}
    )
    assert first.status_code == 201, first.text
    lines = {line["site"]: line for line in first.json()["result"]["clients"]}
    assert set(lines) == set(mine[:3])
    for site in mine[:3]:
        i = int(site[1:])
        # hourly readings at 00:00..23:00 of the day: 23 increments of the register
        assert lines[site]["energy"] == pytest.approx(23 * (0.2 + (i % 7) * 0.05), abs=1e-6)
        assert lines[site]["readings"] == 24
    assert first.json()["result"]["unit"] == "kWh"
    # a repeat is safe: same request, 200; the same key for something else is a conflict
    again = r1.post(
        "/api/v1/tenants/mkt/market/billing", json=body, headers={"Idempotency-Key": "b1"}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = r1.post(
        "/api/v1/tenants/mkt/market/billing",
        json={**body, "sites": mine[:2]},
        headers={"Idempotency-Key": "b1"},
    )
    assert other.status_code == 409
    # another retailer's client: refused, and nothing stored under that key
    refused = r1.post(
        "/api/v1/tenants/mkt/market/billing",
        json={**_day(sim), "sites": [mine[0], theirs[0]]},
        headers={"Idempotency-Key": "b2"},
    )
    assert refused.status_code == 403 and theirs[0] in refused.json()["detail"]
    # without sites: every own client, none of the other's
    everyone = r1.post(
        "/api/v1/tenants/mkt/market/billing", json={**_day(sim), "idempotency_key": "b3"}
    )
    assert {line["site"] for line in everyone.json()["result"]["clients"]} == set(mine)
    profile = r1.post(
        "/api/v1/tenants/mkt/market/profiles",
        json={**_day(sim), "sites": [mine[0]]},
        headers={"Idempotency-Key": "p1"},
    )
    assert profile.status_code == 201, profile.text
    points = profile.json()["result"]["clients"][0]["points"]
    assert len(points) == 24
    i = int(mine[0][1:])
    assert points[5]["energy"] == pytest.approx(0.2 + (i % 7) * 0.05, abs=1e-6)
    # the other retailer cannot read r01's request
    r2 = _retailer(api, sim, 1)
    assert r2.get(f"/api/v1/tenants/mkt/market/requests/{first.json()['id']}").status_code == 404


def test_roles_and_keys_are_enforced(api: Api, hub: Hub, sim: MarketSimulation) -> None:
    dso, r1 = _dso(api, hub), _retailer(api, sim, 0)
    area = {"area": {"attribute": "location", "value": "area-1"}}
    emergency = {**area, "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    no_key = dso.post("/api/v1/tenants/mkt/market/emergencies", json=emergency)
    assert no_key.status_code == 422 and "idempotency key" in no_key.json()["detail"]
    as_retailer = r1.post(
        "/api/v1/tenants/mkt/market/emergencies", json=emergency, headers={"Idempotency-Key": "e"}
    )
    assert as_retailer.status_code == 403
    as_dso = dso.post(
        "/api/v1/tenants/mkt/market/billing", json=_day(sim), headers={"Idempotency-Key": "b"}
    )
    assert as_dso.status_code == 403
    past = {**area, "starts_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    late = dso.post(
        "/api/v1/tenants/mkt/market/emergencies", json=past, headers={"Idempotency-Key": "e2"}
    )
    assert late.status_code == 422


def test_network_tariff_broadcast_reaches_retailers_of_the_area(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    dso = _dso(api, hub)
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    body = {
        "area": {"attribute": "location", "value": "area-1"},
        "days": [{"day": day, "periods": [{"start": "00:00", "end": "24:00", "price": 0.04}]}],
    }
    resp = dso.post(
        "/api/v1/tenants/mkt/market/tariffs", json=body, headers={"Idempotency-Key": "t1"}
    )
    assert resp.status_code == 201, resp.text
    req = _wait(dso, resp.json()["id"])
    assert req["status"] == "completed"
    area = {s for i, s in enumerate(sim.sites) if i % 10 == 1}
    seen: set[str] = set()
    for p in sim.platforms:
        events = p.events("tariff.network_published")
        assert p.refused == 0
        for e in events:
            assert set(e.body["clients"]) <= set(_own(sim, p.retailer))  # only its own clients
            assert e.body["tariffs"][0]["id"] in req["result"]["tariffs"]
            seen |= set(e.body["clients"])
    assert seen == area
    # the network tariff is the O2 tariff: stored, with device deliveries
    tariffs = hub.tariffs.tariffs(
        "mkt", datetime.fromisoformat(day).date(), datetime.fromisoformat(day).date()
    )
    assert [t.item.id for t in tariffs] == req["result"]["tariffs"]
    assert tariffs[0].item.kind.value == "network"
    again = dso.post(
        "/api/v1/tenants/mkt/market/tariffs", json=body, headers={"Idempotency-Key": "t1"}
    )
    assert again.status_code == 200 and again.json()["id"] == req["id"]
    assert len(hub.tariffs.tariffs("mkt", tariffs[0].item.day, tariffs[0].item.day)) == 1


def test_load_reduction_availability_then_disconnection(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    dso = _dso(api, hub)
    now = datetime.now(UTC)
    body = {
        "area": {"sites": sim.sites},
        "from": (now + timedelta(minutes=10)).isoformat(),
        "to": (now + timedelta(minutes=70)).isoformat(),
        "reduction_kw": 20,
    }
    resp = dso.post(
        "/api/v1/tenants/mkt/market/load-reductions", json=body, headers={"Idempotency-Key": "l1"}
    )
    assert resp.status_code == 201, resp.text
    req = _wait(dso, resp.json()["id"])
    assert req["status"] == "completed"
    assert {d["status"] for d in req["deliveries"]} == {"delivered"}
    availability = req["availability"]
    assert set(availability) == {"r01", "r02"}
    offered = {s: r for r, a in availability.items() for s in a["available"]}
    for site, retailer in offered.items():
        assert sim.supplier[site] == retailer
    not_offered = sorted(set(sim.sites) - set(offered))
    refused = dso.post(
        f"/api/v1/tenants/mkt/market/load-reductions/{req['id']}/disconnections",
        json={"sites": [not_offered[0]], "duration_s": 600},
        headers={"Idempotency-Key": "d0"},
    )
    assert refused.status_code == 403
    cut = dso.post(
        f"/api/v1/tenants/mkt/market/load-reductions/{req['id']}/disconnections",
        json={"sites": sorted(offered), "duration_s": 600},
        headers={"Idempotency-Key": "d1"},
    )
    assert cut.status_code == 201, cut.text
    done = _wait(dso, cut.json()["id"])
    assert done["status"] == "completed" and done["parent"] == req["id"]
    # one "off" command per smart plug of the offered clients, none to meters
    commands = hub.commands.invocations("mkt", origin=req["id"])
    assert sorted(c.device for c in commands) == sorted(f"{s}-plug" for s in offered)
    assert {c.command for c in commands} == {"off"}
    for p in sim.platforms:
        told = p.events("load_reduction.disconnection")
        assert len(told) == 1
        assert set(told[0].body["clients"]) == {s for s, r in offered.items() if r == p.retailer}
    # repeating the disconnection creates no second command
    dso.post(
        f"/api/v1/tenants/mkt/market/load-reductions/{req['id']}/disconnections",
        json={"sites": sorted(offered), "duration_s": 600},
        headers={"Idempotency-Key": "d1"},
    )
    assert len(hub.commands.invocations("mkt", origin=req["id"])) == len(commands)


def test_load_reduction_answered_over_rest(api: Api, hub: Hub) -> None:
    sim = _sim(
        api,
        "mktrest",
        answer="rest",
    )
    try:
        dso = _dso(api, hub, "mktrest")
        now = datetime.now(UTC)
        resp = dso.post(
            "/api/v1/tenants/mktrest/market/load-reductions",
            json={
                "area": {"attribute": "location", "value": "area-2"},
                "from": (now + timedelta(minutes=10)).isoformat(),
                "to": (now + timedelta(minutes=40)).isoformat(),
            },
            headers={"Idempotency-Key": "l1"},
        )
        assert resp.status_code == 201, resp.text
        req = _wait(dso, resp.json()["id"], "mktrest")
        assert req["status"] == "completed"
        assert all(d["answered"] is not None for d in req["deliveries"])
        r1 = _retailer(api, sim, 0)
        # an answer naming a client it was not asked about is refused
        bad = r1.post(
            f"/api/v1/tenants/mktrest/market/load-reductions/{req['id']}/availability",
            json={"available": [_own(sim, "r02")[0]]},
        )
        assert bad.status_code == 403
    finally:
        sim.close()


def test_emergency_notice_is_retried_until_delivered(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    sim.platforms[0].fail_first = 2  # r01 is down for its next two calls
    dso = _dso(api, hub)
    resp = dso.post(
        "/api/v1/tenants/mkt/market/emergencies",
        json={
            "area": {"sites": sim.sites},
            "starts_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
            "limit_kw": 3.5,
            "reason": "transformer overload",
        },
        headers={"Idempotency-Key": "e1"},
    )
    assert resp.status_code == 201, resp.text
    req = _wait(dso, resp.json()["id"])
    assert req["status"] == "completed"
    log = {d["retailer"]: d for d in req["deliveries"]}
    assert log["r01"]["attempts"] == 3 and log["r01"]["last_code"] == 200
    assert log["r02"]["attempts"] == 1
    for p in sim.platforms:
        (notice,) = p.events("emergency.announced")
        assert notice.body["limit_kw"] == 3.5
        assert set(notice.body["clients"]) == set(_own(sim, p.retailer))


def test_area_by_topology_node(api: Api, hub: Hub, sim: MarketSimulation) -> None:
    """An emergency for the households below one LV feeder reaches exactly their retailers."""
    sites = sim.sites
    feeder_a, feeder_b = sites[:5], sites[5:]
    doc = {
        "format": "gridhub.topology",
        "version": 1,
        "name": "two feeders",
        "nodes": [
            {"id": "ss", "vn_kv": 0.4, "kind": "secondary_substation"},
            {"id": "fa", "vn_kv": 0.4, "kind": "lv_feeder"},
            {"id": "fb", "vn_kv": 0.4, "kind": "lv_feeder"},
        ],
        "lines": [
            {"id": "la", "from": "ss", "to": "fa", "r_ohm": 0.1, "x_ohm": 0.05},
            {"id": "lb", "from": "ss", "to": "fb", "r_ohm": 0.1, "x_ohm": 0.05},
        ],
        "sites": [{"site": s, "node": "fa"} for s in feeder_a]
        + [{"site": s, "node": "fb"} for s in feeder_b],
    }
    dso = _dso(api, hub)
    assert dso.put("/api/v1/tenants/mkt/topology", json=doc).status_code == 200
    resp = dso.post(
        "/api/v1/tenants/mkt/market/emergencies",
        json={
            "area": {"node": "fa"},
            "starts_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        },
        headers={"Idempotency-Key": "node-a"},
    )
    assert resp.status_code == 201, resp.text
    assert _wait(dso, resp.json()["id"])["status"] == "completed"
    told = {
        s for p in sim.platforms for e in p.events("emergency.announced") for s in e.body["clients"]
    }
    assert told == set(feeder_a)
    unknown = dso.post(
        "/api/v1/tenants/mkt/market/emergencies",
        json={
            "area": {"node": "nowhere"},
            "starts_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        },
        headers={"Idempotency-Key": "node-x"},
    )
    assert unknown.status_code == 404
