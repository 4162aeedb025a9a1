"""``gridhub serve`` reading a P1 port over TCP (issue #6): a real local TCP server streams real
telegrams from tests/data/dsmr, as a P1-to-Ethernet dongle or ser2net does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridhub.config import MeterSourceSettings, Settings
from gridhub.domain.registry import Tenant, UnknownDevicePolicy
from gridhub.errors import ConfigError
from gridhub.hub import Hub, build_hub
from helpers import make_settings, wait_for

pytestmark = pytest.mark.integration
DSMR = Path(__file__).resolve().parent.parent / "data" / "dsmr"
TENANT = "linear"


class P1Dongle:
    """A TCP server that sends one byte stream per accepted connection, then closes it."""

    def __init__(self, streams: list[bytes]) -> None:
        self._streams = list(streams)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._streams:
            try:
                conn, _addr = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = self._streams.pop(0)
                for at in range(0, len(data), 200):  # in pieces, as a serial line arrives
                    conn.sendall(data[at : at + 200])

    def close(self) -> None:
        self._sock.close()


def telegram(name: str) -> bytes:
    return (DSMR / name).read_bytes()


def corrupted(name: str) -> bytes:
    raw = bytearray(telegram(name))
    at = raw.index(b"1-0:1.8.1(") + len(b"1-0:1.8.1(")
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    return bytes(raw)


@pytest.fixture
def dongle() -> Iterator[P1Dongle]:
    server = P1Dongle(
        [
            # joined mid-telegram, a Belgian telegram, a corrupted one, a good DSMR 5 one
            b"5.0(00001.001*kW)\r\n!ABCD\r\n"
            + telegram("emucs_1_7_1_fluvius_belgium.txt")
            + corrupted("dsmr_5_0_iskra.txt")
            + telegram("dsmr_4_2_kaifa.txt"),
            # after the dongle dropped the connection: the reader reconnects
            telegram("dsmr_5_0_iskra.txt"),
        ]
    )
    yield server
    server.close()


def serving(tmp_path: Path, port: int) -> Hub:
    source = MeterSourceSettings(
        url=f"tcp://127.0.0.1:{port}", tenant=TENANT, zone="Europe/Brussels"
    )
    hub = build_hub(make_settings(tmp_path, meter_sources=[source]))
    hub.registry.create_tenant(
        Tenant(TENANT, "Linear", "Europe/Brussels", UnknownDevicePolicy.AUTO_REGISTER)
    )
    hub.start(mqtt=False)
    return hub


def test_serve_reads_p1_telegrams_from_a_tcp_port(tmp_path: Path, dongle: P1Dongle) -> None:
    hub = serving(tmp_path, dongle.port)
    try:
        reader = hub.meter_readers[0]
        # the second connection's telegram arrives only after a reconnect
        wait_for(lambda: reader.counters.opens >= 2 and reader.counters.telegrams >= 4, 20)
        devices = {d.hardware_id for d in hub.registry.devices(TENANT)}
        assert {"1SAG3101021605", "7FLO2119033733", "8SAG1234567890"} <= devices  # Belgian
        assert "4819243993373755377509728609491464" in devices  # DSMR 4.2, first connection

        def latest(device: str) -> dict[str, float]:
            return {s.identifier: s.value for s in hub.store.latest(TENANT, device)}

        # the DSMR 5 meter came only on the second connection, its CRC-corrupted copy on the
        # first was dead-lettered, so its reading proves the reconnect
        wait_for(lambda: "gas.volume" in latest("7FLO2119033733"), what="Belgian gas reading")
        wait_for(
            lambda: "electricity.energy.active.consumed.total" in latest("K8EG004046395507"),
            what="the DSMR 5 reading after the reconnect",
        )
        assert latest("7FLO2119033733")["gas.volume"] > 0

        def letters() -> list[tuple[str, str]]:
            return [(d.reason, d.source) for d in hub.store.dead_letters(TENANT, 50)]

        wait_for(lambda: bool(letters()), what="the corrupted telegram's dead letter")
        # bytes before the first telegram (joined mid-way) are skipped, not dead-lettered
        assert letters() == [("bad_checksum", f"p1:tcp://127.0.0.1:{dongle.port}")]
    finally:
        hub.stop()


def test_a_bad_meter_source_stops_serve_at_start(tmp_path: Path) -> None:
    for source, message in [
        (MeterSourceSettings(url="tcp://127.0.0.1:1", tenant="nobody"), "not found"),
        (MeterSourceSettings(url="ftp://x", tenant=TENANT), "source must be"),
        (MeterSourceSettings(url="tcp://h:1", tenant=TENANT, zone="Mars/Base"), "time zone"),
    ]:
        hub = build_hub(make_settings(tmp_path, meter_sources=[source]))
        hub.registry.create_tenant(Tenant(TENANT, "Linear"), exist_ok=True)
        try:
            with pytest.raises(ConfigError, match=message):
                hub.start(mqtt=False)
        finally:
            hub.stop()


def test_meter_sources_from_a_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "gridhub.toml"
    config.write_text(
        "[[meter_sources]]\n"
        'url = "serial:///dev/ttyUSB0"\ntenant = "linear"\n\n'
        "[[meter_sources]]\n"
        'url = "tcp://10.0.0.7:2001"\ntenant = "linear"\nprotocol = "iec62056"\n'
        "iec_poll_s = 900\n"
    )
    settings = Settings.load(config)
    assert [(s.url, s.protocol) for s in settings.meter_sources] == [
        ("serial:///dev/ttyUSB0", "dsmr"),
        ("tcp://10.0.0.7:2001", "iec62056"),
    ]
    assert settings.meter_sources[1].iec_poll_s == 900
