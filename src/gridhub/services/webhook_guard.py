"""Where the hub's webhooks may go: a guard against server-side request forgery (SSRF).

Market retailer platforms and subscribers choose the URLs the hub POSTs to. Unchecked, such a
URL makes the hub call into its own network: its loopback services, the cloud provider's
metadata endpoint (credentials), a private admin interface. So every webhook URL is checked
when it is registered (a refusal is a 422 naming the address and why) and again at every send,
after resolving the host name anew — and the request then goes to exactly the address that was
checked (the URL's host is replaced by it; ``Host`` and TLS SNI keep the name, so certificates
are verified against the name). A host whose DNS answer changes between the check and the
connection (DNS rebinding) cannot slip through: there is no second lookup.

The rule for each address the host resolves to:

1. the **cloud metadata** addresses (``METADATA``) are refused unless the setting names that
   exact address — a broad allowed network never opens them;
2. an address inside a network of the ``webhook_allow`` setting is allowed (e.g.
   ``127.0.0.0/8`` for a receiver on the same host, ``10.0.0.0/8`` for platforms on the
   operator's private network), and so is any address of a host *name* the setting lists;
3. otherwise only globally routable addresses are allowed: loopback, link-local
   (169.254.0.0/16, fe80::/10), private (RFC 1918, fc00::/7), shared (100.64.0.0/10),
   unspecified, multicast and reserved addresses are refused.

A host that does not resolve is refused at registration; at send time it is a transient error
(retried), not a refusal.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from gridhub.errors import InvalidRequest

__all__ = [
    "METADATA",
    "WebhookGuard",
    "WebhookRefused",
    "WebhookUnresolved",
    "parse_allow",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# instance metadata and platform endpoints of the big clouds (credentials live behind them)
METADATA: frozenset[Address] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer
    )
)


class WebhookRefused(InvalidRequest):
    """The URL's host is (or resolves to) an address webhooks may not go to."""


class WebhookUnresolved(InvalidRequest):
    """The URL's host does not resolve (refused at registration; retried at send time)."""


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise WebhookUnresolved(f"webhook host {host[:253]!r} does not resolve: {exc}") from exc
    return [str(info[4][0]) for info in infos]


def parse_allow(entries: Sequence[str]) -> tuple[tuple[Network, ...], frozenset[str]]:
    """The ``webhook_allow`` setting: networks (``10.0.0.0/8``, an address) and host names."""
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in entries:
        text = entry.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            if not text or "/" in text or " " in text:
                raise ValueError(
                    f"webhook_allow: {entry!r} is neither a network nor a host"
                ) from None
            hosts.add(text.lower().rstrip("."))
    return tuple(networks), frozenset(hosts)


def _why_not(address: Address) -> str | None:
    """Why an address is refused by default (None: it is globally routable)."""
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "not a unicast address"
    if address.is_private:
        return "a private address (RFC 1918 / unique local)"
    if not address.is_global:
        return "not a globally routable address"
    return None


@dataclass(frozen=True, slots=True)
class Checked:
    """A webhook URL after the check: where to connect (None: a listed host name, connected to
    as usual) and the name to keep in ``Host`` and SNI."""

    url: str
    host: str
    address: str | None


class WebhookGuard:
    """Checks webhook URLs against the ``webhook_allow`` setting; sends to the checked address."""

    def __init__(self, allow: Sequence[str] = (), resolve: Resolver | None = None) -> None:
        self.networks, self.hosts = parse_allow(allow)
        self._resolver = resolve  # None: the system's resolver, looked up at each call

    def check(self, url: str) -> Checked:
        """Resolve the URL's host and check every address (:class:`WebhookRefused` with the
        address and the reason; :class:`WebhookUnresolved` when it does not resolve)."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise WebhookRefused("a webhook url must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise WebhookRefused("a webhook url may not carry credentials")
        if host.rstrip(".") in self.hosts:
            return Checked(url, host, None)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        resolve = self._resolver or _resolve
        found = [str(literal)] if literal is not None else resolve(host, port)
        addresses = list(dict.fromkeys(_unmapped(ipaddress.ip_address(a.split("%")[0]))
                                       for a in found))  # fmt: skip
        if not addresses:
            raise WebhookUnresolved(f"webhook host {host[:253]!r} resolves to no address")
        for address in addresses:
            problem = self._problem(address)
            if problem is not None:
                shown = host if literal is not None else f"{host[:253]!r} resolves to {address},"
                raise WebhookRefused(
                    f"webhook refused: {shown} {problem}; the hub sends webhooks only to public "
                    "addresses and to the networks and hosts of its webhook_allow setting"
                )
        return Checked(url, host, str(addresses[0]))

    def _problem(self, address: Address) -> str | None:
        if address in METADATA:  # only an exact entry opens a metadata address
            exact = ipaddress.ip_network(address)
            return None if exact in self.networks else "a cloud metadata address"
        if any(address in network for network in self.networks):
            return None
        return _why_not(address)

    def post(
        self, client: httpx.Client, url: str, content: bytes, headers: Mapping[str, str]
    ) -> httpx.Response:
        """Check ``url`` now and POST to the address just checked (never a second lookup).

        Raises :class:`WebhookRefused`, :class:`WebhookUnresolved`, or httpx's errors."""
        checked = self.check(url)
        if checked.address is None:
            return client.post(url, content=content, headers=dict(headers))
        parts = urlsplit(url)
        ip = ipaddress.ip_address(checked.address)
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        netloc = literal if parts.port is None else f"{literal}:{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        extensions = {"sni_hostname": checked.host} if parts.scheme == "https" else {}
        return client.post(
            pinned,
            content=content,
            headers={**headers, "Host": parts.netloc},  # as given: brackets and port kept
            extensions=extensions,
        )


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) judged as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
