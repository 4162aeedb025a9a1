"""Subscriptions (Q3) end to end on a real HTTP server: signed webhooks to a real HTTP endpoint
(with 500s and retries), a real WebSocket client, the real Mosquitto, tenant isolation, revoked
tokens, periodic aggregates, unsubscribe and restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gridhub.cli.server import ApiServer
from gridhub.domain.access import Kind as StakeholderKind
from gridhub.domain.registry import Device, Site, Tenant
from gridhub.domain.subscriptions import verify
from gridhub.hub import Hub, build_hub
from helpers import gridhub, make_settings, wait_for

pytestmark = pytest.mark.integration
P = "electricity.power.active.consumed.total"
FAST = {
    "subscription_retry_s": 0.05,
    "subscription_retry_max_s": 0.2,
    "subscription_max_attempts": 4,
    "subscription_max_per_token": 5,
}


@dataclass
class Env:
    hub: Hub
    server: ApiServer
    admin: httpx.Client  # the tenant's admin
    tenant: str
    clients: list[httpx.Client] = field(default_factory=list)
    _clock: int = 0

    @property
    def ws_base(self) -> str:
        return self.server.url.replace("http://", "ws://")

    def client(self, role: str = "dso", tenant: str | None = None) -> tuple[httpx.Client, str]:
        """A token of ``role``; beyond admins and devices it acts for a stakeholder of that
        kind (what it reads follows docs/access.md: a DSO reads every meter no customer owns)."""
        tenant = tenant or self.tenant
        stakeholder = None
        if role not in ("admin", "device"):
            kind = StakeholderKind(role)
            directory = self.hub.access.directory
            found = directory.create_stakeholder(
                tenant,
                f"{role}-{len(self.clients)}",
                kind,
                site="hh1" if kind is StakeholderKind.CUSTOMER else None,
            )
            stakeholder = found.id
            if kind not in (StakeholderKind.DSO, StakeholderKind.CUSTOMER):
                # these read by contract or policy: this one reads the tenant's series
                directory.create_policy(
                    tenant,
                    grantee=found.id,
                    identifier="*",
                    read=True,
                    write=False,
                    valid_from=datetime(1970, 1, 1, tzinfo=UTC),
                    by="test",
                )
        record, secret = self.hub.tokens.create(
            tenant, role, f"{role} test", stakeholder=stakeholder
        )
        c = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
        )
        self.clients.append(c)
        return c, record.id

    def subscribe(self, client: httpx.Client, tenant: str | None = None, **body: Any) -> Any:
        body.setdefault("device", "hh1-meter")
        body.setdefault("identifier", P)
        r = client.post(f"/api/v1/tenants/{tenant or self.tenant}/subscriptions", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def send(
        self,
        *values: float,
        tenant: str | None = None,
        device: str = "hh1-meter",
        client: httpx.Client | None = None,
    ) -> None:
        """Readings one second apart, each later than every one sent before."""
        messages = []
        for v in values:
            self._clock += 1
            when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self._clock)
            messages.append(
                {
                    "hardwareId": device,
                    "type": "DeviceMeasurements",
                    "request": {"measurements": {P: v}, "eventDate": when.isoformat()},
                }
            )
        r = (client or self.admin).post(
            f"/api/v1/tenants/{tenant or self.tenant}/events", json=messages
        )
        assert r.status_code in (200, 201, 202), r.text

    def ws(self, token_client: httpx.Client, path: str = "ws") -> ClientConnection:
        auth = token_client.headers["Authorization"]
        return connect(
            f"{self.ws_base}/api/v1/tenants/{self.tenant}/subscriptions/{path}",
            additional_headers={"Authorization": auth},
            open_timeout=10,
        )

    def stop(self) -> None:
        for c in (*self.clients, self.admin):
            c.close()
        self.server.stop()
        self.hub.stop()


def add_tenant(hub: Hub, tenant: str) -> str:
    hub.registry.create_tenant(Tenant(tenant, tenant.title(), "Europe/Brussels"))
    hub.registry.register_sites([Site(tenant, "hh1", "Household 1")])
    hub.registry.register_devices([Device(tenant, "hh1-meter", "smart-meter", "hh1")])
    _record, secret = hub.tokens.create(tenant, "admin", "tenant admin")
    return secret


def start(
    data_dir: Path,
    tenant: str = "subs",
    mqtt_url: str | None = None,
    overrides: dict[str, object] | None = None,
) -> Env:
    hub = build_hub(make_settings(data_dir, mqtt_url=mqtt_url, **{**FAST, **(overrides or {})}))
    hub.ensure_admin_token()
    if hub.registry.find_tenant(tenant) is None:
        secret = add_tenant(hub, tenant)
    else:
        _record, secret = hub.tokens.create(tenant, "admin", "tenant admin")
    hub.start(mqtt=mqtt_url is not None)
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    admin = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    return Env(hub, server, admin, tenant)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = start(tmp_path)
    yield e
    e.stop()


class Receiver:
    """A real HTTP endpoint answering the scripted statuses in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None, always: int | None = None) -> None:
        self.statuses = list(statuses or [])
        self.always = always
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    if outer.always is not None:
                        status = outer.always
                    else:
                        status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.received.append((dict(self.headers), data, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 500])
    yield r
    r.close()


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(ws.recv(timeout=15)))


# -- webhooks ----------------------------------------------------------------------------------


def test_webhook_is_signed_and_retried_after_500s(env: Env, receiver: Receiver) -> None:
    client, _ = env.client("dso")
    sub = env.subscribe(
        client,
        kind="event",
        channel="webhook",
        url=receiver.url,
        condition={"op": "above", "value": 5.0},
    )
    secret = sub["webhook_secret"]
    assert secret.startswith("whsec_")
    env.send(7.0)
    wait_for(lambda: len(receiver.received) >= 3, what="three webhook attempts")
    deliveries = {h["X-Gridhub-Delivery"] for h, _b, _s in receiver.received}
    assert len(deliveries) == 1  # the same notification, retried
    assert [h["X-Gridhub-Attempt"] for h, _b, _s in receiver.received] == ["1", "2", "3"]
    for headers, data, _status in receiver.received:
        assert verify(
            secret,
            headers["X-Gridhub-Timestamp"],
            data,
            headers["X-Gridhub-Signature"],
            time.time(),
        )
        assert not verify(
            "whsec_wrong", headers["X-Gridhub-Timestamp"], data, headers["X-Gridhub-Signature"], 0
        )
        note = json.loads(data)
        assert (note["value"], note["device"], note["result"]) == (7.0, "hh1-meter", "ok")
        assert note["condition"] == {"op": "above", "value": 5.0}

    log_url = f"/api/v1/tenants/{env.tenant}/subscriptions/{sub['id']}/deliveries"

    def logged() -> list[dict[str, Any]]:
        return list(client.get(log_url).json())

    wait_for(lambda: len(logged()) == 3, what="three delivery log entries")
    assert [(d["outcome"], d["status"]) for d in logged()] == [
        ("delivered", 200),
        ("retry", 500),
        ("retry", 500),
    ]
    # a value below the threshold is not sent; the next one above is
    env.send(3.0, 8.0)
    wait_for(lambda: len(receiver.received) >= 4, what="the next notification")
    assert json.loads(receiver.received[3][1])["value"] == 8.0

    def metrics() -> str:
        return httpx.get(f"{env.server.url}/metrics").text

    wait_for(lambda: "gridhub_subscription_sends_delivered_total 2\n" in metrics(), what="metrics")
    assert "gridhub_subscription_sends_retried_total 2\n" in metrics()
    # the secret is shown once only
    assert (
        "webhook_secret" not in client.get(f"/api/v1/tenants/{env.tenant}/subscriptions").json()[0]
    )


def test_webhook_gives_up_after_max_attempts(env: Env) -> None:
    failing = Receiver(always=503)
    try:
        client, _ = env.client("dso")
        sub = env.subscribe(
            client,
            kind="event",
            channel="webhook",
            url=failing.url,
            condition={"op": "below", "value": 0.0},
        )
        env.send(-1.0)
        log_url = f"/api/v1/tenants/{env.tenant}/subscriptions/{sub['id']}/deliveries"
        wait_for(
            lambda: any(d["outcome"] == "failed" for d in client.get(log_url).json()),
            what="the final failure",
        )
        outcomes = [d["outcome"] for d in client.get(log_url).json()]
        assert outcomes == ["failed", "retry", "retry", "retry"]  # max_attempts = 4
    finally:
        failing.close()


# -- WebSocket -------------------------------------------------------------------------------


def test_websocket_gets_only_values_meeting_the_condition(env: Env) -> None:
    client, _ = env.client("retailer")
    sub = env.subscribe(
        client, kind="event", channel="websocket", condition={"op": "outside", "lo": 207, "hi": 253}
    )
    assert sub["websocket"].endswith(f"/subscriptions/{sub['id']}/ws")
    with env.ws(client) as ws, env.ws(client, f"{sub['id']}/ws") as one:
        env.send(230.0, 260.0, 230.0, 200.0)
        for conn in (ws, one):
            assert [recv_json(conn)["value"] for _ in range(2)] == [260.0, 200.0]
    stats = client.get(f"/api/v1/tenants/{env.tenant}/subscriptions/{sub['id']}").json()["stats"]
    assert stats["notified"] == 2


def test_websocket_needs_a_valid_token(env: Env) -> None:
    url = f"{env.ws_base}/api/v1/tenants/{env.tenant}/subscriptions/ws"
    for headers in ({}, {"Authorization": "Bearer gh_nope_nope"}):
        with pytest.raises(InvalidStatus) as info:
            connect(url, additional_headers=headers, open_timeout=10)
        assert info.value.response.status_code == 403
    # a browser cannot set headers: the token may come as a query parameter
    client, token_id = env.client("dso")
    secret = client.headers["Authorization"].removeprefix("Bearer ")
    with connect(f"{url}?token={secret}", open_timeout=10):
        wait_for(lambda: env.hub.subscriptions.ws.connections(token_id) == 1, what="connection")
    with pytest.raises(InvalidStatus):  # another tenant's WebSocket
        connect(url.replace(env.tenant, "elsewhere") + f"?token={secret}", open_timeout=10)


# -- MQTT ------------------------------------------------------------------------------------------


def test_mqtt_topic_per_subscription(tmp_path: Path, mosquitto_url: str) -> None:
    env = start(tmp_path, tenant=f"sm{uuid.uuid4().hex[:8]}", mqtt_url=mosquitto_url)
    got: list[dict[str, Any]] = []
    subscribed = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
    try:
        client, _ = env.client("dso")
        sub = env.subscribe(
            client,
            kind="event",
            channel="mqtt",
            condition={"op": "equal", "value": 4.2, "tolerance": 0.05},
        )
        assert sub["mqtt_topic"] == f"gridhub/{env.tenant}/subscriptions/{sub['id']}"
        listener.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
        listener.on_subscribe = lambda *_a: subscribed.set()
        listener.on_connect = lambda c, *_a: c.subscribe(sub["mqtt_topic"], qos=1)
        host, port = mosquitto_url.removeprefix("mqtt://").split(":")
        listener.connect(host, int(port))
        listener.loop_start()
        wait_for(subscribed.is_set, what="SUBACK")
        env.send(4.0, 4.24, 5.0)
        wait_for(lambda: len(got) >= 1, what="the MQTT notification")
        assert got[0]["value"] == 4.24 and got[0]["subscription"] == sub["id"]
    finally:
        listener.loop_stop()
        listener.disconnect()
        env.stop()


# -- isolation and revocation ---------------------------------------------------------------------


def test_subscriber_never_gets_another_tenants_values(env: Env) -> None:
    other_admin = add_tenant(env.hub, "neighbour")  # the same hardwareId in another tenant
    neighbour, _ = env.client("dso", tenant="neighbour")
    anything = {"op": "above", "value": -1e9}
    # no way into our tenant: neither a subscription nor a WebSocket
    r = neighbour.post(
        f"/api/v1/tenants/{env.tenant}/subscriptions",
        json={
            "kind": "event",
            "device": "hh1-meter",
            "identifier": P,
            "channel": "websocket",
            "condition": anything,
        },
    )
    assert r.status_code == 403
    with pytest.raises(InvalidStatus):
        env.ws(neighbour)
    env.subscribe(
        neighbour, tenant="neighbour", kind="event", channel="websocket", condition=anything
    )
    auth = neighbour.headers["Authorization"]
    with connect(
        f"{env.ws_base}/api/v1/tenants/neighbour/subscriptions/ws",
        additional_headers={"Authorization": auth},
    ) as ws:
        env.send(111.0)  # our tenant's value first: it must never reach the neighbour
        with httpx.Client(
            base_url=env.server.url, headers={"Authorization": f"Bearer {other_admin}"}
        ) as other:
            env.send(222.0, tenant="neighbour", client=other)
        note = recv_json(ws)
        assert (note["tenant"], note["value"]) == ("neighbour", 222.0)


def test_revoked_token_stops_deliveries(env: Env) -> None:
    client, token_id = env.client("dso")
    failing = Receiver(always=500)
    try:
        hook = env.subscribe(
            client,
            kind="event",
            channel="webhook",
            url=failing.url,
            condition={"op": "above", "value": 0},
        )
        live = env.subscribe(
            client, kind="event", channel="websocket", condition={"op": "above", "value": 0}
        )
        with env.ws(client) as ws:
            env.send(1.0)
            assert recv_json(ws)["value"] == 1.0  # delivered while the token is valid
            wait_for(lambda: len(failing.received) >= 1, what="a first webhook attempt")
            r = env.admin.delete(f"/api/v1/tenants/{env.tenant}/tokens/{token_id}")
            assert r.status_code == 200, r.text
            env.send(2.0)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=15)  # closed for the revocation: the value 2.0 never comes
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        base = f"/api/v1/tenants/{env.tenant}/subscriptions"
        wait_for(
            lambda: env.admin.get(f"{base}/{live['id']}").json()["stats"]["refused"] >= 1,
            what="the refused WebSocket notification",
        )
        # the webhook's pending retries are refused at send time, not sent
        wait_for(
            lambda: any(
                d["outcome"] == "refused"
                for d in env.admin.get(f"{base}/{hook['id']}/deliveries").json()
            ),
            what="a refused webhook retry",
        )
        log = env.admin.get(f"{base}/{hook['id']}/deliveries").json()
        sent_after = [
            d
            for d in log
            if d["outcome"] == "retry"
            and d["at"] > next(x["at"] for x in log if x["outcome"] == "refused")
        ]
        assert sent_after == []
        assert all(json.loads(b)["value"] == 1.0 for _h, b, _s in failing.received)
    finally:
        failing.close()


# -- periodic, limits, unsubscribe, restart --------------------------------------------------------


def test_periodic_average_over_aligned_windows(env: Env) -> None:
    client, _ = env.client("esco")
    sub = env.subscribe(client, kind="periodic", channel="websocket", period_s=1, function="avg")
    r = client.post(
        f"/api/v1/tenants/{env.tenant}/subscriptions",
        json={
            "kind": "periodic",
            "device": "hh1-meter",
            "identifier": P,
            "channel": "mqtt",
            "period_s": 60,
        },
    )
    assert r.status_code == 409  # one periodic subscription per subscriber and series
    now = datetime.now(UTC)
    sent = {now + timedelta(seconds=0.25 * i): float(i) for i in range(-2, 24)}
    messages = [
        {
            "hardwareId": "hh1-meter",
            "type": "DeviceMeasurements",
            "request": {"measurements": {P: v}, "eventDate": ts.isoformat()},
        }
        for ts, v in sent.items()
    ]
    with env.ws(client) as ws:
        assert (
            env.admin.post(f"/api/v1/tenants/{env.tenant}/events", json=messages).status_code < 300
        )
        while True:
            note = recv_json(ws)
            assert note["subscription"] == sub["id"] and note["function"] == "avg"
            if note["count"] > 0:
                break
    lo, hi = datetime.fromisoformat(note["from"]), datetime.fromisoformat(note["to"])
    assert hi - lo == timedelta(seconds=1) and hi.microsecond == 0
    inside = [v for ts, v in sent.items() if lo <= ts < hi]
    assert note["count"] == len(inside)
    assert note["value"] == pytest.approx(sum(inside) / len(inside))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (
            {
                "kind": "event",
                "channel": "websocket",
                "condition": {"op": "outside", "lo": 5, "hi": 1},
            },
            422,
        ),
        ({"kind": "event", "channel": "websocket"}, 422),
        ({"kind": "event", "channel": "webhook", "condition": {"op": "above", "value": 1}}, 422),
        (
            {
                "kind": "event",
                "channel": "webhook",
                "url": "ftp://x/y",
                "condition": {"op": "above", "value": 1},
            },
            422,
        ),
        ({"kind": "periodic", "channel": "mqtt", "period_s": 0.01}, 422),
        (
            {
                "kind": "periodic",
                "channel": "mqtt",
                "period_s": 10,
                "condition": {"op": "above", "value": 1},
            },
            422,
        ),
        (
            {
                "kind": "event",
                "channel": "mqtt",
                "device": "ghost",
                "condition": {"op": "above", "value": 1},
            },
            404,
        ),
        (
            {
                "kind": "event",
                "channel": "mqtt",
                "identifier": "no.such",
                "condition": {"op": "above", "value": 1},
            },
            404,
        ),
        ({"kind": "event", "channel": "pigeon", "condition": {"op": "above", "value": 1}}, 422),
    ],
)
def test_bad_subscriptions_are_refused(env: Env, body: dict[str, Any], status: int) -> None:
    client, _ = env.client("dso")
    full = {"device": "hh1-meter", "identifier": P, **body}
    r = client.post(f"/api/v1/tenants/{env.tenant}/subscriptions", json=full)
    assert r.status_code == status, r.text


def test_limits_and_device_tokens(env: Env) -> None:
    device, _ = env.client("device")
    body = {
        "kind": "event",
        "device": "hh1-meter",
        "identifier": P,
        "channel": "mqtt",
        "condition": {"op": "above", "value": 1},
    }
    assert device.post(f"/api/v1/tenants/{env.tenant}/subscriptions", json=body).status_code == 403
    client, _ = env.client("dso")
    for _ in range(5):
        env.subscribe(client, **body)
    r = client.post(f"/api/v1/tenants/{env.tenant}/subscriptions", json=body)
    assert r.status_code == 422 and "at most 5" in r.text
    other, _ = env.client("dso")  # another subscriber sees none of them
    assert other.get(f"/api/v1/tenants/{env.tenant}/subscriptions").json() == []
    assert len(env.admin.get(f"/api/v1/tenants/{env.tenant}/subscriptions").json()) == 5


def test_unsubscribe_and_restore_after_restart(tmp_path: Path) -> None:
    env = start(tmp_path)
    client, _ = env.client("dso")
    anything = {"op": "above", "value": -1e9}
    gone = env.subscribe(client, kind="event", channel="websocket", condition=anything)
    kept = env.subscribe(client, kind="event", channel="websocket", condition=anything)
    secret = client.headers["Authorization"]
    env.stop()

    env = start(tmp_path)  # a restarted hub on the same data directory
    try:
        client = httpx.Client(base_url=env.server.url, headers={"Authorization": secret})
        env.clients.append(client)
        base = f"/api/v1/tenants/{env.tenant}/subscriptions"
        assert {s["id"] for s in client.get(base).json()} == {gone["id"], kept["id"]}
        assert client.delete(f"{base}/{gone['id']}").status_code == 204
        assert client.get(f"{base}/{gone['id']}").status_code == 404
        assert client.delete(f"{base}/{gone['id']}").status_code == 404
        with env.ws(client) as ws, env.ws(client, f"{kept['id']}/ws") as only_kept:
            env.send(1.0)
            env.send(2.0)
            # in order: were the deleted one still alive, a second 1.0 would come before 2.0
            notes = [recv_json(ws) for _ in range(2)]
            assert [(n["subscription"], n["value"]) for n in notes] == [
                (kept["id"], 1.0),
                (kept["id"], 2.0),
            ]
            assert recv_json(only_kept)["value"] == 1.0
            assert client.delete(f"{base}/{kept['id']}").status_code == 204
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # 2.0 may come first; then the close
                    recv_json(only_kept)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    finally:
        env.stop()


def test_rate_limit_drops_and_counts(tmp_path: Path) -> None:
    env = start(tmp_path, overrides={"subscription_max_per_minute": 2})
    try:
        client, _ = env.client("dso")
        sub = env.subscribe(
            client, kind="event", channel="websocket", condition={"op": "above", "value": 0}
        )
        url = f"/api/v1/tenants/{env.tenant}/subscriptions/{sub['id']}"
        with env.ws(client) as ws:
            env.send(1.0, 2.0, 3.0, 4.0, 5.0)
            assert [recv_json(ws)["value"] for _ in range(2)] == [1.0, 2.0]

            def stats() -> dict[str, int]:
                return dict(client.get(url).json()["stats"])

            wait_for(lambda: stats()["notified"] + stats()["suppressed"] == 5, what="all five")
            assert (stats()["notified"], stats()["suppressed"]) == (2, 3)
    finally:
        env.stop()


def test_webhooks_to_private_addresses_are_refused_by_default(tmp_path: Path) -> None:
    env = start(tmp_path, overrides={"webhook_allow": []})
    try:
        client, _ = env.client("dso")
        r = client.post(
            f"/api/v1/tenants/{env.tenant}/subscriptions",
            json={
                "kind": "event",
                "device": "hh1-meter",
                "identifier": P,
                "channel": "webhook",
                "url": "http://127.0.0.1:9/hook",
                "condition": {"op": "above", "value": 0},
            },
        )
        assert r.status_code == 422 and "127.0.0.1 a loopback address" in r.text
    finally:
        env.stop()


def test_cli_subscribe_list_watch_delete(env: Env) -> None:
    client, token_id = env.client("dso")
    secret = client.headers["Authorization"].removeprefix("Bearer ")
    common = ("--tenant", env.tenant, "--url", env.server.url, "--token", secret)
    made = gridhub("subscribe", "event", "hh1-meter", P, "--above", "5", *common)
    assert made.returncode == 0, made.stderr
    sub_id = made.stdout.split()[0]
    assert sub_id.startswith("sub_")
    periodic = ("subscribe", "periodic", "hh1-meter", P, "--every", "15m", "--function", "avg")
    assert gridhub(*periodic, "--channel", "mqtt", *common).returncode == 0
    twice = gridhub(*periodic, "--channel", "mqtt", *common)
    assert twice.returncode == 1 and "409" in twice.stderr
    bad = gridhub("subscribe", "event", "hh1-meter", P, "--outside", "9", *common)
    assert bad.returncode != 0 and "LO:HI" in bad.stderr
    listed = gridhub("subscribe", "list", *common)
    assert listed.returncode == 0 and "2 subscriptions" in listed.stdout
    assert "every 900 s: avg" in listed.stdout

    with subprocess.Popen(
        [sys.executable, "-m", "gridhub.cli.main", "subscribe", "watch", sub_id, *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watcher:
        try:
            wait_for(lambda: env.hub.subscriptions.ws.connections(token_id) == 1, what="watch")
            env.send(4.0, 6.5)
            assert watcher.stdout is not None
            line = watcher.stdout.readline()  # one JSON line per notification
            assert json.loads(line)["value"] == 6.5
        finally:
            watcher.terminate()
            watcher.communicate(timeout=10)
    deleted = gridhub("subscribe", "delete", sub_id, *common)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert gridhub("subscribe", "delete", sub_id, *common).returncode == 1


def test_only_new_readings_fire_events(env: Env) -> None:
    """A redelivered duplicate or back-filled history does not fire an event again."""
    client, _ = env.client("dso")
    env.subscribe(client, kind="event", channel="websocket", condition={"op": "above", "value": 0})
    base = datetime(2026, 3, 1, tzinfo=UTC)

    def post(seconds: int, value: float) -> None:
        message = {
            "hardwareId": "hh1-meter",
            "type": "DeviceMeasurements",
            "request": {
                "measurements": {P: value},
                "eventDate": (base + timedelta(seconds=seconds)).isoformat(),
            },
        }
        r = env.admin.post(f"/api/v1/tenants/{env.tenant}/events", json=message)
        assert r.status_code < 300, r.text

    with env.ws(client) as ws:
        post(100, 1.0)
        post(50, 2.0)  # older than what the subscription saw: history, not news
        post(100, 1.0)  # the same reading again (a redelivery)
        post(101, 3.0)
        assert [recv_json(ws)["value"] for _ in range(2)] == [1.0, 3.0]


def test_periodic_latest_value(env: Env) -> None:
    client, _ = env.client("customer")
    sub = env.subscribe(client, kind="periodic", channel="websocket", period_s=1)
    assert sub["function"] == "latest"
    with env.ws(client) as ws:
        env.send(42.5)
        while True:
            note = recv_json(ws)
            if note["result"] == "ok":
                break
            assert note["value"] is None  # before the value arrived: no_data
        assert note["value"] == 42.5
        assert note["ts"] == (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=1)).isoformat()


def test_revocation_closes_an_idle_websocket(env: Env) -> None:
    client, token_id = env.client("aggregator")
    env.subscribe(client, kind="event", channel="websocket", condition={"op": "above", "value": 0})
    with env.ws(client) as ws:
        wait_for(lambda: env.hub.subscriptions.ws.connections(token_id) == 1, what="connection")
        assert (
            env.admin.delete(f"/api/v1/tenants/{env.tenant}/tokens/{token_id}").status_code == 200
        )
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=15)  # no value is sent at all: the connection is ended anyway
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    wait_for(lambda: env.hub.subscriptions.ws.connections(token_id) == 0, what="unregistered")
