"""The hub compacts settled days by itself, on the writer thread, and keeps ingesting."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridhub.hub import Hub, build_hub
from gridhub.ingest.validate import Envelope
from helpers import make_settings, seed_tenant, wait_for

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"
DEVICES = ("hh001-meter", "hh002-meter", "hh003-meter")


def envelope(device: str, ts: datetime, value: float) -> Envelope:
    raw = json.dumps(
        {
            "hardwareId": device,
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: value},
                "eventDate": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
    ).encode()
    return Envelope("test", raw, "linear", time.time_ns() // 1000)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = build_hub(make_settings(tmp_path))
    seed_tenant(h, devices=DEVICES)
    yield h
    h.stop()


def test_the_writer_compacts_settled_days_while_ingesting(hub: Hub) -> None:
    hub.start(mqtt=False)
    # the first plan runs at start, on the empty store (as CI once saw by chance): the history
    # ingested next must still be compacted within seconds, not at the next hourly plan
    assert hub.compactor is not None
    wait_for(lambda: hub.compactor.stats.plans >= 1, timeout=10, what="the first plan")
    start = (datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0)
    readings = [
        envelope(device, start + timedelta(minutes=15 * q), float(q))
        for q in range(4 * 96)
        for device in DEVICES
    ]
    for i in range(0, len(readings), 200):
        chunk = readings[i : i + 200]
        assert hub.pipeline.submit_and_wait(chunk).accepted == len(chunk)
    wait_for(
        lambda: bool(hub.db.read("SELECT count(*) FROM compacted_days WHERE rows > 0")[0][0]),
        timeout=30,
        what="a compacted day",
    )
    # ingest goes on, and every reading is there exactly once
    now = datetime.now(UTC).replace(microsecond=0)
    assert hub.pipeline.submit_and_wait([envelope(DEVICES[0], now, 1.0)]).accepted == 1
    (count, distinct) = hub.db.read(
        "SELECT count(*), count(DISTINCT (device, ts)) FROM measurements"
    )[0]
    assert count == distinct == len(readings) + 1


def test_a_failing_maintenance_step_does_not_stop_ingest(hub: Hub) -> None:
    calls: list[float] = []

    def broken() -> bool:
        calls.append(time.monotonic())
        raise RuntimeError("maintenance bug")

    hub.pipeline.add_maintenance(broken)
    hub.start(mqtt=False)
    wait_for(lambda: len(calls) >= 2, timeout=10, what="maintenance called while idle")
    now = datetime.now(UTC).replace(microsecond=0)
    receipt = hub.pipeline.submit_and_wait([envelope(DEVICES[0], now, 1.0)])
    assert receipt.accepted == 1 and hub.pipeline.metrics.stored_readings == 1
