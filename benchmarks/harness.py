"""Helpers for the benchmarks: a hub in its own process, pre-registered, and result records."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from gridhub.config import Settings
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.hub import build_hub

ROOT = Path(__file__).resolve().parent.parent
CMD = "make bench  (python benchmarks/run.py)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


def prepare_data_dir(
    data_dir: Path,
    tenant: str,
    devices: int,
    *,
    extra_devices: tuple[str, ...] = (),
    admin_token_file: Path | None = None,
) -> str:
    """Create tenant, sites and devices; return a tenant token. Runs before the hub starts.

    With ``admin_token_file``, an installation admin token is created and written there.
    """
    hub = build_hub(Settings(data_dir=data_dir))
    try:
        hub.registry.create_tenant(Tenant(tenant, tenant, "Europe/Brussels"))
        hub.registry.register_sites([Site(tenant, "s1")])
        ids = [f"m{i:05d}" for i in range(devices)] + list(extra_devices)
        hub.registry.register_devices([Device(tenant, hw, "smart-meter", "s1") for hw in ids])
        _record, secret = hub.tokens.create(tenant, "admin", "bench")
        if admin_token_file is not None:
            admin_token_file.write_text(hub.tokens.create(None, "admin", "bench admin")[1])
        return secret
    finally:
        hub.db.close()


@dataclass
class HubProcess:
    """``gridhub serve`` as a child process, so the load generator does not share its GIL."""

    data_dir: Path
    mqtt_url: str | None = None
    port: int = 0
    env: dict[str, str] | None = None

    def __enter__(self) -> HubProcess:
        self.port = free_port()
        args = [
            sys.executable,
            "-m",
            "gridhub.cli.main",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--log-level",
            "WARNING",
        ]
        if self.mqtt_url:
            args += ["--mqtt-url", self.mqtt_url]
        env = dict(os.environ, GRIDHUB_MQTT_CLIENT_ID=f"gridhub-bench-{uuid.uuid4().hex[:8]}")
        env.update(self.env or {})
        self.log = self.data_dir / "hub.log"  # a file, not a pipe nobody reads (it would fill)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub did not start:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str) -> float:
        if not hasattr(self, "_client"):
            self._client = httpx.Client(timeout=10)
        text = self._client.get(f"{self.url}/metrics").text
        match = re.search(rf"^gridhub_ingest_{name} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def __exit__(self, *exc: object) -> None:
        if hasattr(self, "_client"):
            self._client.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def figure(value: float, unit: str, command: str, target: str | None = None) -> dict[str, object]:
    return {"value": round(value, 3), "unit": unit, "target": target, "command": command}


@dataclass
class PrivateMosquitto:
    """A Mosquitto of the benchmark's own, with no per-client queue limit.

    The machine's Mosquitto keeps its defaults (1,000 queued messages per client), so a hub that
    falls behind a fast publisher loses what overflows, at the broker — not what this benchmark
    measures. Here the broker holds any backlog, and the figure is the hub's own drain rate.
    """

    workdir: Path
    port: int = 0

    def __enter__(self) -> PrivateMosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("private Mosquitto did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(15)
