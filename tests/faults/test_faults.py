"""Fault suite (S3, N2): a fleet publishes QoS 1 over a real Mosquitto while the hub, the broker
or the store fails; afterwards every message the broker confirmed to the fleet (PUBACK) must be
in ``measurements`` exactly once, or in ``dead_letters`` with its reason — no key missing, no key
twice — and the rollups must count exactly the raw rows.

Scenarios: (a) ``kill -9`` of the hub mid-load, and (a2) its worst instant made deterministic
(committed, not yet acknowledged); (b) Mosquitto restarted mid-load, and (b2) Mosquitto killed;
(c) the store unavailable for seconds; (d) malformed and oversized messages mixed into good
traffic; (e) every message published twice. What "confirmed" means and what the broker
guarantees is in each test's docstring.

Each test reports how long the fault took to show (detection) and how long the hub took to
catch up once the fault was over (recovery): a probe published at the end of the fault is
queryable only after everything queued before it was stored. The figures are printed at the
end of the run and merged into ``test-artifacts/faults.json``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from faults.faultkit import (
    TENANT,
    Fleet,
    HubChild,
    MetricSampler,
    Mosquitto,
    Msg,
    Probes,
    bad_messages,
    check_store,
    consistent_snapshot,
    count_events,
    counter_latency,
    drain,
    events,
    fleet_readings,
    parse_metrics,
    prepare_data_dir,
    wait_until,
)
from gridhub.cli.server import ApiServer
from gridhub.errors import StoreUnavailable
from gridhub.hub import Hub, build_hub
from gridhub.ingest.mqtt_source import RECV_BYTES
from gridhub.storage.base import WriteBatch, WriteResult
from helpers import make_settings

pytestmark = [pytest.mark.faults, pytest.mark.integration]

RATE = 800.0  # messages per second: steady load, well inside what the hub sustains


@dataclass
class Env:
    tmp: Path
    data_dir: Path
    token: str
    broker: Mosquitto
    fleet: Fleet
    probes: Probes


@pytest.fixture
def env(tmp_path: Path, broker: Mosquitto) -> Iterator[Env]:
    data_dir = tmp_path / "data"
    token = prepare_data_dir(data_dir)
    fleet = Fleet(broker.url)
    try:
        yield Env(tmp_path, data_dir, token, broker, fleet, Probes())
    finally:
        fleet.close()


@pytest.fixture
def hub_child(env: Env, request: pytest.FixtureRequest) -> Iterator[HubChild]:
    name = request.node.name.removeprefix("test_")[:20]
    hub = HubChild(env.data_dir, env.broker.url, env.token, env.tmp / "hub.log", name)
    try:
        yield hub
    finally:
        hub.close()


def publish_probe(env: Env) -> int:
    probe, seq = env.probes.next()
    env.fleet.publish(probe)
    return seq


def start_warm(env: Env, hub: HubChild) -> None:
    """Start the hub and wait for a first probe to be stored: a fresh store's first write takes
    0.5-1 s (DuckDB warming up), which would otherwise count as detection or recovery time."""
    hub.start()
    seq = publish_probe(env)
    wait_until(lambda: hub.probe_value() >= seq, 30, "the warm-up probe")


def finish(report: dict[str, Any], scenario: str, **figures: Any) -> None:
    assert report["scenario"] == scenario
    report.update(figures)
    print(json.dumps(report, indent=2, default=str))


def test_hub_killed_mid_load_then_restarted(
    env: Env, hub_child: HubChild, fault_report: dict[str, Any]
) -> None:
    """(a) ``kill -9`` of the hub mid-load, restart on the same data dir and MQTT client id.

    The hub PUBACKs only after a commit, so what it had received but not committed is still
    unacknowledged in its persistent session: the broker redelivers it to the restarted hub, with
    everything that arrived meanwhile, and the store's dedupe drops what was committed but not yet
    acknowledged. Detection: until the dead hub stops answering HTTP. Recovery: from the restart
    until a probe published at that moment is stored (restart plus backlog).
    """
    fault_report["scenario"] = "a_hub_kill9"
    msgs = fleet_readings(ticks=80)  # 4,000 messages
    start_warm(env, hub_child)
    env.fleet.start_load(msgs, RATE)
    env.fleet.wait_published(len(msgs) * 3 // 10)
    first = hub_child.metrics()

    killed = time.monotonic()
    hub_child.kill()
    detected = wait_until(lambda: hub_child.ready() is None, 10, "the killed hub to go silent")
    hub_child.reap()
    # what the dead hub left: consistent on its own (a cut transaction left no trace), and short
    # of what the broker had confirmed by then — that part must come back after the restart
    stored_at_kill = consistent_snapshot(env.data_dir / "gridhub.duckdb")
    confirmed_at_kill = {m.key for m, at in env.fleet.confirmed().items() if at < killed and m.key}
    outstanding = confirmed_at_kill - stored_at_kill
    assert outstanding, "the kill did not land mid-load: nothing confirmed was outstanding"
    env.fleet.wait_published(len(msgs) * 11 // 20)  # the fleet goes on while the hub is down

    restarted = time.monotonic()
    seq = publish_probe(env)
    ready_s = hub_child.start()
    caught_up = wait_until(lambda: hub_child.probe_value() >= seq, 60, "the restart probe")
    env.fleet.join_load()
    drain_s = drain(env.fleet, env.probes, hub_child.probe_value, hub_child.metrics)
    second = hub_child.metrics()
    hub_child.stop()

    check = check_store(env.data_dir / "gridhub.duckdb", env.fleet)
    assert first["stored_readings_total"] > 0 and second["stored_readings_total"] > 0
    finish(
        fault_report,
        "a_hub_kill9",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=round(detected - killed, 3),
        recovery_s=round(caught_up - restarted, 3),
        hub_down_s=round(restarted - killed, 3),
        restart_to_ready_s=round(ready_s, 3),
        stored_at_kill=len(stored_at_kill),
        confirmed_not_stored_at_kill=len(outstanding),
        duplicates_after_restart=int(second["duplicate_readings_total"]),
        final_probe_latency_s=round(drain_s, 3),
        check=check.summary(),
    )


def test_crash_between_commit_and_puback(
    env: Env, broker: Mosquitto, fault_report: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """(a2) The worst instant of (a), made deterministic: every batch committed, no PUBACK sent.

    A ``kill -9`` lands there only by chance, so here an in-process hub commits everything but
    its acknowledgements never leave (``ack`` replaced by a no-op), then goes away; a second hub
    on the same data dir and MQTT client id gets every message again from the broker. Readings,
    alerts and acknowledgements must each be stored once; bad messages must be dead-lettered
    (how many copies the redelivery leaves is reported). Recovery: from the second hub's start
    until it has taken every redelivered message.
    """
    fault_report["scenario"] = "a2_crash_after_commit"
    client_id = f"gridhub-fault-a2-{uuid.uuid4().hex[:8]}"
    settings = make_settings(env.data_dir, mqtt_url=broker.url, mqtt_client_id=client_id)
    readings = fleet_readings(ticks=6)  # 300 readings
    others = events(20)  # 20 alerts, 20 acknowledgements
    bad = bad_messages(per_kind=2)  # 26 bad messages
    msgs = readings + others + bad
    random.Random(11).shuffle(msgs)

    def settled(hub: Hub) -> bool:
        m = hub.pipeline.metrics
        done = m.accepted_messages + m.rejected_messages
        return m.received_messages == len(msgs) and done == len(msgs) and m.buffer_rows == 0

    first = build_hub(settings)
    first.start(mqtt=True)
    try:
        assert first.mqtt is not None
        first.mqtt._confirm = lambda ids, generation: None  # type: ignore[method-assign]
        env.fleet.start_load(msgs, RATE)
        env.fleet.join_load()
        env.fleet.wait_acked()
        wait_until(lambda: settled(first), 30, "the first hub to commit everything")
        committed_first = first.pipeline.metrics.stored_readings
    finally:
        first.stop()  # gone without one PUBACK: to the broker, like a crash after the commits

    second = build_hub(settings)
    started = time.monotonic()
    second.start(mqtt=True)
    try:
        caught_up = wait_until(lambda: settled(second), 30, "every message redelivered")
        again = second.pipeline.metrics
        redelivered = {
            "readings_stored_again": again.stored_readings,
            "readings_dropped_as_duplicates": again.duplicate_readings,
            "alerts_stored_again": again.alerts_stored,
            "acks_stored_again": again.acks_stored,
            "dead_lettered_again": again.dead_lettered,
        }
    finally:
        second.stop()

    db = env.data_dir / "gridhub.duckdb"
    check = check_store(db, env.fleet, dead_letter_copies=1)
    stored_events = count_events(db)
    assert not _errors(caplog), _errors(caplog)
    assert committed_first == len(readings)
    assert redelivered["readings_stored_again"] == 0
    assert redelivered["dead_lettered_again"] == 0  # redelivered copies are not kept twice
    assert redelivered["readings_dropped_as_duplicates"] == len(readings)
    assert stored_events == {
        "alerts": len(others) // 2,
        "alert_keys_twice": 0,
        "acks": len(others) // 2,
        "ack_keys_twice": 0,
    }
    finish(
        fault_report,
        "a2_crash_after_commit",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=None,
        recovery_s=round(caught_up - started, 3),
        dead_letter_copies_per_bad_message=round(check.dead_letters / len(bad), 2),
        **redelivered,
        events=stored_events,
        check=check.summary(),
    )


def _broker_restart(env: Env, hub_child: HubChild, report: dict[str, Any], *, crash: bool) -> None:
    report["scenario"] = "b2_broker_kill9" if crash else "b_broker_restart"
    msgs = fleet_readings(ticks=80)
    start_warm(env, hub_child)
    env.fleet.start_load(msgs, RATE)
    env.fleet.wait_published(len(msgs) * 3 // 10)

    stopped = time.monotonic()
    wall_offset = time.time() - stopped
    if crash:
        env.broker.kill()
    else:
        env.broker.stop()
    saved_wall = env.broker.last_save()
    saved = stopped if saved_wall is None else saved_wall - wall_offset
    detected = wait_until(
        lambda: hub_child.ready_checks().get("mqtt") is False, 10, "the hub to see the broker go"
    )
    time.sleep(1.5)  # the fault itself: the broker stays down this long under load
    restarted = time.monotonic()
    env.broker.start()
    seq = publish_probe(env)
    reconnected = wait_until(lambda: hub_child.ready() is True, 30, "the hub to reconnect")
    caught_up = wait_until(lambda: hub_child.probe_value() >= seq, 60, "the restart probe")
    env.fleet.join_load()
    drain_s = drain(env.fleet, env.probes, hub_child.probe_value, hub_child.metrics)
    metrics = hub_child.metrics()
    hub_child.stop()

    # A crash loses what the broker PUBACKed after its last autosave (the persistence file's
    # mtime) and had not yet handed to the hub; a graceful stop writes everything and loses
    # nothing. 0.25 s of slack for the save itself and for clock conversion.
    def lost_to_broker_crash(msg: Msg, puback: float) -> bool:
        return crash and puback >= saved - 0.25

    check = check_store(env.data_dir / "gridhub.duckdb", env.fleet, lost_to_broker_crash)
    confirmed = env.fleet.confirmed()
    lost = set(check.lost)
    lost_ages = [stopped - at for m, at in confirmed.items() if m.key in lost]
    finish(
        report,
        "b2_broker_kill9" if crash else "b_broker_restart",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=round(detected - stopped, 3),
        recovery_s=round(caught_up - restarted, 3),
        broker_down_s=round(restarted - stopped, 3),
        unsaved_window_s=round(stopped - saved, 3) if crash else 0.0,
        lost_oldest_puback_before_crash_s=round(max(lost_ages, default=0.0), 3),
        hub_reconnect_s=round(reconnected - restarted, 3),
        duplicates_dropped=int(metrics["duplicate_readings_total"]),
        final_probe_latency_s=round(drain_s, 3),
        check=check.summary(),
    )


def test_broker_restarted_mid_load(
    env: Env, hub_child: HubChild, fault_report: dict[str, Any]
) -> None:
    """(b) Mosquitto stopped (SIGTERM) and started again mid-load, on its persistence file.

    What counts as confirmed: a publication the broker PUBACKed to the fleet. What the broker
    guarantees: with ``persistence true`` a graceful stop writes every retained session — the
    hub's, with its queued and in-flight (unacknowledged) messages — to disk, and the restarted
    broker resends them. Publications not yet PUBACKed when the broker went away are resent by
    paho on reconnect (they count once PUBACKed). So every confirmed message must be stored
    exactly once; the hub's dedupe drops what it had committed but not yet acknowledged.
    Detection: until /ready reports MQTT down. Recovery: from the broker's restart until a probe
    published then is stored (the hub reconnects with a back-off of 1 s and more).
    """
    _broker_restart(env, hub_child, fault_report, crash=False)


def test_broker_killed_mid_load(
    env: Env, hub_child: HubChild, fault_report: dict[str, Any]
) -> None:
    """(b2) Mosquitto killed (SIGKILL) mid-load and started again on its persistence file.

    A crashed Mosquitto comes back with the state of its last autosave (``autosave_interval 1``:
    every one to two seconds). Messages it PUBACKed to the fleet after that save and had not yet
    handed to the hub are lost by the broker — no hub can store what it never receives. So a
    missing confirmed reading is accepted only if its PUBACK came after the last save (the
    persistence file's mtime, less 0.25 s of slack); anything else missing fails, and how many
    were lost that way is reported. Messages the hub had stored but the saved state still holds
    as unacknowledged come back: they must not be stored twice.
    """
    _broker_restart(env, hub_child, fault_report, crash=True)


def test_store_unavailable_for_a_while(
    env: Env, broker: Mosquitto, fault_report: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """(c) The store refuses every write for a few seconds while the MQTT source stays connected.

    The hub runs in-process (a child cannot be told to fail its store) over MQTT 5 with a
    1,000-reading buffer: writes fail, the writer retries with back-off, the buffer fills and
    paho stops reading, so the broker holds the backlog. Nothing may be PUBACKed by the hub from
    the first failed write until the store is back; then the backlog drains. Detection: until
    /ready reports the store's writes failing. Recovery: from the store's return until a probe
    published then is stored.
    """
    fault_report["scenario"] = "c_store_unavailable"
    settings = make_settings(env.data_dir, mqtt_url=broker.url, buffer_rows=1000)
    assert settings.mqtt_protocol == "5"  # a v3.1.1 session would cap the hub at 20 in flight
    hub = build_hub(settings)
    outage = threading.Event()
    failed_writes: list[float] = []
    at_failure: list[tuple[int, int]] = []  # (read by the hub, published by the fleet)
    real_write = hub.store.write

    def flaky_write(batch: WriteBatch) -> WriteResult:
        if outage.is_set():
            failed_writes.append(time.monotonic())
            at_failure.append((hub.pipeline.metrics.received_messages, env.fleet.published))
            raise StoreUnavailable("fault injection: the store is down")
        return real_write(batch)

    hub.store.write = flaky_write  # type: ignore[method-assign]
    hub.start(mqtt=True)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    http = httpx.Client(base_url=server.url, timeout=5)
    try:
        assert hub.mqtt is not None
        hub_acks: list[float] = []  # the hub's PUBACKs are queued through _confirm
        real_confirm = hub.mqtt._confirm

        def counting_confirm(packet_ids: list[int], generation: int) -> None:
            hub_acks.extend([time.monotonic()] * len(packet_ids))
            real_confirm(packet_ids, generation)

        hub.mqtt._confirm = counting_confirm  # type: ignore[method-assign]

        def probe_value() -> float:
            return max((s.value for s in hub.store.latest(TENANT, "probe")), default=0.0)

        def metrics() -> dict[str, float]:
            return parse_metrics(http.get("/metrics").text)

        warm = publish_probe(env)  # a fresh store's first write is slow: not part of the fault
        wait_until(lambda: probe_value() >= warm, 30, "the warm-up probe")
        msgs = fleet_readings(ticks=90)  # 4,500 messages
        env.fleet.start_load(msgs, RATE)
        env.fleet.wait_published(1000)

        began = time.monotonic()
        outage.set()
        detected = wait_until(
            lambda: http.get("/ready").json()["checks"]["store_writes"] is False,
            10,
            "/ready to report the store's writes failing",
        )
        first_failure = failed_writes[0]
        peak_buffer = 0
        hold_until = began + 4.0  # the fault itself: the store stays down this long
        while time.monotonic() < hold_until:
            peak_buffer = max(peak_buffer, hub.pipeline.metrics.buffer_rows)
            time.sleep(0.02)
        received_in_outage = hub.pipeline.metrics.received_messages - at_failure[0][0]
        published_in_outage = env.fleet.published - at_failure[0][1]

        restored = time.monotonic()
        outage.clear()
        acks_while_down = [t for t in hub_acks if first_failure <= t < restored]
        seq = publish_probe(env)
        caught_up = wait_until(lambda: probe_value() >= seq, 60, "the recovery probe")
        ready_again = wait_until(
            lambda: http.get("/ready").status_code == 200, 30, "/ready after the outage"
        )
        env.fleet.join_load()
        drain_s = drain(env.fleet, env.probes, probe_value, metrics)
        final = metrics()
    finally:
        http.close()
        server.stop()
        hub.stop()

    capacity = settings.buffer_rows
    assert acks_while_down == [], f"{len(acks_while_down)} PUBACKs while the store was down"
    # The source hands over what one recv() brought as one submission; once one does not fit,
    # it waits for room and reads no further: the buffer plus one read, no more.
    one_read = RECV_BYTES // min(len(m.payload) for m in msgs)
    assert capacity - one_read <= peak_buffer <= capacity, f"the buffer peaked at {peak_buffer}"
    assert received_in_outage <= capacity + one_read, f"{received_in_outage} read in the outage"
    assert published_in_outage > received_in_outage + 500, "the broker should hold the backlog"
    assert final["store_errors_total"] >= 1
    assert not _errors(caplog), _errors(caplog)
    check = check_store(env.data_dir / "gridhub.duckdb", env.fleet)
    finish(
        fault_report,
        "c_store_unavailable",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=round(detected - began, 3),
        recovery_s=round(caught_up - restored, 3),
        store_down_s=round(restored - began, 3),
        ready_again_s=round(ready_again - restored, 3),
        failed_writes=len(failed_writes),
        hub_acks_while_down=len(acks_while_down),
        peak_buffer_rows=peak_buffer,
        read_by_hub_while_down=received_in_outage,
        held_by_broker_while_down=published_in_outage - received_in_outage,
        final_probe_latency_s=round(drain_s, 3),
        check=check.summary(),
    )


def test_malformed_and_oversized_mixed_into_good_traffic(
    env: Env, hub_child: HubChild, fault_report: dict[str, Any]
) -> None:
    """(d) 13 kinds of bad message (malformed, invalid, oversized, wrong topic or device…) mixed
    into good readings: each bad one dead-lettered once with its reason and raw bytes, each good
    one stored once. Detection: the longest delay from a bad message's PUBACK by the broker to
    the hub's dead-letter counter covering it (sampled every 50 ms). No recovery: the hub never
    stops confirming good traffic.
    """
    fault_report["scenario"] = "d_malformed_oversized"
    good = fleet_readings(ticks=60)  # 3,000 readings
    bad = bad_messages(per_kind=10)  # 130 bad messages
    mixed: list[Msg] = list(good)
    positions = sorted(random.Random(7).sample(range(len(good)), len(bad)))
    for position, msg in zip(positions, bad, strict=True):
        mixed.insert(position, msg)
    start_warm(env, hub_child)
    sampler = MetricSampler(lambda: hub_child.metrics().get("dead_lettered_total"))
    try:
        env.fleet.start_load(mixed, RATE)
        env.fleet.join_load()
        drain_s = drain(env.fleet, env.probes, hub_child.probe_value, hub_child.metrics)
    finally:
        sampler.stop()
    metrics = hub_child.metrics()
    hub_child.stop()

    check = check_store(env.data_dir / "gridhub.duckdb", env.fleet)
    assert check.confirmed_bad == len(bad)
    assert metrics["dead_lettered_total"] == len(bad)
    acked = env.fleet.ack_time()
    bad_acks = [min(acked[mid] for mid in mids) for mids in _mids_by_msg(env.fleet, bad)]
    latency = counter_latency(sampler, bad_acks)
    finish(
        fault_report,
        "d_malformed_oversized",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=latency["max"],
        detection_p50_s=latency["p50"],
        recovery_s=None,
        bad_messages=len(bad),
        reasons=sorted({m.reason for m in bad if m.reason}),
        final_probe_latency_s=round(drain_s, 3),
        check=check.summary(),
    )


def test_same_messages_published_twice(
    env: Env, hub_child: HubChild, fault_report: dict[str, Any]
) -> None:
    """(e) Every reading published twice — 300 of them back to back (same batch), then the whole
    set again (later batches): stored once, rollups counted once, and every duplicate counted
    in ``gridhub_ingest_duplicate_readings_total``. Detection: the longest delay from a
    duplicate's PUBACK by the broker to the duplicate counter covering it. No recovery.
    """
    fault_report["scenario"] = "e_published_twice"
    unique = fleet_readings(ticks=40)  # 2,000 readings
    doubled = [m for m in unique[:300] for _ in range(2)] + unique[300:] + unique
    start_warm(env, hub_child)
    sampler = MetricSampler(lambda: hub_child.metrics().get("duplicate_readings_total"))
    try:
        env.fleet.start_load(doubled, RATE)
        env.fleet.join_load()
        drain_s = drain(env.fleet, env.probes, hub_child.probe_value, hub_child.metrics)
    finally:
        sampler.stop()
    metrics = hub_child.metrics()
    hub_child.stop()

    check = check_store(env.data_dir / "gridhub.duckdb", env.fleet)
    duplicates = len(doubled) - len(unique)
    assert metrics["duplicate_readings_total"] == duplicates
    assert metrics["stored_readings_total"] == len(unique) + env.probes.seq
    assert check.rows == len(unique) + env.probes.seq
    acked = env.fleet.ack_time()
    second_copies = [
        sorted(acked[mid] for mid in mids)[1:] for mids in _mids_by_msg(env.fleet, unique)
    ]
    latency = counter_latency(sampler, [t for copies in second_copies for t in copies])
    finish(
        fault_report,
        "e_published_twice",
        messages=env.fleet.published,
        confirmed=len(env.fleet.confirmed()),
        detection_s=latency["max"],
        detection_p50_s=latency["p50"],
        recovery_s=None,
        duplicates_published=duplicates,
        duplicates_counted=int(metrics["duplicate_readings_total"]),
        final_probe_latency_s=round(drain_s, 3),
        check=check.summary(),
    )


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Errors the in-process hub logged (warnings about the store are expected, errors not)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _mids_by_msg(fleet: Fleet, msgs: list[Msg]) -> list[list[int]]:
    """The mids each message was published under (a message published twice has two)."""
    mids = fleet.mids()
    return [mids[m] for m in msgs]
