"""Run the API with uvicorn on a socket we bind ourselves, so port 0 means "any free port"
and the real address is known before anyone is told to connect."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from gridhub.api import create_app
from gridhub.hub import Hub


def bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it every response on a kept-alive connection waited ~40 ms (Nagle + delayed ACK)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ApiServer:
    """uvicorn in a thread or in the foreground, over a pre-bound socket."""

    def __init__(
        self,
        hub: Hub,
        host: str,
        port: int,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        """With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS only."""
        self.tls = tls_cert is not None and tls_key is not None
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(hub),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls_cert) if self.tls else None,
            ssl_keyfile=str(tls_key) if self.tls else None,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve in this thread until :meth:`stop` or Ctrl-C."""
        if on_started is not None:
            threading.Thread(target=self._notify, args=(on_started,), daemon=True).start()
        self.server.run(sockets=[self.sock])

    def _notify(self, on_started: Callable[[], None]) -> None:
        while not self.server.started and not self.server.should_exit:
            threading.Event().wait(0.05)
        if self.server.started:
            on_started()

    def start(self) -> None:
        """Serve in a background thread; return once it accepts connections."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self._thread.start()
        ready = threading.Event()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server failed to start")
            ready.wait(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
