"""``gridhub command send|status|list`` and ``gridhub tariff publish|list``, over HTTP.

Like the other client commands they talk to a running hub (``--url``, ``--token`` or
``GRIDHUB_URL`` / ``GRIDHUB_TOKEN``); parameters are given as ``name=value`` with the value read
as JSON when it parses (``temperature=55``, ``closed=false``) and as a string otherwise.
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Annotated, Any

import typer

from gridhub.cli.common import api_call, console, err_console

__all__ = ["command_app", "tariff_app"]

command_app = typer.Typer(help="Send commands to devices and follow them.", no_args_is_help=True)
tariff_app = typer.Typer(help="Publish and list day-ahead tariffs.", no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="GRIDHUB_URL", help="hub API base URL")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="GRIDHUB_TOKEN", help="API token")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]
FINAL = ("acknowledged", "failed", "expired")


def _refused(answer: Any) -> None:
    """Exit non-zero on an error body (api_call passes 422 answers through)."""
    if isinstance(answer, dict) and "error" in answer:
        err_console.print(f"[red]{answer['error']}:[/red] {answer.get('detail', '')}")
        raise typer.Exit(1)
    if isinstance(answer, dict) and isinstance(answer.get("detail"), list):  # pydantic's 422
        err_console.print(f"[red]invalid request:[/red] {json.dumps(answer['detail'])[:2000]}")
        raise typer.Exit(1)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{what} {item!r} must be name=value")
        out[name] = _value(value)
    return out


def _show(inv: dict[str, Any]) -> None:
    console.print(
        f"{inv['id']}  {inv['command']} → {inv['device']}  [bold]{inv['status']}[/bold]  "
        f"attempts {inv['attempts']}/{inv['max_attempts']}"
        + (f"  response {inv['response']!r}" if inv.get("response") else "")
    )


@command_app.command("send")
def send(
    device: Annotated[str, typer.Argument(help="hardwareId")],
    command: Annotated[str, typer.Argument(help="command name, e.g. setSetpoint")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    tenant: TenantOpt = "",
    ttl: Annotated[float | None, typer.Option(help="time to live, seconds")] = None,
    key: Annotated[str | None, typer.Option(help="idempotency key")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for a final status")] = 0.0,
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Invoke a command on a device; with --wait, follow it until acknowledged/failed/expired."""
    base = f"{url.rstrip('/')}/api/v1/tenants/{tenant}"
    body: dict[str, Any] = {"command": command, "parameters": _pairs(param or [], "--param")}
    if ttl is not None:
        body["ttl_s"] = ttl
    if key is not None:
        body["idempotency_key"] = key
    inv = api_call("POST", f"{base}/devices/{device}/commands", token, json=body)
    _refused(inv)
    deadline = time.monotonic() + wait
    while inv["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a remote hub, not a test
        inv = api_call("GET", f"{base}/commands/{inv['id']}", token)
    _show(inv)
    if inv["status"] in ("failed", "expired"):
        raise typer.Exit(3)


@command_app.command("status")
def status(
    invocation: Annotated[str, typer.Argument(help="invocation id")],
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Show one invocation's status."""
    inv = api_call("GET", f"{url.rstrip('/')}/api/v1/tenants/{tenant}/commands/{invocation}", token)
    _show(inv)


@command_app.command("list")
def list_commands(
    tenant: TenantOpt = "",
    device: Annotated[str | None, typer.Option(help="only this device")] = None,
    state: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """The newest invocations of a tenant."""
    params: dict[str, Any] = {"limit": limit}
    if device:
        params["device"] = device
    if state:
        params["status"] = state
    rows = api_call(
        "GET", f"{url.rstrip('/')}/api/v1/tenants/{tenant}/commands", token, params=params
    )
    for inv in rows:
        _show(inv)
    console.print(f"{len(rows)} shown")


def _period(text: str) -> dict[str, Any]:
    """``HH:MM-HH:MM=price[:label]``."""
    span, sep, rest = text.partition("=")
    start, dash, end = span.partition("-")
    price, _, label = rest.partition(":")
    try:
        value = float(price)
    except ValueError:
        raise typer.BadParameter(f"--period {text!r}: price {price!r} is not a number") from None
    if not sep or not dash:
        raise typer.BadParameter(f"--period {text!r} must be HH:MM-HH:MM=price[:label]")
    return {"start": start, "end": end, "price": value, "label": label}


@tariff_app.command("publish")
def publish(
    day: Annotated[list[str], typer.Option("--day", help="YYYY-MM-DD (repeat for more days)")],
    period: Annotated[list[str], typer.Option("--period", help="HH:MM-HH:MM=price[:label]")],
    tenant: TenantOpt = "",
    site: Annotated[list[str] | None, typer.Option("--site", help="household (repeat)")] = None,
    group: Annotated[str | None, typer.Option(help="attribute=value, e.g. location=Genk")] = None,
    kind: Annotated[str, typer.Option(help="tou or network")] = "tou",
    currency: str = "EUR",
    unit: str = "EUR/kWh",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Publish the same periods for each --day to households (--site) or a group (--group)."""
    if bool(site) == bool(group):
        raise typer.BadParameter("give --site (one or more) or --group, not both")
    target: dict[str, Any] = {"sites": site} if site else {}
    if group:
        attribute, sep, value = group.partition("=")
        if not sep:
            raise typer.BadParameter("--group must be attribute=value")
        target = {"attribute": attribute, "value": value}
    periods = [_period(p) for p in period]
    for d in day:
        try:
            date.fromisoformat(d)
        except ValueError:
            raise typer.BadParameter(f"--day {d!r} is not YYYY-MM-DD") from None
    body = {
        "kind": kind,
        "target": target,
        "currency": currency,
        "unit": unit,
        "days": [{"day": d, "periods": periods} for d in day],
    }
    answer = api_call(
        "POST", f"{url.rstrip('/')}/api/v1/tenants/{tenant}/tariffs", token, json=body
    )
    _refused(answer)
    for t in answer:
        devices = sum(t["delivery"].values())
        console.print(
            f"{t['id']}  {t['kind']} {t['day']}  {len(t['sites'])} households, {devices} devices"
        )


@tariff_app.command("list")
def list_tariffs(
    start: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--to", help="YYYY-MM-DD")],
    tenant: TenantOpt = "",
    site: Annotated[str | None, typer.Option(help="only this household")] = None,
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Tariffs of the days from..to, with their delivery."""
    params = {"from": start, "to": end, **({"site": site} if site else {})}
    rows = api_call(
        "GET", f"{url.rstrip('/')}/api/v1/tenants/{tenant}/tariffs", token, params=params
    )
    _refused(rows)
    for t in rows:
        prices = " ".join(f"{p['start']}-{p['end']}={p['price']:g}" for p in t["periods"])
        console.print(
            f"{t['day']} {t['kind']:<7} {','.join(t['sites'])}  {prices}  {t['delivery']}"
        )
