"""``gridhub topology``: show, upload or import a tenant's grid topology on a running hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gridhub.cli.common import DEFAULT_URL, TokenOpt, UrlOpt, api_call, console, err_console

app = typer.Typer(help="A tenant's grid topology (P5).", no_args_is_help=True)
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]


def _endpoint(url: str, tenant: str, suffix: str = "") -> str:
    return f"{url.rstrip('/')}/api/v1/tenants/{tenant}/topology{suffix}"


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"topology {summary['name']!r}", show_header=False)
    for key in (
        "nodes",
        "connection_points",
        "lines",
        "transformers",
        "switches",
        "sites",
        "devices",
    ):
        table.add_row(key.replace("_", " "), f"{summary[key]:,}")
    console.print(table)
    for key in ("unknown_sites", "unknown_devices"):
        if summary[key]:
            err_console.print(
                f"[yellow]{key.replace('_', ' ')} (not registered):[/yellow] "
                + ", ".join(summary[key])
            )


def _accepted(answer: dict[str, Any]) -> dict[str, Any]:
    """The summary, or exit with the hub's reason (a 422 answer carries ``detail``)."""
    if "name" not in answer:
        err_console.print(f"[red]refused:[/red] {answer.get('detail', answer)}")
        raise typer.Exit(1)
    return answer


@app.command("show")
def show(
    tenant: TenantOpt,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    output: Annotated[
        Path | None, typer.Option(help="write the JSON document here instead of a summary")
    ] = None,
) -> None:
    """Print a summary of the tenant's topology, or save its JSON document (--output)."""
    if output is not None:
        document = api_call("GET", _endpoint(url, tenant), token)
        output.write_text(json.dumps(document, indent=1) + "\n")
        console.print(f"written {output}")
        return
    _print_summary(api_call("GET", _endpoint(url, tenant, "/summary"), token))


@app.command("put")
def put(
    document: Annotated[Path, typer.Argument(help="topology JSON (docs/topology.md)")],
    tenant: TenantOpt,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Replace the tenant's topology with a JSON document (dso or admin token)."""
    if not document.is_file():
        err_console.print(f"[red]no such file: {document}[/red]")
        raise typer.Exit(2)
    summary = api_call(
        "PUT",
        _endpoint(url, tenant),
        token,
        content=document.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    _print_summary(_accepted(summary))


@app.command("import")
def import_reference(
    network: Annotated[
        str, typer.Argument(help="cigre_lv, cigre_mv, ieee_european_lv or case33bw")
    ],
    tenant: TenantOpt,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    attach_sites: Annotated[
        bool, typer.Option(help="place the tenant's households on the connection points")
    ] = True,
    strategy: Annotated[str, typer.Option(help="load_share or round_robin")] = "load_share",
) -> None:
    """Replace the tenant's topology with one of pandapower's reference grids."""
    summary = api_call(
        "POST",
        _endpoint(url, tenant, "/import"),
        token,
        json={"network": network, "attach_sites": attach_sites, "strategy": strategy},
    )
    _print_summary(_accepted(summary))
