"""The gateway's outbox (append, ack, replay order, bound, crash safety) and its framers.

The crash test kills a process that has the outbox open (SIGKILL, no close, no checkpoint) and
reopens the file: what ``append`` returned from must still be there, in order.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gridhub.adapters.iec62056 import bcc
from gridhub.gateway.framing import DsmrFramer, Frame, IecFramer
from gridhub.gateway.outbox import Outbox, OutboxFull, OutboxLocked
from gridhub.gateway.rejects import RejectsFile
from gridhub.gateway.runner import GatewayConfig
from gridhub.gateway.sources import ModeCPoller

DATA = Path(__file__).resolve().parent.parent / "data"
SRC = Path(__file__).resolve().parents[2] / "src"


def items(start: int, count: int, size: int = 10) -> list[tuple[str, bytes]]:
    return [
        (f"gridhub/t/m{n}/events", b"%d" % n + b"x" * size) for n in range(start, start + count)
    ]


# --- outbox ---------------------------------------------------------------------------------


def test_append_then_pending_in_order(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        first = box.append(items(0, 3))
        second = box.append(items(3, 2))
        assert first + second == sorted(first + second)
        entries = box.pending(0, 100)
        assert [e.id for e in entries] == first + second
        assert [e.topic for e in entries] == [t for t, _ in items(0, 5)]
        assert [e.payload for e in entries] == [p for _, p in items(0, 5)]
        assert box.pending(first[-1], 2) == entries[3:5]
        assert len(box) == 5
        assert box.size_bytes == sum(len(t) + len(p) for t, p in items(0, 5))
        assert box.append([]) == []


def test_ack_deletes_once_and_frees_room(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        ids = box.append(items(0, 4))
        assert box.ack([ids[1], ids[3]]) == 2
        assert box.ack([ids[1], 999_999]) == 0  # twice, or unknown: harmless
        assert [e.id for e in box.pending()] == [ids[0], ids[2]]
        assert box.size_bytes == sum(len(t) + len(p) for t, p in (items(0, 1) + items(2, 1)))
        box.ack([ids[0], ids[2]])
        assert len(box) == 0 and box.size_bytes == 0


def test_reopen_replays_unacked_in_order_and_never_reuses_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        ids = box.append(items(0, 6))
        box.mark_sent(ids[:4])
        assert box.stats().sent == 4
        box.ack([ids[0], ids[2], ids[5]])  # the newest too: its id must not come back
    with caplog.at_level(logging.INFO, logger="gridhub.gateway.outbox"):
        box = Outbox(path)
    with box:
        assert [e.id for e in box.pending()] == [ids[1], ids[3], ids[4]]
        assert [e.payload for e in box.pending()] == [items(n, 1)[0][1] for n in (1, 3, 4)]
        stats = box.stats()
        assert stats.messages == 3 and stats.sent == 0  # sent without PUBACK: queued again
        assert "2 of them published without a PUBACK" in caplog.text
        assert box.append(items(9, 1))[0] > ids[5]


def test_bound_keeps_the_oldest_and_refuses_new(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_messages=5) as box:
        box.append(items(0, 4))
        with pytest.raises(OutboxFull, match="2 new messages refused"):
            box.append(items(4, 2))  # all or nothing
        assert [e.payload for e in box.pending()] == [p for _, p in items(0, 4)]
        box.append(items(4, 1))
        with pytest.raises(OutboxFull):
            box.append(items(5, 1))
        assert box.refused_messages == 3 and box.refused_batches == 2
        box.ack([box.pending()[0].id])
        box.append(items(5, 1))  # room again once the broker has one
        assert len(box) == 5
    one = len("gridhub/t/m0/events") + len(items(0, 1)[0][1])
    with Outbox(tmp_path / "b.db", max_bytes=3 * one) as box:
        box.append(items(0, 3))
        with pytest.raises(OutboxFull):
            box.append(items(3, 1))
        assert box.stats().refused_messages == 1 and len(box) == 3


def test_unclean_close_keeps_what_append_returned(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(SRC)!r})
        from gridhub.gateway.outbox import Outbox
        box = Outbox({str(path)!r})
        ids = []
        for n in range(50):
            ids += box.append([(f"gridhub/t/m/events", b"reading %d" % n)])
        box.mark_sent(ids[:20])
        box.ack(ids[:10])
        print(",".join(map(str, ids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == -9, done.stderr.decode()
    ids = [int(i) for i in done.stdout.decode().strip().split(",")]
    assert (tmp_path / "o.db-wal").stat().st_size > 0  # recovered from the WAL
    with Outbox(path) as box:
        # the acknowledgements of a killed process are not fsynced, but they reached the WAL
        entries = box.pending(0, 100)
        assert [e.id for e in entries] == ids[10:]
        assert [e.payload for e in entries] == [b"reading %d" % n for n in range(10, 50)]
        assert box.stats().sent == 0


def test_a_second_gateway_cannot_open_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.append(items(0, 1))
        with pytest.raises(OutboxLocked):
            Outbox(path)
    with Outbox(path) as box:  # released on close
        assert len(box) == 1


# --- framing --------------------------------------------------------------------------------


def feed_in_pieces(framer: DsmrFramer | IecFramer, stream: bytes, piece: int) -> list[Frame]:
    frames: list[Frame] = []
    for at in range(0, len(stream), piece):
        frames += framer.feed(stream[at : at + piece])
    return frames + framer.flush()


@pytest.mark.parametrize("piece", [1, 7, 64, 100_000])
def test_dsmr_framer_finds_telegrams_in_any_pieces(piece: int) -> None:
    v5 = (DATA / "dsmr" / "dsmr_5_0_iskra.txt").read_bytes()
    v22 = (DATA / "dsmr" / "dsmr_2_2_iskra.txt").read_bytes()  # no CRC on its end line
    stream = v5[123:] + v5 + v22 + b"\r\n" + b"junk\r\n" + v5[:200] + v5 + v5[:50]
    framer = DsmrFramer()
    frames = feed_in_pieces(framer, stream, piece)
    assert framer.skipped == len(v5) - 123  # the telegram we joined late: skipped
    assert [(f.kind, f.data) for f in frames if f.kind == "telegram"] == [
        ("telegram", v5),
        ("telegram", v22),
        ("telegram", v5),
    ]
    noise = [(f.data, f.detail) for f in frames if f.kind == "noise"]
    assert [data for data, _ in noise] == [b"\r\njunk\r\n", v5[:200], v5[:50]]
    assert "began before its end" in noise[1][1] and "end of the input" in noise[2][1]


def test_dsmr_framer_bounds_a_telegram_without_end() -> None:
    framer = DsmrFramer(max_bytes=1000)
    frames = framer.feed(b"/ISk5\\2MT382-1000\r\n" + b"1-0:1.8.1(000004.426*kWh)\r\n" * 50)
    assert [(f.kind, "no end line" in f.detail) for f in frames] == [("noise", True)]


def test_iec_framer_skips_the_echo_and_the_acknowledgement() -> None:
    readout = (DATA / "iec62056" / "iskra_me162_mode_c.bin").read_bytes()
    ident_end = readout.index(b"\n") + 1
    echoed = b"/?!\r\n" + readout[:ident_end] + b"\x06050\r\n" + readout[ident_end:]
    frames = feed_in_pieces(IecFramer(), readout[40:] + echoed + echoed, 5)
    assert frames == [Frame("telegram", readout), Frame("telegram", readout)]


def test_iec_framer_takes_the_bcc_whatever_its_value() -> None:
    block = b"\x021.8.0(000001.000*kWh)\r\n!\r\n\x03"
    readout = b"/ABC5X\r\n" + block + bytes([bcc(block[1:])])
    assert feed_in_pieces(IecFramer(), readout * 2, 3) == [Frame("telegram", readout)] * 2


# --- mode C polling and rejects ---------------------------------------------------------------


class FakeMeter:
    """An optical port: answers ``/?!`` with an identification offering 9600 baud."""

    name = "fake"

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.bauds: list[int] = []
        self._pending = b""

    def read(self, timeout: float) -> bytes:
        data, self._pending = self._pending, b""
        return data

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if data.startswith(b"/?"):
            self._pending = data + b"/ISk5ME162-0033\r\n"  # the echo, then the meter

    def set_baudrate(self, baud: int) -> None:
        self.bauds.append(baud)

    def close(self) -> None:
        pass


def test_mode_c_poller_requests_acknowledges_and_switches_baud() -> None:
    meter = FakeMeter()
    poller = ModeCPoller(meter, every_s=3600)
    assert poller.read(0.1) == b"/?!\r\n/ISk5ME162-0033\r\n"
    assert meter.written == [b"/?!\r\n", b"\x06050\r\n"]
    assert meter.bauds == [300, 9600]
    assert poller.read(0.1) == b"" and poller.requests == 1  # not again before the period


def test_rejects_file_keeps_every_byte_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    rejects = RejectsFile(path, max_bytes=400)
    raw = bytes(range(256))
    rejects.write("bad_checksum", "CRC", raw, source="tcp://x:1", line=3)
    entry = json.loads(path.read_text())
    assert entry["raw"].encode("latin-1") == raw and entry["line"] == 3
    rejects.write("malformed_telegram", "noise", b"x", source="s")
    assert path.with_name("rejects.jsonl.1").exists() and rejects.count == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "/dev/ttyUSB0"}, "serial://, tcp:// or file://"),
        ({"source": "tcp://meter"}, "tcp://host:port"),
        ({"source": "tcp://meter:http"}, "tcp://host:port"),
        ({"serial_mode": "8E2"}, "serial mode"),
        ({"protocol": "modbus"}, "dsmr or iec62056"),
        ({"zone": "Mars/Olympus"}, "time zone"),
        ({"tenant": "Not A Slug"}, "tenant id"),
        ({"hardware_id": "a/b"}, "hardwareId"),
        ({"mqtt_protocol": "4"}, "5 or 3.1.1"),
    ],
)
def test_config_errors_are_caught_before_the_first_telegram(
    changes: dict[str, str], message: str
) -> None:
    values = {"source": "serial:///dev/ttyUSB0", "tenant": "t", **changes}
    with pytest.raises(ValueError, match=message):
        GatewayConfig(**values).check()  # type: ignore[arg-type]
