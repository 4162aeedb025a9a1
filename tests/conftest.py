"""Shared fixtures: a hub on a temporary data directory, a real HTTP server, real brokers.

Tests that need a service skip with a reason when it is missing — except with ``CI=true``,
where a missing service fails the run instead: CI must run every integration test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.hub import Hub, build_hub
from helpers import IN_CI, Api, free_port, make_settings, port_open, require


@pytest.fixture(scope="session")
def mosquitto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Mosquitto on 127.0.0.1:1883; if it is not running, one of our own."""
    if port_open("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    # CI runs against the machine's Mosquitto on 1883 (issue #2): its absence is a failure there
    require(not IN_CI, "no Mosquitto on 127.0.0.1:1883")
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    require(binary is not None, "no Mosquitto on 127.0.0.1:1883 and no mosquitto binary")
    assert binary is not None
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("could not start a Mosquitto for the tests")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub with its writer running and no MQTT (tests that need MQTT start their own)."""
    h = build_hub(make_settings(tmp_path))
    h.ensure_admin_token()
    h.start(mqtt=False)
    yield h
    h.stop()


@pytest.fixture
def api(hub: Hub) -> Iterator[Api]:
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    assert hub.admin_secret is not None
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {hub.admin_secret}"}, timeout=30
    )
    api = Api(server.url, admin)
    yield api
    api.close()
    server.stop()
