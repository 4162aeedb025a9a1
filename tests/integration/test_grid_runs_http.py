"""Grid services over HTTP on demo-like data (issue #7): a small simulated fleet on CIGRE LV,
backfilled through the real pipeline, then each service run by POST and its results read back
through the normal series and alerts API. The fraud test: on the second day one household's
meter is bypassed (70 % of its load unmetered) while the substation and feeder-head meters see
the true load; G4 must stay quiet on the first day and raise a critical alarm with the right
feeder ranked first on the second.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Device, Tenant
from gridhub.domain.topology import DeviceAttachment
from gridhub.grid.households import attach_households
from gridhub.grid.losses import BalanceInput, energy_balance, sections
from gridhub.grid.schedule import GridSchedule
from gridhub.grid.topology_import import reference_network
from gridhub.grid.topology_json import topology_to_json
from gridhub.hub import Hub, build_hub
from gridhub.ingest.validate import Envelope
from gridhub.sim.fleet import CUSTOM_IDENTIFIERS, Fleet
from gridhub.sim.fraud import Bypass, NodeMeter, fraudulent
from helpers import gridhub, make_settings, stakeholder_token

pytestmark = pytest.mark.integration

TENANT = "linear"
ZONE = ZoneInfo("Europe/Brussels")
TODAY = datetime.now(ZONE).date()
HONEST, FRAUD = TODAY - timedelta(days=2), TODAY - timedelta(days=1)  # recent: forecasts need it
# a day of quarter-hour data in the last completed week, for the quality service to refuse
SPARSE = TODAY - timedelta(days=TODAY.weekday() + 5)
SUBSTATION, LV_BUSBAR = "bus1", "bus2"
THIEF = "hh003"  # on bus17
HOUSEHOLDS = 16


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), ZONE)


def _loss_coefficient(topology, fleet: Fleet) -> float:  # type: ignore[no-untyped-def]
    """kW of line losses per kW² below the substation, from one load flow at the honest day's
    mean site powers: the substation meter's losses then follow I²R tick by tick."""
    sums: dict[str, float] = {}
    count = 0
    meters = {f"{s}-meter": s for s in topology.sites_downstream(SUBSTATION)}
    start = _day_start(HONEST)
    for batch in Fleet(HOUSEHOLDS, seed=1, zone="Europe/Brussels", tenant=TENANT).batches(
        start, start + timedelta(days=1), 900, batch_size=100_000
    ):
        for hw, raw in batch:
            if hw in meters:
                values = json.loads(raw)["request"]["measurements"]
                net = values[POWER] - values["electricity.power.active.injected.total"]
                sums[meters[hw]] = sums.get(meters[hw], 0.0) + net
                count += 1
    ticks = count / len(meters)
    mean = {site: kwh / ticks for site, kwh in sums.items()}
    total = sum(mean.values())
    data = BalanceInput(SUBSTATION, 1.0, total, mean, meter_at="lv")
    return energy_balance(topology, data).technical_losses_kwh / total**2


POWER = "electricity.power.active.consumed.total"


QUALITY_WEEK = TODAY - timedelta(days=TODAY.weekday() + 21)  # a Monday, three weeks back
LOW_SITE = "hh005"


def _voltage_week() -> list[bytes]:
    """A week of 10-minute voltages of one meter: phase 1 sags to 200 V (−13 %) every evening
    from 17:00 to 23:00 (a quarter of the week outside ±10 %), phases 2 and 3 are fine."""
    start = _day_start(QUALITY_WEEK)
    out = []
    for i in range(7 * 144):
        at = start + timedelta(minutes=10 * i)
        evening = 17 <= at.astimezone(ZONE).hour < 23
        values = {
            "electricity.voltage.rms.l1": 200.0 if evening else 229.0,
            "electricity.voltage.rms.l2": 231.0,
            "electricity.voltage.rms.l3": 228.5,
        }
        msg = {"hardwareId": f"{LOW_SITE}-meter", "type": "DeviceMeasurements",
               "request": {"measurements": values, "eventDate": at.isoformat()}}  # fmt: skip
        out.append(json.dumps(msg).encode())
    return out


@pytest.fixture(scope="module")
def grid_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str, str]]:
    """A hub with 16 households on CIGRE LV, node meters, 2 days of history (the second with
    a bypass); yields (hub, API URL, dso token)."""
    hub = build_hub(make_settings(tmp_path_factory.mktemp("grid")))
    hub.ensure_admin_token()
    hub.start(mqtt=False)
    server = ApiServer(hub, "127.0.0.1", 0)
    try:
        fleet = Fleet(HOUSEHOLDS, seed=1, zone="Europe/Brussels", tenant=TENANT)
        hub.registry.create_tenant(Tenant(TENANT, "Linear", "Europe/Brussels"))
        hub.registry.ensure_identifiers(TENANT, CUSTOM_IDENTIFIERS)
        hub.registry.register_sites(fleet.sites())
        hub.registry.register_devices(fleet.devices())
        topology = attach_households(
            reference_network("cigre_lv"),
            sorted(s.id for s in fleet.sites()),
            strategy="load_share",
        )
        heads = {section: f"head-{section}" for section in sections(topology, SUBSTATION)}
        attached = [DeviceAttachment("ss-meter", LV_BUSBAR)]
        attached += [DeviceAttachment(hw, node) for node, hw in heads.items()]
        topology = topology.with_devices(attached)
        hub.registry.register_devices(
            [Device(TENANT, a.hardware_id, "smart-meter", None, a.node) for a in attached]
        )
        hub.topologies.put(TENANT, json.dumps(topology_to_json(topology)))
        site_meters = {s.id: [f"{s.id}-meter"] for s in fleet.sites()}
        coefficient = _loss_coefficient(topology, fleet)
        node_meters = [NodeMeter("ss-meter", topology, LV_BUSBAR, site_meters, coefficient)]
        node_meters += [NodeMeter(hw, topology, n, site_meters) for n, hw in heads.items()]
        received = int(datetime.now(ZONE).timestamp() * 1e6)
        per_tick = len(fleet.devices())
        days = ((SPARSE, []), (HONEST, []), (FRAUD, [Bypass(f"{THIEF}-meter", 0.7)]))
        for day, bypasses in days:
            start = _day_start(day)
            batches = fleet.batches(start, start + timedelta(days=1), 900, batch_size=per_tick * 8)
            for batch in fraudulent(batches, bypasses, node_meters):
                hub.pipeline.submit_and_wait(
                    [Envelope("sim", raw, TENANT, received) for _hw, raw in batch], timeout=120
                )
        hub.pipeline.submit_and_wait(
            [Envelope("sim", raw, TENANT, received) for raw in _voltage_week()], timeout=120
        )
        dso = stakeholder_token(hub, TENANT, "dso", "grid operator")
        server.start()
        yield hub, server.url, dso
    finally:
        server.stop()
        hub.stop()


@pytest.fixture(scope="module")
def dso(grid_hub: tuple[Hub, str, str]) -> Iterator[httpx.Client]:
    _hub, url, token = grid_hub
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300
    ) as client:
        yield client


def _post(client: httpx.Client, service: str, body: dict[str, object]) -> dict:  # type: ignore[type-arg]
    answer = client.post(f"/api/v1/tenants/{TENANT}/grid/{service}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_losses_stay_quiet_on_honest_day_and_locate_the_bypass(
    grid_hub: tuple[Hub, str, str], dso: httpx.Client
) -> None:
    hub, _url, _token = grid_hub
    topology = hub.topologies.get(TENANT)
    thief_section = next(
        s for s in sections(topology, SUBSTATION) if THIEF in topology.sites_downstream(s)
    )
    honest = _post(dso, "losses", {"day": HONEST.isoformat(), "substation": SUBSTATION})
    [report] = honest["reports"]
    assert report["level"] == "ok", report
    assert abs(report["unexplained_fraction"]) < 0.01
    assert report["technical_losses_kwh"] > 0 and report["missing_sites"] == []

    fraud = _post(dso, "losses", {"day": FRAUD.isoformat()})
    by_sub = {r["substation"]: r for r in fraud["reports"]}
    report = by_sub[SUBSTATION]
    assert report["level"] == "critical", report
    assert report["suspects"][0]["section"] == thief_section
    assert report["suspects"][0]["method"] == "energy"
    # the other substations have no meter: said so, not balanced on a guess
    assert {s["substation"] for s in fraud["skipped"]} == {"bus20", "bus23"}
    assert fraud["written"]["alerts"] == 1

    alerts = dso.get(
        f"/api/v1/tenants/{TENANT}/alerts", params={"device": f"grid:{SUBSTATION}"}
    ).json()
    alarm = next(a for a in _items(alerts) if a["type"] == "grid.losses.alarm")
    assert alarm["level"] == "Critical"
    metadata = alarm["metadata"]
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["suspects"][0]["section"] == thief_section
    assert metadata["owner"] == "dso"

    series = dso.get(
        f"/api/v1/tenants/{TENANT}/devices/grid:{SUBSTATION}/series",
        params={"identifier": "grid.losses.unexplained", "day": FRAUD.isoformat()},
    )
    assert series.status_code == 200, series.text
    [point] = series.json()["points"]
    assert point["value"] == pytest.approx(report["unexplained_kwh"], rel=1e-6)
    # a rerun adds nothing: same device, time and type
    again = _post(dso, "losses", {"day": FRAUD.isoformat(), "substation": SUBSTATION})
    assert again["reports"][0]["unexplained_kwh"] == pytest.approx(report["unexplained_kwh"])
    alerts = dso.get(f"/api/v1/tenants/{TENANT}/alerts", params={"device": f"grid:{SUBSTATION}"})
    assert sum(a["type"] == "grid.losses.alarm" for a in _items(alerts.json())) == 1


def _items(answer: object) -> list[dict]:  # type: ignore[type-arg]
    if isinstance(answer, dict):
        for key in ("alerts", "items"):
            if key in answer:
                return answer[key]  # type: ignore[no-any-return]
    assert isinstance(answer, list)
    return answer


def test_estimation_writes_voltages_with_their_sigma(dso: httpx.Client) -> None:
    result = _post(dso, "estimation", {"day": HONEST.isoformat()})
    nodes = {n["node"]: n for n in result["nodes"]}
    assert 0.9 < nodes["bus17"]["vm_pu"] < 1.1 and nodes["bus17"]["vm_std_pu"] > 0
    assert result["written"]["series_values"] >= 4 * len(nodes) - 4
    latest = dso.get(f"/api/v1/tenants/{TENANT}/grid/latest").json()
    mine = [v for v in latest if v["device"] == "grid:bus17"]
    assert {v["identifier"] for v in mine} >= {
        "grid.voltage.estimated",
        "grid.voltage.estimated.std",
    }


def test_reconfiguration_of_a_radial_grid_keeps_it(dso: httpx.Client) -> None:
    result = _post(
        dso, "reconfiguration", {"day": HONEST.isoformat(), "all_lines_switchable": True}
    )
    assert result["accepted"] is False and result["changes"] == []
    assert result["base_losses_kw"] > 0 and result["written"]["alerts"] == 0


def test_demand_response_plans_from_the_latest_appliance_powers(dso: httpx.Client) -> None:
    result = _post(dso, "demand-response", {"substation": SUBSTATION, "target_kw": 0.0})
    assert result["consumption_kw"] > 0
    assert result["status"] in ("infeasible", "optimal")
    if result["status"] == "infeasible":
        assert result["shortfall_kw"] == pytest.approx(result["needed_kw"] - result["available_kw"])
    assert result["written"]["alerts"] == 1


def test_quality_says_quarter_hour_data_cannot_be_judged(dso: httpx.Client) -> None:
    monday = SPARSE - timedelta(days=SPARSE.weekday())
    result = _post(dso, "quality", {"week_start": monday.isoformat()})
    assert result["points"] == 3 * HOUSEHOLDS
    assert result["insufficient_data"] == result["points"]
    share = [r["intervals_with_data"] for r in result["reports"]]
    assert min(share) > 0  # every meter has its day of data in the week, still not judged


def test_quality_fails_the_sagging_phase_and_alerts_its_node(
    grid_hub: tuple[Hub, str, str], dso: httpx.Client
) -> None:
    hub, _url, _token = grid_hub
    result = _post(dso, "quality", {"week_start": QUALITY_WEEK.isoformat()})
    status = {r["connection_point"]: r["status"] for r in result["reports"]}
    assert status[f"{LOW_SITE}:l1"] == "not_compliant"
    assert status[f"{LOW_SITE}:l2"] == status[f"{LOW_SITE}:l3"] == "compliant"
    assert result["insufficient_data"] == 3 * HOUSEHOLDS - 3  # silent meters are reported
    node = hub.topologies.get(TENANT).site_node(LOW_SITE)
    alerts = _items(
        dso.get(f"/api/v1/tenants/{TENANT}/alerts", params={"device": f"grid:{node}"}).json()
    )
    [failed] = [a for a in alerts if a["type"] == "grid.quality.failed"]
    metadata = failed["metadata"]
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["site"] == LOW_SITE and metadata["phase"] == "l1"
    assert metadata["shareInBand"] == pytest.approx(0.75, abs=0.01)


def test_forecast_and_balancing_per_node(dso: httpx.Client) -> None:
    forecast = _post(dso, "forecast", {"hours": 6})
    assert len(forecast["consumption_kw"][SUBSTATION]) == 24
    assert all(v >= 0 for v in forecast["consumption_kw"][SUBSTATION])
    assert forecast["written"]["series_values"] >= 24
    balanced = _post(dso, "balancing", {"day": TODAY.isoformat()})
    units = {u["unit"]: u for u in balanced["units"]}
    quarters = (_day_start(TODAY + timedelta(days=1)) - _day_start(TODAY)) // timedelta(minutes=15)
    assert units[SUBSTATION]["level"] == "lv" and balanced["slots"] == quarters
    assert units["top"]["distance_kw"] <= units["top"]["max_gap_kw"] + 1e-9
    # tomorrow (the default): what lies beyond the hub's 24 h horizon is counted, not written
    ahead = _post(dso, "balancing", {})
    written = ahead["written"]
    substations = [u for u in ahead["units"] if u["level"] in ("lv", "mv")]
    assert written["beyond_horizon"] > 0
    assert written["series_values"] + written["beyond_horizon"] == 2 * ahead["slots"] * len(
        substations
    )


def test_who_may_run_and_precise_refusals(grid_hub: tuple[Hub, str, str]) -> None:
    hub, url, _token = grid_hub
    _r, researcher = hub.tokens.create(TENANT, "researcher", "r")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {researcher}"}) as c:
        refused = c.post(f"/api/v1/tenants/{TENANT}/grid/losses", json={"day": str(HONEST)})
        assert refused.status_code == 403
    dso = stakeholder_token(hub, TENANT, "dso", "d")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {dso}"}) as c:
        base = f"/api/v1/tenants/{TENANT}/grid"
        odd = c.post(f"{base}/losses", json={"start": "2026-11-18T00:07:00+01:00",
                                              "end": "2026-11-19T00:00:00+01:00"})  # fmt: skip
        assert odd.status_code == 422 and "quarter-hour" in odd.text
        long = c.post(f"{base}/losses", json={"start": "2026-01-01T00:00:00Z",
                                               "end": "2026-03-01T00:00:00Z"})  # fmt: skip
        assert long.status_code == 422 and "31 days" in long.text
        assert c.post(f"{base}/losses", json={"substation": "bus17", "day": "2026-11-18"}
                      ).status_code == 422  # fmt: skip
        assert c.post(f"{base}/forecast", json={"hours": 48}).status_code == 422
        assert c.post(f"{base}/losses", json={"day": "2026-11-18", "bogus": 1}).status_code == 422
        for week in ("0001-01-01", "9999-12-31"):  # the week's bounds overflowed: a 500 before
            far = c.post(f"{base}/quality", json={"week_start": week})
            assert far.status_code == 422 and "1970..9998" in far.text
            far = c.post(f"{base}/balancing", json={"day": week})  # found by schemathesis
            assert far.status_code == 422 and "1970..9998" in far.text
    hub.registry.create_tenant(Tenant("empty", "Empty", "Europe/Brussels"))
    _r, other = hub.tokens.create("empty", "dso", "e")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {other}"}) as c:
        missing = c.post("/api/v1/tenants/empty/grid/losses", json={"day": "2026-11-18"})
        assert missing.status_code == 404 and "no topology" in missing.text
        assert c.post(f"/api/v1/tenants/{TENANT}/grid/losses", json={}).status_code == 403


def test_cli_prints_the_losses_table(grid_hub: tuple[Hub, str, str], tmp_path: Path) -> None:
    _hub, url, token = grid_hub
    done = gridhub(
        "grid", "losses", "--tenant", TENANT, "--day", FRAUD.isoformat(),
        "--url", url, "--token", token,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "bus1" in done.stdout and "critical" in done.stdout
    refused = gridhub("grid", "forecast", "--tenant", TENANT, "--hours", "30", "--url", url,
                      "--token", token)  # fmt: skip
    assert refused.returncode != 0


def test_the_schedule_runs_the_days_losses_forecast_and_the_weeks_quality(
    grid_hub: tuple[Hub, str, str], dso: httpx.Client
) -> None:
    hub, _url, _token = grid_hub
    monday = datetime.combine(QUALITY_WEEK + timedelta(days=7), time(1, 30), ZONE)
    schedule = GridSchedule(hub.grid_runs, hub.registry, clock=lambda: monday)
    ran = {(job.tenant, job.service, job.key) for job in schedule.tick()}
    assert ran == {
        (TENANT, "forecast", monday.date()),
        (TENANT, "losses", monday.date() - timedelta(days=1)),
        (TENANT, "quality", QUALITY_WEEK),
    }
    assert schedule.tick() == []  # done once per period
    node = hub.topologies.get(TENANT).site_node(LOW_SITE)
    alerts = dso.get(f"/api/v1/tenants/{TENANT}/alerts", params={"device": f"grid:{node}"})
    assert any(a["type"] == "grid.quality.failed" for a in _items(alerts.json()))


def test_pv_forecast_of_the_exporting_sites_is_zero_at_night(dso: httpx.Client) -> None:
    answer = _post(dso, "forecast", {"hours": 24, "latitude": 50.85, "longitude": 4.35})
    pv = answer["production_kw"][SUBSTATION]  # hh001-hh003 below bus1 export at midday
    start = datetime.fromisoformat(answer["start"])
    assert len(pv) == 96 and max(pv) > 0
    for i, value in enumerate(pv):
        hour = (start + timedelta(minutes=15 * i)).astimezone(ZONE).hour
        if hour < 6 or hour >= 19:  # November in Brussels: dark
            assert value == 0.0
