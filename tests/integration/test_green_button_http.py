"""Green Button (ESPI) XML through the import route and the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parent.parent / "data" / "green_button"


def test_fifteen_minute_feed_is_imported_once(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    client.patch("/api/v1/tenants/linear", json={"unknown_devices": "auto_register"})
    body = (DATA / "fifteen_minute_electricity.xml").read_bytes()
    first = client.post("/api/v1/tenants/linear/imports/green-button", content=body)
    assert first.status_code == 200, first.text
    receipt = first.json()
    assert receipt["accepted"] == 284 and receipt["rejected"] == []
    stored = hub.pipeline.metrics.stored_readings
    assert stored == receipt["readings"] > 0
    again = client.post("/api/v1/tenants/linear/imports/green-button", content=body)
    assert again.status_code == 200
    assert hub.pipeline.metrics.stored_readings == stored  # re-import stores nothing twice
    names = {i["name"] for i in client.get("/api/v1/tenants/linear/identifiers").json()}
    assert "electricity.energy.active.consumed.interval" in names


def test_hostile_xml_is_refused_and_kept(hub: Hub, api: Api) -> None:
    client = api.client(seed_tenant(hub))
    body = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><feed>&a;</feed>'
    response = client.post("/api/v1/tenants/linear/imports/green-button", content=body)
    assert response.status_code == 422 and response.json()["reason"] == "invalid_message"
    letters = client.get("/api/v1/tenants/linear/deadletters").json()
    assert letters[0]["reason"] == "invalid_message"
