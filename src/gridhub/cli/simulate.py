"""``gridhub simulate``: a fleet of households sending to a running hub over MQTT or HTTP;
``gridhub simulate incident ...`` causes grid incidents (:mod:`gridhub.cli.incidents`)."""

from __future__ import annotations

import threading
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from gridhub.adapters.registry_csv import to_registry_csv
from gridhub.cli import incidents
from gridhub.cli.common import api_call, console
from gridhub.sim.fleet import CUSTOM_IDENTIFIERS, Fleet
from gridhub.sim.transport import HttpPublisher, MqttPublisher, run_live


def registry_csv(fleet: Fleet) -> str:
    """The fleet's sites and devices in the bulk-registration CSV layout."""
    return to_registry_csv(fleet.sites(), fleet.devices())


def progress_bar() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def backfill_start(fleet: Fleet, days: int, now: datetime) -> datetime:
    """Local midnight ``days`` days before today."""
    today = now.astimezone(fleet.zone).date()
    return datetime.combine(today - timedelta(days=days), time(0), tzinfo=fleet.zone)


def simulate(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="tenant id")] = "demo",
    households: Annotated[int, typer.Option(min=1, max=99_999)] = 20,
    interval: Annotated[int, typer.Option(min=1, max=900, help="seconds between readings")] = 900,
    url: Annotated[str, typer.Option(envvar="GRIDHUB_URL", help="hub API base URL")] = (
        "http://127.0.0.1:8480"
    ),
    token: Annotated[str, typer.Option(envvar="GRIDHUB_TOKEN", help="tenant admin token")] = "",
    mqtt_url: Annotated[
        str | None, typer.Option(help="send live data over MQTT (mqtt://host:port); else HTTP")
    ] = None,
    backfill: Annotated[int, typer.Option(min=0, max=3660, help="days of history first")] = 0,
    duration: Annotated[
        float | None, typer.Option(help="seconds of live data (default: until Ctrl-C)")
    ] = None,
    gap_rate: Annotated[float, typer.Option(min=0, max=1, help="share of missing readings")] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of broken messages")
    ] = 0.0,
    seed: int = 1,
    register: Annotated[bool, typer.Option(help="register sites, devices, identifiers")] = True,
    timezone: Annotated[str, typer.Option(help="the fleet's (and tenant's) zone")] = (
        "Europe/Brussels"
    ),
) -> None:
    """Simulate households (meter, plugs on whitegoods, boiler) sending canonical messages.

    ``gridhub simulate incident …`` causes grid incidents and ``gridhub simulate market``
    (cli/market_sim.py) simulates the market hub's parties instead.
    """
    if ctx.invoked_subcommand is not None:
        return  # a subcommand runs: the fleet options do not apply
    fleet = Fleet(households, seed=seed, zone=timezone, tenant=tenant)
    base = f"{url.rstrip('/')}/api/v1/tenants/{tenant}"
    if register:
        for name, unit in CUSTOM_IDENTIFIERS:
            api_call("POST", f"{base}/identifiers", token, json={"name": name, "unit": unit})
        report = api_call("POST", f"{base}/devices/import", token, content=registry_csv(fleet))
        if report.get("errors"):
            console.print(report["errors"][:20])
            raise typer.Exit(1)
        console.print(f"registered {report['sites']} households, {report['devices']} devices")
    now = datetime.now(ZoneInfo("UTC"))
    if backfill:
        http = HttpPublisher(url, tenant, token)
        start = backfill_start(fleet, backfill, now)
        try:
            with progress_bar() as progress:
                task = progress.add_task(
                    f"backfilling {backfill} days", total=fleet.ticks_count(start, now, 900)
                )
                sent_ticks = 0
                for batch in fleet.batches(
                    start,
                    now,
                    900,
                    batch_size=len(fleet.devices()),
                    gap_rate=gap_rate,
                    malformed_rate=malformed_rate,
                ):
                    http.publish(batch)
                    sent_ticks += 1
                    progress.update(task, completed=sent_ticks)
        finally:
            http.close()
    publisher = MqttPublisher(mqtt_url, tenant) if mqtt_url else HttpPublisher(url, tenant, token)
    stop = threading.Event()
    console.print(
        f"live: {len(fleet.devices())} devices every {interval} s over "
        f"{'MQTT ' + mqtt_url if mqtt_url else 'HTTP ' + url} (Ctrl-C stops)"
    )
    try:
        sent = run_live(
            fleet,
            publisher,
            interval,
            duration_s=duration,
            stop=stop,
            gap_rate=gap_rate,
            malformed_rate=malformed_rate,
        )
    except KeyboardInterrupt:
        stop.set()
        sent = -1
    finally:
        publisher.close()
    if sent >= 0:
        console.print(f"sent {sent} live messages")


simulate_app = typer.Typer(
    help="Simulate households sending data, or cause grid incidents.",
    invoke_without_command=True,
    no_args_is_help=False,
)
simulate_app.callback()(simulate)
simulate_app.add_typer(incidents.app, name="incident")
