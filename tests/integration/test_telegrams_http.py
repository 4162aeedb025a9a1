"""DSMR P1 telegrams and IEC 62056-21 readouts POSTed raw, through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parent.parent / "data"


def auto_tenant(hub: Hub, api: Api) -> httpx.Client:
    client = api.client(seed_tenant(hub, zone="Europe/Brussels"))
    client.patch("/api/v1/tenants/linear", json={"unknown_devices": "auto_register"})
    return client


def test_belgian_telegram_with_gas_and_water(hub: Hub, api: Api) -> None:
    client = auto_tenant(hub, api)
    raw = (DATA / "dsmr" / "emucs_1_7_1_fluvius_belgium.txt").read_bytes()
    response = client.post(
        "/api/v1/tenants/linear/telegrams/dsmr", content=raw, params={"zone": "Europe/Brussels"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] >= 2  # the meter, and its M-Bus channels
    devices = client.get("/api/v1/tenants/linear/devices").json()
    # the electricity meter and its gas and water M-Bus channels, each its own device
    ids = {d["hardware_id"] for d in devices} - {"hh001-meter"}
    assert ids == {"1SAG3101021605", "7FLO2119033733", "8SAG1234567890"}
    params = {"day": "2020-05-12"}
    gas = client.get(
        "/api/v1/tenants/linear/devices/7FLO2119033733/series",
        params={**params, "identifier": "gas.volume"},
    ).json()
    assert gas["unit"] == "m3" and gas["points"][0]["ts"] == "2020-05-12T13:45:58+02:00"
    water = client.get(
        "/api/v1/tenants/linear/devices/8SAG1234567890/series",
        params={**params, "identifier": "water.volume"},
    ).json()
    assert water["count"] == 1
    t1 = client.get(
        "/api/v1/tenants/linear/devices/1SAG3101021605/series",
        params={**params, "identifier": "electricity.energy.active.consumed.t1"},
    ).json()
    assert t1["unit"] == "kWh" and t1["count"] == 1


def test_corrupted_crc_is_dead_lettered(hub: Hub, api: Api) -> None:
    client = auto_tenant(hub, api)
    raw = bytearray((DATA / "dsmr" / "dsmr_5_0_iskra.txt").read_bytes())
    at = raw.index(b"1-0:1.8.1(") + len(b"1-0:1.8.1(")
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    response = client.post("/api/v1/tenants/linear/telegrams/dsmr", content=bytes(raw))
    assert response.status_code == 422 and response.json()["reason"] == "bad_checksum"
    letters = client.get("/api/v1/tenants/linear/deadletters").json()
    assert letters[0]["reason"] == "bad_checksum" and letters[0]["source"] == "p1"


def test_iec_readout_and_bad_bcc(hub: Hub, api: Api) -> None:
    client = auto_tenant(hub, api)
    good = (DATA / "iec62056" / "iskra_me162_mode_c.bin").read_bytes()
    response = client.post("/api/v1/tenants/linear/telegrams/iec62056", content=good)
    assert response.status_code == 200, response.text
    bad = (DATA / "iec62056" / "iskra_me162_mode_c_bad_bcc.bin").read_bytes()
    response = client.post("/api/v1/tenants/linear/telegrams/iec62056", content=bad)
    assert response.status_code == 422 and response.json()["reason"] == "bad_checksum"
