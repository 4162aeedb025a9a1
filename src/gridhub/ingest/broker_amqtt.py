"""The embedded MQTT broker's amqtt runner: amqtt in a daemon thread with its own event loop.

:class:`~gridhub.ingest.embedded_broker.EmbeddedBroker` runs it when Mosquitto is not installed
(or when asked for); its module docstring says why amqtt runs in a thread of its own, what amqtt
0.12 gives the hub and where it can lose data. amqtt is imported only when a broker starts.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gridhub.ingest.broker_common import PORT_ATTEMPTS, start_failure
from gridhub.ingest.broker_common import broker_log as log

if TYPE_CHECKING:
    from amqtt.broker import Broker
    from amqtt.contexts import BrokerConfig

__all__ = ["AmqttRunner"]

#: Loggers that are chatty at INFO (amqtt logs every connection, ``transitions`` every state
#: change of every session); quietened to WARNING unless the caller has set a level on them.
_QUIET_LOGGERS = ("amqtt", "transitions")
#: Name under which amqtt finds the auth plugin (amqtt 0.12 loads plugins by dotted path).
_AUTH_PLUGIN = "OpenAuthPlugin"


class AmqttRunner:
    """amqtt in a daemon thread with its own event loop (why: see the module docstring).

    ``pick_port(host)`` gives the port to try when none was asked for (``requested_port`` 0).
    """

    def __init__(
        self,
        host: str,
        requested_port: int,
        *,
        start_timeout: float,
        stop_timeout: float,
        session_expiry_s: int | None,
        pick_port: Callable[[str], int],
    ) -> None:
        self._host = host
        self._requested_port = requested_port
        self._port = requested_port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._session_expiry_s = session_expiry_s
        self._pick_port = pick_port
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
                start_failure("amqtt", self._host, self._requested_port, _describe(error))
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

        attempts = 1 if self._requested_port else PORT_ATTEMPTS
        amqtt_log = logging.getLogger("amqtt.broker")
        amqtt_log.addFilter(_drop_startup_traceback)
        try:
            for attempt in range(1, attempts + 1):
                port = self._requested_port or self._pick_port(self._host)
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
