"""The market hub routes and reads by the access layer's contracts, through the enforcement
point — tests that try to break it: a retailer without a running contract, a supplier switch,
owner policies, the owners' minimum delay, a switch while a webhook is still being retried.

The world is the market simulator's (12 clients, retailers r01 and r02 round-robin, a day of
hourly register readings on ``sim.day``), driven over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gridhub.hub import Hub
from gridhub.services.market_reads import ENERGY_IDENTIFIER
from gridhub.sim.market import MarketSimulation
from gridhub.sim.market_rp import RetailerPlatform
from helpers import Api, wait_for

pytestmark = pytest.mark.integration
T = "mkc"
MARKET = f"/api/v1/tenants/{T}/market"


@pytest.fixture
def sim(api: Api) -> Iterator[MarketSimulation]:
    token = api.admin.headers["Authorization"].removeprefix("Bearer ")
    s = MarketSimulation(api.url, token, T, 12, 2, seed=5)
    s.setup()
    yield s
    s.close()


def _at(sim: MarketSimulation, hour: float) -> datetime:
    return datetime.combine(sim.day, datetime.min.time(), UTC) + timedelta(hours=hour)


def _period(sim: MarketSimulation, lo: float = 0, hi: float = 24) -> dict[str, str]:
    return {"from": _at(sim, lo).isoformat(), "to": _at(sim, hi).isoformat()}


def _retailer(api: Api, sim: MarketSimulation, rid: str) -> httpx.Client:
    platform = next(p for p in sim.platforms if p.retailer == rid)
    assert platform.token is not None
    return api.client(platform.token)


def _read(client: httpx.Client, what: str, key: str, **body: Any) -> httpx.Response:
    return client.post(f"{MARKET}/{what}", json=body, headers={"Idempotency-Key": key})


def _lines(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code in (200, 201), resp.text
    return {line["site"]: line for line in resp.json()["result"]["clients"]}


def _inc(site: str) -> float:
    """The simulator's hourly register increment of a client."""
    return 0.2 + (int(site[1:]) % 7) * 0.05


def _wait(client: httpx.Client, request_id: str) -> dict[str, Any]:
    url = f"{MARKET}/requests/{request_id}"
    wait_for(lambda: client.get(url).json()["status"] != "open", timeout=30, what="finished")
    return dict(client.get(url).json())


def _switch(api: Api, site: str, to: str, at: datetime) -> None:
    resp = api.admin.post(
        f"/api/v1/tenants/{T}/contracts/switch",
        json={"customer": MarketSimulation.customer(site), "supplier": to, "at": at.isoformat()},
    )
    assert resp.status_code == 200, resp.text


def _dso(api: Api, hub: Hub) -> httpx.Client:
    return api.client(hub.tokens.create(T, "dso", "test dso", stakeholder="dso")[1])


def test_supplier_switch_gives_each_retailer_its_own_period(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    site = "c00000"
    assert sim.supplier[site] == "r01"
    _switch(api, site, "r02", _at(sim, 12))
    r01, r02 = _retailer(api, sim, "r01"), _retailer(api, sim, "r02")
    old = _lines(_read(r01, "billing", "b-old", **_period(sim), sites=[site]))[site]
    assert [(w["from"], w["to"]) for w in old["windows"]] == [
        (_at(sim, 0).isoformat(), _at(sim, 12).isoformat())
    ]
    assert old["readings"] == 12 and old["energy"] == pytest.approx(11 * _inc(site))
    new = _lines(_read(r02, "billing", "b-new", **_period(sim), sites=[site]))[site]
    assert [(w["from"], w["to"]) for w in new["windows"]] == [
        (_at(sim, 12).isoformat(), _at(sim, 24).isoformat())
    ]
    assert new["readings"] == 12 and new["energy"] == pytest.approx(11 * _inc(site))
    # profiles: each retailer only the quarter-hours of its own period
    old_points = _lines(_read(r01, "profiles", "p-old", **_period(sim), sites=[site]))[site]
    new_points = _lines(_read(r02, "profiles", "p-new", **_period(sim), sites=[site]))[site]
    assert old_points["points"] and new_points["points"]
    assert all(datetime.fromisoformat(p["ts"]) < _at(sim, 12) for p in old_points["points"])
    assert all(datetime.fromisoformat(p["ts"]) >= _at(sim, 12) for p in new_points["points"])
    # the new retailer has nothing before the switch; the old one nothing after
    assert _read(r02, "billing", "b-before", **_period(sim, 0, 12), sites=[site]).status_code == 403
    assert (
        _read(r01, "profiles", "p-after", **_period(sim, 12, 24), sites=[site]).status_code == 403
    )
    # without a site list the old retailer gets the client for its period only
    everyone = _lines(_read(r01, "billing", "b-all", **_period(sim, 12, 24)))
    assert site not in everyone and set(everyone) == {
        s for s, r in sim.supplier.items() if r == "r01" and s != site
    }
    # routing now: the client's DSO requests go to its new retailer only
    dso = _dso(api, hub)
    now = datetime.now(UTC)
    resp = dso.post(
        f"{MARKET}/load-reductions",
        json={
            "area": {"sites": [site]},
            "from": (now + timedelta(minutes=10)).isoformat(),
            "to": (now + timedelta(minutes=40)).isoformat(),
        },
        headers={"Idempotency-Key": "lr-switch"},
    )
    assert resp.status_code == 201, resp.text
    req = _wait(dso, resp.json()["id"])
    assert [d["retailer"] for d in req["deliveries"]] == ["r02"]
    for p in sim.platforms:
        clients = {c for e in p.events() for c in e.body["clients"]}
        assert (site in clients) == (p.retailer == "r02"), p.retailer


def test_retailer_without_a_running_contract_gets_nothing(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    # r03: a retailer stakeholder with a registered platform and a token, but no contract
    made = api.admin.post(
        f"/api/v1/tenants/{T}/stakeholders", json={"id": "r03", "kind": "retailer"}
    )
    assert made.status_code == 201, made.text
    platform = RetailerPlatform("r03", delay=(0.0, 0.001), hub_url=api.url)
    url = platform.start()
    try:
        record = api.admin.put(f"{MARKET}/retailers/r03", json={"webhook_url": url}).json()
        platform.secret, platform.token = record["webhook_secret"], record["token"]
        r03 = api.client(record["token"])
        for what in ("billing", "profiles"):
            assert _lines(_read(r03, what, f"{what}-all", **_period(sim))) == {}
            refused = _read(r03, what, f"{what}-one", **_period(sim), sites=["c00000"])
            assert refused.status_code == 403 and "not a client" in refused.json()["detail"]
        # a whole-area load reduction reaches r01 and r02 only; r03 can neither see nor answer
        dso = _dso(api, hub)
        now = datetime.now(UTC)
        resp = dso.post(
            f"{MARKET}/load-reductions",
            json={
                "area": {"sites": sim.sites},
                "from": (now + timedelta(minutes=10)).isoformat(),
                "to": (now + timedelta(minutes=40)).isoformat(),
            },
            headers={"Idempotency-Key": "lr-all"},
        )
        req = _wait(dso, resp.json()["id"])
        assert sorted(d["retailer"] for d in req["deliveries"]) == ["r01", "r02"]
        assert platform.events() == []
        answer = r03.post(
            f"{MARKET}/load-reductions/{req['id']}/availability", json={"available": ["c00000"]}
        )
        assert answer.status_code == 404
        assert r03.get(f"{MARKET}/requests/{req['id']}").status_code == 404
    finally:
        platform.stop()
    # a retailer token that acts for no stakeholder reads nothing, even of real clients
    legacy = api.client(hub.tokens.create(T, "retailer", "legacy retailer token")[1])
    refused = _read(legacy, "billing", "legacy", **_period(sim), sites=["c00000"])
    assert refused.status_code == 403 and "no stakeholder" in refused.json()["detail"]
    # a platform is registered only for a retailer stakeholder
    ghost = api.admin.put(f"{MARKET}/retailers/ghost", json={"webhook_url": url})
    assert ghost.status_code == 404
    customer = api.admin.put(f"{MARKET}/retailers/cust-c00000", json={"webhook_url": url})
    assert customer.status_code == 404
    # reading another identifier than the retailer's consumption defaults is refused
    voltage = _read(
        _retailer(api, sim, "r01"),
        "billing",
        "volts",
        **_period(sim),
        sites=["c00000"],
        identifier="electricity.voltage.rms.l1",
    )
    assert voltage.status_code == 403, voltage.text


def _policy(api: Api, site: str, grantee: str, **rights: Any) -> None:
    resp = api.admin.post(
        f"/api/v1/tenants/{T}/policies",
        json={"grantee": grantee, "site": site, "identifier": ENERGY_IDENTIFIER, **rights},
    )
    assert resp.status_code == 201, resp.text


def test_owner_policies_and_read_delays_apply_to_market_reads(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    r01, r02 = _retailer(api, sim, "r01"), _retailer(api, sim, "r02")
    # c00002 (r01's) stops letting r01 read its energy from 06:00: the rest is clipped away
    _policy(api, "c00002", "r01", read=False, valid_from=_at(sim, 6).isoformat())
    line = _lines(_read(r01, "billing", "pol-1", **_period(sim), sites=["c00002"]))["c00002"]
    assert [(w["from"], w["to"]) for w in line["windows"]] == [
        (_at(sim, 0).isoformat(), _at(sim, 6).isoformat())
    ]
    assert line["energy"] == pytest.approx(5 * _inc("c00002"))
    points = _lines(_read(r01, "profiles", "pol-2", **_period(sim), sites=["c00002"]))
    assert all(datetime.fromisoformat(p["ts"]) < _at(sim, 6) for p in points["c00002"]["points"])
    # c00004 (r01's) refuses r01 altogether: by name a 403, in "all my clients" left out
    _policy(api, "c00004", "r01", read=False, valid_from=_at(sim, -48).isoformat())
    refused = _read(r01, "billing", "pol-3", **_period(sim), sites=["c00004"])
    assert refused.status_code == 403 and "policy" in refused.json()["detail"]
    assert "c00004" not in _lines(_read(r01, "billing", "pol-4", **_period(sim)))
    # minimum delay between reads (r02's clients c00001, c00003): all of a request or nothing
    for site in ("c00001", "c00003"):
        _policy(api, site, "r02", read=True, min_delay_s=3600, valid_from=_at(sim, -48).isoformat())
    assert _read(r02, "billing", "rate-1", **_period(sim), sites=["c00001"]).status_code == 201
    limited = _read(r02, "billing", "rate-2", **_period(sim), sites=["c00003", "c00001"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 3000
    # the refused request counted nothing: c00003 alone is read at once
    assert _read(r02, "profiles", "rate-3", **_period(sim), sites=["c00003"]).status_code == 201
    # the series API shares the budget, and repeating a stored request reads nothing anew
    series = r02.get(
        f"/api/v1/tenants/{T}/devices/c00001-meter/series",
        params={"identifier": ENERGY_IDENTIFIER, **_period(sim)},
    )
    assert series.status_code == 429
    again = _read(r02, "billing", "rate-1", **_period(sim), sites=["c00001"])
    assert again.status_code == 200 and again.json()["repeated"]


def test_market_reads_are_audited_and_hidden_from_the_dso(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    r01 = _retailer(api, sim, "r01")
    made = _read(r01, "billing", "audited", **_period(sim), sites=["c00000", "c00002"])
    assert made.status_code == 201
    rid = made.json()["id"]

    def entries() -> list[dict[str, Any]]:
        resp = api.admin.get(
            f"/api/v1/tenants/{T}/audit", params={"stakeholder": "r01", "action": "read"}
        )
        return list(resp.json())

    wait_for(lambda: len(entries()) >= 2, what="audit entries")
    found = entries()
    service = [e for e in found if e["target"].startswith(f"market billing {rid}")]
    assert len(service) == 1 and "c00000,c00002" in service[0]["detail"]
    assert any(e["target"] == f"POST {MARKET}/billing" and e["result"] == "201" for e in found)
    # the DSO follows the request but does not read the clients' consumption in it
    seen = _dso(api, hub).get(f"{MARKET}/requests/{rid}")
    assert seen.status_code == 200 and seen.json()["result"] is None
    assert api.admin.get(f"{MARKET}/requests/{rid}").json()["result"]["clients"]
    assert _retailer(api, sim, "r02").get(f"{MARKET}/requests/{rid}").status_code == 404


def test_a_switch_stops_pending_deliveries_and_offers(
    api: Api, hub: Hub, sim: MarketSimulation
) -> None:
    dso = _dso(api, hub)
    r01 = next(p for p in sim.platforms if p.retailer == "r01")
    r01.fail_first = 1_000  # r01's platform is down: its delivery is retried
    site = "c00000"
    resp = dso.post(
        f"{MARKET}/emergencies",
        json={
            "area": {"sites": [site]},
            "starts_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
        },
        headers={"Idempotency-Key": "em-pending"},
    )
    assert resp.status_code == 201, resp.text
    # the customer switches to r02 while r01's notice is still pending: it is never sent again
    _switch(api, site, "r02", datetime.now(UTC))
    req = _wait(dso, resp.json()["id"])
    (delivery,) = req["deliveries"]
    assert delivery["retailer"] == "r01" and delivery["status"] == "failed"
    assert "no longer supplies" in delivery["last_error"]
    assert delivery["attempts"] < hub.settings.market_webhook_attempts
    assert req["status"] == "partial" and r01.events() == []
    # an offer made through the old retailer does not stand after a switch
    r01.fail_first = 0
    now = datetime.now(UTC)
    offered_site = "c00002"  # r01's; r01's platform offers half of what it is asked (≥ 1)
    resp = dso.post(
        f"{MARKET}/load-reductions",
        json={
            "area": {"sites": [offered_site]},
            "from": (now + timedelta(minutes=10)).isoformat(),
            "to": (now + timedelta(minutes=40)).isoformat(),
        },
        headers={"Idempotency-Key": "lr-offer"},
    )
    lr = _wait(dso, resp.json()["id"])
    assert lr["availability"]["r01"]["available"] == [offered_site]
    _switch(api, offered_site, "r02", datetime.now(UTC))
    cut = dso.post(
        f"{MARKET}/load-reductions/{lr['id']}/disconnections",
        json={"sites": [offered_site], "duration_s": 600},
        headers={"Idempotency-Key": "cut-after-switch"},
    )
    assert cut.status_code == 409 and "changed supplier" in cut.json()["detail"]
    assert [e.event for e in r01.events()] == ["load_reduction.availability_requested"]
