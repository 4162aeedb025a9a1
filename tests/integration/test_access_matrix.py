"""The authorization matrix on a real HTTP server (issue #4, "Done when").

Two tenants with the same hardwareIds; in tenant ``alpha`` every kind of caller; every read
endpoint; targets: own data, another owner's in the same tenant, another tenant's, and data
outside an (expired) contract. Where access is not granted no answer may be a 2xx; where it is,
the answer must be a 2xx holding only what is granted. Forged, expired and revoked tokens: 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gridhub.domain.access import Kind
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import Hub
from helpers import Api, wait_for

pytestmark = pytest.mark.integration

CONSUMED = "electricity.power.active.consumed.total"
VOLTAGE = "electricity.voltage.rms.l1"
DAY = "2026-11-20"
WHEN = "2026-11-20T10:00:00Z"
TENANTS = ("alpha", "beta")
DEVICES = ("hh001-meter", "hh002-meter")  # hh001 is alice's, hh002 bob's — in both tenants


def _messages(device: str, value: float) -> list[dict[str, object]]:
    return [
        {
            "hardwareId": device,
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {CONSUMED: value, VOLTAGE: 230.0 + value},
                "eventDate": WHEN,
                "updateState": True,
            },
        },
        {
            "hardwareId": device,
            "type": "DeviceAlert",
            "request": {"type": "last.gasp", "level": "Critical", "eventDate": WHEN},
        },
    ]


def build(hub: Hub, api: Api) -> dict[str, str]:
    """Both tenants with data; in alpha a token per kind of caller. Returns name -> secret."""
    d = hub.access.directory
    for n, tenant in enumerate(TENANTS):
        hub.registry.create_tenant(Tenant(tenant, tenant, "Europe/Brussels"))
        hub.registry.register_sites([Site(tenant, "hh001"), Site(tenant, "hh002")])
        hub.registry.register_devices(
            [Device(tenant, dev, "smart-meter", dev.split("-")[0]) for dev in DEVICES]
        )
        d.create_stakeholder(tenant, "alice", Kind.CUSTOMER, site="hh001")
        d.create_stakeholder(tenant, "bob", Kind.CUSTOMER, site="hh002")
        for sid, kind in (
            ("r-now", Kind.RETAILER),
            ("r-old", Kind.RETAILER),
            ("dso", Kind.DSO),
            ("uni", Kind.RESEARCHER),
            ("esco", Kind.ESCO),
            ("agg", Kind.AGGREGATOR),
        ):
            d.create_stakeholder(tenant, sid, kind)
        # r-old supplied alice until the end of 2025; r-now since; r-now also supplies bob in
        # the *other* tenant only (so a same-named stakeholder there must not open alpha)
        d.create_contract(tenant, "alice", "r-old", _t(2025, 1, 1), _t(2026, 1, 1))
        d.create_contract(tenant, "alice", "r-now", _t(2026, 1, 1))
        d.create_contract(tenant, "alice", "agg", _t(2026, 6, 1), _t(2027, 1, 1))
        if tenant == "beta":
            d.create_contract(tenant, "bob", "r-now", _t(2026, 1, 1))
        device_token = hub.tokens.create(tenant, "device", "gateway")[1]
        gateway = api.client(device_token)
        for dev in DEVICES:
            sent = gateway.post(f"/api/v1/tenants/{tenant}/events", json=_messages(dev, n + 1))
            assert sent.status_code == 200, sent.text
        gateway.post(f"/api/v1/tenants/{tenant}/events", content=b"{oops")  # a dead letter
    tokens = {
        "installation-admin": hub.admin_secret or "",
        "tenant-admin": hub.tokens.create("alpha", "admin", "alpha admin")[1],
        "device": hub.tokens.create("alpha", "device", "meter")[1],
        "no-stakeholder": hub.tokens.create("alpha", "researcher", "legacy")[1],
    }
    for sid in ("alice", "r-now", "r-old", "dso", "uni", "esco", "agg"):
        kind = d.stakeholder("alpha", sid).kind.value
        tokens[sid] = hub.tokens.create("alpha", kind, sid, stakeholder=sid)[1]
    return tokens


def _t(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # {t} tenant, {d} device
    params: dict[str, str]


ENDPOINTS = (
    Endpoint("series-consumption", "/api/v1/tenants/{t}/devices/{d}/series",
             {"identifier": CONSUMED, "day": DAY}),
    Endpoint("series-consumption-15m", "/api/v1/tenants/{t}/devices/{d}/series",
             {"identifier": CONSUMED, "day": DAY, "resolution": "15m", "function": "sum"}),
    Endpoint("series-voltage", "/api/v1/tenants/{t}/devices/{d}/series",
             {"identifier": VOLTAGE, "day": DAY}),
    Endpoint("state", "/api/v1/tenants/{t}/devices/{d}/state", {}),
    Endpoint("alerts-of-device", "/api/v1/tenants/{t}/alerts", {"device": "{d}"}),
    Endpoint("deadletters", "/api/v1/tenants/{t}/deadletters", {}),
)  # fmt: skip

# Who is granted what in alpha (any tenant for the installation admin), by endpoint; the
# device is hh001-meter (alice's) unless the entry says otherwise. Everything not listed: no.
GRANTED: dict[str, set[tuple[str, str]]] = {
    "installation-admin": {(e.name, dev) for e in ENDPOINTS for dev in DEVICES},
    "tenant-admin": {(e.name, dev) for e in ENDPOINTS for dev in DEVICES},
    "alice": {(e, "hh001-meter") for e in
              ("series-consumption", "series-consumption-15m", "series-voltage", "state",
               "alerts-of-device")},
    "r-now": {("series-consumption", "hh001-meter"), ("series-consumption-15m", "hh001-meter"),
              ("state", "hh001-meter")},
    "agg": {("series-consumption", "hh001-meter"), ("series-consumption-15m", "hh001-meter"),
            ("state", "hh001-meter")},
    "r-old": set(),  # its contract ended before the data
    "dso": {(e, dev) for dev in DEVICES for e in ("series-voltage", "state", "alerts-of-device")},
    "uni": set(),  # a researcher reads what a policy grants: none here
    "esco": set(),  # no contract
    "device": set(),
    "no-stakeholder": set(),
}  # fmt: skip
# what a granted latest-state answer may contain
STATE_IDENTIFIERS = {"r-now": {CONSUMED}, "agg": {CONSUMED}, "dso": {VOLTAGE}}


def _request(client: httpx.Client, endpoint: Endpoint, tenant: str, device: str) -> httpx.Response:
    params = {k: v.replace("{d}", device) for k, v in endpoint.params.items()}
    return client.get(endpoint.path.format(t=tenant, d=device), params=params)


def test_authorization_matrix(hub: Hub, api: Api) -> None:
    tokens = build(hub, api)
    wrong: list[str] = []
    checked = 0
    for caller, secret in tokens.items():
        client = api.client(secret)
        for endpoint in ENDPOINTS:
            for tenant in TENANTS:
                for device in DEVICES:
                    granted = (endpoint.name, device) in GRANTED[caller] and (
                        tenant == "alpha" or caller == "installation-admin"
                    )
                    response = _request(client, endpoint, tenant, device)
                    checked += 1
                    ok = 200 <= response.status_code < 300
                    case = f"{caller} {endpoint.name} {tenant}/{device}: {response.status_code}"
                    if ok != granted:
                        wrong.append(f"{case} (granted={granted}) {response.text[:200]}")
                    elif not ok and response.status_code not in (403, 404):
                        wrong.append(f"{case}: refusal should be 403/404")
                    elif ok:
                        wrong += _content_problems(caller, endpoint, tenant, device, response)
    assert checked == len(tokens) * len(ENDPOINTS) * len(TENANTS) * len(DEVICES)
    assert not wrong, "\n".join(wrong)


def _content_problems(
    caller: str, endpoint: Endpoint, tenant: str, device: str, response: httpx.Response
) -> list[str]:
    """A granted answer holds that tenant's and device's data, and only what is granted."""
    body = response.json()
    expected_value = TENANTS.index(tenant) + 1  # each tenant wrote its own values
    case = f"{caller} {endpoint.name} {tenant}/{device}"
    if endpoint.name.startswith("series"):
        values = [p["value"] for p in body["points"]]
        want = expected_value if "consumption" in endpoint.name else 230.0 + expected_value
        if values != [want]:
            return [f"{case}: points {values}, expected [{want}]"]
    if endpoint.name == "state":
        found = {s["identifier"] for s in body}
        allowed = STATE_IDENTIFIERS.get(caller, {CONSUMED, VOLTAGE})
        if not found or not found <= allowed:
            return [f"{case}: state shows {found}, allowed {allowed}"]
    if endpoint.name == "alerts-of-device" and {a["device"] for a in body} != {device}:
        return [f"{case}: alerts of {[a['device'] for a in body]}"]
    return []


def test_tenant_wide_alerts_show_only_granted_devices(hub: Hub, api: Api) -> None:
    tokens = build(hub, api)
    expect = {
        "tenant-admin": {"hh001-meter", "hh002-meter"},
        "alice": {"hh001-meter"},
        "dso": {"hh001-meter", "hh002-meter"},
        "r-now": set(),
        "agg": set(),
        "r-old": set(),
        "uni": set(),
    }
    for caller, devices in expect.items():
        client = api.client(tokens[caller])
        answer = client.get("/api/v1/tenants/alpha/alerts")
        assert answer.status_code == 200
        assert {a["device"] for a in answer.json()} == devices, caller
        assert client.get("/api/v1/tenants/beta/alerts").status_code == 403, caller


def test_forged_expired_and_revoked_tokens_get_401(hub: Hub, api: Api) -> None:
    tokens = build(hub, api)
    admin = api.client(tokens["tenant-admin"])
    created = admin.post(
        "/api/v1/tenants/alpha/tokens", json={"stakeholder": "alice", "name": "to revoke"}
    ).json()
    assert created["role"] == "customer" and created["stakeholder"] == "alice"
    revoked = api.client(created["token"])
    series = "/api/v1/tenants/alpha/devices/hh001-meter/series"
    params = {"identifier": CONSUMED, "day": DAY}
    assert revoked.get(series, params=params).status_code == 200
    assert admin.delete(f"/api/v1/tenants/alpha/tokens/{created['id']}").status_code == 200
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    expiring = admin.post(
        "/api/v1/tenants/alpha/tokens", json={"stakeholder": "alice", "expires": soon}
    ).json()
    expired = api.client(expiring["token"])
    wait_for(
        lambda: expired.get("/api/v1/tenants/alpha/devices").status_code == 401,
        what="the token to expire",
    )
    alice = tokens["alice"]
    forged = [
        "gh_forged_token",
        alice[:-1] + ("A" if alice[-1] != "A" else "B"),  # one character off
        alice.replace(alice.split("_")[1], "000000000000", 1),  # right secret, wrong id
        "gh_" + "x" * 5000,
    ]
    anonymous = api.client("")
    anonymous.headers.pop("Authorization")
    callers = [revoked, expired, anonymous, *(api.client(f) for f in forged)]
    for client in callers:
        for endpoint in ENDPOINTS:
            response = _request(client, endpoint, "alpha", "hh001-meter")
            assert response.status_code == 401, (endpoint.name, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert admin.post(
        "/api/v1/tenants/alpha/tokens",
        json={"stakeholder": "alice", "expires": "2020-01-01T00:00:00Z"},
    ).status_code == 422  # fmt: skip


def test_registry_listings_show_what_the_caller_may_read(hub: Hub, api: Api) -> None:
    tokens = build(hub, api)
    expect = {
        "installation-admin": set(DEVICES),
        "tenant-admin": set(DEVICES),
        "alice": {"hh001-meter"},
        "r-now": {"hh001-meter"},
        "agg": {"hh001-meter"},
        "dso": set(DEVICES),
        "r-old": set(),  # its contract has ended
        "uni": set(),
        "device": set(),
        "no-stakeholder": set(),
    }
    for caller, devices in expect.items():
        client = api.client(tokens[caller])
        listed = client.get("/api/v1/tenants/alpha/devices")
        assert listed.status_code == 200
        assert {d["hardware_id"] for d in listed.json()} == devices, caller
        sites = {s["id"] for s in client.get("/api/v1/tenants/alpha/sites").json()}
        assert sites == {d.split("-")[0] for d in devices}, caller
        if caller != "installation-admin":
            assert client.get("/api/v1/tenants/beta/devices").status_code == 403


# -- the market hub's reads (billing, consumption profiles) in the same world ---------------------

PERIODS = {
    "data-day": ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"),  # r-now's period, the data
    "old-period": ("2025-06-01T00:00:00Z", "2025-06-02T00:00:00Z"),  # r-old's period, no data
}
# (caller, site, period) granted in alpha; everything else must be refused
MARKET_GRANTED = {("r-now", "hh001", "data-day"), ("r-old", "hh001", "old-period")}


def test_market_reads_matrix(hub: Hub, api: Api) -> None:
    """Every caller × tenant × market read × site × period: a 2xx only for a retailer's own
    client inside its own contract period, holding only that client's readings."""
    tokens = build(hub, api)
    wrong: list[str] = []
    n = 0
    for caller, secret in tokens.items():
        client = api.client(secret)
        for tenant in TENANTS:
            for what in ("billing", "profiles"):
                for site in ("hh001", "hh002"):
                    for name, (lo, hi) in PERIODS.items():
                        n += 1
                        granted = tenant == "alpha" and (caller, site, name) in MARKET_GRANTED
                        resp = client.post(
                            f"/api/v1/tenants/{tenant}/market/{what}",
                            json={"from": lo, "to": hi, "sites": [site], "identifier": CONSUMED},
                            headers={"Idempotency-Key": f"{caller}-{tenant}-{what}-{site}-{name}"},
                        )
                        ok = 200 <= resp.status_code < 300
                        case = f"{caller} {what} {tenant}/{site} {name}: {resp.status_code}"
                        if ok != granted:
                            wrong.append(f"{case} (granted={granted}) {resp.text[:200]}")
                        elif not ok and resp.status_code not in (403, 404):
                            wrong.append(f"{case}: refusal should be 403/404")
                        elif ok:
                            lines = resp.json()["result"]["clients"]
                            if [line["site"] for line in lines] != [site]:
                                wrong.append(f"{case}: lines of {lines}")
                            if what == "billing":
                                want = 1 if name == "data-day" else 0
                                if lines[0]["readings"] != want:
                                    wrong.append(f"{case}: {lines[0]['readings']} readings")
    assert n == len(tokens) * len(TENANTS) * 2 * 2 * len(PERIODS)
    assert not wrong, "\n".join(wrong)


def test_a_market_request_shows_client_data_to_its_retailer_and_admins_only(
    hub: Hub, api: Api
) -> None:
    tokens = build(hub, api)
    lo, hi = PERIODS["data-day"]
    made = api.client(tokens["r-now"]).post(
        "/api/v1/tenants/alpha/market/billing",
        json={"from": lo, "to": hi, "identifier": CONSUMED, "idempotency_key": "all"},
    )
    assert made.status_code == 201, made.text
    assert [line["site"] for line in made.json()["result"]["clients"]] == ["hh001"]
    url = f"/api/v1/tenants/alpha/market/requests/{made.json()['id']}"
    for caller, secret in tokens.items():
        resp = api.client(secret).get(url)
        if caller in ("r-now", "tenant-admin", "installation-admin"):
            assert resp.status_code == 200 and resp.json()["result"]["clients"], caller
        elif caller == "dso":  # follows the request, without the data
            assert resp.status_code == 200 and resp.json()["result"] is None
        else:
            assert resp.status_code in (403, 404), (caller, resp.status_code)
