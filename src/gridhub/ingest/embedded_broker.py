"""An MQTT broker that ``gridhub serve`` starts itself when no external broker URL is configured.

Why it exists: a hub should ingest meter data out of the box, on a laptop or a small box, without
anyone setting up and configuring a broker first. Two implementations, chosen per instance:

* **Mosquitto** (preferred): when a ``mosquitto`` binary is installed, the hub runs a private one
  as a child process, on its own port with its own config, next to (never instead of) any system
  Mosquitto. It is preferred because it does what the hub's ingest relies on: the hub sends its
  PUBACK only once a message is committed to the store and holds PUBACKs back under backpressure,
  and Mosquitto keeps an unacknowledged QoS 1 message for as long as that takes, redelivering it
  when the subscriber reconnects with its persistent session (checked by
  ``tests/integration/test_embedded_broker.py``).
* **amqtt** (fallback): a pure-Python MQTT 3.1.1 broker that runs inside the hub process, in a
  dedicated daemon thread with its own asyncio event loop, because the rest of the hub is
  synchronous and thread-based (the pipeline's writer thread, paho's network thread): the broker
  must neither force asyncio on its callers nor be stalled by their blocking work. It is used only
  when Mosquitto is not installed (or when asked for), with a WARNING, because it can lose data.

What amqtt 0.12 gives the hub (checked by the test module):

* QoS 1 delivery with the subscriber's own PUBACK (paho ``manual_ack=True``): the broker keeps a
  message in flight until the subscriber acknowledges it (for at most 5 s, see below).
* Persistent sessions (``clean_session=False``): QoS 1/2 messages published while the subscriber is
  away are queued and delivered when it reconnects with the same client id. amqtt only does this
  for sessions it does not consider anonymous, and its stock ``AnonymousAuthPlugin`` marks every
  session anonymous (the session is then dropped on disconnect); hence ``OpenAuthPlugin`` below,
  which lets every client in without credentials but keeps its session.

Known limits of amqtt 0.12 that this module does not work around (why Mosquitto is preferred):

* A QoS 1 message still awaiting the subscriber's PUBACK when it disconnects is dropped, not
  redelivered on reconnect; so is one whose PUBACK takes longer than amqtt's fixed 5 s. The hub
  must therefore acknowledge within 5 s. Holding PUBACKs back is no flow control either: amqtt has
  no in-flight limit and keeps sending.
* Messages published in the moment between a subscriber's DISCONNECT and amqtt marking its session
  disconnected go to the closing connection and are lost the same way.
* Messages queued for an offline session arrive with the RETAIN flag set.

With either broker, sessions live in memory only: they end with the broker (and with the hub).
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import functools
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

if TYPE_CHECKING:
    from amqtt.broker import Broker
    from amqtt.contexts import BrokerConfig

__all__ = ["BrokerKind", "EmbeddedBroker"]

log = logging.getLogger(__name__)

#: Which implementation an :class:`EmbeddedBroker` runs.
BrokerKind = Literal["mosquitto", "amqtt"]

#: Accepted values of ``EmbeddedBroker(prefer=...)``.
_PREFERENCES = ("auto", "mosquitto", "amqtt")
#: Loggers that are chatty at INFO (amqtt logs every connection, ``transitions`` every state
#: change of every session); quietened to WARNING unless the caller has set a level on them.
_QUIET_LOGGERS = ("amqtt", "transitions")
#: Name under which amqtt finds the auth plugin (amqtt 0.12 loads plugins by dotted path).
_AUTH_PLUGIN = "OpenAuthPlugin"
#: How often ``start()`` picks a new free port when another process took the picked one first.
_PORT_ATTEMPTS = 5

#: Where Mosquitto is looked for when it is not on PATH: Debian and Ubuntu install it to
#: /usr/sbin, which is not on a normal user's PATH (nor are Homebrew's sbin directories).
_MOSQUITTO_PATHS = (
    "/usr/sbin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/opt/homebrew/sbin/mosquitto",
)
#: Per-client bound on the QoS 1/2 messages Mosquitto keeps for a disconnected session; beyond
#: it, Mosquitto drops new messages (logging a notice). Its default, 1000, is under a minute of
#: traffic from a gateway sending 20 messages/s, so a hub restart could lose data; 100 000 covers
#: a long outage of a small installation, yet stays bounded (tens of MB), so a hub that never
#: comes back cannot exhaust the machine's memory.
_MOSQUITTO_MAX_QUEUED = 100_000
#: What Mosquitto 2.x logs once its listeners are bound; see ``_MosquittoRunner._launch``.
_MOSQUITTO_READY = re.compile(rb"mosquitto version \S+ running")
#: For a Mosquitto that does not log the line above: how long it must stay up after the port
#: first accepts a connection before that connection is believed to be its own.
_MOSQUITTO_UNMARKED_GRACE_S = 0.5
#: Poll interval while waiting for Mosquitto to come up.
_POLL_S = 0.02
#: Timestamp prefix of Mosquitto's log lines (``log_timestamp_format`` below), dropped in errors.
_LOG_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: ")

_AMQTT_FALLBACK_WARNING = (
    "no mosquitto binary found (on PATH or in %s): falling back to the in-process amqtt broker, "
    "which can lose QoS 1 messages. amqtt 0.12 drops a message still awaiting the subscriber's "
    "PUBACK when the subscriber disconnects, and drops for good one whose PUBACK comes more than "
    "5 s late; the hub acknowledges only after the store commit and holds acknowledgements back "
    "under backpressure. Install Mosquitto (e.g. 'apt install mosquitto') or configure an "
    "external MQTT broker URL to avoid this."
)


class EmbeddedBroker:
    """An MQTT broker the hub starts and stops itself: a private Mosquitto, else amqtt.

    ``prefer`` picks the implementation: ``"auto"`` (the default) runs Mosquitto when its binary
    is installed and amqtt otherwise, with a WARNING, since amqtt can lose unacknowledged QoS 1
    messages (see the module docstring); ``"mosquitto"`` insists on Mosquitto; ``"amqtt"`` runs
    amqtt. :attr:`kind` tells which one this broker runs.

    ``port=0`` (the default) picks a free port, so starting never fails just because 1883 or any
    other fixed port is taken (a system Mosquitto usually holds 1883; this broker never touches
    it); read the chosen port from :attr:`port` or :attr:`url` after :meth:`start`. Any client may
    connect without credentials (bind to loopback, the default, to keep it local). Use it as a
    context manager or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        session_expiry_s: int | None = None,
        prefer: str = "auto",
    ) -> None:
        """Configure the broker and choose its kind; nothing is bound or started yet.

        ``session_expiry_s`` drops persistent sessions (and the messages queued for them) that
        stayed disconnected that long; ``None`` keeps them while the broker runs. Mosquitto counts
        this in whole hours, so it is rounded up there: a session is never dropped earlier than
        asked. Raises :class:`ValueError` for a bad argument and :class:`RuntimeError` for
        ``prefer="mosquitto"`` when no mosquitto binary is installed.
        """
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if ":" in host:
            # amqtt 0.12 keeps the brackets of "[::1]:port" in the address it binds, which fails;
            # refused for Mosquitto too, so that a host works the same whichever kind runs.
            raise ValueError(f"IPv6 addresses are not supported by the embedded broker: {host!r}")
        if prefer not in _PREFERENCES:
            raise ValueError(f"prefer must be one of {', '.join(_PREFERENCES)}; got {prefer!r}")
        binary = None if prefer == "amqtt" else _find_mosquitto()
        if prefer == "mosquitto" and binary is None:
            raise RuntimeError(
                "the embedded MQTT broker was asked to run Mosquitto, but no mosquitto binary was "
                f"found on PATH or in {', '.join(_MOSQUITTO_PATHS)}; install Mosquitto "
                "(e.g. 'apt install mosquitto') or use prefer='auto'"
            )
        self._kind: BrokerKind = "mosquitto" if binary is not None else "amqtt"
        self._mosquitto = binary
        self._fell_back = prefer == "auto" and binary is None
        self._host = host
        self._requested_port = port
        self._port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
        self._lock = threading.Lock()
        self._runner: _Runner | None = None

    # -- properties ------------------------------------------------------------------------------

    @property
    def kind(self) -> BrokerKind:
        """``"mosquitto"`` or ``"amqtt"``: the implementation this broker runs (fixed at init)."""
        return self._kind

    @property
    def host(self) -> str:
        """The address the broker listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port: the bound one once started (still readable after stop), else as given."""
        return self._port

    @property
    def url(self) -> str:
        """Where clients connect, e.g. ``mqtt://127.0.0.1:53211``."""
        if self._port == 0:
            raise RuntimeError("the embedded broker has no port yet; call start() first")
        return f"mqtt://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the broker (amqtt's thread, or the Mosquitto process) is up and serving."""
        runner = self._runner
        return runner is not None and runner.running

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker and return once it accepts connections.

        Raises :class:`RuntimeError` if it is already running, if it fails to start (for a fixed
        ``port``: when the port is taken) or does not come up within ``start_timeout`` seconds.
        """
        with self._lock:
            if self._runner is not None:
                raise RuntimeError("the embedded broker is already running")
            if self._fell_back:
                log.warning(_AMQTT_FALLBACK_WARNING, ", ".join(_MOSQUITTO_PATHS))
            self._port = self._requested_port
            runner = self._new_runner()
            self._port = runner.start()  # on failure, the runner has cleaned up after itself
            self._runner = runner
            log.info("embedded MQTT broker (%s) listening on %s", self._kind, self.url)

    def stop(self) -> None:
        """Shut the broker down and free its port (and its thread or process); idempotent.

        Connected clients are disconnected and their sessions are gone: they live in memory only.
        """
        with self._lock:
            runner = self._runner
            if runner is None:
                return
            self._runner = None
            runner.stop()
            log.info(
                "embedded MQTT broker (%s) on %s:%d stopped", self._kind, self._host, self._port
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self._kind} {self._host}:{self._port} {state}>"

    # -- internals -------------------------------------------------------------------------------

    def _new_runner(self) -> _Runner:
        if self._mosquitto is not None:
            return _MosquittoRunner(
                self._mosquitto,
                self._host,
                self._requested_port,
                start_timeout=self._start_timeout,
                stop_timeout=self._stop_timeout,
                session_expiry_s=self._session_expiry_s,
            )
        return _AmqttRunner(
            self._host,
            self._requested_port,
            start_timeout=self._start_timeout,
            stop_timeout=self._stop_timeout,
            session_expiry_s=self._session_expiry_s,
        )


class _Runner(Protocol):
    """One run of one broker implementation; :class:`EmbeddedBroker` serialises the calls."""

    @property
    def running(self) -> bool: ...

    def start(self) -> int:
        """Serve, and return the bound port; on failure clean up, then raise RuntimeError."""
        ...

    def stop(self) -> None:
        """Stop serving and release everything; safe to call more than once."""
        ...


# -- Mosquitto ------------------------------------------------------------------------------------


class _MosquittoRunner:
    """A private Mosquitto child process, with its config and log in a private temp directory.

    The config is written for the hub's ingest, which acknowledges a message only after the store
    committed it (see the comments in :meth:`_config`). The process is stopped by :meth:`stop`,
    or by an ``atexit`` hook if the hub exits without stopping it, so that it does not linger on
    its port after the hub is gone. It stays in the hub's session and process group, so a
    terminal's ^C reaches it as well. What neither covers: a hub killed by a signal that Python
    does not turn into a normal exit (SIGKILL, or SIGHUP, on which Mosquitto merely reloads its
    config) leaves its Mosquitto running until someone stops it.
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
    ) -> None:
        self._binary = binary
        self._host = host
        self._requested_port = requested_port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
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

        A port picked by :func:`_pick_free_port` is closed again before Mosquitto binds it, so
        another process may take it in between; Mosquitto then exits with "Address already in
        use" and the next attempt uses a new port.
        """
        self._workdir = Path(tempfile.mkdtemp(prefix="gridhub-mosquitto-"))
        deadline = time.monotonic() + self._start_timeout
        attempts = 1 if self._requested_port else _PORT_ATTEMPTS
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or _pick_free_port(self._host)
                if self._launch(port, deadline, may_retry=attempt < attempts):
                    self._serving = True
                    return port
                log.debug("port %d was taken before mosquitto bound it; retrying", port)
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

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
                    _start_failure(
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
            # Without credentials, as amqtt; the listener is on loopback unless asked otherwise.
            "allow_anonymous true",
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


def _find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, else at a usual install location; None if not installed."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    for path in _MOSQUITTO_PATHS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


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


def _start_failure(kind: str, host: str, requested_port: int, reason: str) -> str:
    where = f"{host}:{requested_port or '<free port>'}"
    return f"could not start the embedded MQTT broker ({kind}) on {where}: {reason}"


# -- amqtt ----------------------------------------------------------------------------------------


class _AmqttRunner:
    """amqtt in a daemon thread with its own event loop (why: see the module docstring)."""

    def __init__(
        self,
        host: str,
        requested_port: int,
        *,
        start_timeout: float,
        stop_timeout: float,
        session_expiry_s: int | None,
    ) -> None:
        self._host = host
        self._requested_port = requested_port
        self._port = requested_port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._broker is not None

    def start(self) -> int:
        _quiet_third_party_loggers()
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run, args=(loop, ready), name="gridhub-mqtt-broker", daemon=True
        )
        self._loop = loop
        self._thread = thread
        thread.start()
        if not ready.wait(self._start_timeout):
            self.stop()
            raise RuntimeError(
                f"the embedded MQTT broker (amqtt) did not start within {self._start_timeout:g} s"
            )
        if self._error is not None or self._broker is None:
            error = self._error
            self.stop()
            raise RuntimeError(
                _start_failure("amqtt", self._host, self._requested_port, _describe(error))
            ) from error
        return self._port

    def stop(self) -> None:
        """Ask the broker thread to shut down and wait for it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # closed in the meantime: the thread is finishing on its own
                pass
        thread.join(self._stop_timeout)
        if thread.is_alive():
            log.warning(
                "embedded MQTT broker thread did not finish within %g s", self._stop_timeout
            )
        self._thread = None
        self._loop = None
        self._broker = None

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        """Body of the broker thread: start, serve until ``loop.stop()``, shut down, clean up."""
        asyncio.set_event_loop(loop)
        broker: Broker | None = None
        try:
            try:
                broker = loop.run_until_complete(self._start_broker())
            except BaseException as exc:  # noqa: B036 - handed to start(), which raises it
                self._error = exc
                return
            self._broker = broker
            ready.set()
            loop.run_forever()
            try:
                loop.run_until_complete(asyncio.wait_for(broker.shutdown(), self._stop_timeout))
            except Exception:
                log.exception("embedded MQTT broker did not shut down cleanly")
        finally:
            ready.set()
            _close_loop(loop)

    async def _start_broker(self) -> Broker:
        """Start amqtt; with ``port=0``, pick a free port and retry if another process took it."""
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError

        attempts = 1 if self._requested_port else _PORT_ATTEMPTS
        amqtt_log = logging.getLogger("amqtt.broker")
        amqtt_log.addFilter(_drop_startup_traceback)
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or _pick_free_port(self._host)
                broker = Broker(self._config(port), loop=asyncio.get_running_loop())
                try:
                    await broker.start()
                except BrokerError as exc:
                    if attempt < attempts and _address_in_use(exc):
                        log.debug("port %d was taken before the broker bound it; retrying", port)
                        continue
                    raise
                self._port = port
                return broker
        finally:
            amqtt_log.removeFilter(_drop_startup_traceback)
        raise AssertionError("unreachable")  # pragma: no cover

    def _config(self, port: int) -> BrokerConfig:
        """amqtt 0.12 configuration: one TCP listener, plugins listed by dotted path."""
        from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType

        # The 'plugins' section replaces the deprecated 'auth'/'topic-check' sections and the
        # entry-point loading. Listing only our auth plugin also leaves out amqtt's defaults:
        # the $SYS plugin (a DeprecationWarning about psutil) and the event/packet loggers. With
        # no topic plugin listed, every topic may be published and subscribed to.
        return BrokerConfig(
            listeners={
                "default": ListenerConfig(type=ListenerType.TCP, bind=f"{self._host}:{port}")
            },
            plugins={f"{__name__}.{_AUTH_PLUGIN}": {}},
            session_expiry_interval=self._session_expiry_s,
        )


# -- helpers --------------------------------------------------------------------------------------


def _pick_free_port(host: str) -> int:
    """Ask the OS for a free port on ``host`` (it may be taken again before the broker binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _address_in_use(exc: BaseException) -> bool:
    """Whether ``exc`` or one of its causes is an 'address already in use' error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.EADDRINUSE:
            return True
        current = current.__cause__ or current.__context__
    return False


def _describe(error: BaseException | None) -> str:
    """A one-line reason, including the root cause amqtt wraps in ``BrokerError``."""
    if error is None:
        return "unknown error"
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    if root is error:
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error} (caused by {type(root).__name__}: {root})"


def _drop_startup_traceback(record: logging.LogRecord) -> bool:
    """Log filter for amqtt's ERROR traceback on a failed start.

    ``start()`` either retries (a free port that was taken meanwhile) or raises a RuntimeError
    chained to the same exception, so amqtt's own traceback would only be noise.
    """
    return record.msg != "Broker startup failed"


def _quiet_third_party_loggers() -> None:
    """Set amqtt's loggers to WARNING unless the caller already chose a level for them."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the broker's loop (client handlers, timers) and close it."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    except Exception:
        log.exception("error while closing the embedded MQTT broker's event loop")
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@functools.cache
def _open_auth_plugin() -> type:
    """Build the auth plugin class on first use, so importing this module does not import amqtt."""
    from amqtt.plugins.base import BaseAuthPlugin
    from amqtt.session import Session

    class OpenAuthPlugin(BaseAuthPlugin):
        """Let every client in without credentials, keeping its persistent session.

        amqtt's ``AnonymousAuthPlugin`` also lets everyone in, but flags each session anonymous,
        and amqtt 0.12 neither queues messages for a disconnected anonymous session nor keeps it:
        ``clean_session=False`` would silently lose everything published while the hub's
        subscriber reconnects. This plugin accepts the client and leaves the flag unset.
        """

        async def authenticate(self, *, session: Session) -> bool:
            return True

    OpenAuthPlugin.__module__ = __name__
    return OpenAuthPlugin


def __getattr__(name: str) -> Any:
    """Resolve the lazily built auth plugin for amqtt's loader (``module.OpenAuthPlugin``)."""
    if name == _AUTH_PLUGIN:
        return _open_auth_plugin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
