"""Report routes on a real server: completeness (DST), missing quarter-hours, aggregates, export,
and the SQL console's security boundary (tenant scoping, statement kinds, timeout, row limit)."""

from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pyarrow.parquet as pq
import pytest

from gridhub.access.directory import Kind
from gridhub.cli.demo import researcher_token
from gridhub.domain.registry import Device, Site
from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"
BRUSSELS = ZoneInfo("Europe/Brussels")
R = "/api/v1/tenants/linear/reports"


def quarters(day: date, zone: ZoneInfo = BRUSSELS) -> list[datetime]:
    ts = datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(ZoneInfo("UTC"))
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    out = []
    while ts < end:
        out.append(ts)
        ts += timedelta(minutes=15)
    return out


def send(
    client: httpx.Client, tenant: str, device: str, values: list[tuple[datetime, float]]
) -> None:
    messages = [
        {
            "hardwareId": device,
            "type": "DeviceMeasurements",
            "request": {"measurements": {P: v}, "updateState": True, "eventDate": ts.isoformat()},
        }
        for ts, v in values
    ]
    response = client.post(f"/api/v1/tenants/{tenant}/events", json=messages)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("day", "expected"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100)])
def test_completeness_expects_the_dst_days_quarter_hours(
    hub: Hub, api: Api, day: date, expected: int
) -> None:
    client = api.client(seed_tenant(hub))
    slots = quarters(day)
    kept = [ts for i, ts in enumerate(slots) if i not in (10, 11, 12)]
    send(client, "linear", "hh001-meter", [(ts, 1.0) for ts in kept])
    body = client.get(f"{R}/completeness", params={"from": day, "to": day}).json()
    assert body["devices"][0]["expected"] == [expected]
    assert body["devices"][0]["received"] == [expected - 3]
    assert body["received_total"] == expected - 3 and body["expected_total"] == expected
    missing = client.get(f"{R}/completeness/hh001-meter/missing", params={"day": day}).json()
    assert [datetime.fromisoformat(t) for t in missing["missing"]] == slots[10:13]
    assert (missing["expected"], missing["received"]) == (expected, expected - 3)
    view = client.get(f"{R}/household/hh001", params={"day": day}).json()
    assert len(view["slots"]) == expected
    consumed = next(s for s in view["series"] if s["identifier"] == P)
    assert consumed["values"].count(None) == 3


def test_completeness_threshold_decides_the_warnings(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    day = date(2026, 6, 1)
    send(client, "linear", "hh001-meter", [(ts, 1.0) for ts in quarters(day)[:90]])

    def warned(threshold: float) -> list[str]:
        params = {"from": day, "to": day, "threshold": threshold}
        return list(client.get(f"{R}/completeness", params=params).json()["warnings"])

    assert warned(0.9) == []  # 90 / 96 = 93.75 %
    assert warned(0.95) == ["hh001-meter"]
    assert client.get(f"{R}/completeness", params={"threshold": 2}).status_code == 422


def test_aggregates_sum_energy_per_appliance_type_and_group(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    day = date(2026, 6, 2)
    send(client, "linear", "hh001-meter", [(ts, 2.0) for ts in quarters(day)])
    body = client.get(f"{R}/aggregates", params={"from": day, "to": day}).json()
    (meter,) = body["by_appliance"]
    assert (meter["value"], meter["devices"]) == ("smart-meter", 1)
    assert meter["consumed_kwh"] == pytest.approx(48.0)
    pv = next(r for r in body["by_group"] if r["group"] == "has_pv" and r["value"] == "true")
    assert (pv["households"], pv["consumed_kwh"]) == (1, pytest.approx(48.0))


def test_household_view_and_parquet_export_hold_the_same_rows(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    day = date(2026, 6, 3)
    send(client, "linear", "hh001-meter", [(ts, i / 10) for i, ts in enumerate(quarters(day))])
    view = client.get(f"{R}/household/hh001", params={"day": day}).json()
    consumed = next(s for s in view["series"] if s["identifier"] == P)
    assert consumed["values"] == pytest.approx([i / 10 for i in range(96)])
    response = client.get(
        f"{R}/export/household", params={"site": "hh001", "day": day, "format": "parquet"}
    )
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(response.content)).to_pylist()
    assert len(table) == 96 * len(view["series"])
    assert [r["value"] for r in table if r["identifier"] == P] == consumed["values"]
    assert client.get(f"{R}/export/nothing").status_code == 404
    assert client.get(f"{R}/export/household", params={"day": day}).status_code == 422


def test_reports_are_scoped_to_the_tokens_tenant(hub: Hub, api: Api) -> None:
    seed_tenant(hub)
    seed_tenant(hub, "other")
    _record, other = hub.tokens.create("other", "researcher", "t")
    client = api.client(other)
    for path in ("overview", "completeness", "household/hh001?day=2026-06-01", "aggregates"):
        assert client.get(f"{R}/{path}").status_code == 403, path
    assert client.post("/api/v1/tenants/linear/sql", json={"sql": "SELECT 1"}).status_code == 403
    assert client.get("/api/v1/whoami").json() == {
        "token_id": _record.id,
        "tenant": "other",
        "role": "researcher",
    }


# -- the SQL console -----------------------------------------------------------------------------


@pytest.fixture
def two_tenants(hub: Hub, api: Api) -> dict[str, httpx.Client]:
    """linear and other, each with an ``hh001-meter`` (same id!) and a day of readings."""
    admins = {t: seed_tenant(hub, t) for t in ("linear", "other")}
    day = date(2026, 6, 4)
    for tenant, value in (("linear", 1.0), ("other", 100.0)):
        send(
            api.client(admins[tenant]), tenant, "hh001-meter", [(ts, value) for ts in quarters(day)]
        )
    clients = {
        role: api.client(hub.tokens.create("linear", role, "t")[1])
        for role in ("customer", "admin")
    }
    # a researcher reads what an owner policy grants: here everything (docs/access.md)
    clients["researcher"] = api.client(researcher_token(hub, "linear", "t"))
    clients["other"] = api.client(researcher_token(hub, "other", "t"))
    clients["ungranted"] = api.client(hub.tokens.create("linear", "researcher", "t")[1])
    return clients


def sql(
    client: httpx.Client, statement: str, tenant: str = "linear", **extra: object
) -> httpx.Response:
    return client.post(f"/api/v1/tenants/{tenant}/sql", json={"sql": statement, **extra})


def test_sql_reads_only_the_callers_tenant(two_tenants: dict[str, httpx.Client]) -> None:
    statement = "SELECT count(*), sum(value) FROM measurements WHERE device = 'hh001-meter'"
    assert sql(two_tenants["researcher"], statement).json()["rows"] == [[96, 96.0]]
    assert sql(two_tenants["other"], statement, "other").json()["rows"] == [[96, 9600.0]]
    assert sql(two_tenants["admin"], statement).json()["rows"] == [[96, 96.0]]
    joined = (
        "WITH m AS (SELECT * FROM measurements) SELECT count(*) FROM m"
        " JOIN devices d ON d.hardware_id = m.device JOIN sites s ON s.id = d.site"
        " WHERE m.ts IN (SELECT ts FROM measurements)"
    )
    assert sql(two_tenants["researcher"], joined).json()["rows"] == [[96]]
    # the other tenant's URL is refused before any SQL is looked at
    assert sql(two_tenants["researcher"], "SELECT 1", "other").status_code == 403


def test_sql_is_for_researchers_and_admins(two_tenants: dict[str, httpx.Client]) -> None:
    response = sql(two_tenants["customer"], "SELECT 1")
    assert response.status_code == 403


def test_reports_follow_owner_policies(hub: Hub, two_tenants: dict[str, httpx.Client]) -> None:
    """A researcher no owner policy grants anything sees no data in any report, and may not
    use the SQL console (it reads tables directly); a customer sees its own household only."""
    ungranted = two_tenants["ungranted"]
    assert sql(ungranted, "SELECT 1").status_code == 403
    day = {"day": "2026-06-04"}
    assert ungranted.get(f"{R}/household/hh001", params=day).status_code == 403
    assert ungranted.get(f"{R}/completeness/hh001-meter/missing", params=day).status_code == 403
    span = {"from": "2026-06-04", "to": "2026-06-04"}
    assert ungranted.get(f"{R}/completeness", params=span).json()["devices"] == []
    by_type = ungranted.get(f"{R}/aggregates", params=span).json()["by_appliance"]
    assert all(row["consumed_kwh"] == 0 and row["devices"] == 0 for row in by_type)
    assert two_tenants["researcher"].get(f"{R}/household/hh001", params=day).status_code == 200
    # the household's own customer token reads its site, not a neighbour's
    hub.registry.register_sites([Site("linear", "hh002")])
    hub.registry.register_devices([Device("linear", "hh002-meter", "smart-meter", "hh002")])
    owner = hub.access.directory.create_stakeholder("linear", "c1", Kind.CUSTOMER, site="hh001")
    customer = two_tenants["admin"].__class__(
        base_url=ungranted.base_url,
        headers={
            "Authorization": "Bearer "
            + hub.tokens.create("linear", "customer", "c", stakeholder=owner.id)[1]
        },
    )
    with customer:
        assert customer.get(f"{R}/household/hh001", params=day).status_code == 200
        assert customer.get(f"{R}/household/hh002", params=day).status_code == 403
        listed = customer.get(f"{R}/completeness", params=span).json()["devices"]
        assert {d["device"] for d in listed} == {"hh001-meter"}


ESCAPES = [
    "SELECT * FROM tokens",
    "SELECT * FROM tenants",
    "SELECT * FROM main.tokens",
    "SELECT * FROM main.measurements",
    "SELECT * FROM rollup_15m",
    "SELECT * FROM dead_letters",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('/tmp/x.parquet')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM query('SELECT * FROM tokens')",
    "SELECT * FROM query_table('tokens')",
    "SELECT current_setting('threads')",
    "SELECT getenv('HOME')",
    "SELECT * FROM (WITH tokens AS (SELECT 1) SELECT 1), tokens",
    "WITH tokens AS (SELECT * FROM measurements) SELECT * FROM tokens",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE measurements",
    "COPY (SELECT * FROM measurements) TO '/tmp/out.csv'",
    "COPY measurements FROM '/tmp/in.csv'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET threads = 1",
    "CREATE TABLE x AS SELECT 1",
    "INSERT INTO measurements VALUES ('linear', 'd', 'i', now(), 1)",
    "DELETE FROM measurements",
    "UPDATE tokens SET revoked = false",
    "EXPORT DATABASE '/tmp/dump'",
    "CALL pragma_version()",
    "SELECT * FROM pragma_version()",
    "DESCRIBE tokens",
    "SHOW TABLES",
    "",
]


@pytest.mark.parametrize("statement", ESCAPES)
def test_sql_refuses_every_way_out(two_tenants: dict[str, httpx.Client], statement: str) -> None:
    response = sql(two_tenants["admin"], statement)
    assert response.status_code == 422, response.text
    # nothing was changed: the tenant's data is all there
    count = sql(two_tenants["researcher"], "SELECT count(*) FROM measurements").json()
    assert count["rows"] == [[96]]


def test_sql_statement_timeout_and_row_limit(two_tenants: dict[str, httpx.Client]) -> None:
    client = two_tenants["researcher"]
    heavy = (
        "SELECT sum(a.value * b.value * c.value * d.value * e.value) FROM measurements a,"
        " measurements b, measurements c, measurements d, measurements e"
    )
    response = sql(client, heavy, timeout_s=0.3)
    assert response.status_code == 422
    assert "longer than 0.3 s" in response.text
    limited = sql(client, "SELECT ts, value FROM measurements ORDER BY ts", limit=10).json()
    assert len(limited["rows"]) == 10 and limited["truncated"] is True
    assert sql(client, "SELECT 1", limit=0).status_code == 422
    assert sql(client, "SELECT 1", timeout_s=60).status_code == 422
    # the hub answers normally after an interrupted statement
    assert sql(client, "SELECT count(*) FROM devices").json()["rows"] == [[1]]


def test_sql_result_downloads_as_csv(two_tenants: dict[str, httpx.Client]) -> None:
    response = two_tenants["researcher"].post(
        "/api/v1/tenants/linear/sql",
        params={"format": "csv"},
        json={"sql": "SELECT device, value FROM measurements ORDER BY ts LIMIT 5"},
    )
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == '"device","value"' and len(lines) == 6


def test_dashboard_pages_and_assets_are_served(api: Api) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        page = anonymous.get("/ui/household")
        assert page.status_code == 200 and "uPlot.iife.min.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        asset = re.search(r'src="(/ui/static/app\.js\?v=\w+)"', page.text)
        assert asset is not None
        cached = anonymous.get(asset.group(1))
        assert "immutable" in cached.headers["cache-control"]
        assert anonymous.get("/ui/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
        assert anonymous.get("/ui/nothing").status_code == 404
        # the shell holds no data: the pages read it from the API with a token
        assert anonymous.get("/api/v1/tenants/linear/reports/overview").status_code == 401


def test_sql_values_of_every_type_come_back_as_json(two_tenants: dict[str, httpx.Client]) -> None:
    statement = (
        "SELECT CAST('nan' AS DOUBLE) AS n, CAST('inf' AS DOUBLE) AS i, min(ts) AS t,"
        " CAST(min(ts) AS DATE) AS d, max(ts) - min(ts) AS span, CAST(1.5 AS DECIMAL(4, 2)) AS x,"
        " list(DISTINCT device) AS devices FROM measurements"
    )
    body = sql(two_tenants["researcher"], statement).json()
    n, i, t, d, span, x, devices = body["rows"][0]
    assert (n, i, x, devices) == ("nan", "inf", 1.5, ["hh001-meter"])
    assert t.startswith("2026-06-0") and d.startswith("2026-06-0")
    assert span == 95 * 900


def test_days_out_of_range_are_refused_precisely(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    for path, params in (
        ("household/hh001", {"day": "9999-12-31"}),
        ("household/hh001", {"day": "0001-01-01"}),
        ("timelines/hh001", {"day": "9999-12-31"}),
        ("completeness", {"from": "0001-01-01", "to": "0001-01-02"}),
        ("completeness", {"from": "2026-01-01", "to": "2026-12-31"}),
        ("completeness", {"from": "2026-02-01", "to": "2026-01-01"}),
        ("completeness/hh001-meter/missing", {"day": "9999-12-31"}),
        ("aggregates", {"to": "0001-01-01"}),
    ):
        response = client.get(f"{R}/{path}", params=params)
        assert response.status_code == 422, (path, params, response.text)
    assert client.get(f"{R}/household/nope", params={"day": "2026-06-01"}).status_code == 404


def test_completeness_follows_each_devices_reporting_interval(hub: Hub, api: Api) -> None:
    """With the devices' intervals wired in (``interval_of``), a 1-minute plug is expected
    1,440 slots a day and a device with no regular series is expected nothing."""
    from gridhub.services.reports import ReportService
    from gridhub.storage.duckdb_reports import DuckDBReportStore

    client = api.client(seed_tenant(hub, devices=("hh001-meter", "hh001-plug", "hh001-gw")))
    intervals = {"hh001-meter": 900, "hh001-plug": 60, "hh001-gw": None}
    reports = ReportService(
        hub.store,
        DuckDBReportStore(hub.db),
        hub.registry,
        hub.pipeline.metrics,
        interval_of=lambda _tenant, device: intervals[device.hardware_id],
    )
    day = date(2026, 6, 5)
    start = quarters(day)[0]
    send(client, "linear", "hh001-plug", [(start + timedelta(minutes=m), 0.1) for m in range(60)])
    send(client, "linear", "hh001-meter", [(ts, 1.0) for ts in quarters(day)])
    body = reports.completeness("linear", day, day)
    rows = {d.device: (d.interval_s, d.received, d.expected) for d in body.devices}
    assert rows == {"hh001-meter": (900, [96], [96]), "hh001-plug": (60, [60], [1440])}
    assert body.warnings == ["hh001-plug"]
    missing = reports.missing("linear", "hh001-plug", day)
    assert (missing.expected, missing.received, len(missing.missing)) == (1440, 60, 1380)
    assert reports.missing("linear", "hh001-gw", day).expected == 0
