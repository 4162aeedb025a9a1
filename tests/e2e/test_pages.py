"""Every dashboard page opens on demo data, signed in through the login form."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.dashkit import Dashboard, login, open_page, screenshot

pytestmark = pytest.mark.e2e

PAGES = ("overview", "household", "devices", "aggregates", "completeness", "tariffs", "export")


def test_each_page_renders(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the pages run under a strict Content-Security-Policy: nothing of theirs may trip it
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    for name in PAGES:
        open_page(page, dashboard, f"/ui/{name}")
        assert page.locator("#error").is_hidden(), page.locator("#error").text_content()
        screenshot(page, name)
        assert errors == [], name
