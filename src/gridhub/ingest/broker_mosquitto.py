"""The embedded MQTT broker's Mosquitto runner: a private Mosquitto as a child process.

:class:`~gridhub.ingest.embedded_broker.EmbeddedBroker` runs one when a ``mosquitto`` binary is
installed (its module docstring says why Mosquitto is preferred to amqtt). This module writes the
config, starts and watches the process, and stops it again, also when the hub exits without
stopping it.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridhub.ingest.broker_common import PORT_ATTEMPTS, start_failure
from gridhub.ingest.broker_common import broker_log as log

__all__ = ["MosquittoAuth", "MosquittoRunner", "MosquittoTls"]


@dataclass(frozen=True, slots=True)
class MosquittoAuth:
    """Password and ACL files (see :mod:`gridhub.access.mqtt_auth`); anonymous access is off."""

    password_file: Path
    acl_file: Path


@dataclass(frozen=True, slots=True)
class MosquittoTls:
    """A second, TLS listener (MQTTS): its port (0 picks a free one), certificate and key."""

    certfile: Path
    keyfile: Path
    port: int = 0
    host: str | None = None  # default: the plain listener's address


#: Per-client bound on the QoS 1/2 messages Mosquitto keeps for a disconnected session; beyond
#: it, Mosquitto drops new messages (logging a notice). Its default, 1000, is under a minute of
#: traffic from a gateway sending 20 messages/s, so a hub restart could lose data; 100 000 covers
#: a long outage of a small installation, yet stays bounded (tens of MB), so a hub that never
#: comes back cannot exhaust the machine's memory.
_MOSQUITTO_MAX_QUEUED = 100_000
#: What Mosquitto 2.x logs once its listeners are bound; see ``MosquittoRunner._launch``.
_MOSQUITTO_READY = re.compile(rb"mosquitto version \S+ running")
#: For a Mosquitto that does not log the line above: how long it must stay up after the port
#: first accepts a connection before that connection is believed to be its own.
_MOSQUITTO_UNMARKED_GRACE_S = 0.5
#: Poll interval while waiting for Mosquitto to come up.
_POLL_S = 0.02
#: Timestamp prefix of Mosquitto's log lines (``log_timestamp_format`` below), dropped in errors.
_LOG_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: ")


class MosquittoRunner:
    """A private Mosquitto child process, with its config and log in a private temp directory.

    The config is written for the hub's ingest, which acknowledges a message only after the store
    committed it (see the comments in :meth:`_config`). The process is stopped by :meth:`stop`,
    or by an ``atexit`` hook if the hub exits without stopping it, so that it does not linger on
    its port after the hub is gone. It stays in the hub's session and process group, so a
    terminal's ^C reaches it as well. What neither covers: a hub killed by a signal that Python
    does not turn into a normal exit (SIGKILL, or SIGHUP, on which Mosquitto merely reloads its
    config) leaves its Mosquitto running until someone stops it.

    ``pick_port(host)`` gives the port to try when none was asked for (``requested_port`` 0).
    """

    def __init__(
        self,
        binary: str,
        host: str,
        requested_port: int,
        *,
        start_timeout: float,
        stop_timeout: float,
        session_expiry_s: int | None,
        pick_port: Callable[[str], int],
        auth: MosquittoAuth | None = None,
        tls: MosquittoTls | None = None,
    ) -> None:
        self._binary = binary
        self._auth = auth
        self._tls = tls
        self.tls_port = 0
        self._host = host
        self._requested_port = requested_port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
        self._pick_port = pick_port
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._exit_hook: functools.partial[None] | None = None
        self._serving = False

    @property
    def running(self) -> bool:
        process = self._process
        return self._serving and process is not None and process.poll() is None

    def start(self) -> int:
        """Start Mosquitto; with ``port=0``, pick a free port and retry if another process took it.

        A port picked by ``pick_port`` (normally
        :func:`~gridhub.ingest.broker_common.pick_free_port`) is closed again before Mosquitto
        binds it, so another process may take it in between; Mosquitto then exits with "Address
        already in use" and the next attempt uses a new port.
        """
        self._workdir = Path(tempfile.mkdtemp(prefix="gridhub-mosquitto-"))
        deadline = time.monotonic() + self._start_timeout
        attempts = 1 if self._requested_port else PORT_ATTEMPTS
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or self._pick_port(self._host)
                if self._tls is not None:
                    self.tls_port = self._tls.port or self._pick_port(self._tls.host or self._host)
                if self._launch(port, deadline, may_retry=attempt < attempts):
                    self._serving = True
                    return port
                log.debug("port %d was taken before mosquitto bound it; retrying", port)
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files (its listeners stay)."""
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("the embedded Mosquitto is not running")
        process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Terminate Mosquitto (SIGTERM, then SIGKILL after ``stop_timeout``), delete its files."""
        process, workdir = self._process, self._workdir
        if process is not None:
            code = process.poll()
            if code is not None and self._serving:
                # It died on its own while the hub relied on it; its log goes with the temp dir.
                log.warning(
                    "the embedded Mosquitto had exited (code %s) before it was stopped; "
                    "its log ends: %s",
                    code,
                    _log_excerpt(self._read_log()),
                )
            _terminate(process, self._stop_timeout)
            self._forget_process()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            self._workdir = None
        self._serving = False

    def _launch(self, port: int, deadline: float, *, may_retry: bool) -> bool:
        """Run Mosquitto on ``port`` and wait until it serves (True) or lost a bind race (False).

        Readiness is a TCP connect that succeeds while the process is alive. That alone could be
        a connection to the other process that took the port (Mosquitto exits only a moment
        later), so it counts once Mosquitto has also logged that it is running, which it does
        after binding; for a Mosquitto that does not log that, once it stayed up a short grace.
        """
        assert self._workdir is not None
        conf = self._workdir / "mosquitto.conf"
        conf.write_text(self._config(port), encoding="utf-8")
        with self._log_path().open("wb") as log_file:
            process = subprocess.Popen(
                [self._binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                start_new_session=False,  # see the class docstring
            )
        self._process = process
        self._exit_hook = functools.partial(
            _stop_at_exit, process, self._stop_timeout, self._workdir
        )
        atexit.register(self._exit_hook)

        first_connect: float | None = None
        while True:
            code = process.poll()
            if code is not None:
                output = self._read_log()
                self._forget_process()
                if may_retry and b"Address already in use" in output:
                    return False
                raise RuntimeError(
                    start_failure(
                        "mosquitto",
                        self._host,
                        self._requested_port,
                        f"mosquitto exited with code {code}: {_log_excerpt(output)}",
                    )
                )
            if _accepts_connections(self._host, port):
                now = time.monotonic()
                if first_connect is None:
                    first_connect = now
                if _MOSQUITTO_READY.search(self._read_log()) or (
                    now - first_connect >= _MOSQUITTO_UNMARKED_GRACE_S and process.poll() is None
                ):
                    return True
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the embedded MQTT broker (mosquitto) did not start within "
                    f"{self._start_timeout:g} s; its log: {_log_excerpt(self._read_log())}"
                )
            time.sleep(_POLL_S)

    def _config(self, port: int) -> str:
        """mosquitto.conf(5) for one run: one listener, open access, no loss of queued QoS 1."""
        lines = [
            "# Written by gridhub for its embedded broker; deleted when the broker stops.",
            f"listener {port} {self._host}",
            *self._access_lines(),
            # Sessions live in memory, as with amqtt: no database file to manage or to go stale.
            "persistence false",
            # No limit on unacknowledged QoS 1 messages per MQTT 3.1.1 client (an MQTT 5 client
            # announces its own limit, its Receive Maximum, which Mosquitto uses instead; the
            # hub's subscriber announces 65 535 when it speaks MQTT 5). The hub acknowledges after
            # the store commit, batch by batch, so a small limit (Mosquitto's default is 20) would
            # throttle each commit to that many messages; and for a connected client, messages
            # beyond the limit would be queued and subject to max_queued_messages below, i.e.
            # dropped when the hub is slow. Unlimited, they are in flight and never dropped while
            # the hub is connected; when it stalls, TCP backpressure keeps them in Mosquitto's
            # memory (unbounded while the hub stays connected: the price of dropping nothing).
            # Mosquitto has no PUBACK timeout: an in-flight message waits for as long as the hub
            # takes, and is resent when the hub reconnects with its session.
            "max_inflight_messages 0",
            # Bounds the backlog of a disconnected session (including what was in flight when it
            # went away); see _MOSQUITTO_MAX_QUEUED. No separate byte limit.
            f"max_queued_messages {_MOSQUITTO_MAX_QUEUED}",
            "max_queued_bytes 0",
            # The log is kept for start-up errors and for Mosquitto's warnings (among them
            # "Outgoing messages are being dropped"), not for one line per connection.
            "connection_messages false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",  # includes the "running" line _launch waits for
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self._session_expiry_s is not None:
            hours = max(1, math.ceil(self._session_expiry_s / 3600))
            if hours * 3600 != self._session_expiry_s:
                log.info(
                    "Mosquitto expires sessions in whole hours: session_expiry_s=%d rounded up to "
                    "%d h",
                    self._session_expiry_s,
                    hours,
                )
            lines.append(f"persistent_client_expiration {hours}h")
        return "\n".join(lines) + "\n"

    def _access_lines(self) -> list[str]:
        """Who may connect (and, with a TLS listener, how)."""
        lines: list[str] = []
        # paths absolute: Mosquitto runs in its temp directory (relative ones would miss)
        if self._auth is None:
            # Without credentials, as amqtt; the listener is on loopback unless asked otherwise.
            lines.append("allow_anonymous true")
        else:
            lines += [
                # per_listener_settings is false (the default): these apply to every listener
                "allow_anonymous false",
                f"password_file {self._auth.password_file.resolve()}",
                f"acl_file {self._auth.acl_file.resolve()}",
                # the client id is the username: no device can take over another's session
                "use_username_as_clientid true",
            ]
        if self._auth is not None or self._tls is not None:
            # Mosquitto started as root drops to the user "mosquitto", which cannot read the
            # hub's 0600 files (passwords, TLS key); a private broker keeps the hub's own user
            # (for a hub not run as root, Mosquitto ignores this line).
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if self._tls is not None:
            lines += [
                f"listener {self.tls_port} {self._tls.host or self._host}",
                f"certfile {self._tls.certfile.resolve()}",
                f"keyfile {self._tls.keyfile.resolve()}",
                "tls_version tlsv1.2",
            ]
        for line in lines:
            if "\n" in line or "\r" in line:
                raise ValueError(f"a Mosquitto config line may not hold a line break: {line!r}")
        return lines

    def _log_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "mosquitto.log"

    def _read_log(self) -> bytes:
        """Mosquitto's output so far (empty if there is none yet, or no longer)."""
        if self._workdir is None:
            return b""
        try:
            return self._log_path().read_bytes()
        except OSError:
            return b""

    def _forget_process(self) -> None:
        """Drop the (exited) process and its atexit hook."""
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        self._process = None


# -- helpers --------------------------------------------------------------------------------------


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``process`` politely (SIGTERM), then firmly (SIGKILL) after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("the embedded Mosquitto did not stop within %g s; killing it", timeout)
        process.kill()
        process.wait()


def _stop_at_exit(process: subprocess.Popen[bytes], timeout: float, workdir: Path) -> None:
    """Stop a Mosquitto the hub did not stop, and delete its temp directory (an atexit hook).

    Without it, the child would outlive the hub, holding its port and messages no one will
    collect, and its directory would stay behind.
    """
    _terminate(process, timeout)
    shutil.rmtree(workdir, ignore_errors=True)


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


def _log_excerpt(output: bytes, lines: int = 5) -> str:
    """Mosquitto's error lines (else its last lines) as one line, for an exception message."""
    text = [
        _LOG_TIMESTAMP.sub("", line).strip()
        for line in output.decode("utf-8", "replace").splitlines()
        if line.strip()
    ]
    errors = [line for line in text if line.startswith("Error")]
    return "; ".join((errors or text)[-lines:]) or "(no output)"
