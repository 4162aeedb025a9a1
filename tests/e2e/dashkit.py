"""Dashboard test kit: a hub with demo data, headless Chromium (Debian's), page helpers.

The hub is the demo's: the simulated Linear fleet registered by ``gridhub demo``'s own
``register_fleet``, history written through the real pipeline — plus a second tenant, so every
module can check that no page shows another tenant's data. One household meter has a gap of
known quarter-hours, so completeness has something to find.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from gridhub.access.directory import Kind
from gridhub.cli.demo import TENANT, ZONE, register_fleet, researcher_token
from gridhub.cli.server import ApiServer
from gridhub.domain.registry import Tenant
from gridhub.hub import Hub, build_hub
from gridhub.ingest.validate import Envelope
from gridhub.sim.fleet import CUSTOM_IDENTIFIERS, Fleet
from helpers import make_settings, require

CHROMIUM = os.environ.get("GRIDHUB_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
OTHER = "northwind"
GAP_DEVICE = "hh002-meter"


@dataclass
class Dashboard:
    url: str
    hub: Hub
    tokens: dict[str, str]  # "researcher", "customer" (linear), "other" (northwind), "admin"
    day: date  # yesterday in the tenant's zone: a full day of data
    gap: tuple[datetime, datetime]  # GAP_DEVICE sent nothing in [start, end)

    def client(self, who: str = "researcher") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30
        )

    def get(self, path: str, who: str = "researcher", **params: Any) -> Any:
        with self.client(who) as client:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()


def _customer_token(hub: Hub, site: str) -> str:
    """The household's own token: a customer reads its site (docs/access.md)."""
    customer = hub.access.directory.create_stakeholder(
        TENANT, "e2e-customer", Kind.CUSTOMER, site=site
    )
    return hub.tokens.create(TENANT, "customer", "e2e", stakeholder=customer.id)[1]


def _write(hub: Hub, fleet: Fleet, tenant: str, start: datetime, end: datetime, **kw: Any) -> None:
    received = int(end.timestamp() * 1e6)
    for batch in fleet.batches(start, end, 900, batch_size=20_000, **kw):
        hub.pipeline.submit_and_wait(
            [Envelope("sim", raw, tenant, received) for _hw, raw in batch], timeout=120
        )


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    hub = build_hub(make_settings(tmp_path_factory.mktemp("dashboard")))
    admin = hub.ensure_admin_token()
    assert admin is not None
    hub.start(mqtt=False)
    server: ApiServer | None = None
    try:
        zone = ZoneInfo(ZONE)
        now = datetime.now(UTC).replace(microsecond=0)
        day = (now.astimezone(zone) - timedelta(days=1)).date()
        start = datetime.combine(day - timedelta(days=2), datetime.min.time(), tzinfo=zone)
        gap = (
            datetime.combine(day, datetime.min.time(), tzinfo=zone) + timedelta(hours=9),
            datetime.combine(day, datetime.min.time(), tzinfo=zone) + timedelta(hours=11),
        )
        fleet = Fleet(8, seed=1, zone=ZONE, tenant=TENANT)
        register_fleet(hub, fleet)
        _write(hub, fleet, TENANT, start, now, gap_windows=((gap[0], gap[1], GAP_DEVICE),))
        other = Fleet(3, seed=7, zone="Europe/Amsterdam", prefix="nw", tenant=OTHER)
        hub.registry.create_tenant(Tenant(OTHER, "Northwind", "Europe/Amsterdam"))
        hub.registry.ensure_identifiers(OTHER, CUSTOM_IDENTIFIERS)
        hub.registry.register_sites(other.sites())
        hub.registry.register_devices(other.devices())
        _write(hub, other, OTHER, start, now)
        tokens = {
            "researcher": researcher_token(hub, TENANT, "e2e"),
            "customer": _customer_token(hub, fleet.sites()[0].id),
            "other": researcher_token(hub, OTHER, "e2e"),
            "admin": admin,  # the installation's: every tenant
        }
        server = ApiServer(hub, "127.0.0.1", 0)
        server.start()
        yield Dashboard(server.url, hub, tokens, day, gap)
    finally:
        if server is not None:
            server.stop()
        hub.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(
        shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(),
        f"no Chromium at {CHROMIUM} (apt-get install chromium)",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


def login(browser: Any, dashboard: Dashboard, who: str = "researcher") -> Any:
    """A new browser page, signed in through the login form."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{dashboard.url}/ui/login")
    page.fill("#token", dashboard.tokens[who])
    page.click("#signin")
    page.wait_for_url("**/ui/overview")
    page.wait_for_function("() => window.__gridhub && window.__gridhub.ready === true")
    return page


def open_page(page: Any, dashboard: Dashboard, path: str) -> None:
    page.goto(f"{dashboard.url}{path}")
    page.wait_for_function(
        "() => (window.__gridhub && window.__gridhub.ready === true)"
        " || !document.querySelector('#error').hidden"
    )


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
