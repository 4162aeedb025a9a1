"""``gridhub simulate market``: retailer platforms and a DSO around a running hub (S2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gridhub.cli.common import console
from gridhub.sim.market import DRIVEN, MarketSimulation, Sample, summarise

__all__ = ["market", "parse_rates", "table"]


def parse_rates(items: list[str]) -> dict[str, float]:
    """``kind=per_minute`` pairs; the seed 003 mix (30/min of four kinds) when none is given."""
    if not items:
        return {"billing": 30, "tariff": 30, "load_reduction": 30, "emergency": 30}
    rates: dict[str, float] = {}
    for item in items:
        kind, sep, value = item.partition("=")
        if not sep or kind not in DRIVEN:
            raise typer.BadParameter(f"{item!r}: give kind=per_minute, kind one of {DRIVEN}")
        try:
            rates[kind] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: {value!r} is not a number") from None
        if not 0 <= rates[kind] <= 6000:
            raise typer.BadParameter(f"{item!r}: 0..6000 requests per minute")
    return rates


def parse_delay(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        lo, hi = float(low), float(high if sep else low)
    except ValueError:
        raise typer.BadParameter(f"delay {text!r}: give LOW:HIGH in ms, e.g. 100:110") from None
    if not 0 <= lo <= hi <= 60_000:
        raise typer.BadParameter("delay: 0 ≤ LOW ≤ HIGH ≤ 60000 ms")
    return lo / 1000, hi / 1000


def table(title: str, summary: dict[str, dict[str, float | int]]) -> Table:
    t = Table(title=title)
    for col in ("request type", "requests", "failed", "p50 ms", "p99 ms", "max ms"):
        t.add_column(col, justify="right" if col != "request type" else "left")
    for kind, s in summary.items():
        t.add_row(
            kind,
            str(s["requests"]),
            str(s["failed"]),
            f"{s['p50_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
            f"{s['max_ms']:.1f}",
        )
    return t


def market(
    url: Annotated[str, typer.Option(envvar="GRIDHUB_URL", help="hub API base URL")] = (
        "http://127.0.0.1:8480"
    ),
    token: Annotated[
        str, typer.Option(envvar="GRIDHUB_TOKEN", help="installation or tenant admin token")
    ] = "",
    tenant: Annotated[str, typer.Option(help="tenant id (a fresh one: retailers are made)")] = (
        "market"
    ),
    clients: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    retailers: Annotated[int, typer.Option(min=1, max=100)] = 1,
    rate: Annotated[
        list[str] | None,
        typer.Option(
            help="kind=requests per minute, repeatable (billing, profile, tariff, "
            "load_reduction, emergency); default 30/min each of billing, tariff, "
            "load_reduction, emergency"
        ),
    ] = None,
    duration: Annotated[float, typer.Option(min=1, max=86_400, help="seconds")] = 60,
    delay_ms: Annotated[str, typer.Option(help="retailer answer delay LOW:HIGH ms")] = "100:110",
    answer: Annotated[str, typer.Option(help="inline (webhook body) or rest")] = "inline",
    disconnect: Annotated[bool, typer.Option(help="follow load reductions by disconnection")] = (
        True
    ),
    seed: int = 1,
    output: Annotated[Path | None, typer.Option(help="write samples and summary as JSON")] = None,
) -> None:
    """Simulate the market: N clients, R retailer platforms (real webhook servers answering
    after a delay drawn from [100, 110) ms) and a DSO sending requests at their rates. The
    platforms listen on 127.0.0.1: the hub must allow webhooks there (webhook_allow)."""
    rates = parse_rates(rate or [])
    if answer not in ("inline", "rest"):
        raise typer.BadParameter("answer: inline or rest")
    sim = MarketSimulation(
        url,
        token,
        tenant,
        clients,
        retailers,
        parse_delay(delay_ms),
        seed,
        "inline" if answer == "inline" else "rest",
        disconnect,
        log=console.print,
    )
    try:
        sim.setup()
        console.print(
            f"driving {', '.join(f'{k} {v:g}/min' for k, v in rates.items())} for {duration:g} s"
        )
        samples = sim.run(rates, duration)
    finally:
        sim.close()
    summary = summarise(samples)
    console.print(table(f"{clients} clients, {retailers} retailers", summary))
    errors = [s for s in samples if s.latency_s is None]
    for s in errors[:5]:
        console.print(f"[red]{s.kind}: {s.status} {s.error}[/red]")
    if output is not None:
        output.write_text(json.dumps({"summary": summary, "samples": [_row(s) for s in samples]}))
    if errors:
        raise typer.Exit(1)


def _row(s: Sample) -> dict[str, object]:
    return {
        "kind": s.kind,
        "started": s.started,
        "latency_s": s.latency_s,
        "status": s.status,
        "clients": s.clients,
        "error": s.error,
    }
