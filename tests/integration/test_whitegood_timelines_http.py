"""R2 end to end over HTTP: the simulated smart whitegoods' own reports, sent to the events
route as the fleet makes them, come back in the timelines report as cycles (configuration time,
deadline, program, actual start) matched to the runs the plugs measured."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridhub.access.directory import Kind
from gridhub.domain.messages import DeviceAlert, decode
from gridhub.domain.registry import Tenant
from gridhub.domain.timeutil import day_bounds
from gridhub.hub import Hub
from gridhub.sim import CUSTOM_IDENTIFIERS, Fleet
from helpers import Api

pytestmark = pytest.mark.integration
ZONE = ZoneInfo("Europe/Brussels")
DAY = date(2026, 3, 4)
T = "/api/v1/tenants/linear"


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def test_timelines_return_the_cycles_the_appliances_reported(hub: Hub, api: Api) -> None:
    fleet = Fleet(4, seed=2, zone=ZONE.key, tenant="linear")
    hub.registry.create_tenant(Tenant("linear", "Linear", ZONE.key))
    hub.registry.ensure_identifiers("linear", CUSTOM_IDENTIFIERS)
    hub.registry.register_sites(fleet.sites())
    hub.registry.register_devices(fleet.devices())
    client = api.client(hub.tokens.create("linear", "admin", "test")[1])
    start, end = day_bounds(DAY, ZONE)
    truth: dict[str, list[tuple[object, ...]]] = {}
    per_tick = len(fleet.devices())
    for batch in fleet.batches(start - timedelta(hours=1), end, 900, batch_size=per_tick * 8):
        response = client.post(
            f"{T}/events",
            content=b"[" + b",".join(raw for _, raw in batch) + b"]",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200 and response.json()["rejected"] == [], response.text
        for hardware_id, raw in batch:
            message = decode(raw)
            if isinstance(message, DeviceAlert) and message.request.type == "whitegood.started":
                meta = message.request.metadata or {}
                truth.setdefault(hardware_id, []).append(
                    (
                        _when(meta["configuredAt"]),
                        _when(meta["deadline"]),
                        meta["program"],
                        _when(message.request.eventDate),
                    )
                )
    assert sum(map(len, truth.values())) >= 3  # the day has cycles to show
    for site in fleet.sites():
        body = client.get(f"{T}/reports/timelines/{site.id}", params={"day": DAY}).json()
        for whitegood in body["whitegoods"]:
            cycles = whitegood["cycles"]
            got = [
                (
                    _when(c["configured_at"]),
                    _when(c["deadline"]),
                    c["program"],
                    _when(c["started_at"]),
                )
                for c in cycles
            ]
            assert got == truth.get(whitegood["device"], []), whitegood["device"]
            for cycle in cycles:  # every reported start began a run the plug measured
                run, started = cycle["run"], _when(cycle["started_at"])
                assert run is not None and started is not None
                assert _when(run["start"]) <= started + timedelta(minutes=15)  # type: ignore[operator]
                assert started < _when(run["end"])  # type: ignore[operator]
                assert run["energy_kwh"] > 0


def test_another_households_customer_sees_no_cycles(hub: Hub, api: Api) -> None:
    fleet = Fleet(2, seed=2, zone=ZONE.key, tenant="linear")
    hub.registry.create_tenant(Tenant("linear", "Linear", ZONE.key))
    hub.registry.ensure_identifiers("linear", CUSTOM_IDENTIFIERS)
    hub.registry.register_sites(fleet.sites())
    hub.registry.register_devices(fleet.devices())
    admin = api.client(hub.tokens.create("linear", "admin", "test")[1])
    start, end = day_bounds(DAY, ZONE)
    for batch in fleet.batches(start, end, 900, batch_size=len(fleet.devices()) * 8):
        body = b"[" + b",".join(raw for _, raw in batch) + b"]"
        response = admin.post(
            f"{T}/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
    mine, other = fleet.sites()[0].id, fleet.sites()[1].id
    customer = hub.access.directory.create_stakeholder("linear", "c", Kind.CUSTOMER, site=mine)
    token = hub.tokens.create("linear", "customer", "test", stakeholder=customer.id)[1]
    client = api.client(token)
    own = client.get(f"{T}/reports/timelines/{mine}", params={"day": DAY})
    assert own.status_code == 200
    admin_view = admin.get(f"{T}/reports/timelines/{mine}", params={"day": DAY}).json()
    assert own.json()["whitegoods"] == admin_view["whitegoods"]
    assert client.get(f"{T}/reports/timelines/{other}", params={"day": DAY}).status_code == 403


def test_the_overview_leaves_routine_cycle_reports_out_of_recent_alerts(hub: Hub, api: Api) -> None:
    fleet = Fleet(2, seed=2, zone=ZONE.key, tenant="linear")
    hub.registry.create_tenant(Tenant("linear", "Linear", ZONE.key))
    hub.registry.ensure_identifiers("linear", CUSTOM_IDENTIFIERS)
    hub.registry.register_sites(fleet.sites())
    hub.registry.register_devices(fleet.devices())
    client = api.client(hub.tokens.create("linear", "admin", "test")[1])
    start, end = day_bounds(DAY, ZONE)
    raws = [raw for batch in fleet.batches(start, end, 900) for _, raw in batch]
    cycle_reports = sum(b'"whitegood.' in raw for raw in raws)
    assert cycle_reports > 0
    overload = {
        "hardwareId": "hh001-meter",
        "type": "DeviceAlert",
        "request": {"type": "meter.overload", "level": "Warning", "eventDate": end.isoformat()},
    }
    for lo in range(0, len(raws), 2000):
        body = b"[" + b",".join(raws[lo : lo + 2000]) + b"]"
        response = client.post(
            f"{T}/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
    assert client.post(f"{T}/events", json=[overload]).status_code == 200
    recent = client.get(f"{T}/reports/overview").json()["recent_alerts"]
    assert [a["type"] for a in recent] == ["meter.overload"]
