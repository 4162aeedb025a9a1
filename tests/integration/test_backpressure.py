"""Backpressure: a slow store fills the bounded buffer; HTTP answers 503 with Retry-After."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.hub import Hub, build_hub
from gridhub.storage.base import WriteBatch, WriteResult
from helpers import make_settings, seed_tenant, wait_for

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"


def batch_body(start: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "hardwareId": "hh001-meter",
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: float(i)},
                "eventDate": f"2026-11-20T00:00:{i % 60:02d}.{i:06d}Z",
            },
        }
        for i in range(start, start + count)
    ]


@pytest.fixture
def slow_hub(tmp_path: Path) -> Iterator[tuple[Hub, str, threading.Event]]:
    hub = build_hub(make_settings(tmp_path, buffer_rows=1000, confirm_timeout_s=20))
    seed_tenant(hub)
    gate = threading.Event()
    write = hub.store.write

    def held(batch: WriteBatch) -> WriteResult:
        gate.wait(20)
        return write(batch)

    hub.store.write = held  # type: ignore[method-assign]
    hub.start(mqtt=False)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    yield hub, server.url, gate
    gate.set()
    server.stop()
    hub.stop()


def test_full_buffer_answers_503_then_recovers(slow_hub: tuple[Hub, str, threading.Event]) -> None:
    hub, url, gate = slow_hub
    token = hub.tokens.create("linear", "admin", "t")[1]
    headers = {"Authorization": f"Bearer {token}"}
    endpoint = f"{url}/api/v1/tenants/linear/events"
    results: list[int] = []

    def post(start: int) -> None:
        with httpx.Client(timeout=30) as client:
            results.append(
                client.post(endpoint, json=batch_body(start, 600), headers=headers).status_code
            )

    # the first batch is taken by the writer, whose write is held: its 600 rows stay counted
    first = threading.Thread(target=post, args=(0,))
    first.start()
    wait_for(lambda: hub.pipeline.metrics.received_messages >= 600, what="first batch queued")
    with httpx.Client(timeout=30) as client:
        refused = client.post(endpoint, json=batch_body(600, 600), headers=headers)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert hub.pipeline.metrics.overloaded == 1
    assert results == []  # nothing confirmed while the store is held
    gate.set()
    first.join(20)
    assert results == [200]
    with httpx.Client(timeout=30) as client:
        again = client.post(endpoint, json=batch_body(600, 600), headers=headers)
    assert again.status_code == 200
    assert hub.pipeline.metrics.stored_readings == 1200
    assert hub.pipeline.metrics.buffer_rows == 0
