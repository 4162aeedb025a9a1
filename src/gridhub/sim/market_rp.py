"""A simulated retailer platform (seed 003's "RP simulator"): a real HTTP webhook server.

It checks every webhook's signature and timestamp, keeps what it received, waits a delay drawn
from ``delay`` (seed 003: [100, 110) ms) and answers. An availability request is answered with
a share of the asked clients, either inline in the 2xx body or, like a platform that must first
ask its HEMS, with a 202 and then over REST to the hub. It can also refuse its first calls
(503), to exercise the hub's retries.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx

from gridhub.services.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

__all__ = ["Received", "RetailerPlatform"]

MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    event: str
    body: dict[str, Any]
    signed: bool
    at: float  # time.time() on receipt
    delivery: str


@dataclass
class RetailerPlatform:
    retailer: str
    delay: tuple[float, float] = (0.100, 0.110)  # seconds, [low, high)
    available_share: float = 0.5
    answer: Literal["inline", "rest"] = "inline"
    fail_first: int = 0  # answer 503 to this many calls first
    seed: int = 1
    secret: str | None = None  # set once the hub registered the retailer
    hub_url: str | None = None  # for REST answers
    token: str | None = None
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # bad signatures

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"{self.retailer}:{self.seed}")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._calls = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802 (http.server's spelling)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._send(413, {})
                    return
                body = self.rfile.read(length)
                code, answer = platform.handle(dict(self.headers.items()), body)
                self._send(code, answer)

            def _send(self, code: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"rp-{self.retailer}", daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/gridhub"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._client is not None:
            self._client.close()

    # -- one webhook -------------------------------------------------------------------------------

    def events(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event in (None, r.event)]

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        lower = {k.lower(): v for k, v in headers.items()}
        signed = self.secret is not None and verify(
            self.secret,
            lower.get(TIMESTAMP_HEADER.lower()),
            body,
            lower.get(SIGNATURE_HEADER.lower()),
        )
        with self._lock:
            self._calls += 1
            failing = self._calls <= self.fail_first
            if not signed:
                self.refused += 1
            delay = self._rng.uniform(*self.delay)
        if not signed:
            return 401, {"error": "bad signature"}
        if failing:
            return 503, {"error": "simulated outage"}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"error": "not JSON"}
        time.sleep(delay)  # the platform's own work (seed 003: [100, 110) ms)
        event = str(payload.get("event", ""))
        with self._lock:
            duplicate = any(r.delivery == lower.get("x-gridhub-delivery") for r in self.received)
            if not duplicate:
                self.received.append(
                    Received(event, payload, True, time.time(), lower.get("x-gridhub-delivery", ""))
                )
        if event != "load_reduction.availability_requested":
            return 200, {"received": True}
        available = self._choose(list(payload.get("clients", [])))
        if self.answer == "inline":
            return 200, {"available": available, "available_kw": 1.5 * len(available)}
        threading.Thread(target=self._answer_later, args=(payload, available), daemon=True).start()
        return 202, {}

    def _choose(self, clients: list[str]) -> list[str]:
        with self._lock:
            n = round(len(clients) * self.available_share)
            if clients and self.available_share > 0:
                n = max(n, 1)  # a platform asked about one client offers it
            return sorted(self._rng.sample(clients, n)) if n else []

    def _answer_later(self, payload: dict[str, Any], available: list[str]) -> None:
        if self.hub_url is None or self.token is None:
            return
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.hub_url,
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=30,
                )
            client = self._client
        path = str(payload.get("answer_path", ""))
        for _ in range(5):  # the platform's own retries
            try:
                resp = client.post(
                    path, json={"available": available, "available_kw": 1.5 * len(available)}
                )
            except httpx.HTTPError:
                continue
            if resp.status_code < 500:
                return
