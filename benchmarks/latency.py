"""Publish → queryable latency, and peak memory through a store outage (issue #3).

A background fleet publishes at a fixed rate over MQTT (QoS 1, private Mosquitto); a probe
device publishes one reading every 100 ms and the benchmark polls the API for it: the time from
publish to the reading answering a query is one latency sample. Peak memory: a hub under full
load has its store made unavailable for 60 s (fault injection), and its RSS is sampled.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil

from harness import CMD, HubProcess, PrivateMosquitto, figure, prepare_data_dir
from load import RawPublisher, publish_all


def prepare_admin_token_path(workdir: Path) -> Path:
    return workdir / "admin-token"


PROBE = "m99999"


def _publish_at_rate(url: str, rate: float, seconds: float, devices: int, ready: mp.Event) -> None:
    """Publish ``rate`` messages/s (in 20 ms slices) for ``seconds``, each reading stamped with
    the wall clock as live meters' are (so the hub sees live traffic: new readings of today,
    no settled day to compact)."""
    publisher = RawPublisher(url, f"bench-rate-{rate:g}")
    ready.set()
    sent, started = 0, time.monotonic()
    last_ms: dict[int, int] = {}
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) - sent
            if due > 0:
                packets = []
                now_ms = time.time_ns() // 1_000_000
                for _ in range(due):
                    device = sent % devices
                    at_ms = max(now_ms, last_ms.get(device, 0) + 1)  # one reading per ms
                    last_ms[device] = at_ms
                    packets.append(publisher.live_packet(device, at_ms))
                    sent += 1
                publisher.publish(packets)
            time.sleep(0.02)
    finally:
        publisher.close()


def _probe_latencies(hub: HubProcess, broker_url: str, token: str, samples: int) -> list[float]:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time()}")
    client.connect(host, int(port))
    client.loop_start()
    state_url = f"{hub.url}/api/v1/tenants/bench/devices/{PROBE}/state"
    latencies: list[float] = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        for i in range(samples):
            value = float(i + 1)
            ts = datetime.now(UTC).isoformat()
            payload = (
                f'{{"hardwareId":"{PROBE}","type":"DeviceMeasurements","request":'
                f'{{"measurements":{{"electricity.power.active.consumed.total":{value}}},'
                f'"updateState":true,"eventDate":"{ts}"}}}}'
            ).encode()
            sent = time.perf_counter()
            client.publish(f"gridhub/bench/{PROBE}/events", payload, qos=1)
            deadline = sent + 10
            while time.perf_counter() < deadline:
                state = api.get(state_url).json()
                if state and state[0]["value"] == value:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
                time.sleep(0.001)
            time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return latencies


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_at(workdir: Path, rate: float, samples: int) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, samples) of publish → queryable under a background load of ``rate``."""
    token = prepare_data_dir(workdir, "bench", 1000, extra_devices=(PROBE,))
    with PrivateMosquitto(workdir) as broker, HubProcess(workdir, mqtt_url=broker.url) as hub:
        seconds = samples * 0.12 + 10
        ready = mp.Event()
        load = mp.Process(target=_publish_at_rate, args=(broker.url, rate, seconds, 1000, ready))
        load.start()
        ready.wait(60)
        time.sleep(2)  # let the load settle
        latencies = _probe_latencies(hub, broker.url, token, samples)
        load.join(seconds + 60)
    return _pct(latencies, 0.5), _pct(latencies, 0.99), len(latencies)


def outage_peak_rss(workdir: Path, count: int, outage_s: float) -> tuple[float, float]:
    """(peak RSS MB during the outage, baseline RSS MB) of a hub under full load."""
    prepare_data_dir(workdir, "bench", 1000, admin_token_file=prepare_admin_token_path(workdir))
    env = {"GRIDHUB_FAULT_INJECTION": "true"}
    with (
        PrivateMosquitto(workdir) as broker,
        HubProcess(workdir, mqtt_url=broker.url, env=env) as hub,
    ):
        proc = psutil.Process(hub.proc.pid)
        baseline = proc.memory_info().rss / 2**20
        admin = prepare_admin_token_path(workdir).read_text().strip()
        with httpx.Client(timeout=10) as api:
            api.post(
                f"{hub.url}/api/v1/faults/store-outage",
                params={"seconds": outage_s},
                headers={"Authorization": f"Bearer {admin}"},
            ).raise_for_status()
        ready = mp.Event()
        load = mp.Process(target=publish_all, args=(broker.url, count, 1, 1000, ready))
        load.start()
        ready.wait(60)
        peak, end = baseline, time.monotonic() + outage_s
        while time.monotonic() < end:
            peak = max(peak, proc.memory_info().rss / 2**20)
            time.sleep(0.2)
        load.join(600)
    return peak, baseline


def run(
    results: dict[str, dict[str, object]], *, max_rate: float, quick: bool, workdir: Path
) -> None:
    samples = 50 if quick else 200
    nominal = 10_000 / 900  # 10,000 meters every 15 minutes
    for key, rate, p50_target, p99_target in (
        ("nominal", nominal, "≤ 10 ms", "≤ 50 ms"),
        ("70pct", 0.7 * max_rate, "≤ 25 ms", "≤ 150 ms"),
    ):
        sub = workdir / f"latency-{key}"
        sub.mkdir()
        p50, p99, n = latency_at(sub, rate, samples)
        command = (
            f"{CMD}: {n} probes 100 ms apart, publish (QoS 1) → the value answers "
            f"GET …/state, under {rate:,.0f} msg/s of background load"
        )
        results[f"latency_p50_ms_{key}"] = figure(p50, "ms", command, p50_target)
        results[f"latency_p99_ms_{key}"] = figure(p99, "ms", command, p99_target)
    outage_s = 20 if quick else 60
    sub = workdir / "outage"
    sub.mkdir()
    peak, baseline = outage_peak_rss(sub, 20_000 if quick else 200_000, outage_s)
    results["outage_peak_rss_mb"] = figure(
        peak,
        "MB",
        f"{CMD}: hub RSS sampled every 0.2 s through a {outage_s:g} s store outage (fault "
        f"injection) while one publisher sends at full speed; baseline {baseline:,.0f} MB",
        "bounded (issue #3)",
    )


def main() -> int:
    """Re-measure the two latency figures alone (the full run is ``benchmarks/run.py``); the
    JSON goes to ``run.py --render-only --merge FILE``."""
    import argparse
    import json
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--max-rate", type=float, required=True, help="sustained msg/s measured")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    nominal = 10_000 / 900
    out: dict[str, dict[str, object]] = {}
    for key, rate, p50_target, p99_target in (
        ("nominal", nominal, "≤ 10 ms", "≤ 50 ms"),
        ("70pct", 0.7 * args.max_rate, "≤ 25 ms", "≤ 150 ms"),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            p50, p99, n = latency_at(Path(tmp), rate, args.samples)
        command = (
            f"python benchmarks/latency.py --max-rate {args.max_rate:g} --samples {args.samples}"
            f": {n} probes 100 ms apart, publish (QoS 1) → the value answers GET …/state, under "
            f"{rate:,.0f} msg/s of background load (re-measured alone, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
        )
        out[f"latency_p50_ms_{key}"] = figure(p50, "ms", command, p50_target)
        out[f"latency_p99_ms_{key}"] = figure(p99, "ms", command, p99_target)
        print(key, f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({n} samples)", file=sys.stderr)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
