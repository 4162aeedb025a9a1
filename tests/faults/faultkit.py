"""The fault suite's tools: a device fleet that records what the broker confirmed, the hub as a
child process, probes that tell when a backlog has drained, and the N2 check on the DuckDB file.

"Confirmed" is what a device can know: the broker's PUBACK for a QoS 1 publication. A confirmed
message must end up in ``measurements`` exactly once (a reading) or in ``dead_letters`` (a
rejected message) — whatever happened to the hub, or, within what the broker guarantees, to the
broker in between.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import paho.mqtt.client as mqtt
import pytest

from gridhub.config import Settings
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import build_hub
from gridhub.ingest.mqtt_source import parse_mqtt_url
from helpers import free_port, port_open

TENANT = "faults"
METERS = 50
PROBE_DEVICE = "probe"
P = "electricity.power.active.consumed.total"
MAX_MESSAGE_BYTES = 64 * 1024  # the hub's default limit; an oversized dead letter keeps this much
BASE = datetime(2026, 10, 1, tzinfo=UTC)  # readings are in the past: eventDate is never "ahead"
PROBE_BASE = datetime(2026, 9, 1, tzinfo=UTC)

Key = tuple[str, str, int]  # (device, identifier, timestamp in µs since the epoch)


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@dataclass(frozen=True, slots=True)
class Msg:
    """One publication: a good reading (``key``), a bad message (the ``reason`` expected), or
    another event (an alert, an acknowledgement: neither)."""

    topic: str
    payload: bytes = field(repr=False)
    key: Key | None = None
    reason: str | None = None

    @property
    def dead_letter_raw(self) -> bytes:
        """What the dead-letter store keeps of it (the head of an oversized message)."""
        return self.payload[:MAX_MESSAGE_BYTES]


def topic(device: str, tenant: str = TENANT) -> str:
    return f"gridhub/{tenant}/{device}/events"


def reading(device: str, moment: datetime, value: float, update_state: bool = False) -> Msg:
    body = {
        "hardwareId": device,
        "type": "DeviceMeasurements",
        "request": {
            "measurements": {P: value},
            "updateState": update_state,
            "eventDate": moment.isoformat(),
        },
    }
    return Msg(topic(device), json.dumps(body).encode(), key=(device, P, _us(moment)))


def fleet_readings(ticks: int, meters: int = METERS, step_s: int = 60) -> list[Msg]:
    """``meters`` meters × ``ticks`` one-minute readings, in time order (15 per quarter-hour)."""
    return [
        reading(f"m{m:03d}", BASE + timedelta(seconds=t * step_s), round(t * 0.25 + m * 0.01, 3))
        for t in range(ticks)
        for m in range(meters)
    ]


def events(count: int) -> list[Msg]:
    """Alerts and command acknowledgements (neither a reading nor a bad message)."""
    out: list[Msg] = []
    for n in range(count):
        dev = f"m{n % METERS:03d}"
        date = (BASE + timedelta(days=30, seconds=n)).isoformat()
        alert = {
            "hardwareId": dev,
            "type": "DeviceAlert",
            "request": {
                "type": "lastGasp",
                "level": "Critical",
                "message": f"#{n}",
                "eventDate": date,
            },
        }
        ack = {
            "hardwareId": dev,
            "type": "Acknowledge",
            "request": {"originatingEventId": f"cmd-{n}", "response": "ok", "eventDate": date},
        }
        out += [
            Msg(topic(dev), json.dumps(alert).encode()),
            Msg(topic(dev), json.dumps(ack).encode()),
        ]
    return out


def count_events(db_path: Path) -> dict[str, int]:
    """Rows in alerts and acks, and how many of their keys are stored more than once."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {
            "alerts": con.execute("SELECT count(*) FROM alerts").fetchall()[0][0],
            "alert_keys_twice": con.execute(
                "SELECT count(*) FROM (SELECT tenant, device, ts, type FROM alerts"
                " GROUP BY ALL HAVING count(*) > 1)"
            ).fetchall()[0][0],
            "acks": con.execute("SELECT count(*) FROM acks").fetchall()[0][0],
            "ack_keys_twice": con.execute(
                "SELECT count(*) FROM (SELECT tenant, device, ts, originating_event_id FROM acks"
                " GROUP BY ALL HAVING count(*) > 1)"
            ).fetchall()[0][0],
        }
    finally:
        con.close()


def bad_messages(per_kind: int) -> list[Msg]:
    """Malformed, invalid and oversized messages, each with the dead-letter reason it must get.

    Leading whitespace (still valid JSON) makes every message's bytes unique, so each one can be
    found again in ``dead_letters`` by its raw bytes.
    """
    out: list[Msg] = []
    for n in range(per_kind):
        pad = b" " * (n + 1)
        dev = f"m{n % METERS:03d}"
        date = (BASE + timedelta(days=40, seconds=n)).isoformat()

        def measurements(
            values: dict[str, Any],
            event_date: str = date,
            hw: str = dev,
            kind: str = "",
            pad: bytes = pad,
        ) -> bytes:
            body = {
                "hardwareId": hw,
                "type": kind or "DeviceMeasurements",
                "request": {"measurements": values, "eventDate": event_date},
            }
            return pad + json.dumps(body).encode()

        oversized = {
            "hardwareId": dev,
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: 1.0},
                "eventDate": date,
                "metadata": {"blob": "x" * (MAX_MESSAGE_BYTES + 1000)},
            },
        }
        infinite = measurements({P: 4.0}).replace(b"4.0", b"1e999")
        out += [
            Msg(
                topic(dev),
                pad + b'{"hardwareId": "' + dev.encode() + b'", "type": ',
                None,
                "malformed_json",
            ),
            Msg(topic(dev), pad + b"\xff\xfe not json", None, "malformed_json"),
            Msg(topic(dev), pad + json.dumps(oversized).encode(), None, "oversized_payload"),
            Msg(
                topic(dev),
                pad + json.dumps({"hardwareId": dev, "type": "DeviceMeasurements"}).encode(),
                None,
                "invalid_message",
            ),
            Msg(topic(dev), measurements({P: 2.0}, kind="Bogus"), None, "unknown_message_type"),
            Msg(topic(dev), measurements({"no.such.identifier": 3.0}), None, "unknown_identifier"),
            Msg(topic(dev), measurements({P: "12.5"}), None, "wrong_value_type"),
            Msg(topic(dev), infinite, None, "non_finite_value"),
            Msg(topic(dev), measurements({P: 5.0}, event_date="yesterday"), None, "bad_date"),
            Msg(
                topic(dev),
                measurements({P: 6.0}, event_date="2026-10-20T10:00:00"),
                None,
                "missing_offset",
            ),
            Msg(topic(f"ghost{n}"), measurements({P: 7.0}, hw=f"ghost{n}"), None, "unknown_device"),
            Msg(topic(f"m{(n + 1) % METERS:03d}"), measurements({P: 8.0}), None, "topic_mismatch"),
            Msg(topic(dev, tenant="nosuch"), measurements({P: 9.0}), None, "unknown_tenant"),
        ]
    assert len({m.dead_letter_raw for m in out}) == len(out), "bad messages must differ"
    return out


class Probes:
    """Probe readings on their own device, value = sequence number, ``updateState`` on.

    The broker delivers a session's messages in order and the hub stores them in order, so once
    a probe published at time t is queryable, everything published before t has been stored.
    """

    def __init__(self) -> None:
        self.seq = 0

    def next(self) -> tuple[Msg, int]:
        self.seq += 1
        moment = PROBE_BASE + timedelta(seconds=self.seq)
        return reading(PROBE_DEVICE, moment, float(self.seq), update_state=True), self.seq


def prepare_data_dir(data_dir: Path) -> str:
    """Tenant, one site, the fleet's meters and the probe device; return a tenant token."""
    hub = build_hub(Settings(data_dir=data_dir))
    try:
        hub.registry.create_tenant(Tenant(TENANT, "Fault suite", "Europe/Brussels"))
        hub.registry.register_sites([Site(TENANT, "s1")])
        devices = [f"m{i:03d}" for i in range(METERS)] + [PROBE_DEVICE]
        hub.registry.register_devices([Device(TENANT, d, "smart-meter", "s1") for d in devices])
        return hub.tokens.create(TENANT, "admin", "fault suite")[1]
    finally:
        hub.db.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition``; return the monotonic time it became true, fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


# --- a broker of our own -----------------------------------------------------------------------

AUTOSAVE_INTERVAL_S = 1  # Mosquitto saves its in-memory state every 1-2 s (whole seconds)


class Mosquitto:
    """A Mosquitto process of our own: start, stop gracefully, kill, start again on one port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        (workdir / "persistence").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    # as root Mosquitto would switch to the `mosquitto` user, who cannot write
                    # into pytest's private temporary directory; as non-root this has no effect
                    "user root",
                    "persistence true",
                    f"persistence_location {workdir / 'persistence'}/",
                    f"autosave_interval {AUTOSAVE_INTERVAL_S}",
                    "max_queued_messages 1000000",
                    "max_queued_bytes 0",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reap()
                pytest.fail(f"private Mosquitto did not start:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM: Mosquitto writes its persistence file, then exits."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            pytest.fail(f"Mosquitto ignored SIGTERM for {timeout:g} s")
        finally:
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: what was not yet autosaved is gone."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(15)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def last_save(self) -> float | None:
        """When Mosquitto last wrote its persistence file (wall clock), if ever."""
        try:
            return (self.workdir / "persistence" / "mosquitto.db").stat().st_mtime
        except OSError:
            return None


# --- the fleet ----------------------------------------------------------------------------------


class Fleet:
    """Devices publishing QoS 1 over one MQTT 3.1.1 connection; records the broker's PUBACKs.

    ``on_publish`` runs under paho's internal lock, so it only appends (mid, time); mids are
    mapped back to messages afterwards (paho numbers mids 1…65535 in turn: a fleet publishes
    fewer, so a mid names one publication).
    """

    def __init__(self, url: str) -> None:
        host, port = parse_mqtt_url(url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"fault-fleet-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)  # while the broker is away, paho keeps them all
        self.client.reconnect_delay_set(1, 2)
        self.client.on_publish = self._on_publish
        self._acks: list[tuple[int, float]] = []
        self._sent: dict[int, tuple[Msg, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._load: threading.Thread | None = None
        self._load_error: BaseException | None = None
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, "the fleet's MQTT connection")

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        self._acks.append((mid, time.monotonic()))

    def publish(self, msg: Msg) -> None:
        with self._lock:
            info = self.client.publish(msg.topic, msg.payload, qos=1)
            # MQTT_ERR_NO_CONN is fine: paho keeps the message and sends it on reconnect
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
            assert info.mid not in self._sent, "mid reused: too many publications for one fleet"
            self._sent[info.mid] = (msg, time.monotonic())

    @property
    def published(self) -> int:
        return len(self._sent)

    # load: a steady rate from a thread

    def start_load(self, msgs: list[Msg], rate: float) -> None:
        assert len(self._sent) + len(msgs) < 65_000
        self._load = threading.Thread(target=self._run, args=(msgs, rate), daemon=True)
        self._load.start()

    def _run(self, msgs: list[Msg], rate: float) -> None:
        start = time.monotonic()
        try:
            for i, msg in enumerate(msgs):
                delay = start + i / rate - time.monotonic()
                if delay > 0.002 and self._stop.wait(delay):
                    return
                self.publish(msg)
        except BaseException as exc:  # reported by join_load
            self._load_error = exc

    def wait_published(self, count: int, timeout: float = 30.0) -> float:
        return wait_until(lambda: self.published >= count, timeout, f"{count} publications")

    def join_load(self, timeout: float = 60.0) -> None:
        if self._load is not None:
            self._load.join(timeout)
            assert not self._load.is_alive(), f"the load did not finish within {timeout:g} s"
        if self._load_error is not None:
            raise self._load_error

    def wait_acked(self, timeout: float = 60.0) -> float:
        """Until the broker has PUBACKed every publication (paho resends after a reconnect)."""
        return wait_until(
            lambda: len({mid for mid, _t in list(self._acks)}) >= len(self._sent),
            timeout,
            "the broker's PUBACK of every publication",
        )

    # what the devices know

    def confirmed(self) -> dict[Msg, float]:
        """Each confirmed message with the time of its first PUBACK."""
        out: dict[Msg, float] = {}
        for mid, at in list(self._acks):
            msg = self._sent[mid][0]
            out[msg] = min(at, out.get(msg, at))
        return out

    def publications(self) -> list[tuple[Msg, float]]:
        """(message, time published) for every publication, in order."""
        return sorted(self._sent.values(), key=lambda item: item[1])

    def mids(self) -> dict[Msg, list[int]]:
        """The mids each message was published under (one published twice has two)."""
        out: dict[Msg, list[int]] = {}
        for mid, (msg, _t) in sorted(self._sent.items()):
            out.setdefault(msg, []).append(mid)
        return out

    def ack_time(self) -> dict[int, float]:
        return dict(self._acks)

    def close(self) -> None:
        self._stop.set()
        if self._load is not None:
            self._load.join(10)
        self.client.disconnect()
        self.client.loop_stop()


# --- the hub as a child process -----------------------------------------------------------------


_METRIC = re.compile(r"^gridhub_ingest_(\w+) (\S+)$", re.M)


def parse_metrics(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in _METRIC.findall(text)}


class HubChild:
    """``gridhub serve`` in its own process on a fixed port and MQTT client id (one session)."""

    def __init__(self, data_dir: Path, mqtt_url: str, token: str, log: Path, name: str) -> None:
        self.data_dir = data_dir
        self.mqtt_url = mqtt_url
        self.log = log
        self.client_id = f"gridhub-fault-{name}-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.url, timeout=5, headers={"Authorization": f"Bearer {token}"}
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until /ready; return the seconds that took."""
        assert self.proc is None
        started = time.monotonic()
        args = [
            sys.executable,
            "-m",
            "gridhub.cli.main",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--mqtt-url",
            self.mqtt_url,
            "--log-level",
            "WARNING",
        ]
        env = dict(os.environ, GRIDHUB_MQTT_CLIENT_ID=self.client_id)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = started + timeout
        while self.ready() is not True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reap()
                pytest.fail(f"the hub did not become ready:\n{self.log_tail()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def get(self, path: str) -> httpx.Response | None:
        try:
            return self.http.get(path)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool | None:
        """True/False from /ready, None when the hub does not answer."""
        response = self.get("/ready")
        return None if response is None else response.status_code == 200

    def ready_checks(self) -> dict[str, bool]:
        response = self.get("/ready")
        return {} if response is None else dict(response.json()["checks"])

    def metrics(self) -> dict[str, float]:
        response = self.get("/metrics")
        assert response is not None and response.status_code == 200, "no /metrics"
        return parse_metrics(response.text)

    def probe_value(self) -> float:
        response = self.get(f"/api/v1/tenants/{TENANT}/devices/{PROBE_DEVICE}/state")
        if response is None or response.status_code != 200:
            return 0.0
        return max((float(s["value"]) for s in response.json()), default=0.0)

    def kill(self) -> None:
        """SIGKILL, no goodbye (the caller reaps it once it has timed the detection)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    reap = _reap

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: the hub writes what it buffered and closes the DuckDB file."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._reap()
            pytest.fail(f"the hub ignored SIGTERM for {timeout:g} s:\n{self.log_tail()}")
        self.proc = None
        assert code == 0, f"the hub exited with {code}:\n{self.log_tail()}"
        log = self.log.read_text(errors="replace")
        assert not re.search(r"\bERROR\b|Traceback", log), f"the hub logged errors:\n{log[-3000:]}"

    def close(self) -> None:
        self._reap()
        self.http.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class MetricSampler:
    """Samples a counter of the hub every ``period`` s in a thread: when did it reach n?"""

    def __init__(self, read: Callable[[], float | None], period: float = 0.05) -> None:
        self._read = read
        self._period = period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(self._period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def reached(self, count: float) -> float | None:
        return next((t for t, v in self.samples if v >= count), None)


def counter_latency(sampler: MetricSampler, event_times: Iterable[float]) -> dict[str, float]:
    """Delay from the k-th event to the counter reaching k (events in hub order): p50 and max."""
    delays: list[float] = []
    for k, at in enumerate(sorted(event_times), start=1):
        reached = sampler.reached(k)
        assert reached is not None, f"the counter never reached {k}"
        delays.append(max(0.0, reached - at))
    delays.sort()
    return {"p50": round(delays[len(delays) // 2], 3), "max": round(delays[-1], 3)}


def drain(
    fleet: Fleet,
    probes: Probes,
    probe_value: Callable[[], float],
    metrics: Callable[[], dict[str, float]],
    timeout: float = 60.0,
) -> float:
    """After the load: every publication PUBACKed, a last probe stored, counters at rest.

    Returns the seconds from the last probe's publication until it was stored.
    """
    fleet.wait_acked(timeout)
    probe, seq = probes.next()
    fleet.publish(probe)
    sent = time.monotonic()
    stored = wait_until(lambda: probe_value() >= seq, timeout, "the last probe to be stored")
    fleet.wait_acked(timeout)
    last: tuple[float, float] | None = None
    since = time.monotonic()

    def at_rest() -> bool:
        nonlocal last, since
        now = metrics()
        state = (now.get("received_messages_total", -1), now.get("buffer_rows", -1))
        if state != last:
            last, since = state, time.monotonic()
            return False
        return state[1] == 0 and time.monotonic() - since >= 1.0

    wait_until(at_rest, timeout, "received_messages_total and buffer_rows to settle at rest")
    return stored - sent


# --- the check ---------------------------------------------------------------------------------


@dataclass
class StoreContents:
    """The DuckDB file, read with its own read-only connection (the hub must not hold it)."""

    counts: dict[Key, int]  # rows per reading key of our tenant
    doubles: list[tuple[Any, ...]]  # any key stored more than once, any tenant
    other_tenants: int
    letters: list[tuple[bytes, str, str]]  # raw, reason, source
    rollup_problems: list[str]


def read_store(db_path: Path) -> StoreContents:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        counts = {
            (d, i, ts): n
            for d, i, ts, n in con.execute(
                "SELECT device, identifier, epoch_us(ts), count(*) FROM measurements"
                " WHERE tenant = ? GROUP BY ALL",
                [TENANT],
            ).fetchall()
        }
        doubles = con.execute(
            "SELECT tenant, device, identifier, ts::VARCHAR, count(*) FROM measurements"
            " GROUP BY ALL HAVING count(*) > 1 LIMIT 20"
        ).fetchall()
        other_tenants = con.execute(
            "SELECT count(*) FROM measurements WHERE tenant <> ?", [TENANT]
        ).fetchall()[0][0]
        letters = [
            (bytes(raw), reason, source)
            for raw, reason, source in con.execute(
                "SELECT raw, reason, source FROM dead_letters"
            ).fetchall()
        ]
        problems: list[str] = []
        wrong = con.execute(
            """
            WITH raw AS (
                SELECT tenant, device, identifier, time_bucket(INTERVAL '15 minutes', ts) AS bucket,
                       count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi
                FROM measurements GROUP BY ALL
            ), roll AS (
                -- the merged rollup rows, plus the readings stored but not merged yet
                SELECT tenant, device, identifier, bucket, sum(n) AS n, sum(s) AS s,
                       min(lo) AS lo, max(hi) AS hi, sum(entries) AS entries
                FROM (
                    SELECT tenant, device, identifier, bucket, count AS n, sum AS s,
                           min AS lo, max AS hi, 1 AS entries
                    FROM rollup_15m
                    UNION ALL
                    SELECT tenant, device, identifier,
                           time_bucket(INTERVAL '15 minutes', ts) AS bucket, count(*), sum(value),
                           min(value), max(value), 0
                    FROM rollup_pending GROUP BY ALL
                ) GROUP BY ALL
            )
            SELECT tenant, device, identifier, bucket::VARCHAR, raw.n, roll.n, roll.entries
            FROM raw FULL OUTER JOIN roll USING (tenant, device, identifier, bucket)
            WHERE raw.n IS DISTINCT FROM roll.n OR roll.entries > 1
               OR abs(raw.s - roll.s) > 1e-6 * (1 + abs(raw.s))
               OR raw.lo <> roll.lo OR raw.hi <> roll.hi
            LIMIT 20
            """
        ).fetchall()
        if wrong:
            problems.append(f"rollup_15m differs from the raw rows: {wrong[:5]}")
        for table in ("rollup_1h", "rollup_1d"):
            wrong = con.execute(
                f"""
                WITH raw AS (SELECT tenant, device, identifier, count(*) AS n
                             FROM measurements GROUP BY ALL),
                     roll AS (SELECT tenant, device, identifier, sum(n) AS n FROM (
                                  SELECT tenant, device, identifier, count AS n FROM {table}
                                  UNION ALL
                                  SELECT tenant, device, identifier, count(*) FROM rollup_pending
                                  GROUP BY ALL
                              ) GROUP BY ALL)
                SELECT tenant, device, identifier, raw.n, roll.n
                FROM raw FULL OUTER JOIN roll USING (tenant, device, identifier)
                WHERE raw.n IS DISTINCT FROM roll.n LIMIT 20
                """
            ).fetchall()
            if wrong:
                problems.append(f"{table} counts differ from the raw rows: {wrong[:5]}")
    finally:
        con.close()
    return StoreContents(counts, doubles, other_tenants, letters, problems)


def consistent_snapshot(db_path: Path) -> set[Key]:
    """The reading keys stored so far, after checking the file is consistent on its own: no key
    twice, rollups equal to the raw rows (a transaction cut by a crash left no trace)."""
    contents = read_store(db_path)
    problems = list(contents.rollup_problems)
    if contents.doubles:
        problems.append(f"readings stored more than once: {contents.doubles[:5]}")
    assert not problems, "inconsistent store:\n- " + "\n- ".join(problems)
    return set(contents.counts)


@dataclass
class StoreCheck:
    """What the DuckDB file holds against what the fleet published and had confirmed."""

    rows: int
    dead_letters: int
    confirmed_readings: int
    confirmed_bad: int
    lost_within_broker_window: int
    lost: list[Key] = field(repr=False)

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "dead_letters": self.dead_letters,
            "confirmed_readings": self.confirmed_readings,
            "confirmed_bad": self.confirmed_bad,
            "lost_within_broker_window": self.lost_within_broker_window,
        }


def check_store(
    db_path: Path,
    fleet: Fleet,
    may_be_lost: Callable[[Msg, float], bool] | None = None,
    dead_letter_copies: int = 1,
) -> StoreCheck:
    """N2: every confirmed reading stored exactly once, every confirmed bad message dead-lettered
    (``dead_letter_copies`` times at most) with its reason; nothing stored that was not
    published; rollups equal to the raw rows.

    ``may_be_lost(msg, puback_time)`` names confirmed readings the broker itself may lose (a
    broker crash between autosaves); any other missing reading fails the check.
    """
    confirmed = fleet.confirmed()
    published = {msg for msg, _t in fleet.publications()}
    store = read_store(db_path)
    counts = store.counts

    problems: list[str] = list(store.rollup_problems)
    good = {msg: at for msg, at in confirmed.items() if msg.key is not None}
    bad = [msg for msg in confirmed if msg.reason is not None]
    missing = [msg for msg in good if msg.key not in counts]
    excused = [m for m in missing if may_be_lost is not None and may_be_lost(m, good[m])]
    unexcused = [m.key for m in missing if m not in excused]
    if unexcused:
        problems.append(f"{len(unexcused)} confirmed readings missing, e.g. {unexcused[:5]}")
    twice = sorted(k for k, n in counts.items() if n > 1)
    if twice or store.doubles:
        problems.append(f"readings stored more than once: {store.doubles[:5]} {twice[:5]}")
    published_keys = {m.key for m in published if m.key is not None}
    invented = sorted(k for k in counts if k not in published_keys)
    if invented or store.other_tenants:
        problems.append(
            f"rows nobody published: {invented[:5]}, other tenants {store.other_tenants}"
        )

    by_raw: dict[bytes, list[tuple[str, str]]] = {}
    for raw, reason, source in store.letters:
        by_raw.setdefault(raw, []).append((reason, source))
    expected_raw = Counter(m.dead_letter_raw for m in published if m.reason is not None)
    for msg in bad:
        found = by_raw.get(msg.dead_letter_raw, [])
        wanted = (msg.reason, f"mqtt:{msg.topic}")
        if not found:
            problems.append(f"confirmed bad message not dead-lettered: {msg.payload[:80]!r}")
        elif len(found) > dead_letter_copies * expected_raw[msg.dead_letter_raw]:
            problems.append(f"dead-lettered {len(found)} times: {msg.payload[:80]!r}")
        elif any(letter != wanted for letter in found):
            problems.append(f"dead letter {found[0]} for {msg.payload[:60]!r}; wanted {wanted}")
    strays = [raw[:80] for raw in by_raw if raw not in expected_raw]
    if strays:
        problems.append(
            f"{len(strays)} dead letters for messages never published bad: {strays[:3]}"
        )

    assert not problems, "N2 violated:\n- " + "\n- ".join(problems)
    return StoreCheck(
        rows=sum(counts.values()),
        dead_letters=len(store.letters),
        confirmed_readings=len(good),
        confirmed_bad=len(bad),
        lost_within_broker_window=len(excused),
        lost=[m.key for m in excused if m.key is not None],
    )
