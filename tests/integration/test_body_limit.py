"""Every request body has a limit before any route parses it (JSON bodies: 1 MiB)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridhub.api.body_limit import MAX_BODY_BYTES
from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration


def test_oversized_json_bodies_are_refused_before_parsing(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    url = "/api/v1/tenants/linear/tariffs"
    huge = b'{"sites": [' + b'"x",' * (MAX_BODY_BYTES // 4) + b'"x"]}'
    declared = admin.post(url, content=huge, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "request body over" in declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield huge[: MAX_BODY_BYTES // 2]
        yield huge[MAX_BODY_BYTES // 2 :]

    chunked = admin.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    # a body under the limit reaches the route (which then says what is wrong with it)
    small = admin.post(url, json={"kind": "tou"})
    assert small.status_code == 422


def test_bulk_routes_keep_their_own_larger_limits(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    # 2 MiB of events is over the JSON limit but within the events route's own
    message = (
        '{"hardwareId":"hh001-meter","type":"DeviceMeasurements","request":{"measurements":'
        '{"electricity.power.active.consumed.total":1.5},"eventDate":"2026-06-01T00:00:00Z"}}'
    )
    batch = "[" + ",".join([message] * 9_000) + "]"
    assert len(batch) > 1.2 * MAX_BODY_BYTES
    answer = admin.post(
        "/api/v1/tenants/linear/events",
        content=batch,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text[:300]
