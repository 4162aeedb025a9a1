"""Sending simulated messages to a hub: MQTT, HTTP, and a real-time loop.

API (the CLI and the demo call exactly this)::

    publisher = MqttPublisher("mqtt://127.0.0.1:1883", "demo", client_id=None, max_inflight=1000)
    publisher = HttpPublisher("http://127.0.0.1:8000", "demo", token)
    publisher.publish(batch)   # batch: list[(hardwareId, canonical JSON bytes)] from Fleet.batches
    publisher.close()
    sent = run_live(fleet, publisher, 900, duration_s=3600, start=None, on_tick=None, stop=None,
                    gap_rate=0.0, malformed_rate=0.0)   # any other Fleet.batches keyword too

Both publishers return only once the hub has confirmed every message (MQTT PUBACK at QoS 1; an
HTTP answer) and raise when it does not within their deadline, so a benchmark or a backfill that
finishes has really been delivered (N2) and a stalled hub shows up as an error, not as a hang.
MQTT goes to ``gridhub/<tenant>/<hardwareId>/events``. HTTP posts JSON arrays to
``/api/v1/tenants/<tenant>/events``; a message that is not JSON at all goes alone, because inside
an array it would make the hub dead-letter the whole array as one malformed body.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx
import msgspec
import paho.mqtt.client as mqtt

from gridhub.sim.fleet import Fleet

_MAX_INFLIGHT = 30_000  # well below the 65,535 message ids: an id is never in flight twice
_json_check = msgspec.json.Decoder(msgspec.Raw)


class Publisher(Protocol):
    def publish(self, items: list[tuple[str, bytes]]) -> Any: ...

    def close(self) -> None: ...


class MqttPublisher:
    """Publish at QoS 1 and wait for every PUBACK (paho-mqtt 2.x, its own network thread)."""

    def __init__(
        self,
        url: str,
        tenant: str,
        *,
        client_id: str | None = None,
        max_inflight: int = 1000,
        timeout_s: float = 60.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT url must be mqtt://host:port or mqtts://host:port, not {url!r}")
        secure = parts.scheme in ("mqtts", "ssl")
        self.tenant, self.timeout_s = tenant, timeout_s
        self._acked: set[int] = set()
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        client_id = client_id or f"gridhub-sim-{uuid.uuid4().hex[:12]}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if secure:
            self._client.tls_set()
        if not 1 <= max_inflight <= _MAX_INFLIGHT:
            raise ValueError(f"max_inflight must be 1..{_MAX_INFLIGHT}")
        self.max_inflight = max_inflight
        self._client.max_inflight_messages_set(0)  # unlimited in paho: publish() keeps the window
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.connect(
            parts.hostname or "127.0.0.1", parts.port or (8883 if secure else 1883)
        )
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._connect_error:
            self._client.loop_stop()
            raise ConnectionError(f"MQTT connect to {url}: {self._connect_error or 'timed out'}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
        self._connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self._acked.add(mid)
            self._lock.notify_all()

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        """Publish all and return once each has its PUBACK.

        At most ``max_inflight`` messages wait for their PUBACK at once; ``TimeoutError`` when
        none arrives for ``timeout_s``. The window is ours, not paho's: paho rescans its whole
        outgoing queue on every PUBACK when it limits in-flight messages itself, which made
        large windows quadratic (3,000 msg/s against ~10,000 with a local Mosquitto; paho's own
        per-message cost is the limit then). PUBACKs are counted
        by message id in the callback, since paho flags its per-message info only after the
        callback runs; paho resends what was in flight if the connection drops meanwhile.
        """
        with self._lock:
            self._acked.clear()
        pending: set[int] = set()
        for hardware_id, payload in items:
            if len(pending) >= self.max_inflight:
                self._wait(pending, self.max_inflight - 1)
            info = self._client.publish(f"gridhub/{self.tenant}/{hardware_id}/events", payload, 1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                raise RuntimeError("paho's outgoing queue is full")
            pending.add(info.mid)
        self._wait(pending, 0)

    def _wait(self, pending: set[int], most: int) -> None:
        """Until at most ``most`` of ``pending`` lack a PUBACK, or ``timeout_s`` without one."""
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            while True:
                before = len(pending)
                pending -= self._acked
                self._acked.clear()
                if len(pending) <= most:
                    return
                if len(pending) < before:
                    deadline = time.monotonic() + self.timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(pending)} MQTT messages without PUBACK for {self.timeout_s:g} s"
                    )
                self._lock.wait(min(remaining, 1.0))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int  # into the list given to publish()
    reason: str
    detail: str = ""


@dataclass(slots=True)
class PublishResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def _retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class HttpPublisher:
    """POST JSON arrays with a bearer token; retry (bounded) when the hub answers 503."""

    def __init__(
        self,
        base_url: str,
        tenant: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        max_batch: int = 5000,
        max_retries: int = 8,
        max_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self._path = f"/api/v1/tenants/{tenant}/events"
        self._max_batch, self._max_retries, self._max_wait_s = max_batch, max_retries, max_wait_s
        self._sleep = sleep

    def _groups(self, items: list[tuple[str, bytes]]) -> list[tuple[int, int, bool]]:
        """(first index, end index, as an array?) runs: valid JSON batched, broken JSON alone."""
        groups: list[tuple[int, int, bool]] = []
        run = 0
        for i, (_, payload) in enumerate(items):
            try:
                _json_check.decode(payload)
            except msgspec.DecodeError:
                if run < i:
                    groups.append((run, i, True))
                groups.append((i, i + 1, False))
                run = i + 1
                continue
            if i + 1 - run >= self._max_batch:
                groups.append((run, i + 1, True))
                run = i + 1
        if run < len(items):
            groups.append((run, len(items), True))
        return groups

    def _post(self, body: bytes) -> httpx.Response:
        """POST, waiting out 503s (Retry-After) and connection errors, a bounded number of times.

        Resending is safe: the hub confirms only what is durable and drops duplicates.
        """
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = self._client.post(self._path, content=body)
            except httpx.TransportError:
                if last:
                    raise
                self._sleep(min(self._max_wait_s, 0.5 * 2**attempt))
                continue
            if response.status_code != 503 or last:
                return response
            wait = _retry_after(response.headers.get("Retry-After"), 1.0)
            self._sleep(min(self._max_wait_s, wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def publish(self, items: list[tuple[str, bytes]]) -> PublishResult:
        """Send all; the hub's verdicts, indexed into ``items``. Raises on 401/403/404/5xx."""
        result = PublishResult()
        for lo, hi, as_array in self._groups(items):
            payloads = [payload for _, payload in items[lo:hi]]
            body = b"[" + b",".join(payloads) + b"]" if as_array else payloads[0]
            response = self._post(body)
            if response.status_code not in (400, 413, 422):
                response.raise_for_status()
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            answer = answer if isinstance(answer, dict) else {}
            if response.is_success:
                result.accepted += int(answer.get("accepted", hi - lo))
                continue
            rejected = answer.get("rejected")
            if not isinstance(rejected, list) or not rejected:
                reason = str(answer.get("reason") or f"http_{response.status_code}")
                rejected = [
                    {"index": i, "reason": reason, "detail": answer.get("detail", "")}
                    for i in range(hi - lo)
                ]
            result.accepted += int(answer.get("accepted", 0))
            for item in rejected:
                index = lo + int(item.get("index", 0))
                reason, detail = str(item.get("reason", "")), str(item.get("detail", ""))
                result.rejected.append(Rejection(index, reason, detail))
        return result

    def close(self) -> None:
        self._client.close()


def run_live(
    fleet: Fleet,
    publisher: Publisher,
    interval_s: int,
    *,
    duration_s: float | None,
    start: datetime | None = None,
    on_tick: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    **batch_options: Any,
) -> int:
    """Publish one tick of the fleet per interval, in real time; return the messages sent.

    Without ``start`` the ticks are the current ones (the first is the interval that has just
    begun, sent at once, so a 15-minute fleet shows data immediately); with ``start`` the fleet
    replays from there at real-time speed. ``duration_s`` of None runs until ``stop`` is set.
    ``on_tick`` receives the number of messages sent for each tick. Waiting is ``stop.wait``, so
    setting ``stop`` ends the loop at once; a publisher slower than real time catches up without
    skipping ticks.
    """
    stop = stop or threading.Event()
    now = datetime.now(UTC)
    begin = start if start is not None else now
    first = math.floor(begin.timestamp() / interval_s) * interval_s
    if start is not None and first < begin.timestamp():
        first += interval_s
    sim0 = datetime.fromtimestamp(first, UTC)
    ticks = None if duration_s is None else math.ceil(duration_s / interval_s)
    wall0 = first if start is None else now.timestamp()  # when tick 0 is due, on the wall clock
    sent = tick = 0
    while not stop.is_set() and (ticks is None or tick < ticks):
        moment = sim0 + timedelta(seconds=tick * interval_s)
        count = 0
        end = moment + timedelta(seconds=interval_s)
        for batch in fleet.batches(moment, end, interval_s, **batch_options):
            publisher.publish(batch)
            count += len(batch)
        sent += count
        tick += 1
        if on_tick is not None:
            on_tick(count)
        if ticks is None or tick < ticks:
            stop.wait(max(0.0, wall0 + tick * interval_s - time.time()))
    return sent
