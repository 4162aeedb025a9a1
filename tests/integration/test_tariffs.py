"""Tariffs (O2) and control signals (O3) end to end over the real Mosquitto: published to the
devices of a household, a group or a cluster, acknowledged, and queryable over a month."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import build_hub
from helpers import make_settings, wait_for
from outbound_devices import SimDevice

pytestmark = pytest.mark.integration
ZONE = "Europe/Brussels"
HOMES = {  # site → (location, devices)
    "hh1": ("Genk", ("hh1-meter", "hh1-boiler")),
    "hh2": ("Genk", ("hh2-meter",)),
    "hh3": ("Leuven", ("hh3-meter", "hh3-plug")),
}
PERIODS = [
    {"start": "00:00", "end": "07:00", "price": 0.18, "label": "night"},
    {"start": "07:00", "end": "17:00", "price": 0.27, "label": "day"},
    {"start": "17:00", "end": "22:00", "price": 0.41, "label": "evening"},
    {"start": "22:00", "end": "24:00", "price": 0.21, "label": "late evening"},
]


class Pilot:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tenant = f"tar{uuid.uuid4().hex[:10]}"
        self.hub = build_hub(make_settings(tmp_path, mqtt_url=url, command_retry_s=0.3))
        self.hub.ensure_admin_token()
        reg = self.hub.registry
        reg.create_tenant(Tenant(self.tenant, "Tariffs", ZONE))
        reg.register_sites([Site(self.tenant, s, location=loc) for s, (loc, _) in HOMES.items()])
        reg.register_devices(
            [
                Device(self.tenant, d, d.split("-")[1].replace("plug", "smart-plug"), s)
                for s, (_, devices) in HOMES.items()
                for d in devices
            ]
        )
        _r, secret = self.hub.tokens.create(self.tenant, "dso", "dso")
        self.hub.start(mqtt=True)
        self.server = ApiServer(self.hub, "127.0.0.1", 0)
        self.server.start()
        self.client = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
        )
        self.devices = {
            d: SimDevice(url, self.tenant, d) for _, devices in HOMES.values() for d in devices
        }
        for dev in self.devices.values():
            dev.connect()

    def path(self, tail: str) -> str:
        return f"/api/v1/tenants/{self.tenant}/{tail}"

    def close(self) -> None:
        for dev in self.devices.values():
            dev.disconnect()
        self.client.close()
        self.server.stop()
        self.hub.stop()


@pytest.fixture
def pilot(tmp_path: Path, mosquitto_url: str) -> Iterator[Pilot]:
    p = Pilot(tmp_path, mosquitto_url)
    yield p
    p.close()


def tomorrow() -> date:
    return datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)


def test_tou_tariff_to_a_group(pilot: Pilot) -> None:
    day = tomorrow()
    body = {
        "kind": "tou",
        "target": {"attribute": "location", "value": "Genk"},
        "days": [{"day": day.isoformat(), "periods": PERIODS}],
    }
    r = pilot.client.post(pilot.path("tariffs"), json=body)
    assert r.status_code == 201, r.text
    (tariff,) = r.json()
    assert tariff["sites"] == ["hh1", "hh2"] and tariff["delivery"] == {"pending": 3}
    genk = ("hh1-meter", "hh1-boiler", "hh2-meter")
    wait_for(lambda: all(pilot.devices[d].executed for d in genk), what="every Genk device")
    message = pilot.devices["hh1-boiler"].executed[0]["command"]
    assert message["command"]["name"] == "setTariff"
    assert message["parameters"]["tariffId"] == tariff["id"]
    assert message["parameters"]["day"] == day.isoformat()
    assert [p["price"] for p in message["parameters"]["periods"]] == [0.18, 0.27, 0.41, 0.21]
    assert not pilot.devices["hh3-meter"].received and not pilot.devices["hh3-plug"].received

    def acknowledged() -> bool:
        found = pilot.client.get(
            pilot.path("tariffs"),
            params={"from": day.isoformat(), "to": day.isoformat(), "site": "hh1"},
        ).json()
        return len(found) == 1 and found[0]["delivery"] == {"acknowledged": 3}

    wait_for(acknowledged, what="three acknowledgements")
    month = pilot.client.get(
        pilot.path("tariffs"),
        params={"from": (day - timedelta(days=30)).isoformat(), "to": day.isoformat(),
                "site": "hh3"},
    ).json()  # fmt: skip
    assert month == []


def test_republished_day_supersedes_and_network_calendar(pilot: Pilot) -> None:
    day = tomorrow()
    days = [{"day": (day + timedelta(days=n)).isoformat(), "periods": PERIODS} for n in range(3)]
    first = {"kind": "tou", "target": {"site": "hh3"}, "days": days}
    assert pilot.client.post(pilot.path("tariffs"), json=first).status_code == 201
    cheaper = [dict(p, price=0.1) for p in PERIODS]
    second = {"kind": "tou", "target": {"site": "hh3"},
              "days": [{"day": day.isoformat(), "periods": cheaper}]}  # fmt: skip
    assert pilot.client.post(pilot.path("tariffs"), json=second).status_code == 201
    network = {
        "kind": "network",
        "target": {"sites": ["hh1", "hh2", "hh3"]},
        "currency": "EUR",
        "unit": "EUR/kWh",
        "days": [{"day": day.isoformat(), "periods": [
            {"start": "00:00", "end": "08:00", "price": 0.04, "label": "off-peak"},
            {"start": "08:00", "end": "24:00", "price": 0.09, "label": "peak"}]}],
    }  # fmt: skip
    assert pilot.client.post(pilot.path("tariffs"), json=network).status_code == 201
    found = pilot.client.get(
        pilot.path("tariffs"),
        params={"from": day.isoformat(), "to": (day + timedelta(days=2)).isoformat(),
                "site": "hh3"},
    ).json()  # fmt: skip
    assert [(t["day"], t["kind"]) for t in found] == [
        (day.isoformat(), "network"),
        (day.isoformat(), "tou"),
        ((day + timedelta(days=1)).isoformat(), "tou"),
        ((day + timedelta(days=2)).isoformat(), "tou"),
    ]
    assert found[1]["periods"][0]["price"] == 0.1  # the newest publication of that day
    only_network = pilot.client.get(
        pilot.path("tariffs"),
        params={"from": day.isoformat(), "to": day.isoformat(), "kind": "network"},
    ).json()
    assert len(only_network) == 1 and only_network[0]["sites"] == ["hh1", "hh2", "hh3"]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"days": [{"day": "DAY", "periods": PERIODS[1:]}]},
         "period 1 starts at 07:00; it must start at 00:00"),
        ({"days": [{"day": "DAY", "periods": PERIODS[:-1]}]},
         "the last period ends at 22:00; it must end at 24:00"),
        ({"target": {"attribute": "location", "value": "Mars"}}, "matches no household"),
        ({"target": {"site": "hh9"}}, "site 'hh9' is not registered"),
        ({"target": {"attribute": "colour", "value": "red"}}, "unknown group attribute"),
        ({"days": [{"day": "2000-01-01", "periods": PERIODS}]}, "is over"),
        # the day's end in the tenant's zone overflowed datetime: a 500 before
        ({"days": [{"day": "9999-12-31", "periods": PERIODS}]}, "years 1970..9998"),
    ],
)  # fmt: skip
def test_tariff_errors(pilot: Pilot, change: dict, detail: str) -> None:
    body = {"target": {"site": "hh1"}, "days": [{"day": "DAY", "periods": PERIODS}], **change}
    for d in body["days"]:
        if d["day"] == "DAY":
            d["day"] = tomorrow().isoformat()
    r = pilot.client.post(pilot.path("tariffs"), json=body)
    assert r.status_code == 422, r.text
    assert detail in r.json()["detail"]


def test_control_signal_reaches_every_device_of_a_cluster(pilot: Pilot) -> None:
    start = datetime.now(ZoneInfo(ZONE)).replace(microsecond=0)
    end = start + timedelta(hours=2)
    body = {
        "direction": "consumption",
        "limit_kw": 2.5,
        "target": {"sites": ["hh1", "hh3"]},
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    r = pilot.client.post(pilot.path("control-signals"), json=body)
    assert r.status_code == 201, r.text
    signal = r.json()
    assert signal["sites"] == ["hh1", "hh3"] and signal["delivery"] == {"pending": 4}
    cluster = ("hh1-meter", "hh1-boiler", "hh3-meter", "hh3-plug")
    wait_for(lambda: all(pilot.devices[d].executed for d in cluster), what="the whole cluster")
    for d in cluster:
        params = pilot.devices[d].executed[0]["command"]["parameters"]
        assert params == {
            "signalId": signal["id"],
            "direction": "consumption",
            "limitKw": 2.5,
            "validFrom": start.isoformat(),
            "validUntil": end.isoformat(),
        }
    assert not pilot.devices["hh2-meter"].received

    def month() -> list[dict]:
        return list(
            pilot.client.get(
                pilot.path("control-signals"),
                params={"from": (start - timedelta(days=30)).isoformat(),
                        "to": (start + timedelta(days=1)).isoformat()},
            ).json()
        )  # fmt: skip

    wait_for(lambda: month()[0]["delivery"] == {"acknowledged": 4}, what="four acks")
    assert [s["id"] for s in month()] == [signal["id"]]
    later = pilot.client.get(
        pilot.path("control-signals"),
        params={"from": (end + timedelta(hours=1)).isoformat(),
                "to": (end + timedelta(days=1)).isoformat()},
    ).json()  # fmt: skip
    assert later == []
    by_site = pilot.client.get(
        pilot.path("control-signals"),
        params={"from": start.isoformat(), "to": end.isoformat(), "site": "hh2"},
    ).json()
    assert by_site == []


def test_signal_needs_outbound_role(pilot: Pilot) -> None:
    _r, customer = pilot.hub.tokens.create(pilot.tenant, "customer", "c")
    r = httpx.post(
        pilot.server.url + pilot.path("control-signals"),
        json={"direction": "production", "limit_kw": 0, "target": {"site": "hh1"}},
        headers={"Authorization": f"Bearer {customer}"},
    )
    assert r.status_code == 403 and "customer token cannot send production limits" in r.text
