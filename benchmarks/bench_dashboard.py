"""Time from navigation to a rendered household day view, measured in headless Chromium.

The hub is the demo's (``gridhub demo``'s fleet and its ``register_fleet``; 200 households and
14 days of history by default, written through the real pipeline). For each run a page
navigates to ``/ui/household?site=…&day=yesterday`` and the figure is ``performance.now()`` at
the chart's first draw hook — milliseconds since the navigation started, so it includes the
HTML, the scripts (uPlot is vendored), the API calls with the bearer token and the drawing.
The first run per browser context is cold (empty cache); the rest are warm, each on another
household. Usage::

    python benchmarks/bench_dashboard.py [--households 200] [--days 14] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import sync_playwright

from gridhub.cli.demo import TENANT, ZONE, register_fleet, researcher_token
from gridhub.cli.server import ApiServer
from gridhub.config import Settings
from gridhub.hub import build_hub
from gridhub.ingest.validate import Envelope
from gridhub.sim.fleet import Fleet

CHROMIUM = os.environ.get("GRIDHUB_CHROMIUM", "/usr/bin/chromium")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        hub = build_hub(Settings(data_dir=Path(data_dir), http_port=0))
        hub.start(mqtt=False)
        try:
            fleet = Fleet(args.households, seed=1, zone=ZONE, tenant=TENANT)
            register_fleet(hub, fleet)
            now = datetime.now(UTC).replace(microsecond=0)
            began = time.perf_counter()
            zone = ZoneInfo(ZONE)
            first_day = (now.astimezone(zone) - timedelta(days=args.days)).date()
            start = datetime.combine(first_day, datetime.min.time(), tzinfo=zone)
            messages = 0
            for batch in fleet.batches(start, now, 900, batch_size=20_000):
                received = int(now.timestamp() * 1e6)
                hub.pipeline.submit_and_wait(
                    [Envelope("sim", raw, TENANT, received) for _hw, raw in batch], timeout=300
                )
                messages += len(batch)
            print(
                f"backfill: {messages:,} messages in {time.perf_counter() - began:.0f} s",
                file=sys.stderr,
            )
            token = researcher_token(hub, TENANT, "bench")  # reads what a policy grants
            server = ApiServer(hub, "127.0.0.1", 0)
            server.start()
            try:
                figures = measure(server.url, token, fleet, now.astimezone(zone), args.runs)
            finally:
                server.stop()
        finally:
            hub.stop()
    result = {
        "what": "navigation → rendered household day view (headless Chromium)",
        "households": args.households,
        "devices": len(fleet.devices()),
        "days": args.days,
        "messages": messages,
        **figures,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "command": " ".join(["python", "benchmarks/bench_dashboard.py", *sys.argv[1:]]),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def measure(url: str, token: str, fleet: Fleet, now: datetime, runs: int) -> dict[str, float]:
    day = (now - timedelta(days=1)).date()
    sites = [s.id for s in fleet.sites()]
    cold: list[float] = []
    warm: list[float] = []
    phases: list[tuple[float, ...]] = []  # script start, data arrived, drawn (ms)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/ui/login")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_url("**/ui/overview")
        for i in range(runs + 1):
            site = sites[(i * 7) % len(sites)]
            page.goto(f"{url}/ui/household?site={site}&day={day}")
            page.wait_for_function("() => window.__gridhub && window.__gridhub.householdDrawn > 0")
            times = page.evaluate(
                "[window.__gridhub.householdScript, window.__gridhub.householdData,"
                " window.__gridhub.householdDrawn]"
            )
            (cold if i == 0 else warm).append(float(times[2]))
            if i:
                phases.append(tuple(float(t) for t in times))
        browser.close()
        api = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(runs):
                site = sites[(i * 11) % len(sites)]
                began = time.perf_counter()
                client.get(
                    f"/api/v1/tenants/{TENANT}/reports/household/{site}", params={"day": day}
                )
                api.append((time.perf_counter() - began) * 1000)
        reports = {
            "overview": ("overview", {}),
            "completeness_14d": (
                "completeness",
                {"from": str(day - timedelta(days=13)), "to": str(day)},
            ),
            "aggregates_7d": ("aggregates", {"from": str(day - timedelta(days=6)), "to": str(day)}),
            "timelines": (f"timelines/{sites[3]}", {"day": str(day)}),
        }
        other: dict[str, float] = {}
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            for name, (path, params) in reports.items():
                times = []
                for _ in range(5):
                    began = time.perf_counter()
                    client.get(f"/api/v1/tenants/{TENANT}/reports/{path}", params=params)
                    times.append((time.perf_counter() - began) * 1000)
                other[f"api_{name}_median_ms"] = round(statistics.median(times), 1)
    warm.sort()
    return {
        **other,
        "runs": len(warm),
        "first_ms": round(cold[0], 1),
        "median_ms": round(statistics.median(warm), 1),
        "p95_ms": round(warm[max(0, int(len(warm) * 0.95) - 1)], 1),
        "max_ms": round(warm[-1], 1),
        # where the time goes (medians of the warm runs): page and scripts loaded, API answered
        "script_start_median_ms": round(statistics.median(p[0] for p in phases), 1),
        "data_median_ms": round(statistics.median(p[1] for p in phases), 1),
        "api_call_median_ms": round(statistics.median(api), 1),
    }


if __name__ == "__main__":
    main()
