"""The HTTP API on a real server: auth, isolation, ingest with every rejection, queries."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"
BRUSSELS = ZoneInfo("Europe/Brussels")


def measurement(device: str, values: dict[str, object], when: str | None) -> dict[str, object]:
    request: dict[str, object] = {"measurements": values, "updateState": True}
    if when is not None:
        request["eventDate"] = when
    return {"hardwareId": device, "type": "DeviceMeasurements", "request": request}


def day_of_quarters(device: str, day: date, zone: ZoneInfo = BRUSSELS) -> list[dict[str, object]]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(ZoneInfo("UTC"))
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(
        ZoneInfo("UTC")
    )
    out, ts, i = [], start, 0
    while ts < end:
        out.append(measurement(device, {P: 0.1 * i}, ts.isoformat()))
        ts += timedelta(minutes=15)
        i += 1
    return out


def test_health_needs_no_token_and_api_does(api: Api) -> None:
    anonymous = api.client("")
    anonymous.headers.pop("Authorization")
    assert anonymous.get("/health").json() == {"status": "ok"}
    assert anonymous.get("/ready").status_code == 200
    for path in ("/api/v1/tenants", "/api/v1/tenants/x/devices"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.client("gh_forged_token").get("/api/v1/tenants").status_code == 401


def test_openapi_documents_the_routes(api: Api) -> None:
    paths = api.admin.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/tenants/{tenant}/events",
        "/api/v1/tenants/{tenant}/devices/{device}/series",
        "/api/v1/tenants/{tenant}/devices/{device}/state",
        "/api/v1/tenants/{tenant}/alerts",
    ):
        assert path in paths


def test_ingest_then_query_a_day_of_96_quarter_hours(hub: Hub, api: Api) -> None:
    token = seed_tenant(hub)
    client = api.client(token)
    day = date(2026, 11, 20)
    response = client.post(
        "/api/v1/tenants/linear/events", json=day_of_quarters("hh001-meter", day)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 96, "readings": 96, "rejected": []}
    series = client.get(
        "/api/v1/tenants/linear/devices/hh001-meter/series",
        params={"identifier": P, "day": "2026-11-20", "resolution": "15m", "function": "avg"},
    ).json()
    assert series["count"] == 96 and series["unit"] == "kW"
    assert series["points"][0]["ts"] == "2026-11-20T00:00:00+01:00"
    assert series["points"][95]["value"] == pytest.approx(9.5)
    daily = client.get(
        "/api/v1/tenants/linear/devices/hh001-meter/series",
        params={
            "identifier": P,
            "from": "2026-11-19T00:00:00+01:00",
            "to": "2026-11-22T00:00:00+01:00",
            "resolution": "1d",
            "function": "sum",
        },
    ).json()
    assert [p["value"] for p in daily["points"]] == [pytest.approx(sum(0.1 * i for i in range(96)))]
    state = client.get("/api/v1/tenants/linear/devices/hh001-meter/state").json()
    assert state[0]["identifier"] == P and state[0]["value"] == pytest.approx(9.5)


@pytest.mark.parametrize(("day", "quarters"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_dst_days_have_92_or_100_quarter_hours(
    hub: Hub, api: Api, day: date, quarters: int
) -> None:
    client = api.client(seed_tenant(hub))
    messages = day_of_quarters("hh001-meter", day)
    assert client.post("/api/v1/tenants/linear/events", json=messages).status_code == 200
    series = client.get(
        "/api/v1/tenants/linear/devices/hh001-meter/series",
        params={"identifier": P, "day": day.isoformat(), "resolution": "15m", "function": "sum"},
    ).json()
    assert series["count"] == quarters == len(messages)


REJECTIONS = [
    (
        b'{"hardwareId": "hh001-meter", "type": "DeviceMeasurements", "request": ',
        "malformed_json",
        400,
    ),
    (
        json.dumps(measurement("hh001-meter", {"electricity.nope": 1}, None)),
        "unknown_identifier",
        422,
    ),
    (json.dumps(measurement("hh001-meter", {P: "12"}, None)), "wrong_value_type", 422),
    (
        json.dumps(measurement("hh001-meter", {P: 1}, None)).replace("1}", "1e999}"),
        "non_finite_value",
        422,
    ),
    (json.dumps(measurement("hh001-meter", {P: 1}, "2026-02-30T00:00:00Z")), "bad_date", 422),
    (json.dumps(measurement("hh001-meter", {P: 1}, "2026-11-20T10:00:00")), "missing_offset", 422),
    (json.dumps(measurement("hh999-meter", {P: 1}, None)), "unknown_device", 422),
    (
        json.dumps(measurement("hh001-meter", {P: 1, "x": "y" * 70_000}, None)),
        "oversized_payload",
        413,
    ),
]


@pytest.mark.parametrize(("body", "reason", "status"), REJECTIONS, ids=[r[1] for r in REJECTIONS])
def test_each_rejection_reason_is_answered_and_dead_lettered(
    hub: Hub, api: Api, body: str | bytes, reason: str, status: int
) -> None:
    client = api.client(seed_tenant(hub))
    raw = body.encode() if isinstance(body, str) else body
    response = client.post("/api/v1/tenants/linear/events", content=raw)
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    letters = client.get("/api/v1/tenants/linear/deadletters").json()
    assert [d["reason"] for d in letters] == [reason]
    assert letters[0]["source"] == "http"
    assert letters[0]["raw"].encode() == raw[: hub.settings.max_message_bytes]


def test_oversized_body_is_cut_and_kept(hub: Hub, api: Api) -> None:
    hub.settings.max_request_bytes = 4096
    client = api.client(seed_tenant(hub))
    body = json.dumps([measurement("hh001-meter", {P: i}, None) for i in range(200)])
    response = client.post("/api/v1/tenants/linear/events", content=body)
    assert response.status_code == 413 and response.json()["reason"] == "oversized_payload"
    letters = client.get("/api/v1/tenants/linear/deadletters").json()
    assert letters[0]["reason"] == "oversized_payload"
    assert letters[0]["raw"] == body[:4096]  # the head is kept, cut at the request limit


def test_batch_with_bad_messages_keeps_the_good_ones(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    good = measurement("hh001-meter", {P: 1}, "2026-11-20T10:00:00+01:00")
    batch = [good, measurement("ghost", {P: 1}, None), {"hardwareId": "hh001-meter"}]
    response = client.post("/api/v1/tenants/linear/events", json=batch)
    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == [
        (1, "unknown_device"),
        (2, "invalid_message"),
    ]
    # resending the whole batch stores nothing twice
    client.post("/api/v1/tenants/linear/events", json=batch)
    raw = client.get(
        "/api/v1/tenants/linear/devices/hh001-meter/series",
        params={"identifier": P, "day": "2026-11-20"},
    ).json()
    assert raw["count"] == 1
    assert hub.pipeline.metrics.duplicate_readings == 1


def test_auto_register_policy(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    message = measurement("new-plug-7", {P: 0.2}, None)
    assert client.post("/api/v1/tenants/linear/events", json=message).status_code == 422
    response = client.patch("/api/v1/tenants/linear", json={"unknown_devices": "auto_register"})
    assert response.status_code == 200
    assert client.post("/api/v1/tenants/linear/events", json=message).status_code == 200
    devices = {d["hardware_id"] for d in client.get("/api/v1/tenants/linear/devices").json()}
    assert "new-plug-7" in devices


def test_no_endpoint_returns_another_tenants_data(hub: Hub, api: Api) -> None:
    """Two tenants with the same hardwareId: each token sees only its own."""
    token_a = seed_tenant(hub, "alpha")
    token_b = seed_tenant(hub, "beta")
    a, b = api.client(token_a), api.client(token_b)
    a.post(
        "/api/v1/tenants/alpha/events",
        json=measurement("hh001-meter", {P: 1.0}, "2026-11-20T10:00:00Z"),
    )
    b.post(
        "/api/v1/tenants/beta/events",
        json=measurement("hh001-meter", {P: 2.0}, "2026-11-20T10:00:00Z"),
    )
    a.post("/api/v1/tenants/alpha/events", content=b"{oops")
    params = {"identifier": P, "day": "2026-11-20"}
    own = a.get("/api/v1/tenants/alpha/devices/hh001-meter/series", params=params).json()
    assert [p["value"] for p in own["points"]] == [1.0]
    paths = [
        "/api/v1/tenants/beta",
        "/api/v1/tenants/beta/devices",
        "/api/v1/tenants/beta/sites",
        "/api/v1/tenants/beta/identifiers",
        "/api/v1/tenants/beta/alerts",
        "/api/v1/tenants/beta/deadletters",
        "/api/v1/tenants/beta/tokens",
        "/api/v1/tenants/beta/devices/hh001-meter/state",
        "/api/v1/tenants/beta/devices/hh001-meter/series?identifier=" + P + "&day=2026-11-20",
    ]
    for path in paths:
        assert a.get(path).status_code == 403, path
    assert (
        a.post(
            "/api/v1/tenants/beta/events", json=measurement("hh001-meter", {P: 9}, None)
        ).status_code
        == 403
    )
    assert [t["id"] for t in a.get("/api/v1/tenants").json()] == ["alpha"]
    assert b.get("/api/v1/tenants/beta/deadletters").json() == []
    assert a.post("/api/v1/tenants", json={"id": "gamma"}).status_code == 403


def test_revoked_token_is_refused(hub: Hub, api: Api) -> None:
    seed_tenant(hub)
    created = api.admin.post("/api/v1/tenants/linear/tokens", json={"role": "researcher"}).json()
    client = api.client(created["token"])
    assert client.get("/api/v1/tenants/linear/devices").status_code == 200
    api.admin.delete(f"/api/v1/tenants/linear/tokens/{created['id']}")
    assert client.get("/api/v1/tenants/linear/devices").status_code == 401
    listed = api.admin.get("/api/v1/tenants/linear/tokens").json()
    assert all("token" not in t for t in listed)


def test_registry_over_the_api(api: Api) -> None:
    admin = api.admin
    response = admin.post("/api/v1/tenants", json={"id": "pilot", "timezone": "Europe/Rome"})
    assert response.status_code == 201
    assert admin.post("/api/v1/tenants", json={"id": "pilot"}).status_code == 409
    assert (
        admin.post("/api/v1/tenants", json={"id": "x", "timezone": "Mars/Base"}).status_code == 422
    )
    ident = admin.post(
        "/api/v1/tenants/pilot/identifiers", json={"name": "boiler.stateOfCharge", "unit": "%"}
    )
    assert ident.status_code == 201
    csv_text = (
        "hardwareId,deviceType,site,location,pilotPhase,experiment,applianceTypes,hasPv\n"
        "to-001-meter,smart-meter,to-001,Torino,phase-1,tou,washing_machine|boiler,yes\n"
        "to-001-plug,smart-plug,to-001,Torino,phase-1,tou,washing_machine|boiler,yes\n"
    )
    dry = admin.post("/api/v1/tenants/pilot/devices/import?dry_run=true", content=csv_text)
    assert dry.json() == {"sites": 1, "devices": 2, "errors": [], "dry_run": True}
    assert admin.get("/api/v1/tenants/pilot/devices").json() == []
    done = admin.post("/api/v1/tenants/pilot/devices/import", content=csv_text)
    assert done.status_code == 200 and done.json()["dry_run"] is False
    sites = admin.get("/api/v1/tenants/pilot/sites").json()
    assert sites[0]["has_pv"] is True and sites[0]["location"] == "Torino"
    bad = admin.post(
        "/api/v1/tenants/pilot/devices/import", content="hardwareId,deviceType\nx/y,meter\n"
    )
    assert bad.status_code == 422 and bad.json()["errors"]


def test_alerts_by_device_level_and_time(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub, devices=("hh001-meter", "hh002-meter")))
    alerts = [
        {
            "hardwareId": "hh001-meter",
            "type": "DeviceAlert",
            "request": {
                "type": "last.gasp",
                "level": "Critical",
                "message": "power lost",
                "eventDate": "2026-11-20T10:00:00+01:00",
                "metadata": {"phase": "l1"},
            },
        },
        {
            "hardwareId": "hh002-meter",
            "type": "DeviceAlert",
            "request": {
                "type": "maximum.power.approaching",
                "level": "Warning",
                "eventDate": "2026-11-20T11:00:00+01:00",
            },
        },
        {
            "hardwareId": "hh002-meter",
            "type": "Acknowledge",
            "request": {"originatingEventId": "inv-1", "response": "ok"},
        },
    ]
    assert client.post("/api/v1/tenants/linear/events", json=alerts).status_code == 200
    everything = client.get("/api/v1/tenants/linear/alerts").json()
    assert [a["type"] for a in everything] == ["maximum.power.approaching", "last.gasp"]
    critical = client.get("/api/v1/tenants/linear/alerts", params={"level": "Critical"}).json()
    assert critical[0]["device"] == "hh001-meter" and '"phase"' in critical[0]["metadata"]
    later = client.get(
        "/api/v1/tenants/linear/alerts", params={"from": "2026-11-20T10:30:00+01:00"}
    ).json()
    assert [a["device"] for a in later] == ["hh002-meter"]
    # a '+' that was not URL-encoded arrives as a space: still understood
    spaced = client.get("/api/v1/tenants/linear/alerts?from=2026-11-20T10:30:00+01:00").json()
    assert [a["device"] for a in spaced] == ["hh002-meter"]
    assert hub.pipeline.metrics.acks_stored == 1


def test_query_errors_are_4xx_not_5xx(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    base = "/api/v1/tenants/linear/devices/hh001-meter/series"
    for params in (
        {"identifier": P},
        {"identifier": P, "from": "2026-11-20T00:00:00"},
        {"identifier": P, "from": "2026-11-20T00:00:00Z", "to": "2026-11-19T00:00:00Z"},
        {"identifier": P, "day": "2026-11-20", "from": "2026-11-20T00:00:00Z"},
        {"identifier": P, "day": "2026-11-20", "resolution": "5m"},
        {"identifier": P, "day": "not-a-day"},
    ):
        response = client.get(base, params=params)
        assert response.status_code == 422, (params, response.text)
    assert (
        client.get(base, params={"identifier": "no.such", "day": "2026-11-20"}).status_code == 404
    )
    assert client.get("/api/v1/tenants/linear/devices/ghost/state").status_code == 404


def test_only_admin_and_device_tokens_may_send_data(hub: Hub, api: Api) -> None:
    seed_tenant(hub)
    message = measurement("hh001-meter", {P: 1.0}, "2026-11-20T10:00:00Z")
    for role, status in (("researcher", 403), ("retailer", 403), ("device", 200), ("admin", 200)):
        created = api.admin.post("/api/v1/tenants/linear/tokens", json={"role": role}).json()
        client = api.client(created["token"])
        assert client.post("/api/v1/tenants/linear/events", json=message).status_code == status
        response = client.post("/api/v1/tenants/linear/imports/csv", content="hardwareId,x\n")
        assert (response.status_code == 403) == (status == 403), role


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/tenants", {"id": "zz", "timezone": "America"}),
        ("POST", "/api/v1/tenants", {"id": "zz", "timezone": "x" * 5000}),
        ("POST", "/api/v1/tenants", {"id": "zz", "name": "n" * 5000}),
        ("POST", "/api/v1/tenants", {"id": "zz\n"}),
        ("GET", "/api/v1/tenants/linear/devices/hh001-meter/series?identifier=" + P
         + "&from=0001-01-01T00:00:00%2B14:00&to=2026-01-01T00:00:00Z", None),
        ("GET", "/api/v1/tenants/linear/devices/hh001-meter/series?identifier=" + P
         + "&from=2026-01-01T00:00:00Z&to=9999-12-31T23:59:59-14:00", None),
        ("GET", "/api/v1/tenants/linear/devices/hh001-meter/series?identifier=" + P
         + "&day=9999-12-31", None),
        ("GET", "/api/v1/tenants/linear/alerts?from=0001-01-01T00:00:00%2B14:00", None),
        ("POST", "/api/v1/tenants/linear/imports/csv?timezone=America",
         "hardwareId,identifier,timestamp,value\nhh001-meter," + P + ",2026-01-01T00:00:00,1\n"),
        ("POST", "/api/v1/tenants/linear/devices", {"hardware_id": "hh002-meter\n"}),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_never_a_500(
    hub: Hub, api: Api, method: str, path: str, body: object
) -> None:
    seed_tenant(hub)
    kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
    response = api.admin.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_trailing_newline_is_not_a_second_device(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    client.patch("/api/v1/tenants/linear", json={"unknown_devices": "auto_register"})
    response = client.post("/api/v1/tenants/linear/events",
                           json=measurement("hh001-meter\n", {P: 1}, None))  # fmt: skip
    assert response.status_code == 422 and response.json()["reason"] == "invalid_message"
    assert [d["hardware_id"] for d in client.get("/api/v1/tenants/linear/devices").json()] == [
        "hh001-meter"
    ]


def test_writes_into_another_tenant_are_forbidden(hub: Hub, api: Api) -> None:
    a = api.client(seed_tenant(hub, "alpha"))
    seed_tenant(hub, "beta")
    writes = [
        ("POST", "/api/v1/tenants/beta/sites", {"id": "x1"}),
        ("POST", "/api/v1/tenants/beta/devices", {"hardware_id": "x1"}),
        ("POST", "/api/v1/tenants/beta/identifiers", {"name": "x.y", "unit": "u"}),
        ("POST", "/api/v1/tenants/beta/tokens", {"role": "admin"}),
        ("PATCH", "/api/v1/tenants/beta", {"unknown_devices": "auto_register"}),
        ("DELETE", "/api/v1/tenants/beta/tokens/abc", None),
        ("POST", "/api/v1/tenants/beta/devices/import", "hardwareId,deviceType\nx,y\n"),
        ("POST", "/api/v1/tenants/beta/imports/csv", "hardwareId,identifier,timestamp,value\n"),
    ]
    for method, path, body in writes:
        kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
        assert a.request(method, path, **kwargs).status_code == 403, path  # type: ignore[arg-type]
    assert api.admin.get("/api/v1/tenants/beta/devices").json()[0]["hardware_id"] == "hh001-meter"
    assert len(api.admin.get("/api/v1/tenants/beta/devices").json()) == 1


def test_installation_admin_sees_unowned_dead_letters(hub: Hub, api: Api) -> None:
    from gridhub.domain.rejections import RejectReason
    from gridhub.ingest.validate import Envelope

    token = seed_tenant(hub)
    stray = Envelope("mqtt:gridhub/ghost/d/events", b"{}", "ghost", 0)
    bad_topic = Envelope("mqtt:other/topic", b"x", None, 0,
                         problem=(RejectReason.BAD_TOPIC, "not ours"))  # fmt: skip
    hub.pipeline.submit_and_wait([stray, bad_topic])
    unowned = api.admin.get("/api/v1/deadletters", params={"unowned": "true"}).json()
    assert sorted(d["reason"] for d in unowned) == ["bad_topic", "unknown_tenant"]
    assert api.client(token).get("/api/v1/deadletters").status_code == 403
    assert api.client(token).get("/api/v1/tenants/linear/deadletters").json() == []
