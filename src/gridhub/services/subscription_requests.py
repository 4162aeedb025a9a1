"""What a subscription request may ask for: limits, and the checks of a new subscription."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gridhub.config import Settings
from gridhub.domain.subscriptions import Channel, Condition, Kind, PeriodicFunction
from gridhub.errors import InvalidRequest
from gridhub.services.subscription_delivery import SenderConfig
from gridhub.services.webhook_guard import WebhookGuard

__all__ = [
    "MAX_PERIOD_S",
    "NewSubscription",
    "SubscriptionConfig",
    "check_channel",
    "check_kind",
    "subscription_config",
]

MAX_PERIOD_S = 86_400.0
MAX_URL = 2048


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    max_per_tenant: int = 1000
    max_per_token: int = 100
    min_period_s: float = 1.0
    max_per_minute: int = 600
    sender: SenderConfig = SenderConfig()


def subscription_config(settings: Settings) -> SubscriptionConfig:
    return SubscriptionConfig(
        max_per_tenant=settings.subscription_max_per_tenant,
        max_per_token=settings.subscription_max_per_token,
        min_period_s=settings.subscription_min_period_s,
        max_per_minute=settings.subscription_max_per_minute,
        sender=SenderConfig(
            max_pending=settings.subscription_max_pending,
            retry_s=settings.subscription_retry_s,
            retry_max_s=settings.subscription_retry_max_s,
            max_attempts=settings.subscription_max_attempts,
            webhook_timeout_s=settings.subscription_webhook_timeout_s,
            guard=WebhookGuard(settings.webhook_allow),
        ),
    )


@dataclass(frozen=True, slots=True)
class NewSubscription:
    kind: Kind
    device: str
    identifier: str
    channel: Channel
    condition: Condition | None = None
    period_s: float | None = None
    function: PeriodicFunction | None = None
    webhook_url: str | None = None


def check_kind(new: NewSubscription, config: SubscriptionConfig) -> None:
    """An event has a condition and no period; a periodic one a period within the limits."""
    if new.kind is Kind.EVENT:
        if new.condition is None:
            raise InvalidRequest("an event subscription needs a condition")
        if new.period_s is not None or new.function is not None:
            raise InvalidRequest("period_s and function are for periodic subscriptions")
        return
    if new.condition is not None:
        raise InvalidRequest("a periodic subscription takes no condition")
    period = new.period_s
    if period is None or not config.min_period_s <= period <= MAX_PERIOD_S:
        raise InvalidRequest(
            f"a periodic subscription needs period_s in {config.min_period_s:g}..{MAX_PERIOD_S:g}"
        )


def check_channel(new: NewSubscription, guard: WebhookGuard) -> str | None:
    """The webhook url (None for other channels): http(s), a host, no credentials, and an
    address the guard lets webhooks go to (not the hub's own network, unless allowed)."""
    if new.channel is not Channel.WEBHOOK:
        if new.webhook_url is not None:
            raise InvalidRequest("url is for the webhook channel only")
        return None
    url = new.webhook_url
    if not url:
        raise InvalidRequest("a webhook subscription needs a url")
    if len(url) > MAX_URL:
        raise InvalidRequest(f"the webhook url is longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("the webhook url must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise InvalidRequest("the webhook url may not carry credentials")
    guard.check(url)  # 422 naming the address and why
    return url
