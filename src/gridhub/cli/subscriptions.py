"""``gridhub subscribe event|periodic|list|delete|deliveries|watch``, over HTTP and WebSocket.

Like the other client commands these talk to a running hub (``--url``, ``--token`` or
``GRIDHUB_URL`` / ``GRIDHUB_TOKEN``). ``watch`` listens on the WebSocket and prints each
notification as one JSON line, so it can be piped into other tools.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from gridhub.cli.common import api_call, console, err_console

__all__ = ["subscribe_app"]

subscribe_app = typer.Typer(
    help="Subscribe to events and periodic values of a series (Q3).", no_args_is_help=True
)

UrlOpt = Annotated[str, typer.Option("--url", envvar="GRIDHUB_URL", help="hub API base URL")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="GRIDHUB_TOKEN", help="API token")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]
ChannelOpt = Annotated[
    str, typer.Option("--channel", help="websocket, mqtt or webhook (then --webhook-url)")
]
HookOpt = Annotated[str | None, typer.Option("--webhook-url", help="where to POST")]
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _base(url: str, tenant: str) -> str:
    return f"{url.rstrip('/')}/api/v1/tenants/{tenant}/subscriptions"


def _refused(answer: Any) -> None:
    if isinstance(answer, dict) and "error" in answer:
        err_console.print(f"[red]{answer['error']}:[/red] {answer.get('detail', '')}")
        raise typer.Exit(1)
    if isinstance(answer, dict) and isinstance(answer.get("detail"), list):  # pydantic's 422
        err_console.print(f"[red]invalid request:[/red] {json.dumps(answer['detail'])[:2000]}")
        raise typer.Exit(1)


def _show(sub: dict[str, Any]) -> None:
    what = (
        json.dumps(sub["condition"])
        if sub["kind"] == "event"
        else f"every {sub['period_s']:g} s: {sub['function']}"
    )
    where = sub.get("mqtt_topic") or sub.get("url") or sub.get("websocket") or ""
    console.print(
        f"{sub['id']}  {sub['kind']}  {sub['device']}/{sub['identifier']}  {what}  "
        f"→ {sub['channel']} {where}"
    )


def _created(sub: dict[str, Any]) -> None:
    _refused(sub)
    _show(sub)
    if sub.get("webhook_secret"):
        console.print(f"webhook secret (shown once): [bold]{sub['webhook_secret']}[/bold]")


def period_seconds(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h`` → seconds."""
    unit = _UNITS.get(text[-1:], None)
    number = text[:-1] if unit is not None else text
    try:
        return float(number) * (unit or 1.0)
    except ValueError:
        raise typer.BadParameter(f"period {text!r} must look like 30s, 15m or 1h") from None


@subscribe_app.command("event")
def event(
    device: Annotated[str, typer.Argument(help="hardwareId")],
    identifier: Annotated[str, typer.Argument(help="measurement identifier")],
    above: Annotated[float | None, typer.Option(help="notify when value > this")] = None,
    below: Annotated[float | None, typer.Option(help="notify when value < this")] = None,
    outside: Annotated[str | None, typer.Option(help="LO:HI, notify outside [LO, HI]")] = None,
    equal: Annotated[float | None, typer.Option(help="notify when value == this")] = None,
    tolerance: Annotated[float | None, typer.Option(help="for --equal")] = None,
    channel: ChannelOpt = "websocket",
    webhook_url: HookOpt = None,
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Notify on each new value of a series that meets one condition."""
    given = {"above": above, "below": below, "equal": equal, "outside": outside}
    chosen = [op for op, v in given.items() if v is not None]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --above, --below, --outside, --equal")
    op = chosen[0]
    condition: dict[str, Any] = {"op": op}
    if op == "outside":
        lo, sep, hi = str(outside).partition(":")
        try:
            condition.update(lo=float(lo), hi=float(hi))
        except ValueError:
            raise typer.BadParameter("--outside must be LO:HI, e.g. 207:253") from None
        if not sep:
            raise typer.BadParameter("--outside must be LO:HI, e.g. 207:253")
    else:
        condition["value"] = given[op]
    if tolerance is not None:
        condition["tolerance"] = tolerance
    body = {
        "kind": "event",
        "device": device,
        "identifier": identifier,
        "channel": channel,
        "condition": condition,
        "url": webhook_url,
    }
    _created(api_call("POST", _base(url, tenant), token, json=body))


@subscribe_app.command("periodic")
def periodic(
    device: Annotated[str, typer.Argument(help="hardwareId")],
    identifier: Annotated[str, typer.Argument(help="measurement identifier")],
    every: Annotated[str, typer.Option(help="period: 30s, 15m, 1h")] = "15m",
    function: Annotated[
        str, typer.Option(help="latest, or avg|min|max|sum|count|first|last over the period")
    ] = "latest",
    channel: ChannelOpt = "websocket",
    webhook_url: HookOpt = None,
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Notify every period with the latest value or an aggregate (one per series and token)."""
    body = {
        "kind": "periodic",
        "device": device,
        "identifier": identifier,
        "channel": channel,
        "period_s": period_seconds(every),
        "function": function,
        "url": webhook_url,
    }
    _created(api_call("POST", _base(url, tenant), token, json=body))


@subscribe_app.command("list")
def list_subscriptions(
    tenant: TenantOpt = "", url: UrlOpt = "http://127.0.0.1:8480", token: TokenOpt = ""
) -> None:
    """This token's subscriptions (a tenant admin sees all of the tenant's)."""
    rows = api_call("GET", _base(url, tenant), token)
    for sub in rows:
        _show(sub)
    console.print(f"{len(rows)} subscriptions")


@subscribe_app.command("delete")
def delete(
    subscription: Annotated[str, typer.Argument(help="subscription id")],
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Unsubscribe."""
    try:  # the one call without a JSON answer: not through api_call
        r = httpx.delete(
            f"{_base(url, tenant)}/{subscription}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        err_console.print(f"[red]cannot reach {url}:[/red] {exc}")
        raise typer.Exit(1) from None
    if r.status_code != 204:
        err_console.print(f"[red]{r.status_code}[/red] {r.text[:2000]}")
        raise typer.Exit(1)
    console.print(f"{subscription} deleted")


@subscribe_app.command("deliveries")
def deliveries(
    subscription: Annotated[str, typer.Argument(help="subscription id")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """A webhook subscription's delivery log, newest first."""
    rows = api_call(
        "GET", f"{_base(url, tenant)}/{subscription}/deliveries", token, params={"limit": limit}
    )
    for d in rows:
        console.print(
            f"{d['at']}  {d['delivery']}  attempt {d['attempt']}  [bold]{d['outcome']}[/bold]"
            f"  {d['status'] or ''}  {d['detail']}"
        )


@subscribe_app.command("watch")
def watch(
    subscription: Annotated[
        str | None, typer.Argument(help="one subscription; default: all of this token's")
    ] = None,
    tenant: TenantOpt = "",
    url: UrlOpt = "http://127.0.0.1:8480",
    token: TokenOpt = "",
) -> None:
    """Print WebSocket notifications as JSON lines until interrupted."""
    ws_url = _base(url, tenant).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    ws_url += f"/{subscription}/ws" if subscription else "/ws"
    try:
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            for message in ws:
                print(message if isinstance(message, str) else message.decode(), flush=True)
    except InvalidStatus as exc:
        err_console.print(f"[red]refused:[/red] HTTP {exc.response.status_code}")
        raise typer.Exit(1) from None
    except ConnectionClosed as exc:
        err_console.print(f"connection closed: {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err_console.print(f"[red]cannot reach {ws_url}:[/red] {exc}")
        raise typer.Exit(1) from None
