"""``gridhub grid``: run the grid services (G4-G10) on a running hub and print their results.

Each command POSTs to ``/api/v1/tenants/{t}/grid/{service}`` (dso or admin token) and prints
the answer as tables; ``--json`` prints the raw answer instead. The hub writes the results back
as ``grid:<node>`` series and alerts either way (docs/grid-services-running.md).
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from gridhub.cli.common import DEFAULT_URL, TokenOpt, UrlOpt, api_call, console, err_console

app = typer.Typer(help="Run grid services (G4-G10) on a tenant's data.", no_args_is_help=True)
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]
DayOpt = Annotated[str | None, typer.Option("--day", help="local day YYYY-MM-DD")]
FromOpt = Annotated[str | None, typer.Option("--from", help="start, ISO with offset")]
ToOpt = Annotated[str | None, typer.Option("--to", help="end, ISO with offset")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the raw JSON answer")]
RUN_WAIT_S = float(os.environ.get("GRIDHUB_GRID_TIMEOUT", "320"))


def _post(url: str, token: str, tenant: str, service: str, body: dict[str, Any]) -> Any:
    """POST a run; the hub bounds runs at 300 s, so the client waits a little longer than
    ``api_call``'s usual 60 s (``GRIDHUB_GRID_TIMEOUT`` changes it)."""
    endpoint = f"{url.rstrip('/')}/api/v1/tenants/{tenant}/grid/{service}"
    payload = {k: v for k, v in body.items() if v is not None}
    answer = api_call("POST", endpoint, token, json=payload, timeout=RUN_WAIT_S)
    if isinstance(answer, dict) and "detail" in answer and "written" not in answer:
        err_console.print(f"[red]refused:[/red] {answer['detail']}")
        raise typer.Exit(1)
    return answer


def _period(day: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    if day is None and (start is None or end is None):
        day = (date.today() - timedelta(days=1)).isoformat()
        err_console.print(f"[yellow]no period given: --day {day} (yesterday)[/yellow]")
    return {"day": day, "start": start, "end": end}


def _written(answer: dict[str, Any]) -> None:
    w = answer["written"]
    console.print(f"written back: {w['series_values']:,} series values, {w['alerts']} alerts")
    if w["beyond_horizon"]:
        err_console.print(
            f"[yellow]{w['beyond_horizon']:,} values not written: beyond the hub's horizon[/yellow]"
        )


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def _emit(answer: Any, raw: bool) -> bool:
    if raw:
        console.print_json(json.dumps(answer))
    return raw


@app.command("losses")
def losses(
    tenant: TenantOpt,
    day: DayOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    substation: Annotated[str | None, typer.Option(help="one secondary substation")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G4: energy balance, technical and unexplained losses, fraud suspects per substation."""
    body = {**_period(day, start, end), "substation": substation}
    answer = _post(url, token, tenant, "losses", body)
    if _emit(answer, raw):
        return
    rows = [
        [r["substation"], r["energy_in_kwh"], r["metered_kwh"], r["technical_losses_kwh"],
         r["unexplained_kwh"], r["unexplained_std_kwh"], r["level"],
         r["suspects"][0]["section"] if r["suspects"] and r["level"] != "ok" else "-"]
        for r in answer["reports"]
    ]  # fmt: skip
    _table(
        f"losses {answer['start']} → {answer['end']}",
        ["substation", "in kWh", "metered", "technical", "unexplained", "σ", "alarm", "suspect"],
        rows,
    )
    for s in answer["skipped"]:
        err_console.print(f"[yellow]skipped {s['substation']}:[/yellow] {s['reason']}")
    _written(answer)


@app.command("estimate")
def estimate(
    tenant: TenantOpt,
    day: DayOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G5: state estimate (voltage and power per node, with σ) over a period."""
    answer = _post(url, token, tenant, "estimation", _period(day, start, end))
    if _emit(answer, raw):
        return
    console.print(
        f"J = {answer['objective']:.2f} (χ² threshold {answer['chi2_threshold']:.2f}), "
        f"bad data: {answer['bad_data']}, {answer['measurements_used']} measurements"
    )
    rows = [[n["node"], n["vm_pu"], n["vm_std_pu"], n["p_mw"] * 1000, n["p_std_mw"] * 1000]
            for n in answer["nodes"]]  # fmt: skip
    _table("state estimate", ["node", "V pu", "σV", "P kW", "σP kW"], rows)
    for bad in answer["removed"]:
        err_console.print(f"[yellow]removed[/yellow] {bad['kind']} at {bad['node']} ({bad['ref']})")
    _written(answer)


@app.command("reconfigure")
def reconfigure(
    tenant: TenantOpt,
    day: DayOpt = None,
    all_lines: Annotated[bool, typer.Option(help="every line switchable")] = False,
    threshold: Annotated[float, typer.Option(help="least loss reduction")] = 0.01,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G6: loss-minimising radial configuration (metered loads of --day, or nominal ones)."""
    body = {"day": day, "all_lines_switchable": all_lines, "threshold": threshold}
    answer = _post(url, token, tenant, "reconfiguration", body)
    if _emit(answer, raw):
        return
    verdict = "[green]accepted" if answer["accepted"] else "[yellow]not accepted"
    console.print(f"{verdict}[/]: {answer['reason']}")
    console.print(
        f"losses {answer['base_losses_kw']:.3f} kW → {answer['losses_kw']:.3f} kW "
        f"({answer['reduction']:.1%}), {answer['load_flows']} load flows"
    )
    rows = [[c["switch"], c["line"], "close" if c["closed"] else "open"] for c in answer["changes"]]
    if rows:
        _table("switch operations", ["switch", "line", "operation"], rows)
    _written(answer)


@app.command("demand-response")
def demand_response(
    tenant: TenantOpt,
    substation: Annotated[str, typer.Option(help="node whose load to bring down")],
    target_kw: Annotated[float, typer.Option(help="target consumption, kW")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G7: fewest customers, then appliances, to switch off to reach --target-kw now."""
    body = {"substation": substation, "target_kw": target_kw}
    answer = _post(url, token, tenant, "demand-response", body)
    if _emit(answer, raw):
        return
    console.print(
        f"{answer['status']}: consumption {answer['consumption_kw']:.2f} kW, needed "
        f"{answer['needed_kw']:.2f} kW, shed {answer['shed_kw']:.2f} kW"
        + (f", short by {answer['shortfall_kw']:.2f} kW" if answer["shortfall_kw"] else "")
    )
    rows = [[a["customer"], a["appliance"], a["power_kw"]] for a in answer["curtailed"]]
    if rows:
        _table("switch off", ["customer", "appliance", "kW"], rows)
    _written(answer)


@app.command("quality")
def quality(
    tenant: TenantOpt,
    week_start: Annotated[str, typer.Option(help="first local day of the week")],
    node: Annotated[str | None, typer.Option(help="only sites below this node")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G8: EN 50160 weekly voltage report of every site phase."""
    answer = _post(url, token, tenant, "quality", {"week_start": week_start, "node": node})
    if _emit(answer, raw):
        return
    console.print(
        f"{answer['points']} points: {answer['compliant']} compliant, "
        f"{answer['not_compliant']} not, {answer['insufficient_data']} insufficient data"
    )
    rows = [[r["connection_point"], r["status"], r["share_in_band"], r["intervals_with_data"]]
            for r in answer["reports"] if r["status"] != "compliant"][:50]  # fmt: skip
    if rows:
        _table("not compliant or not judged", ["point", "status", "in band", "intervals"], rows)
    _written(answer)


@app.command("balance")
def balance(
    tenant: TenantOpt,
    day: DayOpt = None,
    flexibility: Annotated[float, typer.Option(help="± share of each prediction")] = 0.2,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G9: day-ahead balancing towards a flat profile, per unit of the hierarchy."""
    answer = _post(url, token, tenant, "balancing", {"day": day, "flexibility": flexibility})
    if _emit(answer, raw):
        return
    rows = [[u["unit"], u["level"], u["parent"] or "-", u["predicted_kwh"], u["distance_kw"],
             u["max_gap_kw"]] for u in answer["units"] if u["level"] != "customer"]  # fmt: skip
    _table(f"balancing from {answer['start']}", ["unit", "level", "parent", "kWh", "RMS kW",
                                                 "max gap kW"], rows)  # fmt: skip
    _written(answer)


@app.command("forecast")
def forecast(
    tenant: TenantOpt,
    hours: Annotated[int, typer.Option(min=1, max=24)] = 24,
    latitude: Annotated[float | None, typer.Option(help="PV: latitude")] = None,
    longitude: Annotated[float | None, typer.Option(help="PV: longitude")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    raw: JsonOpt = False,
) -> None:
    """G10: consumption (and PV) forecast of every node for the next hours."""
    body = {"hours": hours, "latitude": latitude, "longitude": longitude}
    answer = _post(url, token, tenant, "forecast", body)
    if _emit(answer, raw):
        return
    rows = []
    for node, values in sorted(answer["consumption_kw"].items()):
        pv = answer["production_kw"].get(node, [])
        energy = sum(values) / 4
        rows.append([node, energy, max(values, default=0.0), sum(pv) / 4])
    _table(
        f"forecast {answer['start']} → {answer['end']} ({answer['sites']} sites)",
        ["node", "consumption kWh", "peak kW", "PV kWh"],
        rows,
    )
    _written(answer)
