"""``make bench``: run every benchmark side by side in one run and write BENCHMARKS.md.

Figures (each with the command that produced it) go to ``benchmarks/results.json``;
``BENCHMARKS.md`` is rendered from that file. Usage::

    python benchmarks/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_decode  # noqa: E402
import latency  # noqa: E402
import peers  # noqa: E402
import queries  # noqa: E402
from gridhub.storage.base import WriteBatch  # noqa: E402
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore  # noqa: E402
from harness import (  # noqa: E402
    CMD,
    ROOT,
    HubProcess,
    PrivateMosquitto,
    figure,
    machine,
    prepare_data_dir,
)
from load import T0_US, message, publish_all  # noqa: E402

P = "electricity.power.active.consumed.total"


def bench_store(rows: int, batch: int) -> tuple[float, float]:
    """(rows/s appended by ``DuckDBStore.write``, rows/s folded into the rollups and state by
    ``merge_rollups``): the hub's writer and merger threads, each alone."""
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(DuckDBDatabase(Path(tmp) / "bench.duckdb"))
        store.high_water.wait_ready(30)
        batches = []
        for start in range(0, rows, batch):  # 1,000 meters, one reading per quarter-hour
            wb = WriteBatch(zones={"bench": "Europe/Brussels"})
            for n in range(start, start + batch):
                tick, meter = divmod(n, 1000)
                wb.measurements.append(
                    "bench", f"m{meter:05d}", P, T0_US + tick * 900_000_000, 1.0, False
                )
            batches.append(wb)
        started = time.perf_counter()
        for wb in batches:
            store.write(wb)
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        merged = 0
        while chunk := store.merge_rollups():
            merged += chunk
        merge_s = time.perf_counter() - started
        store.close()
    return rows / elapsed, merged / merge_s


def bench_http(data_dir: Path, token: str, devices: int, seconds: float) -> float:
    per_body, readings = 1000, 10
    # one body = every meter's reading at one tick; 400 ticks is more than any run sends
    bodies = [
        b"[" + b",".join(message(d, tick, readings) for d in range(min(devices, per_body))) + b"]"
        for tick in range(400)
    ]
    with HubProcess(data_dir) as hub:
        url = f"{hub.url}/api/v1/tenants/bench/events"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        sent = [0]
        stop = time.monotonic() + seconds
        lock = threading.Lock()
        queue = iter(bodies)

        def worker() -> None:
            with httpx.Client(timeout=60) as client:
                while time.monotonic() < stop:
                    with lock:
                        body = next(queue, None)
                    if body is None:
                        return
                    r = client.post(url, content=body, headers=headers)
                    if r.status_code == 200:
                        with lock:
                            sent[0] += r.json()["readings"]

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    return sent[0] / elapsed


def bench_bare_pipe(workdir: Path, count: int, devices: int) -> float:
    """The limit: a bare paho subscriber (MQTT 5, QoS 1) that only counts, same publisher."""
    import threading as _threading

    import paho.mqtt.client as mqtt

    with PrivateMosquitto(workdir) as broker:
        received = [0]
        done = _threading.Event()

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            received[0] += 1
            if received[0] >= count:
                done.set()

        subscribed = _threading.Event()
        sub = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5
        )
        sub.on_message = on_message
        sub.on_subscribe = lambda *args: subscribed.set()
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        sub.subscribe("gridhub/+/+/events", qos=1)
        subscribed.wait(10)
        ready = mp.Event()
        proc = mp.Process(target=publish_all, args=(broker.url, count, 1, devices, ready))
        proc.start()
        ready.wait(120)
        started = time.perf_counter()
        done.wait(600)
        elapsed = time.perf_counter() - started
        proc.join(60)
        sub.disconnect()
        sub.loop_stop()
    return received[0] / elapsed


def bench_bare_pipe_lean(workdir: Path, count: int, devices: int) -> float:
    """A second limit: a subscriber that only counts, on the hub's own MQTT wire code (one
    ``recv`` yields every packet in it, the PUBACKs of one read go out in one ``send``), so
    what it measures is Mosquitto and the publisher, not a Python client's per-packet cost."""
    import socket

    from gridhub.ingest import mqtt_wire as wire

    with PrivateMosquitto(workdir) as broker:
        sock = socket.create_connection(("127.0.0.1", broker.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(wire.encode_connect("bench-bare-lean", keepalive=600, v5=True))
        sock.sendall(wire.encode_subscribe(1, "gridhub/+/+/events", 1, v5=True))
        reader = wire.PacketReader()
        subscribed = [False]

        def read() -> int:
            """One ``recv``: count its PUBLISHes and acknowledge them in one ``send``."""
            data = sock.recv(65_536)
            if not data:
                raise ConnectionError("the broker closed the bare subscriber's connection")
            reader.feed(data)
            ids = []
            for kind, flags, body in reader.packets():
                if kind == wire.PUBLISH:
                    ids.append(wire.decode_publish(flags, body, v5=True).packet_id)
                elif kind == wire.SUBACK:
                    subscribed[0] = True
            if ids:
                sock.sendall(wire.encode_pubacks(ids))
            return len(ids)

        while not subscribed[0]:
            read()
        ready = mp.Event()
        proc = mp.Process(target=publish_all, args=(broker.url, count, 1, devices, ready))
        proc.start()
        ready.wait(120)
        started = time.perf_counter()
        received = 0
        while received < count:
            received += read()
        elapsed = time.perf_counter() - started
        proc.join(60)
        sock.sendall(wire.DISCONNECT_PACKET)
        sock.close()
    return received / elapsed


def bench_mqtt(data_dir: Path, count: int, readings: int, devices: int) -> tuple[float, int]:
    """Messages/s from the first publish until every reading is stored; and readings stored."""
    with PrivateMosquitto(data_dir) as broker, HubProcess(data_dir, mqtt_url=broker.url) as hub:
        before = hub.metric("stored_readings_total")
        ready = mp.Event()
        proc = mp.Process(target=publish_all, args=(broker.url, count, readings, devices, ready))
        proc.start()
        ready.wait(120)
        started = time.perf_counter()
        target = before + count * readings
        last, last_change = before, time.monotonic()
        while True:
            stored = hub.metric("stored_readings_total")
            if stored >= target:
                break
            if stored != last:
                last, last_change = stored, time.monotonic()
            elif time.monotonic() - last_change > 30:  # no progress: report what arrived
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        proc.join(60)
        stored = hub.metric("stored_readings_total") - before
    return stored / readings / elapsed, int(stored)


def render(results: dict[str, dict[str, object]], meta: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Run {meta['date']} on {meta['machine']} ({meta['load']}), by `{CMD}`.",
        "Everything ran on this one machine. Figures whose command starts with `make bench` ran",
        "side by side in that run; the others name the separate run (and scale) that produced",
        "them. Raw figures are in `benchmarks/results.json`.",
        "",
        "| figure | value | unit | target | command |",
        "|---|---:|---|---|---|",
    ]
    for key, f in results.items():
        lines.append(
            f"| `{key}` | {f['value']:,} | {f['unit']} | {f.get('target') or '—'} "
            f"| `{f['command']}` |"
        )
    sections = [
        path.read_text().rstrip() + "\n"
        for path in sorted((ROOT / "benchmarks" / "sections").glob("*.md"))
    ]
    return "\n".join(lines) + "\n" + "".join("\n" + section for section in sections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--query-meters", type=int, default=10_000, help="query data set size")
    parser.add_argument("--query-days", type=int, default=365, help="query data set span")
    parser.add_argument(
        "--no-queries",
        action="store_true",
        help="skip the 350 M-row queries and the peers (hours at full size)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="add figures measured by a separate run (a results JSON of "
        "queries.py/peers.py); each keeps the command that produced it",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: merge --merge files into results.json and re-render BENCHMARKS.md",
    )
    args = parser.parse_args()
    if args.render_only:
        return render_only(args.merge)
    q = args.quick
    load_at_start = "load average {:.2f} {:.2f} {:.2f} at start".format(*os.getloadavg())
    results: dict[str, dict[str, object]] = {}

    decode_json = Path(tempfile.mkstemp(suffix=".json")[1])
    bench_decode.main(["--json", str(decode_json)] + (["--messages", "20000"] if q else []))
    for key, value in json.loads(decode_json.read_text()).items():
        value["command"] = f"{CMD}: benchmarks/bench_decode.py, best of 5 passes"
        results[key] = value
    decode_json.unlink()

    rows = 200_000 if q else 2_000_000
    append, merge = bench_store(rows, 50_000)
    results["store_append_rows_per_s"] = figure(
        append,
        "rows/s",
        f"{CMD}: DuckDBStore.write, {rows:,} new rows in batches of 50,000 (the dedupe marks "
        "checked, raw rows and their pending rollup copies appended, checkpoints included)",
    )
    results["store_merge_rows_per_s"] = figure(
        merge,
        "rows/s",
        f"{CMD}: DuckDBStore.merge_rollups of those {rows:,} rows (15 min, 1 h and 1 day "
        "rollups and the latest state), what the merger thread does beside the writer",
    )

    with tempfile.TemporaryDirectory() as tmp:
        devices = 1000
        token = prepare_data_dir(Path(tmp), "bench", devices)
        secs = 5 if q else 20
        results["http_batch_measurements_per_s"] = figure(
            bench_http(Path(tmp), token, devices, secs),
            "measurements/s",
            f"{CMD}: 4 clients POST batches of 1,000 messages × 10 readings for {secs} s",
            "≥ 200,000 (issue #3)",
        )
    # long enough to be sustained: rollup merges, DuckDB checkpoints and compaction all run
    # several times within (a 200,000-message burst was over in 6 s, before the first
    # checkpoint, and overstated the rate the 70 % latency figure is taken from)
    count = 20_000 if q else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        bare = bench_bare_pipe(Path(tmp), count, 1000)
    results["bare_pipe_msgs_per_s"] = figure(
        bare,
        "msg/s",
        f"{CMD}: the same publisher and private Mosquitto, a bare paho MQTT 5 subscriber that "
        f"only counts {count:,} QoS 1 messages",
    )
    with tempfile.TemporaryDirectory() as tmp:
        lean = bench_bare_pipe_lean(Path(tmp), count, 1000)
    results["bare_pipe_lean_msgs_per_s"] = figure(
        lean,
        "msg/s",
        f"{CMD}: the same publisher and private Mosquitto, a subscriber on gridhub's own MQTT "
        f"wire code (MQTT 5, QoS 1) that only counts {count:,} messages",
    )
    for readings, key, target, messages in (
        (
            1,
            "mqtt_qos1_single_msgs_per_s",
            "≥ 15,000 msg/s and ≥ 60 % of the bare pipe (#3)",
            count,
        ),
        (10, "mqtt_qos1_batch10_msgs_per_s", None, count * 3 // 10),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            prepare_data_dir(Path(tmp), "bench", 1000)
            rate, stored = bench_mqtt(Path(tmp), messages, readings, 1000)
            lost = messages * readings - stored
            results[key] = figure(
                rate,
                "msg/s",
                f"{CMD}: 1,000 simulated meters in one process, QoS 1, {messages:,} messages of "
                f"{readings} reading(s) via a private Mosquitto; {lost:,} readings missing",
                target,
            )
            if readings == 10:
                results["mqtt_qos1_batch10_measurements_per_s"] = figure(
                    rate * 10,
                    "measurements/s",
                    results[key]["command"],  # type: ignore[arg-type]
                    "≥ 150,000 (issue #3)",
                )

    if not args.no_queries:
        meters, days = (100, 30) if q else (args.query_meters, args.query_days)
        with tempfile.TemporaryDirectory() as tmp:
            queries.run(results, meters=meters, days=days, workdir=Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            peers.run(results, meters=meters, days=days, workdir=Path(tmp))
    for extra in args.merge:
        loaded = json.loads(extra.read_text())
        results.update(loaded.get("results", loaded))
    single = results["mqtt_qos1_single_msgs_per_s"]["value"]
    with tempfile.TemporaryDirectory() as tmp:
        latency.run(results, max_rate=float(single), quick=q, workdir=Path(tmp))  # type: ignore[arg-type]
    results["mqtt_qos1_single_pct_of_bare_pipe_lean"] = figure(
        100.0 * float(single) / lean,  # type: ignore[arg-type]
        "%",
        f"{CMD}: mqtt_qos1_single_msgs_per_s / bare_pipe_lean_msgs_per_s, same run",
    )
    results["mqtt_qos1_single_pct_of_bare_pipe"] = figure(
        100.0 * float(single) / bare,  # type: ignore[arg-type]
        "%",
        f"{CMD}: mqtt_qos1_single_msgs_per_s / bare_pipe_msgs_per_s, same run",
        "≥ 60 % (issue #3)",
    )
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": load_at_start,
    }
    saved = ROOT / "benchmarks" / "results.json"
    if saved.exists():  # figures of the separate scripts (policy, dashboard…) stay until re-run
        for key, value in json.loads(saved.read_text())["results"].items():
            results.setdefault(key, value)
    out = {"meta": meta, "results": results}
    saved.write_text(json.dumps(out, indent=2) + "\n")
    (ROOT / "BENCHMARKS.md").write_text(render(results, meta))
    print(render(results, meta))
    return 0


def render_only(extras: list[Path]) -> int:
    """Add separately measured figures (each keeps its own command) to the last full run."""
    saved = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    results, meta = saved["results"], saved["meta"]
    for extra in extras:
        loaded = json.loads(extra.read_text())
        results.update(loaded.get("results", loaded))
    (ROOT / "benchmarks" / "results.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n"
    )
    (ROOT / "BENCHMARKS.md").write_text(render(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
