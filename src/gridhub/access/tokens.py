"""API tokens (A1): random secrets, stored only as SHA-256 hashes, scoped to one tenant.

A token looks like ``gh_<id>_<secret>``. The id lets an operator list and revoke a token without
ever seeing its secret again; the secret has 256 bits of entropy, so a fast hash is enough (a slow
password hash protects guessable passwords, which these are not). The installation's admin token
has no tenant: it manages tenants and may read any of them.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gridhub.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from gridhub.storage.base import Catalog, TokenRecord

__all__ = ["ADMIN", "INGEST_ROLES", "TENANT_ROLES", "Principal", "TokenRecord", "TokenService"]

ADMIN = "admin"
TENANT_ROLES = (
    "admin",
    "dso",
    "retailer",
    "aggregator",
    "esco",
    "customer",
    "researcher",
    "device",
)
# Who may send measurements in over ingest: the tenant's admins and its devices (or gateways).
# The check is AccessControl.authorize_write (access/enforce.py), the one enforcement point.
INGEST_ROLES = ("admin", "device")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, tenant (None = installation admin) and role."""

    token_id: str
    tenant: str | None
    role: str
    stakeholder: str | None = None  # whose behalf it acts on (owner policies, contracts)
    service: str | None = None  # which of the stakeholder's services (owner policies)

    @property
    def is_installation_admin(self) -> bool:
        return self.tenant is None and self.role == ADMIN

    def require_tenant(self, tenant_id: str) -> None:
        """Refuse access to any tenant but the token's own."""
        if self.tenant is not None and self.tenant != tenant_id:
            raise Forbidden(f"this token is scoped to tenant {self.tenant!r}")

    def require_admin(self, tenant_id: str | None = None) -> None:
        if self.role != ADMIN:
            raise Forbidden("this needs an admin token")
        if tenant_id is None:
            if not self.is_installation_admin:
                raise Forbidden("this needs the installation's admin token")
        else:
            self.require_tenant(tenant_id)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        self._by_hash: dict[str, TokenRecord] = {t.hash: t for t in catalog.tokens()}

    def has_admin(self) -> bool:
        return any(t.tenant is None and not t.revoked for t in self._by_hash.values())

    def create(
        self,
        tenant: str | None,
        role: str,
        name: str,
        *,
        stakeholder: str | None = None,
        service: str | None = None,
        expires: datetime | None = None,
    ) -> tuple[TokenRecord, str]:
        """Create a token; return its record and the secret, which is shown only now.

        A stakeholder's token carries the stakeholder's kind as its role (the caller checks
        that the stakeholder exists); device and admin tokens need none.
        """
        if role not in TENANT_ROLES:
            raise Forbidden(f"unknown role {role!r}; one of {', '.join(TENANT_ROLES)}")
        if stakeholder is not None and tenant is None:
            raise InvalidRequest("a stakeholder's token belongs to the stakeholder's tenant")
        if service is not None and stakeholder is None:
            raise InvalidRequest("a service token needs its stakeholder")
        if expires is not None:
            if expires.tzinfo is None:
                raise InvalidRequest("expires needs a UTC offset")
            if expires <= datetime.now(UTC):
                raise InvalidRequest("expires must lie in the future")
        token_id = secrets.token_hex(6)
        secret = f"gh_{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(
            id=token_id,
            hash=_digest(secret),
            tenant=tenant,
            role=role,
            name=name,
            created=datetime.now(UTC),
            stakeholder=stakeholder,
            service=service,
            expires=expires,
        )
        with self._lock:
            self._catalog.put_token(record)
            self._by_hash[record.hash] = record
        return record, secret

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        digest = _digest(secret)
        record = self._by_hash.get(digest)
        # compare_digest keeps the final comparison constant-time; the dict lookup is on a hash
        if record is None or not hmac.compare_digest(record.hash, digest) or record.revoked:
            raise Unauthenticated("unknown or revoked token")
        if record.expires is not None and record.expires <= datetime.now(UTC):
            raise Unauthenticated("expired token")
        return Principal(record.id, record.tenant, record.role, record.stakeholder, record.service)

    def list(self, tenant: str | None = None) -> list[TokenRecord]:
        return [
            t
            for t in sorted(self._by_hash.values(), key=lambda t: t.created)
            if tenant is None or t.tenant == tenant
        ]

    def revoke_stakeholder(self, tenant: str, stakeholder: str) -> builtins.list[TokenRecord]:
        """Revoke every token of a stakeholder (when the stakeholder is disabled)."""
        return [
            self.revoke(t.id, tenant)
            for t in self.list(tenant)
            if t.stakeholder == stakeholder and not t.revoked
        ]

    def revoke(self, token_id: str, tenant: str | None = None) -> TokenRecord:
        with self._lock:
            for digest, record in self._by_hash.items():
                if record.id == token_id and (tenant is None or record.tenant == tenant):
                    revoked = replace(record, revoked=True)
                    self._catalog.put_token(revoked)
                    self._by_hash[digest] = revoked
                    return revoked
        raise NotFound(f"token {token_id!r} not found")
