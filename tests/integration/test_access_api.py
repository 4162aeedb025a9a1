"""Access over the real HTTP API: stakeholders, contracts and supplier switches, versioned owner
policies, the read-rate limit (429 + Retry-After), the audit log, the token CLI, and persistence
across a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gridhub.hub import Hub, build_hub
from helpers import Api, make_settings, seed_tenant

pytestmark = pytest.mark.integration

P = "electricity.power.active.consumed.total"
V = "electricity.voltage.rms.l1"
SERIES = "/api/v1/tenants/linear/devices/hh001-meter/series"


def reading(when: datetime, value: float, ident: str = P) -> dict[str, object]:
    return {
        "hardwareId": "hh001-meter",
        "type": "DeviceMeasurements",
        "request": {"measurements": {ident: value}, "eventDate": when.isoformat()},
    }


def hours(start: datetime, n: int, step: timedelta = timedelta(hours=1)) -> list[datetime]:
    return [start + i * step for i in range(n)]


def setup(hub: Hub, api: Api) -> httpx.Client:
    """Tenant linear, customer alice on hh001, retailers r1 and r2, researcher uni."""
    admin = api.client(seed_tenant(hub))
    for body in (
        {"id": "alice", "kind": "customer", "site": "hh001"},
        {"id": "r1", "kind": "retailer", "name": "Retailer One"},
        {"id": "r2", "kind": "retailer"},
        {"id": "uni", "kind": "researcher"},
    ):
        response = admin.post("/api/v1/tenants/linear/stakeholders", json=body)
        assert response.status_code == 201, response.text
    return admin


def token(admin: httpx.Client, stakeholder: str, **extra: object) -> str:
    response = admin.post(
        "/api/v1/tenants/linear/tokens", json={"stakeholder": stakeholder, **extra}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def values(client: httpx.Client, start: str, end: str, **params: str) -> list[float]:
    response = client.get(SERIES, params={"identifier": P, "from": start, "to": end, **params})
    assert response.status_code == 200, response.text
    return [p["value"] for p in response.json()["points"]]


def test_supplier_switch_over_the_api(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    assert (
        admin.post(
            "/api/v1/tenants/linear/events",
            json=[reading(t, i) for i, t in enumerate(hours(t0, 8))],
        ).status_code
        == 200
    )
    contract = admin.post(
        "/api/v1/tenants/linear/contracts",
        json={"id": "c1", "customer": "alice", "supplier": "r1", "start": t0.isoformat()},
    )
    assert contract.status_code == 201, contract.text
    switch_at = t0 + timedelta(hours=4, minutes=30)  # inside an hour bucket on purpose
    switched = admin.post(
        "/api/v1/tenants/linear/contracts/switch",
        json={"customer": "alice", "supplier": "r2", "at": switch_at.isoformat(), "id": "c2"},
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["ended"]["end"].startswith("2026-11-20T04:30:00")
    r1, r2 = api.client(token(admin, "r1")), api.client(token(admin, "r2"))
    day = ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z")
    assert values(r1, *day) == [0, 1, 2, 3, 4]  # its own period stays visible
    assert values(r2, *day) == [5, 6, 7]  # the new one sees from the switch on
    # new data after the switch goes to r2 only
    late = t0 + timedelta(hours=9)
    admin.post("/api/v1/tenants/linear/events", json=[reading(late, 99)])
    assert (
        r1.get(
            SERIES,
            params={
                "identifier": P,
                "from": late.isoformat(),
                "to": (late + timedelta(hours=1)).isoformat(),
            },
        ).status_code
        == 403
    )
    assert values(r2, *day)[-1] == 99
    # aggregates never mix in the other retailer's values: the hour of the switch is left out
    hourly_r1 = values(r1, *day, resolution="1h", function="sum")
    hourly_r2 = values(r2, *day, resolution="1h", function="sum")
    assert hourly_r1 == [0, 1, 2, 3]
    assert hourly_r2 == [5, 6, 7, 99]
    # latest state: only a running contract sees it
    assert r1.get("/api/v1/tenants/linear/devices/hh001-meter/state").status_code == 403
    state = r2.get("/api/v1/tenants/linear/devices/hh001-meter/state")
    assert state.status_code == 200
    # a stakeholder lists its own contracts only
    assert [c["id"] for c in r1.get("/api/v1/tenants/linear/contracts").json()] == ["c1"]
    assert len(admin.get("/api/v1/tenants/linear/contracts").json()) == 2
    assert (
        admin.post(
            "/api/v1/tenants/linear/contracts/switch",
            json={"customer": "alice", "supplier": "r2", "at": late.isoformat()},
        ).status_code
        == 409
    )
    ended = admin.post("/api/v1/tenants/linear/contracts/c2/end", json={"at": late.isoformat()})
    assert ended.status_code == 200 and ended.json()["end"].startswith("2026-11-20T09:00:00")
    assert r2.get("/api/v1/tenants/linear/devices/hh001-meter/state").status_code == 403


def test_versioned_owner_policy(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    admin.post(
        "/api/v1/tenants/linear/events", json=[reading(t, i) for i, t in enumerate(hours(t0, 6))]
    )
    uni = api.client(token(admin, "uni"))
    day = ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z")
    assert (
        uni.get(SERIES, params={"identifier": P, "from": day[0], "to": day[1]}).status_code == 403
    )
    created = admin.post(
        "/api/v1/tenants/linear/policies",
        json={
            "id": "research",
            "grantee": "uni",
            "site": "hh001",
            "identifier": "electricity.*",
            "read": True,
            "valid_from": t0.isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    assert values(uni, *day) == [0, 1, 2, 3, 4, 5]
    # the owner withdraws reads from 02:00; the values written after that keep the new version
    change = admin.post(
        "/api/v1/tenants/linear/policies/research/versions",
        json={"read": False, "valid_from": (t0 + timedelta(hours=2)).isoformat()},
    )
    assert change.status_code == 201, change.text
    assert [v["version"] for v in change.json()["versions"]] == [1, 2]
    assert values(uni, *day) == [0, 1]  # a read spanning the change: each value under its own
    assert (
        uni.get(
            SERIES, params={"identifier": P, "from": "2026-11-20T03:00:00Z", "to": day[1]}
        ).status_code
        == 403
    )
    # the customer (owner) changes its own site's policies, from now on only
    alice = api.client(token(admin, "alice"))
    assert (
        alice.post(
            "/api/v1/tenants/linear/policies/research/versions",
            json={"read": True, "valid_from": t0.isoformat()},
        ).status_code
        == 422
    )
    assert (
        alice.post(
            "/api/v1/tenants/linear/policies/research/versions", json={"read": True}
        ).status_code
        == 201
    )
    # ... and not the policies of another site, nor may a retailer set any
    assert (
        alice.post(
            "/api/v1/tenants/linear/policies",
            json={"grantee": "uni", "site": "elsewhere", "read": True},
        ).status_code
        == 403
    )
    r1 = api.client(token(admin, "r1"))
    assert (
        r1.post(
            "/api/v1/tenants/linear/policies", json={"grantee": "r1", "site": "hh001", "read": True}
        ).status_code
        == 403
    )
    assert [p["id"] for p in uni.get("/api/v1/tenants/linear/policies").json()] == ["research"]
    assert r1.get("/api/v1/tenants/linear/policies").json() == []


def test_read_rate_limit_answers_429_with_retry_after(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    admin.post("/api/v1/tenants/linear/events", json=[reading(t0, 1.0)])
    admin.post(
        "/api/v1/tenants/linear/policies",
        json={
            "grantee": "uni",
            "identifier": P,
            "read": True,
            "min_delay_s": 3600,
            "valid_from": "2026-01-01T00:00:00Z",
        },
    )
    uni = api.client(token(admin, "uni"))
    params = {"identifier": P, "day": "2026-11-20"}
    assert uni.get(SERIES, params=params).status_code == 200
    again = uni.get(SERIES, params=params)
    assert again.status_code == 429, again.text
    assert again.json()["error"] == "RateLimited"
    assert 3500 <= int(again.headers["Retry-After"]) <= 3600
    # another token of the same stakeholder shares its budget; the tenant admin has none
    assert api.client(token(admin, "uni")).get(SERIES, params=params).status_code == 429
    for _ in range(3):
        assert admin.get(SERIES, params=params).status_code == 200


def test_audit_log_records_reads_writes_and_changes(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    batch = [reading(t, 1.0) for t in hours(t0, 50, timedelta(minutes=15))]
    assert admin.post("/api/v1/tenants/linear/events", json=batch).status_code == 200
    uni_token = admin.post("/api/v1/tenants/linear/tokens", json={"stakeholder": "uni"}).json()
    uni = api.client(uni_token["token"])
    assert uni.get(SERIES, params={"identifier": P, "day": "2026-11-20"}).status_code == 403
    admin.post("/api/v1/tenants/linear/policies", json={"id": "p1", "grantee": "uni", "read": True})
    admin.delete(f"/api/v1/tenants/linear/tokens/{uni_token['id']}")
    log = admin.get("/api/v1/tenants/linear/audit", params={"limit": 100})
    assert log.status_code == 200, log.text
    entries = log.json()
    by_action: dict[str, list[dict[str, object]]] = {}
    for e in entries:
        by_action.setdefault(str(e["action"]), []).append(e)
    writes = by_action["write"]
    assert len(writes) == 1 and writes[0]["result"] == "200"  # one entry per request
    denied = [e for e in by_action["read"] if e["stakeholder"] == "uni"]
    assert len(denied) == 1 and denied[0]["result"] == "403"
    assert denied[0]["actor"] == uni_token["id"] and "series" in str(denied[0]["target"])
    assert [e["result"] for e in by_action["policy"]] == ["201"]
    assert sorted(str(e["target"]).split()[0] for e in by_action["token"]) == ["DELETE", "POST"]
    assert len(by_action["stakeholder"]) == 4
    # filters
    only = admin.get(
        "/api/v1/tenants/linear/audit", params={"stakeholder": "uni", "result": "403"}
    ).json()
    assert [e["id"] for e in only] == [denied[0]["id"]]
    # the audit log is an admin's: a stakeholder's token cannot read it; another tenant's
    # admin neither; the installation admin sees every tenant's
    alice = api.client(token(admin, "alice"))
    assert alice.get("/api/v1/tenants/linear/audit").status_code == 403
    other = api.client(seed_tenant(hub, "other"))
    assert other.get("/api/v1/tenants/linear/audit").status_code == 403
    assert api.admin.get("/api/v1/audit", params={"action": "write"}).status_code == 200
    assert api.admin.get("/api/v1/tenants/linear/audit", params={"limit": 0}).status_code == 422


def test_stakeholder_disable_revokes_its_tokens(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    uni = api.client(token(admin, "uni"))
    assert uni.get("/api/v1/tenants/linear/devices").status_code == 200
    assert admin.delete("/api/v1/tenants/linear/stakeholders/uni").json()["disabled"] is True
    assert uni.get("/api/v1/tenants/linear/devices").status_code == 401
    assert (
        admin.post("/api/v1/tenants/linear/tokens", json={"stakeholder": "uni"}).status_code == 422
    )
    # bad input is a precise 4xx
    for body in (
        {"id": "x", "kind": "customer"},  # no site
        {"id": "x", "kind": "retailer", "site": "hh001"},
        {"id": "x\n", "kind": "dso"},
        {"id": "x", "kind": "king"},
        {"id": "alice", "kind": "customer", "site": "hh001"},  # exists: 409
    ):
        response = admin.post("/api/v1/tenants/linear/stakeholders", json=body)
        assert response.status_code in (409, 422), (body, response.text)
    assert (
        admin.post(
            "/api/v1/tenants/linear/tokens", json={"stakeholder": "r1", "role": "dso"}
        ).status_code
        == 422
    )


def gridhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridhub.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250", **env},
    )


def test_token_cli_against_a_running_hub(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    env = {"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": seed_admin(hub)}
    created = gridhub(
        "token",
        "create",
        "--tenant",
        "linear",
        "--stakeholder",
        "r1",
        "--expires",
        "2099-01-01T00:00:00Z",
        "--name",
        "billing",
        env=env,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    secret = created.stdout.split("store it now):")[1].split()[0]
    token_id = secret.split("_")[1]
    assert api.client(secret).get("/api/v1/tenants/linear/devices").status_code == 200
    listed = gridhub("token", "list", "--tenant", "linear", env=env)
    assert listed.returncode == 0 and token_id in listed.stdout and "r1" in listed.stdout
    assert secret not in listed.stdout
    revoked = gridhub("token", "revoke", "--tenant", "linear", token_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert api.client(secret).get("/api/v1/tenants/linear/devices").status_code == 401
    made = gridhub(
        "stakeholder", "create", "--tenant", "linear", "grid-op", "--kind", "dso", env=env
    )
    assert made.returncode == 0, made.stderr
    assert "grid-op" in gridhub("stakeholder", "list", "--tenant", "linear", env=env).stdout
    refused = gridhub("token", "create", "--tenant", "linear", "--stakeholder", "ghost", env=env)
    assert refused.returncode == 1 and "ghost" in refused.stderr
    denied = gridhub(
        "token", "list", "--tenant", "linear", env={**env, "GRIDHUB_TOKEN": token(admin, "uni")}
    )
    assert denied.returncode == 1 and "403" in denied.stderr


def seed_admin(hub: Hub) -> str:
    return hub.tokens.create("linear", "admin", "cli")[1]


def test_access_survives_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = build_hub(settings)
    first.start(mqtt=False)
    seed_tenant(first)
    d = first.access.directory
    from gridhub.domain.access import Kind

    d.create_stakeholder("linear", "alice", Kind.CUSTOMER, site="hh001")
    d.create_stakeholder("linear", "r1", Kind.RETAILER)
    d.create_contract("linear", "alice", "r1", datetime(2026, 1, 1, tzinfo=UTC), contract_id="c1")
    d.create_policy(
        "linear",
        grantee="r1",
        identifier=V,
        read=True,
        write=False,
        policy_id="p1",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    d.add_policy_version(
        "linear", "p1", read=False, write=False, valid_from=datetime(2026, 6, 1, tzinfo=UTC)
    )
    expires = datetime.now(UTC) + timedelta(days=1)
    record, secret = first.tokens.create(
        "linear", "retailer", "r1", stakeholder="r1", service="billing", expires=expires
    )
    first.audit.record("linear", record.id, "r1", "read", "test", "200")
    first.stop()
    second = build_hub(settings)
    try:
        d2 = second.access.directory
        assert d2.stakeholder("linear", "alice").site == "hh001"
        assert d2.contract("linear", "c1").supplier == "r1"
        assert [v.read for v in d2.policy("linear", "p1")] == [True, False]
        who = second.tokens.authenticate(secret)
        assert (who.stakeholder, who.service, who.role) == ("r1", "billing", "retailer")
        assert second.tokens.list("linear")[-1].expires == expires
        from gridhub.storage.access_catalog import AuditQuery

        assert [e.target for e in second.audit.query(AuditQuery("linear"))] == ["test"]
    finally:
        second.db.close()


def test_mqtt_ingest_is_audited_per_batch_and_tenant(hub: Hub, api: Api) -> None:
    from gridhub.ingest.validate import Envelope
    from gridhub.storage.access_catalog import AuditQuery

    seed_tenant(hub)
    raw = [
        f'{{"hardwareId": "hh001-meter", "type": "DeviceMeasurements", "request": '
        f'{{"measurements": {{"{P}": {i}}}, "eventDate": "2026-11-20T0{i}:00:00Z"}}}}'
        for i in range(5)
    ]
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    envelopes = [
        Envelope(
            "mqtt:gridhub/linear/hh001-meter/events",
            r.encode(),
            "linear",
            now,
            topic_device="hh001-meter",
        )
        for r in raw
    ]
    envelopes.append(Envelope("mqtt:gridhub/linear/hh001-meter/events", b"{", "linear", now))
    hub.pipeline.submit_and_wait(envelopes)
    entries = hub.audit.query(AuditQuery("linear", action="write"))
    assert [(e.actor, e.result) for e in entries] == [("mqtt", "partial")]
    assert entries[0].detail == "5 messages stored, 1 dead-lettered"


def test_service_writes_under_an_owner_policy(hub: Hub, api: Api) -> None:
    admin = setup(hub, api)
    admin.post("/api/v1/tenants/linear/identifiers", json={"name": "forecast.power", "unit": "kW"})
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    uni = api.client(token(admin, "uni", service="forecaster"))
    events = "/api/v1/tenants/linear/events"
    forecast = [reading(t0, 1.5, "forecast.power")]
    assert uni.post(events, json=forecast).status_code == 403  # no policy yet
    created = admin.post(
        "/api/v1/tenants/linear/policies",
        json={
            "id": "fc",
            "grantee": "uni",
            "service": "forecaster",
            "device": "hh001-meter",
            "identifier": "forecast.*",
            "read": True,
            "write": True,
            "valid_from": t0.isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    assert uni.post(events, json=forecast).status_code == 200
    # not a series the policy selects, nor the measurements of the meter itself
    refused = uni.post(events, json=[*forecast, reading(t0, 9.0)])
    assert refused.status_code == 403 and P in refused.json()["detail"]
    # another service of the same stakeholder has no write
    other = api.client(token(admin, "uni", service="other"))
    assert other.post(events, json=forecast).status_code == 403
    # writes end for values from 06:00 on; earlier values may still be written
    admin.post(
        "/api/v1/tenants/linear/policies/fc/versions",
        json={"read": True, "write": False, "valid_from": (t0 + timedelta(hours=6)).isoformat()},
    )
    late = [reading(t0 + timedelta(hours=7), 2.0, "forecast.power")]
    assert uni.post(events, json=late).status_code == 403
    early = [reading(t0 + timedelta(hours=1), 2.5, "forecast.power")]
    assert uni.post(events, json=early).status_code == 200
    got = uni.get(SERIES, params={"identifier": "forecast.power", "day": "2026-11-20"}).json()
    assert [p["value"] for p in got["points"]] == [1.5, 2.5]
    # imports and telegrams stay for admin and device tokens
    assert uni.post("/api/v1/tenants/linear/imports/csv", content="a,b\n").status_code == 403
