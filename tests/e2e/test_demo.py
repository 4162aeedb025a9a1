"""``gridhub demo`` itself: its printed dashboard URL and token open the pages on live demo data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.dashkit import screenshot

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running ``gridhub demo``: (dashboard login URL, researcher token)."""
    data = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gridhub.cli.main", "demo", "--households", "3", "--days", "1",
            "--port", "0", "--live-interval", "1", "--duration", "120",
            "--data-dir", str(Path(data) / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("curl -H"):
                break
        text = "".join(lines)
        url = re.search(r"dashboard\s+(\S+/ui/login)", text)
        token = re.search(r"token\s+(gh_\S+)\s+\(tenant", text)
        assert url and token, text
        yield url.group(1), token.group(1)
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


def test_demo_dashboard_shows_live_data(browser: Any, demo: tuple[str, str]) -> None:
    login_url, token = demo
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(login_url)
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_url("**/ui/overview")
    page.wait_for_function("() => window.__gridhub && window.__gridhub.ready === true")
    base = login_url.removesuffix("/ui/login")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        overview = client.get("/api/v1/tenants/linear/reports/overview").json()
    assert page.text_content("#households") == "3" == str(overview["households"])
    # the history reaches the present and live readings follow: the last 15 minutes have data
    assert overview["ingest"]["readings"] > 0
    page.goto(f"{base}/ui/household")
    page.wait_for_function("() => window.__gridhub && window.__gridhub.householdDrawn > 0")
    assert page.evaluate("window.__gridhub.charts.household.data[0].length") == 96
    screenshot(page, "demo-household")
