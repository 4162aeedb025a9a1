"""Topology over HTTP (P5): upload, read back, import a reference grid, who may change it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridhub.domain.registry import Site
from gridhub.domain.topology import NodeKind
from gridhub.hub import Hub
from helpers import Api, gridhub, seed_tenant

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).parents[1] / "data" / "topology" / "sample.json"


def test_put_then_get_round_trips_and_reports_unregistered_sites(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    answer = admin.put(
        "/api/v1/tenants/linear/topology",
        content=SAMPLE.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    sample = json.loads(SAMPLE.read_text())
    assert summary["nodes"] == len(sample["nodes"])
    assert summary["lines"] == len(sample["lines"])
    registered = {"hh001"}
    attached = [s["site"] for s in sample.get("sites", [])]
    assert summary["unknown_sites"] == [s for s in attached if s not in registered][:20]

    document = admin.get("/api/v1/tenants/linear/topology").json()
    assert document["name"] == "sample"
    assert {n["id"] for n in document["nodes"]} == {n["id"] for n in sample["nodes"]}
    # the stored document survives a restart of the service's cache
    hub.topologies._cache.clear()
    assert admin.get("/api/v1/tenants/linear/topology/summary").json() == summary


def test_import_reference_grid_attaches_the_registered_households(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    hub.registry.register_sites([Site("linear", f"hh{i:03d}") for i in range(2, 41)])
    answer = admin.post("/api/v1/tenants/linear/topology/import", json={"network": "cigre_lv"})
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["name"] == "cigre_lv"
    assert summary["sites"] == 40 and summary["unknown_sites"] == []
    topology = hub.topologies.get("linear")
    points = set(topology.nodes_of_kind(NodeKind.CONNECTION_POINT))
    assert {s.node for s in topology.sites} <= points


def test_bad_documents_get_a_precise_refusal(hub: Hub, api: Api) -> None:
    admin = api.client(seed_tenant(hub))
    url = "/api/v1/tenants/linear/topology"
    broken = admin.put(url, content=b'{"format": "gridhub.topology", "version": 1')
    assert broken.status_code == 422 and "JSON" in broken.text
    sample = json.loads(SAMPLE.read_text())
    sample["lines"][0]["to"] = "nowhere"
    dangling = admin.put(url, content=json.dumps(sample).encode())
    assert dangling.status_code == 422 and "nowhere" in dangling.text
    huge = admin.put(url, content=b" " * (16 * 1024 * 1024 + 1))
    assert huge.status_code == 422 and "larger than" in huge.text
    unknown = admin.post(url + "/import", json={"network": "atlantis"})
    assert unknown.status_code == 422
    missing = admin.get(url)
    assert missing.status_code == 404 and "no topology" in missing.text


def test_only_the_tenants_dso_and_admins_change_it(hub: Hub, api: Api) -> None:
    seed_tenant(hub)
    seed_tenant(hub, "other")
    _r, researcher = hub.tokens.create("linear", "researcher", "r")
    _r, dso = hub.tokens.create("linear", "dso", "d")
    _r, stranger = hub.tokens.create("other", "admin", "o")
    url = "/api/v1/tenants/linear/topology"
    body = SAMPLE.read_bytes()
    assert api.client(researcher).put(url, content=body).status_code == 403
    assert api.client(stranger).put(url, content=body).status_code == 403
    assert api.client(dso).put(url, content=body).status_code == 200
    assert api.client(researcher).get(url).status_code == 200
    assert api.client(stranger).get(url).status_code == 403
    assert api.client("gh_forged_secret").get(url).status_code == 401


def test_cli_imports_puts_and_shows(hub: Hub, api: Api, tmp_path: Path) -> None:
    env = {"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": seed_tenant(hub)}
    imported = gridhub("topology", "import", "case33bw", "--tenant", "linear", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "case33bw" in imported.stdout and "connection points" in imported.stdout
    saved = tmp_path / "grid.json"
    shown = gridhub("topology", "show", "--tenant", "linear", "--output", str(saved), env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(saved.read_text())["name"] == "case33bw"
    put = gridhub("topology", "put", str(SAMPLE), "--tenant", "linear", env=env)
    assert put.returncode == 0, put.stderr
    assert "hh-cp1" in put.stderr  # attached in the document, not registered: reported
    refused = gridhub("topology", "import", "atlantis", "--tenant", "linear", env=env)
    assert refused.returncode == 1 and "atlantis" in refused.stderr
