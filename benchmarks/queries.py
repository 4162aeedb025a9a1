"""The four queries of issue #3 on the generated data set, warm, server side.

The data set (``benchmarks/generate.py``: by default 10,000 meters × 1 year × 15 min ≈ 350 M
raw rows, appended in time order as live ingest leaves them, with the three rollup tables, then
compacted as the hub's writer would have compacted it by now — ``--no-compact`` skips that) is
generated into a fresh data directory, then each query runs once to warm up and then several
times in this process against :class:`~gridhub.storage.duckdb_store.DuckDBStore`; the figure is
the median (p50) wall time in ms:

- ``meter_day``: one meter's raw readings of one local day (96 values), ``DuckDBStore.series``;
- ``meter_year_daily``: one meter's year as daily totals, ``series`` at ``1d`` with ``sum``
  (from ``rollup_1d``);
- ``fleet_daily_year``: every meter's daily totals summed per day for the year — SQL on
  ``rollup_1d`` grouped by bucket (the store has no method for it yet);
- ``completeness_day``: the raw readings per meter of one local day, against the 96 expected —
  SQL on ``measurements`` (no store method yet).

``--http`` also times the two queries the API serves (series raw and at 1d) through a running
hub (``gridhub serve`` in a child process), client side.

    python benchmarks/queries.py --meters 100 --days 30
    python benchmarks/queries.py --data-dir /tmp/bench-data --meters 10000 --days 365 --keep
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import (  # noqa: E402
    IDENTIFIER,
    TENANT,
    ZONE,
    Generated,
    Span,
    generate_duckdb,
    new_token,
    readings_sql,
)
from gridhub.domain.timeutil import Function, Resolution, quarter_hours_in_day  # noqa: E402
from gridhub.storage.base import SeriesQuery  # noqa: E402
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore  # noqa: E402
from harness import figure  # noqa: E402

# issue #3's keys, in its order, with its targets
QUERIES: tuple[tuple[str, str, str], ...] = (
    ("meter_day", "query_meter_day_p50_ms", "one meter's day, raw (96 values)"),
    ("meter_year_daily", "query_meter_year_daily_ms", "one meter's year as daily totals"),
    ("fleet_daily_year", "query_fleet_daily_year_ms", "fleet-wide daily totals for the year"),
    ("completeness_day", "query_completeness_day_ms", "completeness per meter for one day"),
)
TARGETS = {
    "meter_day": "≤ 5 ms and ≤ both peers (issue #3)",
    "meter_year_daily": "≤ both peers (issue #3)",
    "fleet_daily_year": "≤ 50 ms (from rollups) and ≤ both peers (issue #3)",
    "completeness_day": "≤ both peers (issue #3)",
}
RUNS = 20
BUDGET_S = 30.0  # stop repeating a slow query after this much time (and at least MIN_RUNS)
MIN_RUNS = 3


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while inside, so ``finally`` blocks still clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Timing:
    """Wall times (ms) of warm runs of one query, and the last answer."""

    times_ms: list[float]
    answer: Any = None

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def runs(self) -> int:
        return len(self.times_ms)

    def describe(self) -> str:
        return f"p50 of {self.runs} warm runs (after one warm-up run)"


def measure(
    fn: Callable[[], Any], *, runs: int = RUNS, budget_s: float = BUDGET_S, min_runs: int = MIN_RUNS
) -> Timing:
    """Run ``fn`` once to warm up, then up to ``runs`` times (at least ``min_runs``, fewer than
    ``runs`` only once ``budget_s`` is spent)."""
    answer = fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < runs and (len(times) < min_runs or spent < budget_s):
        started = perf_counter()
        answer = fn()
        elapsed = perf_counter() - started
        spent += elapsed
        times.append(elapsed * 1000)
    return Timing(times, answer)


@dataclass
class Reference:
    """What the answers must be, computed from the generator (cheap parts only)."""

    span: Span
    meter_day: list[float] = field(default_factory=list)
    meter_year_daily: list[float] = field(default_factory=list)

    @classmethod
    def compute(cls, span: Span) -> Reference:
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            meter = int(span.query_meter[1:])
            lo, hi = span.day_bounds(span.query_day)
            t_lo, t_hi = span.tick_of(lo), span.tick_of(hi)
            m = span.meters
            day_rows = readings_sql(span, t_lo * m + meter, t_hi * m, m)
            day = con.execute(f"SELECT value FROM ({day_rows}) ORDER BY ts").fetchall()
            year = con.execute(
                f"""
                SELECT sum(value) FROM ({readings_sql(span, meter, span.rows, m)})
                GROUP BY time_bucket(INTERVAL '1 day', ts, '{ZONE}') ORDER BY min(ts)
                """
            ).fetchall()
        finally:
            con.close()
        return cls(span, [v for (v,) in day], [v for (v,) in year])


def close(a: Sequence[float], b: Sequence[float], rel: float = 1e-9) -> bool:
    if len(a) != len(b):
        return False
    return all(abs(x - y) <= rel * max(1.0, abs(x)) for x, y in zip(a, b, strict=True))


class GridhubQueries:
    """The four queries on a gridhub DuckDB file, in process (server side)."""

    def __init__(self, db_path: Path, span: Span) -> None:
        self.span = span
        self.store = DuckDBStore(DuckDBDatabase(db_path))
        # the store scans every series' newest reading in a background thread when it opens
        # (storage/high_water.py): time the queries after it, as on a hub that is running
        self.store.high_water.wait_ready(600)
        self.day_lo, self.day_hi = span.day_bounds(span.query_day)

    def close(self) -> None:
        self.store.close()

    def meter_day(self) -> list[float]:
        points = self.store.series(
            SeriesQuery(TENANT, self.span.query_meter, IDENTIFIER, self.day_lo, self.day_hi),
            ZONE,
        )
        return [p.value for p in points]

    def meter_year_daily(self) -> list[float]:
        points = self.store.series(
            SeriesQuery(
                TENANT,
                self.span.query_meter,
                IDENTIFIER,
                self.span.t0,
                self.span.end,
                Resolution.DAY,
                Function.SUM,
            ),
            ZONE,
        )
        return [p.value for p in points]

    # What the store should offer as ``DuckDBStore.fleet_series(tenant, identifier, start, end,
    # resolution, function)``: the same rollup, reduced across devices per bucket.
    FLEET_SQL = """
        SELECT epoch_us(bucket), sum(sum) FROM rollup_1d
        WHERE tenant = $tenant AND identifier = $identifier AND bucket >= $start AND bucket < $end
        GROUP BY bucket ORDER BY bucket
    """
    # ... and ``DuckDBStore.completeness(tenant, identifier, start, end)``: readings per device.
    COMPLETENESS_SQL = """
        SELECT device, count(*) FROM measurements
        WHERE tenant = $tenant AND identifier = $identifier AND ts >= $start AND ts < $end
        GROUP BY device
    """

    def fleet_daily_year(self) -> list[float]:
        rows = self.store._read(  # noqa: SLF001 - the benchmark stands in for a store method
            self.FLEET_SQL,
            {
                "tenant": TENANT,
                "identifier": IDENTIFIER,
                "start": self.span.t0,
                "end": self.span.end,
            },
        )
        return [v for _bucket, v in rows]

    def completeness_day(self) -> dict[str, int]:
        rows = self.store._read(  # noqa: SLF001
            self.COMPLETENESS_SQL,
            {"tenant": TENANT, "identifier": IDENTIFIER, "start": self.day_lo, "end": self.day_hi},
        )
        return dict(rows)


def check_answers(name: str, answers: dict[str, Any], ref: Reference) -> list[str]:
    """Problems with a system's answers (empty: all as generated)."""
    problems = []
    span = ref.span
    day = answers.get("meter_day")
    if day is not None and not close(day, ref.meter_day):
        problems.append(f"{name}: meter_day has {len(day)} values, not the generated ones")
    year = answers.get("meter_year_daily")
    if year is not None and not close(year, ref.meter_year_daily):
        problems.append(f"{name}: meter_year_daily differs from the generated daily totals")
    fleet = answers.get("fleet_daily_year")
    if fleet is not None and len(fleet) != span.days:
        problems.append(f"{name}: fleet_daily_year has {len(fleet)} days, not {span.days}")
    counts = answers.get("completeness_day")
    expected = quarter_hours_in_day(span.query_day, span.zone)
    if counts is not None and (
        len(counts) != span.meters or any(c != expected for c in counts.values())
    ):
        problems.append(f"{name}: completeness_day is not {expected} for each of the meters")
    return problems


def http_queries(gen: Generated, runs: int) -> dict[str, Timing]:
    """Series raw (one day) and at 1d (the year) through a running hub's API, client side."""
    import httpx

    from harness import HubProcess

    span = gen.span
    with HubProcess(gen.data_dir) as hub, httpx.Client(timeout=120) as client:
        url = f"{hub.url}/api/v1/tenants/{TENANT}/devices/{span.query_meter}/series"
        headers = {"Authorization": f"Bearer {gen.token}"}

        def get(params: dict[str, str]) -> list[float]:
            r = client.get(url, params={"identifier": IDENTIFIER, **params}, headers=headers)
            r.raise_for_status()
            return [p["value"] for p in r.json()["points"]]

        return {
            "meter_day": measure(lambda: get({"day": span.query_day.isoformat()}), runs=runs),
            "meter_year_daily": measure(
                lambda: get(
                    {
                        "from": span.t0.isoformat(),
                        "to": span.end.isoformat(),
                        "resolution": "1d",
                        "function": "sum",
                    }
                ),
                runs=runs,
            ),
        }


def command_line(meters: int, days: int, extra: Sequence[str] = ()) -> str:
    args = ["python", "benchmarks/queries.py", "--meters", str(meters), "--days", str(days)]
    return shlex.join([*args, *extra])


def run(
    results: dict[str, dict[str, object]],
    *,
    meters: int,
    days: int,
    workdir: Path,
    data_dir: Path | None = None,
    keep: bool = False,
    http: bool = False,
    runs: int = RUNS,
    command: str | None = None,
    compact: bool = True,
) -> dict[str, Timing]:
    """Generate (unless ``data_dir`` already holds the data set), time the four queries, add
    their figures to ``results``; delete the generated files unless ``keep``."""
    command = command or command_line(meters, days)
    span = Span(meters, days)
    reuse = data_dir is not None and (data_dir / "gridhub.duckdb").exists()
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="gridhub-queries-", dir=workdir))
    timings: dict[str, Timing] = {}
    with cleanup_on_sigterm():
        _run(results, span, data_dir, reuse, keep, http, runs, command, timings, compact)
    return timings


def _run(
    results: dict[str, dict[str, object]],
    span: Span,
    data_dir: Path,
    reuse: bool,
    keep: bool,
    http: bool,
    runs: int,
    command: str,
    timings: dict[str, Timing],
    compact: bool = True,
) -> None:
    meters, days = span.meters, span.days
    try:
        if reuse:
            token = new_token(data_dir) if http else ""
            gen = Generated(data_dir, data_dir / "gridhub.duckdb", span, 0.0, 0, token)
            print(f"queries: using the data set in {data_dir}")
        else:
            gen = generate_duckdb(data_dir, meters, days, compact=compact)
            compaction = (
                f", then compacted as the hub would have ({gen.compaction_seconds:,.0f} s of it)"
                if compact
                else ", not compacted"
            )
            results["generate_duckdb_seconds"] = figure(
                gen.seconds,
                "s",
                f"{command}: generate.generate_duckdb, {gen.rows:,} raw rows "
                f"({meters:,} meters × {days} days × 15 min) + 3 rollups + registry{compaction}",
            )
            results["generate_duckdb_disk_gib"] = figure(
                gen.bytes / 2**30,
                "GiB",
                f"{command}: the generated data directory ({gen.rows:,} raw rows + rollups)",
            )
        ref = Reference.compute(span)
        q = GridhubQueries(gen.db_path, span)
        try:
            for name, _key, _what in QUERIES:
                timings[name] = measure(getattr(q, name), runs=runs)
        finally:
            q.close()
        problems = check_answers("gridhub", {n: t.answer for n, t in timings.items()}, ref)
        for problem in problems:
            print(f"WARNING {problem}", file=sys.stderr)
        scale = f"{span.rows:,} rows ({meters:,} meters × {days} days × 15 min)"
        day = span.query_day.isoformat()
        what = {
            "meter_day": f"DuckDBStore.series raw, {span.query_meter}, local day {day}",
            "meter_year_daily": f"DuckDBStore.series 1d sum, {span.query_meter}, whole span",
            "fleet_daily_year": "SQL on rollup_1d grouped by bucket, whole span",
            "completeness_day": f"SQL count per device on measurements, local day {day}",
        }
        for name, key, _what in QUERIES:
            t = timings[name]
            results[key] = figure(
                t.p50,
                "ms",
                f"{command}: {what[name]}; {scale}; in process, {t.describe()}",
                TARGETS[name],
            )
        if http:
            http_command = command if "--http" in command else f"{command} --http"
            http_timings = http_queries(gen, runs)
            for name, t in http_timings.items():
                key = dict((n, k) for n, k, _ in QUERIES)[name]
                results[f"http_{key}"] = figure(
                    t.p50,
                    "ms",
                    f"{http_command}: GET …/series via gridhub serve, {what[name]}; {scale}; "
                    f"client side, {t.describe()}",
                )
                timings[f"http_{name}"] = t
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def table(results: dict[str, dict[str, object]], keys: Sequence[str] | None = None) -> str:
    keys = list(keys) if keys is not None else list(results)
    width = max(len(k) for k in keys)
    lines = [f"{'figure':<{width}}  {'value':>14}  unit"]
    for key in keys:
        f = results[key]
        lines.append(f"{key:<{width}}  {f['value']:>14,}  {f['unit']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=RUNS, help="warm runs per query")
    parser.add_argument("--data-dir", type=Path, help="use (or generate and keep) this data set")
    parser.add_argument("--keep", action="store_true", help="keep the generated data set")
    parser.add_argument("--http", action="store_true", help="also time the API (series routes)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    parser.add_argument(
        "--no-compact", action="store_true", help="generate without compaction (append order)"
    )
    args = parser.parse_args(argv)
    results: dict[str, dict[str, object]] = {}
    extra = (["--http"] if args.http else []) + (["--no-compact"] if args.no_compact else [])
    run(
        results,
        meters=args.meters,
        days=args.days,
        workdir=args.workdir,
        data_dir=args.data_dir,
        keep=args.keep or args.data_dir is not None,
        http=args.http,
        runs=args.runs,
        command=command_line(args.meters, args.days, extra),
        compact=not args.no_compact,
    )
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, gridhub (DuckDB store), warm, p50:")
    print(table(results))
    if args.json:
        import json

        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
