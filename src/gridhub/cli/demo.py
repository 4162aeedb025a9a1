"""``gridhub demo``: a Linear-like pilot on embedded defaults, ready to explore.

One process: the hub (DuckDB under ``./gridhub-data/demo``, an embedded MQTT broker unless
``--mqtt-url``), 200 simulated households placed on the CIGRE LV benchmark grid, with 14 days of
history written through the real pipeline, live readings published over MQTT, and the API. It
prints the URLs and a token.
"""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import typer

from gridhub.cli.common import console, err_console, load_settings, setup_logging
from gridhub.cli.server import ApiServer
from gridhub.cli.simulate import backfill_start, progress_bar
from gridhub.domain.access import Kind
from gridhub.domain.registry import Tenant
from gridhub.errors import ConfigError
from gridhub.hub import Hub, build_hub
from gridhub.ingest.validate import Envelope
from gridhub.sim.fleet import CUSTOM_IDENTIFIERS, Fleet
from gridhub.sim.transport import MqttPublisher, run_live

TENANT = "linear"
ZONE = "Europe/Brussels"


def register_fleet(hub: Hub, fleet: Fleet) -> None:
    hub.registry.create_tenant(Tenant(TENANT, "Linear pilot (demo)", ZONE), exist_ok=True)
    hub.registry.ensure_identifiers(TENANT, CUSTOM_IDENTIFIERS)
    hub.registry.register_sites(fleet.sites())
    hub.registry.register_devices(fleet.devices())


def researcher_token(hub: Hub, tenant: str, name: str = "demo token") -> str:
    """A researcher's token that reads every series of ``tenant``: a researcher reads only
    what an owner policy grants (docs/access.md), so the demo grants it all, once."""
    researcher = hub.access.directory.find_stakeholder(tenant, "demo-researcher")
    if researcher is None:
        researcher = hub.access.directory.create_stakeholder(
            tenant, "demo-researcher", Kind.RESEARCHER, "demo researcher"
        )
        hub.access.directory.create_policy(
            tenant,
            grantee=researcher.id,
            identifier="*",
            read=True,
            write=False,
            valid_from=datetime(1970, 1, 1, tzinfo=UTC),
            policy_id="demo-research",
            by="demo",
        )
    return hub.tokens.create(tenant, "researcher", name, stakeholder=researcher.id)[1]


def backfill(hub: Hub, fleet: Fleet, days: int, now: datetime) -> int:
    """Write ``days`` of 15-minute history through the pipeline; return messages sent."""
    start = backfill_start(fleet, days, now)
    sent = 0
    devices = len(fleet.devices())
    with progress_bar() as progress:
        task = progress.add_task(
            f"backfilling {days} days of {devices} devices",
            total=fleet.ticks_count(start, now, 900) * devices,
        )
        for batch in fleet.batches(start, now, 900, batch_size=20_000):
            received = int(now.timestamp() * 1e6)
            hub.pipeline.submit_and_wait(
                [Envelope("sim", raw, TENANT, received) for _hw, raw in batch], timeout=300
            )
            sent += len(batch)
            progress.update(task, completed=sent)
    return sent


def demo(
    households: Annotated[int, typer.Option(min=1, max=5000)] = 200,
    days: Annotated[int, typer.Option(min=0, max=366, help="days of history")] = 14,
    live_interval: Annotated[
        int, typer.Option(min=1, max=900, help="seconds between live readings")
    ] = 60,
    data_dir: Annotated[Path, typer.Option(help="data directory")] = Path("gridhub-data/demo"),
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port; a free one if taken")] = 8480,
    mqtt_url: Annotated[str | None, typer.Option(help="external broker; none: embedded")] = None,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (default: Ctrl-C)")
    ] = None,
    log_level: str = "WARNING",
) -> None:
    """Run a demo pilot: 200 households, 14 days of history, live data, API; prints URLs."""
    setup_logging(log_level)
    settings = load_settings(
        None, data_dir=data_dir, http_host=host, http_port=port, mqtt_url=mqtt_url
    )
    try:
        hub = build_hub(settings)
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    fleet = Fleet(households, seed=1, zone=ZONE, tenant=TENANT)
    stop = threading.Event()
    live: threading.Thread | None = None
    server: ApiServer | None = None
    try:
        admin = hub.ensure_admin_token()
        if admin:  # printed at once: an interrupted demo must not lose it
            console.print(f"admin token  {admin}  (shown once)")
        register_fleet(hub, fleet)
        grid = hub.topologies.import_reference(TENANT, "cigre_lv")
        console.print(
            f"grid         CIGRE LV benchmark: {grid.sites} households on "
            f"{grid.connection_points} connection points"
        )
        token = researcher_token(hub, TENANT)
        hub.start()
        now = datetime.now(ZoneInfo("UTC")).replace(microsecond=0)
        if days:
            sent = backfill(hub, fleet, days, now)
            console.print(
                f"history: {sent:,} messages written "
                f"({hub.pipeline.metrics.stored_readings:,} new readings)"
            )
        try:
            server = ApiServer(hub, host, port)
        except OSError:
            server = ApiServer(hub, host, 0)
        server.start()
        assert hub.mqtt_url is not None
        publisher = MqttPublisher(hub.mqtt_url, TENANT)

        def run() -> None:
            try:
                run_live(fleet, publisher, live_interval, duration_s=None, stop=stop)
            finally:
                publisher.close()

        live = threading.Thread(target=run, name="demo-live", daemon=True)
        live.start()
        yesterday = (now.astimezone(fleet.zone) - timedelta(days=1)).date().isoformat()
        query = urlencode(
            {
                "identifier": "electricity.power.active.consumed.total",
                "day": yesterday,
                "resolution": "15m",
                "function": "avg",
            }
        )
        series = f"{server.url}/api/v1/tenants/{TENANT}/devices/hh001-meter/series?{query}"
        console.rule("[bold green]gridhub demo is running")
        console.print(f"dashboard    {server.url}/ui/login  (sign in with the token below)")
        console.print(f"API docs     {server.url}/docs")
        console.print(f"MQTT         {hub.mqtt_url}  (live readings every {live_interval} s)")
        console.print(f"token        {token}  (tenant '{TENANT}', researcher)")
        console.print("a household's day, 96 quarter-hours:")
        console.print(f"  curl -H 'Authorization: Bearer {token}' '{series}'", soft_wrap=True)
        console.print("Ctrl-C stops.")
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait(duration)
        except KeyboardInterrupt:
            pass
    finally:
        stop.set()
        if live is not None:
            live.join(10)
        if server is not None:
            server.stop()
        hub.stop()
