"""``gridhub``: serve, demo, simulate, import, deadletter.

Commands that need the data directory (``serve``, ``demo``) own it; the others talk to a running
hub over HTTP (``--url`` and ``--token``, or ``GRIDHUB_URL`` / ``GRIDHUB_TOKEN``), since DuckDB
lets one process at a time open its file.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from gridhub.cli import access as access_cmd
from gridhub.cli import demo as demo_cmd
from gridhub.cli import devices as devices_cmd
from gridhub.cli import gateway as gateway_cmd
from gridhub.cli import grid as grid_cmd
from gridhub.cli import importer, market_sim, simulate
from gridhub.cli import outbound as outbound_cmd
from gridhub.cli import subscriptions as subscriptions_cmd
from gridhub.cli import topology as topology_cmd
from gridhub.cli.common import (
    TokenOpt,
    UrlOpt,
    api_call,
    console,
    err_console,
    load_settings,
    setup_logging,
)
from gridhub.cli.server import ApiServer
from gridhub.errors import ConfigError
from gridhub.hub import build_hub

app = typer.Typer(
    help="gridhub — an open-source data hub for smart grids.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Import historical data.", no_args_is_help=True)
deadletter_app = typer.Typer(help="Inspect rejected messages.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(deadletter_app, name="deadletter")
app.add_typer(topology_cmd.app, name="topology")
app.add_typer(grid_cmd.app, name="grid")
app.command("demo")(demo_cmd.demo)
simulate.simulate_app.command("market")(market_sim.market)
app.add_typer(simulate.simulate_app, name="simulate")  # and simulate incident|market ...
app.command("gateway")(gateway_cmd.gateway)
import_app.command("csv")(importer.import_csv)
app.add_typer(devices_cmd.mqtt_app, name="mqtt")
app.add_typer(devices_cmd.certs_app, name="certs")
app.add_typer(outbound_cmd.command_app, name="command")
app.add_typer(outbound_cmd.tariff_app, name="tariff")
app.add_typer(access_cmd.token_app, name="token")
app.add_typer(access_cmd.stakeholder_app, name="stakeholder")
app.add_typer(subscriptions_cmd.subscribe_app, name="subscribe")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", envvar="GRIDHUB_CONFIG", help="TOML settings file")
]


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP listen address")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (0: any free port)")] = None,
    mqtt_url: Annotated[
        str | None, typer.Option(help="external broker, mqtt://host:port; none: embedded")
    ] = None,
    log_level: str = "INFO",
    log_format: Annotated[
        str, typer.Option(help="text, or json (one object per line, for a log collector)")
    ] = "text",
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate: serve HTTPS (and MQTTS, embedded broker)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="its PEM private key")] = None,
) -> None:
    """Run the hub: HTTP API and MQTT ingest (an embedded broker unless --mqtt-url is given)."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format is text or json")
    setup_logging(log_level, log_format)
    settings = load_settings(
        config,
        data_dir=data_dir,
        http_host=host,
        http_port=port,
        mqtt_url=mqtt_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    try:
        hub = build_hub(settings)
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    secret = hub.ensure_admin_token()
    if secret:  # printed now: if start-up fails below, it must not be lost
        console.print(
            "[bold yellow]admin token (shown once, store it now):[/bold yellow] " + secret
        )
    # The hub's threads (MQTT client, writer, merger, HTTP) hand the GIL to one another for every
    # message; CPython's default 5 ms switch interval can make each hand-off wait that long
    # under load. 1 ms measured +5-10 % MQTT ingest and a lower publish→queryable latency.
    sys.setswitchinterval(0.001)
    try:
        hub.start()
        server = ApiServer(
            hub,
            settings.http_host,
            settings.http_port,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
        )
    except (OSError, ConnectionError, RuntimeError, ConfigError) as exc:
        hub.stop()
        err_console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from None

    def started() -> None:
        console.print(
            f"[bold green]gridhub[/bold green] API  {server.url}  (docs {server.url}/docs)"
        )
        console.print(f"MQTT ingest  {hub.mqtt_url}  topic gridhub/<tenant>/<hardwareId>/events")
        devices_cmd.print_serve_extras(hub)
        console.print(f"data  {settings.db_path.resolve()}")

    signal.signal(signal.SIGTERM, lambda *_: setattr(server.server, "should_exit", True))
    try:
        server.run(started)
    finally:
        hub.stop()


@app.command("admin-token")
def admin_token(
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory")] = None,
    revoke_others: Annotated[
        bool, typer.Option(help="revoke every other installation admin token")
    ] = False,
) -> None:
    """Create a new installation admin token (the hub must be stopped); print it once."""
    settings = load_settings(config, data_dir=data_dir)
    if not settings.db_path.exists():
        err_console.print(f"[red]no gridhub data at {settings.db_path}[/red]")
        raise typer.Exit(2)
    try:
        hub = build_hub(settings)
    except ConfigError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        record, secret = hub.tokens.create(None, "admin", "installation admin")
        if revoke_others:
            for token in hub.tokens.list():
                if token.tenant is None and token.id != record.id and not token.revoked:
                    hub.tokens.revoke(token.id)
    finally:
        hub.db.close()
    console.print(f"admin token (shown once, store it now): {secret}")


@deadletter_app.command("list")
def deadletter_list(
    tenant: Annotated[
        str | None, typer.Option(help="tenant id; without it, every tenant (admin token)")
    ] = None,
    unowned: Annotated[
        bool, typer.Option(help="only messages that named no known tenant (admin token)")
    ] = False,
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    raw: Annotated[bool, typer.Option(help="print the raw bytes too")] = False,
) -> None:
    """List the newest rejected messages, with reason and source."""
    from rich.table import Table

    params: dict[str, str | int] = {"limit": limit}
    if reason:
        params["reason"] = reason
    base = url.rstrip("/")
    if tenant and not unowned:
        endpoint = f"{base}/api/v1/tenants/{tenant}/deadletters"
    else:
        endpoint = f"{base}/api/v1/deadletters"
        params["unowned"] = str(unowned).lower()
    rows = api_call("GET", endpoint, token, params=params)
    whose = "unowned" if unowned else (tenant or "every tenant")
    table = Table(title=f"dead letters: {whose} (newest first)")
    for column in ("id", "received", "source", "reason", "detail") + (("raw",) if raw else ()):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [str(row["id"]), row["received"], row["source"], row["reason"], row["detail"]]
        table.add_row(*cells, *([row["raw"][:500]] if raw else []))
    console.print(table)
    console.print(f"{len(rows)} shown")


if __name__ == "__main__":  # pragma: no cover
    app()
