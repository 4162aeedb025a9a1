"""Gateway mode (issue 6): telegrams → gateway → outbox → a private Mosquitto → a hub.

Done-when: "a gateway test cuts the broker for a while and shows every reading arrives once the
broker is back, none twice". The broker is a Mosquitto of our own on a free port, stopped and
started by the test (never the machine's on 1883). It keeps its state in a temporary directory
(``persistence true``), as a production broker must: a broker that forgets the hub's session on
restart drops whatever the gateway publishes before the hub has subscribed again, which no
gateway can see (the broker acknowledged it).

Telegrams are copies of the DSMR 5.0 example (``tests/data/dsmr/dsmr_5_0_iskra.txt``), each with
its own clock, gas capture time and tariff-1 register, and the CRC recomputed with dsmr-parser.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import typer
from dsmr_parser.parsers import TelegramParser
from typer.testing import CliRunner

from gridhub.adapters.dsmr_p1 import parse_telegram
from gridhub.adapters.iec62056 import parse_readout
from gridhub.adapters.obis import OBIS_CUSTOM_IDENTIFIERS
from gridhub.cli.gateway import gateway as gateway_command
from gridhub.domain.registry import Tenant, UnknownDevicePolicy
from gridhub.gateway import Gateway, GatewayConfig
from gridhub.hub import Hub, build_hub
from helpers import free_port, make_settings, port_open, require, wait_for

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parent.parent / "data"
TENANT = "gw"
METER = "K8EG004046395507"  # 0-0:96.1.1 of the DSMR 5 example, hex-decoded
GAS = "2222ABCD123456789"
Key = tuple[str, str, int]


class Mosquitto:
    """A private Mosquitto on a free port, with its persistence file in ``workdir``."""

    def __init__(self, binary: str, workdir: Path, extra: str = "") -> None:
        self.binary, self.port = binary, free_port()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf, self.log = workdir / "mosquitto.conf", workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            # as root Mosquitto would switch to a user that cannot write into pytest's tmp
            f"user root\npersistence true\npersistence_location {workdir / 'data'}/\n"
            f"max_queued_messages 100000\n{extra}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, "the private Mosquitto")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and queued messages, then exits."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    require(binary is not None, "no mosquitto binary for a private broker")
    assert binary is not None
    return binary


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(mosquitto_binary(), tmp_path / "mosquitto")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def hub(tmp_path: Path, broker: Mosquitto) -> Iterator[Hub]:
    """A hub subscribed to the private broker; the tenant registers unknown meters itself."""
    h = build_hub(make_settings(tmp_path / "hub", mqtt_url=broker.url))
    h.registry.create_tenant(
        Tenant(TENANT, "Gateway", "Europe/Amsterdam", UnknownDevicePolicy.AUTO_REGISTER)
    )
    for name, unit in OBIS_CUSTOM_IDENTIFIERS:  # the tariff registers of the OBIS table
        h.registry.register_identifier(TENANT, name, unit)
    h.start(mqtt=True)
    yield h
    h.stop()


def dsmr5_telegrams(count: int) -> list[bytes]:
    """``count`` DSMR 5 telegrams one second apart, each with a valid CRC."""
    text = (DATA / "dsmr" / "dsmr_5_0_iskra.txt").read_bytes().decode("latin-1")
    base = datetime(2017, 1, 2, 19, 20, 2)  # winter time: the W flag stays right
    out = []
    for i in range(count):
        moment = (base + timedelta(seconds=i)).strftime("%y%m%d%H%M%S")
        body = (
            text.replace("0-0:1.0.0(170102192002W)", f"0-0:1.0.0({moment}W)")
            .replace("0-1:24.2.1(170102161005W)", f"0-1:24.2.1({moment}W)")
            .replace("1-0:1.8.1(000004.426*kWh)", f"1-0:1.8.1({4.426 + i / 1000:010.3f}*kWh)")
        )
        signed = body[: body.index("!") + 1]
        out.append(f"{signed}{TelegramParser.crc16(signed):04X}\r\n".encode("latin-1"))
    return out


def expected_keys(telegrams: list[bytes]) -> set[Key]:
    """(device, identifier, µs) of every reading the adapter makes of these telegrams."""
    keys: set[Key] = set()
    for raw in telegrams:
        result = parse_telegram(raw, zone="Europe/Amsterdam")
        assert not result.rejections
        for message in result.messages:
            body = msgspec.json.decode(message.payload)
            ts = datetime.fromisoformat(body["request"]["eventDate"])
            us = int(ts.timestamp()) * 1_000_000
            keys.update((body["hardwareId"], name, us) for name in body["request"]["measurements"])
    return keys


def stored(hub: Hub) -> list[tuple[str, str, int, int]]:
    """(device, identifier, µs, copies) of every stored reading of the tenant."""
    rows = (
        hub.db.cursor()
        .execute(
            "SELECT device, identifier, epoch_us(ts), count(*) FROM measurements"
            " WHERE tenant = ? GROUP BY ALL",
            [TENANT],
        )
        .fetchall()
    )
    return [(str(d), str(i), int(us), int(n)) for d, i, us, n in rows]


class Ser2net:
    """A TCP server streaming telegrams like ser2net in raw mode, one every ``interval`` s."""

    def __init__(self, telegrams: list[bytes], interval: float) -> None:
        self.telegrams, self.interval = telegrams, interval
        self.sent = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(10)
        conn, _ = self._server.accept()
        with conn:
            conn.sendall(self.telegrams[0][300:])  # the gateway joins in mid-telegram
            for telegram in self.telegrams:
                conn.sendall(telegram)
                self.sent += 1
                if self._stop.wait(self.interval):
                    return
            self.done.set()
            self._stop.wait(30)  # a serial port does not hang up

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._server.close()


def test_broker_outage_mid_stream_loses_nothing_stores_nothing_twice(
    tmp_path: Path, broker: Mosquitto, hub: Hub
) -> None:
    telegrams = dsmr5_telegrams(120)
    expected = expected_keys(telegrams)
    assert len({device for device, _, _ in expected}) == 2  # the meter and its gas meter
    server = Ser2net(telegrams, interval=0.04)
    gw = Gateway(
        GatewayConfig(
            source=server.url,
            tenant=TENANT,
            mqtt_url=broker.url,
            outbox=tmp_path / "gw" / "outbox.sqlite",
            status_every_s=1.0,
        )
    )
    stop = threading.Event()
    exit_codes: list[int] = []
    runner = threading.Thread(target=lambda: exit_codes.append(gw.run(stop)), daemon=True)
    started = time.monotonic()
    runner.start()
    try:
        wait_for(lambda: len(stored(hub)) >= 100, 10, "the first readings in the hub")
        broker.stop()  # mid-stream: the meter keeps sending, nothing reaches the hub
        cut_at = server.sent
        wait_for(lambda: not gw.forwarder.connected.is_set(), 10, "the gateway to see the cut")
        # a few seconds of outage: 50 telegrams at 25 per second, all kept in the outbox
        wait_for(lambda: server.sent >= cut_at + 50, 10, "telegrams during the outage")
        buffered = len(gw.outbox)
        assert buffered >= 2 * 40, "the outbox holds the readings of the outage"
        broker.start()
        wait_for(server.done.is_set, 15, "the whole stream")
        wait_for(lambda: len(stored(hub)) >= len(expected), 15, "every reading in the hub")
        wait_for(lambda: len(gw.outbox) == 0, 10, "an empty outbox")
    finally:
        stop.set()
        runner.join(20)
        server.close()
    rows = stored(hub)
    assert {(d, i, us) for d, i, us, _ in rows} == expected
    assert [row for row in rows if row[3] > 1] == []  # none twice
    assert exit_codes == [0]
    assert gw.forwarder.disconnects >= 1 and gw.forwarder.connects >= 2
    assert gw.counters.telegrams == len(telegrams) and gw.counters.messages == 2 * len(telegrams)
    assert gw.rejects.count == 0  # the partial telegram at the start is skipped, not rejected
    print(
        f"\n{len(telegrams)} telegrams, {len(expected)} readings; {buffered} messages buffered "
        f"during the outage; {gw.forwarder.published} published; hub dropped "
        f"{hub.pipeline.metrics.duplicate_readings} duplicate readings; "
        f"{time.monotonic() - started:.1f} s"
    )


def test_restart_replays_the_outbox_in_order(tmp_path: Path, broker: Mosquitto, hub: Hub) -> None:
    """A run that cannot reach the broker leaves its messages on disk; the next run sends them."""
    telegrams = dsmr5_telegrams(10)
    capture = tmp_path / "p1.txt"
    capture.write_bytes(b"".join(telegrams))
    outbox = tmp_path / "outbox.sqlite"
    down = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    first = GatewayConfig(
        source=f"file://{capture}",
        tenant=TENANT,
        mqtt_url=down,
        outbox=outbox,
        once=True,
        drain_timeout_s=0.5,
    )
    assert Gateway(first).run() == 3  # undelivered: kept for the next run
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    second = GatewayConfig(
        source=f"file://{empty}", tenant=TENANT, mqtt_url=broker.url, outbox=outbox, once=True
    )
    gw = Gateway(second)
    assert gw.run() == 0
    assert gw.forwarder.published == 20 and gw.counters.telegrams == 0
    wait_for(lambda: len(stored(hub)) >= len(expected_keys(telegrams)), 10, "the replayed readings")
    assert {(d, i, us) for d, i, us, _ in stored(hub)} == expected_keys(telegrams)


def test_cli_once_forwards_a_capture_and_keeps_the_rejects(
    tmp_path: Path, broker: Mosquitto, hub: Hub
) -> None:
    telegrams = dsmr5_telegrams(5)
    corrupted = bytearray(telegrams[2])
    at = corrupted.index(b"1-0:2.8.1(") + len(b"1-0:2.8.1(")
    corrupted[at] = ord("7")  # the CRC no longer matches
    capture = tmp_path / "p1.txt"
    capture.write_bytes(
        b"".join([telegrams[0], telegrams[1], bytes(corrupted), b"noise\r\n", *telegrams[3:]])
    )
    app = typer_app()
    outbox = tmp_path / "outbox.sqlite"
    args = ["--source", f"file://{capture}", "--tenant", TENANT, "--mqtt-url", broker.url]
    result = CliRunner().invoke(app, [*args, "--outbox", str(outbox), "--once"])
    assert result.exit_code == 0, result.output
    good = [t for i, t in enumerate(telegrams) if i != 2]
    wait_for(lambda: len(stored(hub)) >= len(expected_keys(good)), 10, "the readings")
    assert {(d, i, us) for d, i, us, _ in stored(hub)} == expected_keys(good)
    rejects = [
        msgspec.json.decode(line)
        for line in (tmp_path / "outbox.sqlite.rejects.jsonl").read_bytes().splitlines()
    ]
    assert [r["reason"] for r in rejects] == ["bad_checksum", "malformed_telegram"]
    assert rejects[0]["raw"].encode("latin-1") == bytes(corrupted)
    assert rejects[1]["raw"] == "noise\r\n"

    readout = (DATA / "iec62056" / "iskra_me162_mode_c.bin").read_bytes()
    iec = tmp_path / "readout.bin"
    iec.write_bytes(readout)
    iec_args = ["--source", f"file://{iec}", "--protocol", "iec62056", "--zone", "Europe/Vienna"]
    result = CliRunner().invoke(
        app,
        [*iec_args, "--tenant", TENANT, "--mqtt-url", broker.url, "--outbox", str(outbox)]
        + ["--once"],
    )
    assert result.exit_code == 0, result.output
    message = parse_readout(readout, zone="Europe/Vienna").messages[0]
    wait_for(
        lambda: any(d == message.hardware_id for d, _, _, _ in stored(hub)), 10, "the IEC reading"
    )


def test_a_message_the_broker_refuses_goes_to_the_rejects_file(tmp_path: Path) -> None:
    """MQTT 5: a PUBACK with a failure reason (an ACL) is no delivery; the message is kept."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic write gridhub/{TENANT}/{METER}/events\n")  # not the gas meter's
    broker = Mosquitto(mosquitto_binary(), tmp_path / "mosquitto", f"acl_file {acl}\n")
    broker.start()
    try:
        capture = tmp_path / "p1.txt"
        capture.write_bytes(b"".join(dsmr5_telegrams(3)))
        config = GatewayConfig(
            source=f"file://{capture}",
            tenant=TENANT,
            mqtt_url=broker.url,
            outbox=tmp_path / "outbox.sqlite",
            once=True,
        )
        gw = Gateway(config)
        assert gw.run() == 0
    finally:
        broker.stop()
    assert gw.forwarder.acked == 3 and gw.forwarder.refused == 3
    rejects = [msgspec.json.decode(line) for line in config.rejects_path.read_bytes().splitlines()]
    assert {(r["reason"], r["topic"]) for r in rejects} == {
        ("broker_refused", f"gridhub/{TENANT}/{GAS}/events")
    }
    assert len(rejects) == 3 and all("Not authorized" in r["detail"] for r in rejects)


def typer_app() -> typer.Typer:
    """The command as ``cli/main.py`` registers it."""
    app = typer.Typer()
    app.command()(gateway_command)
    return app
