"""The writer under store failures: transient ones are retried, a refused batch is split and
its culprit dead-lettered, and nothing is confirmed before it is durable."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.errors import StoreRejected, StoreUnavailable
from gridhub.hub import Hub, build_hub
from gridhub.ingest.pipeline import Receipt
from gridhub.ingest.validate import Envelope
from gridhub.storage.base import WriteBatch, WriteResult
from helpers import make_settings, seed_tenant, wait_for

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"


def envelope(value: float, minute: int) -> Envelope:
    raw = json.dumps(
        {
            "hardwareId": "hh001-meter",
            "type": "DeviceMeasurements",
            "request": {"measurements": {P: value}, "eventDate": f"2026-11-20T10:{minute:02d}:00Z"},
        }
    ).encode()
    return Envelope("test", raw, "linear", time.time_ns() // 1000)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = build_hub(make_settings(tmp_path))
    seed_tenant(h)
    yield h
    h.stop()


def test_transient_failures_are_retried_until_stored(hub: Hub) -> None:
    write = hub.store.write
    failures = [3]

    def flaky(batch: WriteBatch) -> WriteResult:
        if failures[0]:
            failures[0] -= 1
            raise StoreUnavailable("disk busy")
        return write(batch)

    hub.store.write = flaky  # type: ignore[method-assign]
    hub.start(mqtt=False)
    receipt = hub.pipeline.submit_and_wait([envelope(1.0, 0)], timeout=30)
    assert receipt.accepted == 1 and receipt.error is None
    assert hub.pipeline.metrics.store_errors == 3
    assert hub.pipeline.metrics.stored_readings == 1


def test_a_refused_submission_is_dead_lettered_and_the_others_stored(hub: Hub) -> None:
    write = hub.store.write
    gate = threading.Event()
    calls: list[int] = []

    def picky(batch: WriteBatch) -> WriteResult:
        gate.wait(10)
        calls.append(len(batch))
        if 666.0 in batch.measurements.value:
            raise StoreRejected("value out of range for this store")
        return write(batch)

    hub.store.write = picky  # type: ignore[method-assign]
    hub.start(mqtt=False)
    receipts: dict[str, Receipt] = {}

    def submit(name: str, envelopes: list[Envelope]) -> None:
        hub.pipeline.submit(envelopes, lambda r: receipts.setdefault(name, r))

    submit("first", [envelope(1.0, 0)])  # the writer takes it and waits at the gate
    wait_for(lambda: hub.pipeline.metrics.received_messages == 1)
    submit("bad", [envelope(2.0, 1), envelope(666.0, 2)])
    submit("good", [envelope(3.0, 3)])
    gate.set()
    wait_for(lambda: len(receipts) == 3, what="three confirmations")
    assert receipts["first"].accepted == 1 and receipts["good"].accepted == 1
    bad = receipts["bad"]
    assert bad.accepted == 0 and [r.reason for r in bad.rejected] == ["store_rejected"] * 2
    letters = hub.store.dead_letters("linear")
    assert sorted(d.reason for d in letters) == ["store_rejected", "store_rejected"]
    assert hub.pipeline.metrics.stored_readings == 2
    assert hub.pipeline.metrics.buffer_rows == 0
    assert hub.pipeline.running  # the writer survived


def test_stopping_with_the_store_down_confirms_nothing(hub: Hub) -> None:
    def down(batch: WriteBatch) -> WriteResult:
        raise StoreUnavailable("gone")

    hub.store.write = down  # type: ignore[method-assign]
    hub.start(mqtt=False)
    results: list[Receipt] = []
    hub.pipeline.submit([envelope(1.0, 0)], results.append)
    wait_for(lambda: hub.pipeline.metrics.store_errors >= 1)
    hub.pipeline.stop()
    assert len(results) == 1 and isinstance(results[0].error, StoreUnavailable)


def test_fault_injection_route_is_off_unless_enabled(tmp_path: Path) -> None:
    for enabled in (False, True):
        hub = build_hub(make_settings(tmp_path / str(enabled), fault_injection=enabled))
        tenant_token = seed_tenant(hub)
        admin = hub.ensure_admin_token()
        hub.start(mqtt=False)
        server = ApiServer(hub, "127.0.0.1", 0)
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                url = "/api/v1/faults/store-outage?seconds=1"
                as_admin = client.post(url, headers={"Authorization": f"Bearer {admin}"})
                if not enabled:
                    assert as_admin.status_code == 404
                    continue
                tenant = {"Authorization": f"Bearer {tenant_token}"}
                assert client.post(url, headers=tenant).status_code == 403
                assert as_admin.status_code == 200
                started = time.monotonic()
                sent = client.post(
                    "/api/v1/tenants/linear/events", headers=tenant, content=envelope(5.0, 5).raw
                )
                assert sent.status_code == 200  # confirmed once the outage is over
                assert time.monotonic() - started > 0.5
                assert hub.pipeline.metrics.store_errors >= 1
        finally:
            server.stop()
            hub.stop()
