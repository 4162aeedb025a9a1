"""The command line, run as a user would: real processes against a real HTTP server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gridhub.hub import Hub
from helpers import Api, gridhub, seed_tenant

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"


def test_import_csv_then_deadletter_list(hub: Hub, api: Api, tmp_path: Path) -> None:
    token = seed_tenant(hub)
    csv_file = tmp_path / "history.csv"
    rows = ["hardwareId,identifier,timestamp,value"]
    for i in range(96):
        hour, minute = divmod(15 * i, 60)
        rows.append(f"hh001-meter,{P},2026-11-19 {hour:02d}:{minute:02d}:00,{i / 10}")
    rows.append(f"hh001-meter,{P},2026-11-19 25:00:00,1")  # bad date, line 98
    rows.append("hh001-meter,electricity.nope,2026-11-19T00:00:00Z,1")  # unknown identifier
    csv_file.write_text("\n".join(rows) + "\n")
    env = {"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": token}
    result = gridhub(
        "import",
        "csv",
        str(csv_file),
        "--tenant",
        "linear",
        "--timezone",
        "Europe/Brussels",
        env=env,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "1 bad_date" in result.stdout and "1 unknown_identifier" in result.stdout
    series = (
        api.client(token)
        .get(
            "/api/v1/tenants/linear/devices/hh001-meter/series",
            params={"identifier": P, "day": "2026-11-19", "resolution": "15m"},
        )
        .json()
    )
    assert series["count"] == 96
    assert series["points"][4]["ts"] == "2026-11-19T01:00:00+01:00"

    again = gridhub(
        "import",
        "csv",
        str(csv_file),
        "--tenant",
        "linear",
        "--timezone",
        "Europe/Brussels",
        env=env,
    )
    assert again.returncode == 3
    assert hub.pipeline.metrics.duplicate_readings == 96  # re-import stores nothing twice

    listed = gridhub("deadletter", "list", "--tenant", "linear", "--reason", "bad_date", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "csv:history.csv:98" in listed.stdout and "bad_date" in listed.stdout
    refused = gridhub("deadletter", "list", "--tenant", "linear", env={**env, "GRIDHUB_TOKEN": "x"})
    assert refused.returncode == 1 and "401" in refused.stderr


def test_simulate_registers_backfills_and_sends(hub: Hub, api: Api) -> None:
    token = seed_tenant(hub, tenant="sim")
    env = {"GRIDHUB_URL": api.url, "GRIDHUB_TOKEN": token}
    result = gridhub(
        "simulate",
        "--tenant",
        "sim",
        "--households",
        "3",
        "--backfill",
        "1",
        "--interval",
        "5",
        "--duration",
        "6",
        "--malformed-rate",
        "0.05",
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"registered 3 households, \d+ devices", result.stdout)
    client = api.client(token)
    devices = {d["hardware_id"] for d in client.get("/api/v1/tenants/sim/devices").json()}
    assert {"hh001-meter", "hh002-meter", "hh003-meter"} <= devices
    state = client.get("/api/v1/tenants/sim/devices/hh001-meter/state").json()
    assert {s["identifier"] for s in state} >= {P, "electricity.voltage.rms.l1"}
    reasons = {d["reason"] for d in client.get("/api/v1/tenants/sim/deadletters").json()}
    assert reasons, "malformed messages were injected and must be dead-lettered"


def test_demo_prints_a_url_that_returns_96_quarter_hours(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridhub.cli.main",
            "demo",
            "--households",
            "3",
            "--days",
            "2",
            "--port",
            "0",
            "--live-interval",
            "1",
            "--duration",
            "60",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("curl -H"):
                break
        text = "".join(lines)
        match = re.search(r"curl -H 'Authorization: Bearer (\S+)' '(\S+)'", text)
        assert match, text
        token, url = match.groups()
        assert "CIGRE LV benchmark: 3 households on" in text, text
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            body = client.get(url).json()
            assert body["count"] == 96 and body["resolution"] == "15m"
            state_url = url.split("/series?")[0] + "/state"
            # live readings (every second, over the embedded broker) move the state to now
            deadline = time.monotonic() + 30
            while True:
                newest = max(datetime.fromisoformat(s["ts"]) for s in client.get(state_url).json())
                if newest > datetime.now(UTC) - timedelta(seconds=10):
                    break
                assert time.monotonic() < deadline, f"no live data; newest reading {newest}"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()
