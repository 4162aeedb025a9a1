"""The SSRF guard on real sockets: a webhook goes to exactly the address that was checked (no
second DNS lookup a rebinding answer could change), and the market hub refuses a platform in
the hub's own network at registration (422) and at send time (the delivery fails, nothing is
sent) — the host names resolve through a table swapped in for the system resolver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gridhub.cli.server import ApiServer
from gridhub.domain.access import Kind
from gridhub.domain.registry import Site, Tenant
from gridhub.domain.subscriptions import Channel, Subscription
from gridhub.domain.subscriptions import Kind as SubKind
from gridhub.hub import build_hub
from gridhub.services import webhook_guard
from gridhub.services.subscription_delivery import Note, Sender, SenderConfig
from gridhub.services.webhook_guard import WebhookGuard, WebhookRefused
from gridhub.sim.market_rp import RetailerPlatform
from gridhub.storage.duckdb_store import DuckDBDatabase
from gridhub.storage.subscriptions_store import SubscriptionStore
from helpers import make_settings, wait_for

pytestmark = pytest.mark.integration


class Receiver:
    """A local HTTP server that records the Host header of every POST."""

    def __init__(self) -> None:
        hosts: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                hosts.append(self.headers["Host"])
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.hosts = hosts
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def test_a_rebinding_answer_cannot_redirect_a_checked_webhook(receiver: Receiver) -> None:
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])  # the second lookup rebinds
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    guard = WebhookGuard(["127.0.0.1"], resolve)
    url = f"http://hooks.example:{receiver.port}/hook"
    with httpx.Client() as client:
        sent = guard.post(client, url, b"{}", {"Content-Type": "application/json"})
        assert sent.status_code == 204
        # one lookup, the connection to its answer; the name stays in the Host header
        assert lookups == ["hooks.example"]
        assert receiver.hosts == [f"hooks.example:{receiver.port}"]
        with pytest.raises(WebhookRefused, match="169.254.169.254, a cloud metadata address"):
            guard.post(client, url, b"{}", {})
    assert len(receiver.hosts) == 1  # the refused one never left


def test_market_platforms_in_the_hubs_own_network_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dns = {"platform.example": ["127.0.0.1"]}
    monkeypatch.setattr(webhook_guard, "_resolve", lambda host, port: list(dns[host]))
    hub = build_hub(make_settings(tmp_path, webhook_allow=["127.0.0.1"]))
    hub.ensure_admin_token()
    hub.start(mqtt=False)
    hub.registry.create_tenant(Tenant("ssrf", "SSRF", "UTC"))
    hub.registry.register_sites([Site("ssrf", "s1")])
    d = hub.access.directory
    d.create_stakeholders(
        "ssrf", [("acme", Kind.RETAILER, "", None), ("alice", Kind.CUSTOMER, "", "s1")]
    )
    d.create_contract("ssrf", "alice", "acme", datetime.now(UTC) - timedelta(days=1))
    admin = hub.tokens.create("ssrf", "admin", "admin")[1]
    dso = hub.tokens.create("ssrf", "dso", "dso")[1]
    platform = RetailerPlatform("acme", delay=(0.0, 0.001))
    port = int(platform.start().rsplit(":", 1)[1].split("/")[0])
    server = ApiServer(hub, "127.0.0.1", 0)
    server.start()
    market = "/api/v1/tenants/ssrf/market"
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
            for url, reason in (
                ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
                ("http://10.0.0.5/hook", "private"),
                (f"http://127.0.0.2:{port}/hook", "loopback"),
                ("http://[::1]/hook", "loopback"),
            ):
                refused = c.put(f"{market}/retailers/acme", json={"webhook_url": url})
                assert refused.status_code == 422, url
                assert reason in refused.json()["detail"], refused.text
            record = c.put(
                f"{market}/retailers/acme",
                json={"webhook_url": f"http://platform.example:{port}/hook"},
            )
            assert record.status_code == 200, record.text
            platform.secret = record.json()["webhook_secret"]
        # the platform's name now points at the metadata endpoint: the notice is not sent
        dns["platform.example"] = ["169.254.169.254"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {dso}"}) as c:
            made = c.post(
                f"{market}/emergencies",
                json={
                    "area": {"sites": ["s1"]},
                    "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                },
                headers={"Idempotency-Key": "e1"},
            )
            assert made.status_code == 201, made.text
            url = f"{market}/requests/{made.json()['id']}"
            wait_for(lambda: c.get(url).json()["status"] != "open", what="the request to end")
            (delivery,) = c.get(url).json()["deliveries"]
            assert delivery["status"] == "failed" and delivery["attempts"] == 1
            assert "cloud metadata" in delivery["last_error"]
        assert platform.events() == []
    finally:
        server.stop()
        hub.stop()
        platform.stop()


def test_subscription_webhooks_are_checked_again_at_send_time(receiver: Receiver) -> None:
    """The subscriptions' sender uses the same guard: a subscriber's host that rebinds to the
    metadata endpoint after the subscription was made gets nothing (outcome ``refused``)."""
    dns = {"subscriber.example": ["127.0.0.1"]}
    guard = WebhookGuard(["127.0.0.1"], lambda host, port: list(dns[host]))
    sender = Sender(
        SubscriptionStore(DuckDBDatabase(":memory:")),
        lambda _sub, _at: True,
        lambda _id: True,
        SenderConfig(guard=guard),
    )
    sub = Subscription(
        "sub_1", "t", "tok", SubKind.EVENT, "m1", "x", Channel.WEBHOOK, 0.0,
        webhook_url=f"http://subscriber.example:{receiver.port}/hook", webhook_secret="s",
    )  # fmt: skip
    note = Note("d1", datetime.now(UTC), b"{}")
    sender.start(None)
    try:
        assert sender._post(sub, note, 1)[0] == "delivered"
        assert receiver.hosts == [f"subscriber.example:{receiver.port}"]
        dns["subscriber.example"] = ["169.254.169.254"]
        outcome, status, detail = sender._post(sub, note, 2)
        assert (outcome, status) == ("refused", None) and "cloud metadata" in detail
        assert len(receiver.hosts) == 1
    finally:
        sender.stop()
