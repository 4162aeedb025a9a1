"""Fixtures of the fault suite: a private Mosquitto per test, and the detection/recovery report.

Every scenario gets a Mosquitto of its own, started here on a free port with a configuration in
the test's temporary directory — the machine's broker on 127.0.0.1:1883 is never touched (one
scenario restarts and even kills its broker). The configuration is the one the README asks a
pilot to use (``persistence true``, ``max_queued_messages 1000000``, ``max_queued_bytes 0``):
with Mosquitto's defaults a disconnected hub's session queues only 1,000 messages and the broker
silently drops the rest, after having PUBACKed them to the devices.

Each test fills a report (scenario, counts, detection and recovery time); at the end of the
session the reports are printed and merged into ``test-artifacts/faults.json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from faults.faultkit import Mosquitto
from helpers import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "test-artifacts" / "faults.json"

_REPORTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    require(binary is not None, "the fault suite needs the mosquitto binary")
    assert binary is not None
    mosquitto = Mosquitto(binary, tmp_path / "mosquitto")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto._reap()


# --- reports -------------------------------------------------------------------------------------


_OUTCOME = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the scenario fills; recorded with the test's outcome when it ends."""
    report: dict[str, Any] = {"test": request.node.nodeid}
    yield report
    if "scenario" not in report:
        return
    report["outcome"] = request.node.stash.get(_OUTCOME, "error")
    report["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _REPORTS[report["scenario"]] = report
    _write_artifact()


def _write_artifact() -> None:
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, Any] = {}
    try:
        scenarios = json.loads(ARTIFACT.read_text()).get("scenarios", {})
    except (OSError, ValueError):
        pass
    scenarios.update(_REPORTS)
    document = {
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}, host {socket.gethostname()}",
        "units": "seconds",
        "scenarios": dict(sorted(scenarios.items())),
    }
    ARTIFACT.write_text(json.dumps(document, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORTS:
        return
    terminalreporter.section("fault suite: detection and recovery (s)")
    for name, report in sorted(_REPORTS.items()):
        detection = report.get("detection_s")
        recovery = report.get("recovery_s")
        terminalreporter.write_line(
            f"{name:<28} {report['outcome']:<7} detection {_fmt(detection):>7}  "
            f"recovery {_fmt(recovery):>7}  confirmed {report.get('confirmed', '?')}"
        )
    terminalreporter.write_line(f"written to {ARTIFACT.relative_to(ROOT)}")


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"
