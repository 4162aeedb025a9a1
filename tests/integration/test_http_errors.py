"""How the API answers bad input: a precise 4xx, never a 500 (the fuzzing's regressions)."""

from __future__ import annotations

import pytest

from gridhub.hub import Hub
from helpers import Api, seed_tenant

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_refused_by_a_model_is_a_422_that_names_it(
    hub: Hub, api: Api, number: str
) -> None:
    # Python's JSON parser accepts NaN/Infinity; echoing them back in FastAPI's own 422 failed
    admin = api.client(seed_tenant(hub))
    body = '{"sql": "select 1", "timeout_s": ' + number + "}"
    answer = admin.post("/api/v1/tenants/linear/sql", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "timeout_s"]
    assert error["input"] == str(float(number))


def test_deeply_nested_events_are_malformed_json_not_a_500(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    deep = "[" * 5000 + "]" * 5000  # past msgspec's nesting limit: RecursionError before
    answer = admin.post("/api/v1/tenants/linear/events", content=deep, headers=JSON)
    assert answer.status_code == 400, answer.text
    assert "nested too deeply" in answer.text
