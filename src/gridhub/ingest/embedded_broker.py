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
  session anonymous (the session is then dropped on disconnect); hence ``OpenAuthPlugin`` (in
  :mod:`gridhub.ingest.broker_amqtt`), which lets every client in without credentials but keeps
  its session.

Known limits of amqtt 0.12 that this module does not work around (why Mosquitto is preferred):

* A QoS 1 message still awaiting the subscriber's PUBACK when it disconnects is dropped, not
  redelivered on reconnect; so is one whose PUBACK takes longer than amqtt's fixed 5 s. The hub
  must therefore acknowledge within 5 s. Holding PUBACKs back is no flow control either: amqtt has
  no in-flight limit and keeps sending.
* Messages published in the moment between a subscriber's DISCONNECT and amqtt marking its session
  disconnected go to the closing connection and are lost the same way.
* Messages queued for an offline session arrive with the RETAIN flag set.

With either broker, sessions live in memory only: they end with the broker (and with the hub).

This module is the facade and chooses the kind; the runners live in
:mod:`gridhub.ingest.broker_mosquitto` and :mod:`gridhub.ingest.broker_amqtt`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from gridhub.ingest import broker_amqtt
from gridhub.ingest.broker_amqtt import AmqttRunner as _AmqttRunner
from gridhub.ingest.broker_common import pick_free_port as _pick_free_port
from gridhub.ingest.broker_mosquitto import MosquittoAuth, MosquittoTls
from gridhub.ingest.broker_mosquitto import MosquittoRunner as _MosquittoRunner

__all__ = ["BrokerKind", "EmbeddedBroker", "MosquittoAuth", "MosquittoTls"]

log = logging.getLogger(__name__)

#: Which implementation an :class:`EmbeddedBroker` runs.
BrokerKind = Literal["mosquitto", "amqtt"]

#: Accepted values of ``EmbeddedBroker(prefer=...)``.
_PREFERENCES = ("auto", "mosquitto", "amqtt")

#: Where Mosquitto is looked for when it is not on PATH: Debian and Ubuntu install it to
#: /usr/sbin, which is not on a normal user's PATH (nor are Homebrew's sbin directories).
_MOSQUITTO_PATHS = (
    "/usr/sbin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/opt/homebrew/sbin/mosquitto",
)

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
        auth: MosquittoAuth | None = None,
        tls: MosquittoTls | None = None,
    ) -> None:
        """Configure the broker and choose its kind; nothing is bound or started yet.

        ``auth`` (password and ACL files) and ``tls`` (a second, MQTTS listener) need Mosquitto:
        amqtt enforces neither, so with them the broker refuses to fall back to it.

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
        if (auth is not None or tls is not None) and binary is None:
            raise RuntimeError(
                "MQTT authentication/ACLs and MQTT over TLS need Mosquitto (amqtt enforces "
                f"neither), and no mosquitto binary was found on PATH or in "
                f"{', '.join(_MOSQUITTO_PATHS)}; install Mosquitto (e.g. 'apt install mosquitto')"
            )
        self._auth, self._tls = auth, tls
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
    def tls_url(self) -> str | None:
        """Where clients connect over TLS, e.g. ``mqtts://127.0.0.1:53212``; None without TLS."""
        runner = self._runner
        if self._tls is None or not isinstance(runner, _MosquittoRunner) or not runner.tls_port:
            return None
        return f"mqtts://{self._tls.host or self._host}:{runner.tls_port}"

    def reload(self) -> None:
        """Make Mosquitto re-read its password and ACL files (SIGHUP); amqtt has none."""
        with self._lock:
            runner = self._runner
            if not isinstance(runner, _MosquittoRunner):
                raise RuntimeError("only a running embedded Mosquitto can reload its files")
            runner.reload()

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
        # The port picker is looked up here at each start, so that replacing this module's
        # _pick_free_port (as the tests do to simulate a lost race for a port) reaches the runner.
        if self._mosquitto is not None:
            return _MosquittoRunner(
                self._mosquitto,
                self._host,
                self._requested_port,
                start_timeout=self._start_timeout,
                stop_timeout=self._stop_timeout,
                session_expiry_s=self._session_expiry_s,
                pick_port=_pick_free_port,
                auth=self._auth,
                tls=self._tls,
            )
        return _AmqttRunner(
            self._host,
            self._requested_port,
            start_timeout=self._start_timeout,
            stop_timeout=self._stop_timeout,
            session_expiry_s=self._session_expiry_s,
            pick_port=_pick_free_port,
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


# -- choosing the kind ----------------------------------------------------------------------------


def _find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, else at a usual install location; None if not installed."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    for path in _MOSQUITTO_PATHS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def __getattr__(name: str) -> Any:
    """``OpenAuthPlugin``, now in :mod:`gridhub.ingest.broker_amqtt`, still reachable from here."""
    if name == "OpenAuthPlugin":
        return broker_amqtt.OpenAuthPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
