"""Where webhooks may go (SSRF guard): every address a host resolves to is checked against the
defaults and the ``webhook_allow`` setting; refusals name the address and the reason. The
resolver is a table here (no DNS)."""

from __future__ import annotations

import pytest

from gridhub.services.webhook_guard import (
    WebhookGuard,
    WebhookRefused,
    WebhookUnresolved,
    parse_allow,
)

DNS = {
    "public.example": ["93.184.216.34"],
    "mixed.example": ["93.184.216.34", "10.0.0.7"],  # one private answer is enough to refuse
    "local.example": ["127.0.0.1"],
    "meta.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise WebhookUnresolved(f"webhook host {host!r} does not resolve")
    return DNS[host]


def guard(*allow: str) -> WebhookGuard:
    return WebhookGuard(allow, resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://local.example/hook", "resolves to 127.0.0.1, a loopback"),
        ("http://mapped.example/hook", "resolves to 127.0.0.1, a loopback"),  # IPv4-mapped
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://meta.example/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.1.20/hook", "private"),
        ("https://172.20.0.5/hook", "private"),
        ("https://[fd12::5]/hook", "private"),
        ("https://mixed.example/hook", "resolves to 10.0.0.7, a private"),
        ("http://100.64.0.9/", "not a globally routable"),
        ("http://0.0.0.0/", "not a unicast"),
        ("http://224.0.0.1/", "not a unicast"),
    ],
)
def test_the_hubs_own_network_is_refused_by_default(url: str, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        guard().check(url)


def test_public_addresses_pass_and_are_pinned() -> None:
    assert guard().check("https://public.example/hook").address == "93.184.216.34"
    assert (
        guard().check("https://v6.example:8443/x").address == "2606:2800:220:1:248:1893:25c8:1946"
    )
    assert guard().check("http://93.184.216.34/hook").address == "93.184.216.34"


def test_the_setting_opens_networks_and_hosts_but_metadata_only_exactly() -> None:
    private = guard("10.0.0.0/8", "127.0.0.1")
    assert private.check("https://10.1.2.3/hook").address == "10.1.2.3"
    assert private.check("https://mixed.example/hook").address == "93.184.216.34"
    assert private.check("http://local.example:9/hook").address == "127.0.0.1"
    with pytest.raises(WebhookRefused, match="private"):
        private.check("https://192.168.1.20/hook")  # only the networks named
    with pytest.raises(WebhookRefused, match="loopback"):
        private.check("http://127.0.0.2/")
    # a link-local network does not open the metadata address; naming it exactly does
    with pytest.raises(WebhookRefused, match="cloud metadata"):
        guard("169.254.0.0/16").check("http://169.254.169.254/")
    assert guard("169.254.169.254").check("http://169.254.169.254/").address == "169.254.169.254"
    # a host name entry is trusted by name (not resolved, connected to as usual)
    named = guard("Platform.Internal")
    checked = named.check("https://platform.internal/hook")
    assert checked.address is None and checked.host == "platform.internal"


def test_unresolvable_malformed_and_credentialed_urls() -> None:
    with pytest.raises(WebhookUnresolved, match="does not resolve"):
        guard().check("https://nowhere.example/hook")
    with pytest.raises(WebhookRefused, match="http"):
        guard().check("ftp://public.example/")
    with pytest.raises(WebhookRefused, match="credentials"):
        guard().check("https://user:pw@public.example/")


def test_setting_entries_are_checked() -> None:
    networks, hosts = parse_allow(["10.0.0.0/8", "127.0.0.1", "::1", "hooks.example."])
    assert [str(n) for n in networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert hosts == {"hooks.example"}
    with pytest.raises(ValueError, match="neither a network nor a host"):
        parse_allow(["10.0.0.0/33"])
