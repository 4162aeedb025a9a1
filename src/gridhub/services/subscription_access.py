"""The policy check of subscriptions: the one seam to the owner-policy enforcement point.

Every notification is checked with the subscriber's *current* rights: the token that made the
subscription is looked up again (:func:`principal_of`: revoked or expired gives None), then
:func:`may_read` decides for the value's time. ``may_read`` is the seam: the enforcement point
(``AccessControl.may_read``) has the same signature and is passed in its place in ``hub.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gridhub.access.tokens import TENANT_ROLES, Principal, TokenService
from gridhub.domain.subscriptions import Subscription
from gridhub.errors import Forbidden
from gridhub.storage.base import TokenRecord

__all__ = ["READ_ROLES", "MayRead", "NotifyHook", "TokenView", "may_read", "principal_of"]

MayRead = Callable[[Principal, str, str, str, datetime], bool]
NotifyHook = Callable[[Subscription, Principal, dict[str, Any]], None]
READ_ROLES = frozenset(TENANT_ROLES) - {"device"}


def may_read(principal: Principal, tenant: str, device: str, identifier: str, ts: datetime) -> bool:
    """THE SEAM: may ``principal`` receive the value of (device, identifier) at ``ts``?

    Today: the token's tenant and a reading role (every role but ``device``). The owner-policy
    enforcement point (``AccessControl.may_read``, issue #4 item A3/A4) has this signature and
    replaces this function by passing ``may_read=hub.access.may_read`` in ``hub.py``.
    """
    try:
        principal.require_tenant(tenant)
    except Forbidden:
        return False
    return principal.role in READ_ROLES


_PRINCIPAL_FIELDS = tuple(f.name for f in dataclasses.fields(Principal))


def principal_of(record: TokenRecord, now: datetime) -> Principal | None:
    """The principal a stored token stands for now; None once revoked or expired.

    Built field by field from the record (``token_id`` from ``id``), so whatever a
    :class:`Principal` carries (stakeholder, service) comes along."""
    if record.revoked:
        return None
    expires = getattr(record, "expires", None)
    if expires is not None and expires <= now:
        return None
    values: dict[str, Any] = {
        name: getattr(record, "id" if name == "token_id" else name) for name in _PRINCIPAL_FIELDS
    }
    return Principal(**values)


class TokenView:
    """The tokens as listed once: one evaluation round looks each subscriber up in the same
    listing instead of listing every token per notification."""

    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens
        self._by_id: dict[str, TokenRecord] | None = None

    def get(self, token_id: str) -> TokenRecord | None:
        if self._by_id is None:
            self._by_id = {r.id: r for r in self._tokens.list()}
        return self._by_id.get(token_id)
