"""Market hub latency per request type (O4, S2) over the grid of seed 003.

Seed 003 (UPGRID market hub) measured request latency at 120 requests/min — 30/min of each of
four types (billing, flexibility, load shift, emergency) — for 100, 1,000 and 10,000 clients and
1, 5 and 10 retailers, the retailer platforms answering after a delay drawn from [100, 110) ms;
10 % of the clients per flexibility, load-shift or emergency request, 30 % per billing request.

Here: for each cell a fresh hub runs as its own process (``gridhub serve``), and the market
simulator (``gridhub.sim.market``) sets up the clients (a meter and a smart plug each, a day of
hourly register readings), the retailer platforms (real HTTP webhook servers checking every
signature) and drives, for ``--duration`` seconds, 30/min each of billing (retailers, 30 %),
network tariff broadcast (the load-shift signal, 10 %), load reduction (flexibility, 10 %) and
emergency notice (10 %). Each load reduction is followed by a disconnection request for the
clients offered, reported as its own type. Latency is what the requester sees: for billing, the
HTTP answer (the 30 % are split among their retailers, who ask at once; the slowest counts);
for DSO requests, until the hub recorded the request finished — every retailer's webhook
answered (so ≥ 100 ms by construction), and for a load reduction every availability answer in.

    python benchmarks/bench_market.py --json market.json            # the whole grid
    python benchmarks/bench_market.py --clients 100 --retailers 1 --duration 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gridhub.config import Settings
from gridhub.hub import build_hub
from gridhub.sim.market import MarketSimulation, summarise
from harness import HubProcess, machine

SEED_MIX = {"billing": 30.0, "tariff": 30.0, "load_reduction": 30.0, "emergency": 30.0}
ORDER = ("billing", "tariff", "load_reduction", "disconnection", "emergency", "profile")


def admin_token(data_dir: Path) -> str:
    """An installation admin token, made before the hub process starts (DuckDB: one process)."""
    hub = build_hub(Settings(data_dir=data_dir))
    try:
        return hub.tokens.create(None, "admin", "bench admin")[1]
    finally:
        hub.db.close()


def cell(clients: int, retailers: int, duration: float, rates: dict[str, float]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gridhub-bench-market-") as tmp:
        data_dir = Path(tmp)
        token = admin_token(data_dir)
        # the simulated retailer platforms listen on 127.0.0.1: webhooks may go there (SSRF guard)
        with HubProcess(data_dir, env={"GRIDHUB_WEBHOOK_ALLOW": '["127.0.0.1"]'}) as hub:
            sim = MarketSimulation(hub.url, token, "market", clients, retailers, seed=clients)
            try:
                t = time.monotonic()
                sim.setup()
                setup_s = time.monotonic() - t
                samples = sim.run(rates, duration)
            finally:
                sim.close()
    errors = sorted({s.error for s in samples if s.latency_s is None})[:3]
    return {
        "clients": clients,
        "retailers": retailers,
        "duration_s": duration,
        "setup_s": round(setup_s, 1),
        # the machine's 1-min load average before and after: other work on it shows here
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rates_per_min": rates,
        "types": summarise(samples),
        "errors": errors,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    kinds = [k for k in ORDER if any(k in r["types"] for r in rows)]
    head = f"{'clients':>8} {'retailers':>9} " + " ".join(f"{k[:14]:>22}" for k in kinds)
    print(head)
    print(f"{'':>8} {'':>9} " + " ".join(f"{'p50 / p99 ms (n)':>22}" for _ in kinds))
    for r in rows:
        cells = []
        for k in kinds:
            s = r["types"].get(k)
            cells.append(
                f"{s['p50_ms']:>7.0f} / {s['p99_ms']:>6.0f} ({s['requests']:>3})"
                if s
                else f"{'-':>22}"
            )
        print(f"{r['clients']:>8} {r['retailers']:>9} " + " ".join(f"{c:>22}" for c in cells))


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md table: p50 / p99 ms per request type and cell."""
    rows = result["cells"]
    kinds = [k for k in ORDER if any(k in r["types"] for r in rows)]
    head = "| clients | retailers | " + " | ".join(kinds) + " |"
    lines = [head, "|---:|---:|" + "---:|" * len(kinds)]
    for r in rows:
        cells = []
        for k in kinds:
            s = r["types"].get(k)
            cells.append(f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f}" if s else "—")
        lines.append(f"| {r['clients']:,} | {r['retailers']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,1000,10000")
    parser.add_argument("--retailers", default="1,5,10")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of load per cell")
    parser.add_argument(
        "--with-profiles", action="store_true", help="add 30/min consumption-profile requests"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--markdown", type=Path, help="only print the BENCHMARKS.md table of this results JSON"
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    rates = dict(SEED_MIX)
    if args.with_profiles:
        rates["profile"] = 30.0
    rows = []
    for n in (int(x) for x in args.clients.split(",")):
        for r in (int(x) for x in args.retailers.split(",")):
            print(f"-- {n} clients, {r} retailers ({args.duration:g} s)", file=sys.stderr)
            rows.append(cell(n, r, args.duration, rates))
            print_table(rows[-1:])
    print()
    print(f"market hub latency at {sum(rates.values()):g} requests/min; {machine()}")
    print_table(rows)
    failed = [r for r in rows if r["errors"]]
    for r in failed:
        print(f"errors at {r['clients']}x{r['retailers']}: {r['errors']}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine(), "cells": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
