"""Cost of the access check per read (issue #4): ``AccessControl.authorize_read`` in µs.

Every series read, latest-state read and (per value) subscription delivery asks the enforcement
point first, so its cost is paid on every read. This builds a realistic tenant on a real DuckDB
catalog — ``--sites`` households each with a customer and a meter, 20 retailers whose contracts
include a supplier switch for every third customer, an aggregator, a DSO, a researcher with one
owner policy per 10 sites plus a tenant-wide ``*`` policy — and times the check for each kind of
caller, granted and refused (a refusal is an exception: it costs more).

Each figure is the best of ``--runs`` passes of ``--checks`` checks on random devices, with the
garbage collector paused as ``timeit`` does. Also timed: recording one audit entry (what a
request pays) and writing the batch behind it (what the background flusher pays per entry).

    python benchmarks/bench_policy.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridhub.access.audit import AuditLog
from gridhub.access.directory import Directory
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal
from gridhub.domain.access import Kind
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.errors import Forbidden
from gridhub.storage.access_catalog import DuckDBAccessCatalog
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.registry import Registry

TENANT = "bench"
CONSUMED = "electricity.power.active.consumed.total"
VOLTAGE = "electricity.voltage.rms.l1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RETAILERS = 20


def build(path: Path, sites: int) -> tuple[AccessControl, DuckDBDatabase]:
    db = DuckDBDatabase(path)
    registry = Registry(DuckDBCatalog(db))
    directory = Directory(DuckDBAccessCatalog(db), registry)
    registry.create_tenant(Tenant(TENANT, TENANT))
    registry.register_sites([Site(TENANT, f"s{i}") for i in range(sites)])
    registry.register_devices(
        [Device(TENANT, f"m{i}", "smart-meter", f"s{i}") for i in range(sites)]
    )
    for r in range(RETAILERS):
        directory.create_stakeholder(TENANT, f"r{r}", Kind.RETAILER)
    for sid, kind in (("agg", Kind.AGGREGATOR), ("dso", Kind.DSO), ("uni", Kind.RESEARCHER)):
        directory.create_stakeholder(TENANT, sid, kind)
    for i in range(sites):
        directory.create_stakeholder(TENANT, f"c{i}", Kind.CUSTOMER, site=f"s{i}")
        directory.create_contract(TENANT, f"c{i}", f"r{i % RETAILERS}", T0)
        if i % 3 == 0:
            directory.switch_supplier(
                TENANT, f"c{i}", f"r{(i + 1) % RETAILERS}", T0 + timedelta(days=180)
            )
        if i % 2 == 0:
            directory.create_contract(TENANT, f"c{i}", "agg", T0)
        if i % 10 == 0:
            directory.create_policy(
                TENANT, grantee="uni", identifier="electricity.*", site=f"s{i}", read=True,
                write=False, valid_from=T0,
            )  # fmt: skip
    directory.create_policy(
        TENANT, grantee="*", identifier="water.*", read=True, write=False, valid_from=T0
    )
    return AccessControl(directory, registry), db


def best_us(check: Callable[[int], object], devices: list[int], runs: int) -> float:
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            for i in devices:
                check(i)
            best = min(best, time.perf_counter() - started)
    finally:
        if gc_was:
            gc.enable()
    return best / len(devices) * 1e6


def refused(call: Callable[[], object]) -> None:
    try:
        call()
    except Forbidden:
        return
    raise AssertionError("expected a refusal")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--sites", type=int, default=2_000, help="households in the tenant")
    parser.add_argument("--checks", type=int, default=20_000, help="checks per pass")
    parser.add_argument("--runs", type=int, default=5, help="passes; the best one counts")
    args = parser.parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/bench_policy.py", *(sys.argv[1:] if argv is None else argv)]
    )
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        access, db = build(Path(tmp) / "bench.duckdb", args.sites)
        print(f"tenant of {args.sites} sites built in {time.perf_counter() - started:.1f} s")
        rng = random.Random(1)
        devices = [rng.randrange(args.sites) for _ in range(args.checks)]
        lo, hi = T0 + timedelta(days=170), T0 + timedelta(days=190)  # spans the switches
        admin = Principal("a", TENANT, "admin")
        dso = Principal("d", TENANT, "dso", "dso")
        uni = Principal("u", TENANT, "researcher", "uni")

        def customer(i: int) -> Principal:
            return Principal(f"t{i}", TENANT, "customer", f"c{i}")

        def retailer(i: int) -> Principal:
            return Principal(f"t{i}", TENANT, "retailer", f"r{i % RETAILERS}")

        ar = access.authorize_read
        cases: dict[str, Callable[[int], object]] = {
            "tenant_admin": lambda i: ar(admin, TENANT, f"m{i}", CONSUMED, lo, hi),
            "customer_own_site": lambda i: ar(customer(i), TENANT, f"m{i}", CONSUMED, lo, hi),
            "retailer_contract": lambda i: ar(retailer(i), TENANT, f"m{i}", CONSUMED, lo, hi),
            "retailer_refused": lambda i: refused(
                lambda: ar(retailer(i + 5), TENANT, f"m{i}", CONSUMED, lo, hi)
            ),
            "dso_grid": lambda i: ar(dso, TENANT, f"m{i}", VOLTAGE, lo, hi),
            "researcher_policy": lambda i: (
                ar(uni, TENANT, f"m{i}", CONSUMED, lo, hi)
                if i % 10 == 0
                else refused(lambda: ar(uni, TENANT, f"m{i}", CONSUMED, lo, hi))
            ),
            "may_read_per_value": lambda i: access.may_read(
                retailer(i), TENANT, f"m{i}", CONSUMED, lo
            ),
        }
        figures: dict[str, dict[str, Any]] = {}
        print(f"{'check':<22} {'µs/check':>9}")
        for name, check in cases.items():
            us = best_us(check, devices, args.runs)
            print(f"{name:<22} {us:9.2f}")
            figures[f"policy_check_us_{name}"] = {
                "value": round(us, 2),
                "unit": "µs/check",
                "command": command,
            }
        # the audit log's cost on a request's path (an append), and the batched write behind it
        audit = AuditLog(DuckDBAccessCatalog(db))
        target = "GET /api/v1/tenants/bench/devices/m1/series?identifier=" + CONSUMED
        us = best_us(lambda i: audit.record(TENANT, "tok", "r1", "read", target, "200"), devices, 1)
        flushed = time.perf_counter()
        written = audit.flush()
        flush_us = (time.perf_counter() - flushed) / written * 1e6
        for name, value in (("audit_record", us), ("audit_flush_per_entry", flush_us)):
            print(f"{name:<22} {value:9.2f}")
            figures[f"policy_check_us_{name}"] = {
                "value": round(value, 2),
                "unit": "µs/entry",
                "command": command,
            }
        db.close()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
