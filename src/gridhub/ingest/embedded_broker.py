"""An in-process MQTT broker for ``gridhub serve`` when no external broker URL is configured.

Why it exists: a hub should ingest meter data out of the box, on a laptop or a small box, without
anyone installing Mosquitto first. amqtt is a pure-Python MQTT 3.1.1 broker, so it can run inside
the hub process. It runs in a dedicated daemon thread with its own asyncio event loop, because the
rest of the hub is synchronous and thread-based (the pipeline's writer thread, paho's network
thread): the broker must neither force asyncio on its callers nor be stalled by their blocking
work.

What amqtt 0.12 gives the hub (checked by ``tests/integration/test_embedded_broker.py``):

* QoS 1 delivery with the subscriber's own PUBACK (paho ``manual_ack=True``): the broker keeps a
  message in flight until the subscriber acknowledges it (for at most 5 s, see below).
* Persistent sessions (``clean_session=False``): QoS 1/2 messages published while the subscriber is
  away are queued and delivered when it reconnects with the same client id. amqtt only does this
  for sessions it does not consider anonymous, and its stock ``AnonymousAuthPlugin`` marks every
  session anonymous (the session is then dropped on disconnect); hence ``OpenAuthPlugin`` below,
  which lets every client in without credentials but keeps its session.

Known limits of amqtt 0.12 that this module does not work around (evidence in the test module):

* A QoS 1 message still awaiting the subscriber's PUBACK when it disconnects is dropped, not
  redelivered on reconnect; so is one whose PUBACK takes longer than amqtt's fixed 5 s. The hub
  must therefore acknowledge within 5 s. Holding PUBACKs back is no flow control either: amqtt has
  no in-flight limit and keeps sending.
* Messages published in the moment between a subscriber's DISCONNECT and amqtt marking its session
  disconnected go to the closing connection and are lost the same way.
* Messages queued for an offline session arrive with the RETAIN flag set.
* Sessions live in memory only; they end with the broker (and with the hub process).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from amqtt.broker import Broker
    from amqtt.contexts import BrokerConfig

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)

#: Loggers that are chatty at INFO (amqtt logs every connection, ``transitions`` every state
#: change of every session); quietened to WARNING unless the caller has set a level on them.
_QUIET_LOGGERS = ("amqtt", "transitions")
#: Name under which amqtt finds the auth plugin (amqtt 0.12 loads plugins by dotted path).
_AUTH_PLUGIN = "OpenAuthPlugin"
#: How often ``start()`` picks a new free port when another process took the picked one first.
_PORT_ATTEMPTS = 5


class EmbeddedBroker:
    """An amqtt MQTT broker running in its own thread, for a hub without an external broker.

    ``port=0`` (the default) picks a free port, so starting never fails just because 1883 or any
    other fixed port is taken; read the chosen port from :attr:`port` or :attr:`url` after
    :meth:`start`. Any client may connect without credentials (bind to loopback, the default, to
    keep it local). Use it as a context manager or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        session_expiry_s: int | None = None,
    ) -> None:
        """Configure the broker; nothing is bound or started until :meth:`start`.

        ``session_expiry_s`` drops persistent sessions (and the messages queued for them) that
        stayed disconnected that long; ``None`` keeps them while the broker runs.
        """
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if ":" in host:
            # amqtt 0.12 keeps the brackets of "[::1]:port" in the address it binds, which fails.
            raise ValueError(f"IPv6 addresses are not supported by the embedded broker: {host!r}")
        self._host = host
        self._requested_port = port
        self._port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._error: BaseException | None = None

    # -- properties ------------------------------------------------------------------------------

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
        """Whether the broker thread is up and serving."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._broker is not None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker and return once it accepts connections.

        Raises :class:`RuntimeError` if it is already running, if it fails to start (for a fixed
        ``port``: when the port is taken) or does not come up within ``start_timeout`` seconds.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the embedded broker is already running")
            _quiet_third_party_loggers()
            self._error = None
            self._broker = None
            self._port = self._requested_port
            ready = threading.Event()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._run, args=(loop, ready), name="gridhub-mqtt-broker", daemon=True
            )
            self._loop = loop
            self._thread = thread
            thread.start()
            if not ready.wait(self._start_timeout):
                self._halt(loop, thread)
                raise RuntimeError(
                    f"the embedded MQTT broker did not start within {self._start_timeout:g} s"
                )
            if self._error is not None or self._broker is None:
                error = self._error
                self._halt(loop, thread)
                where = f"{self._host}:{self._requested_port or '<free port>'}"
                raise RuntimeError(
                    f"could not start the embedded MQTT broker on {where}: {_describe(error)}"
                ) from error
            log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self) -> None:
        """Shut the broker down, close its port and join its thread; does nothing if not running.

        Connected clients are disconnected and their sessions are gone: they live in memory only.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._halt(loop, thread)
            log.info("embedded MQTT broker on %s:%d stopped", self._host, self._port)

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
        return f"<EmbeddedBroker {self._host}:{self._port} {state}>"

    # -- internals -------------------------------------------------------------------------------

    def _halt(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        """Ask the broker thread to shut down and wait for it (caller holds the lock)."""
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
    """Ask the OS for a free port on ``host`` (it may be taken again before amqtt binds it)."""
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
