"""The access directory: stakeholders, contracts and owner policies, in memory over a catalog.

Like the registry, every access check reads from memory (no database round trip per read); this
process is the catalog's only writer, so the cache stays exact. Lists are replaced, never
mutated, so a reader on another thread always sees a consistent list without taking the lock.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gridhub.domain.access import (
    ANY,
    SUPPLIER_KINDS,
    Contract,
    Kind,
    PolicyVersion,
    Stakeholder,
    check_glob,
    check_name,
    to_us,
)
from gridhub.errors import Conflict, InvalidRequest, NotFound
from gridhub.storage.access_catalog import AccessCatalog
from gridhub.storage.registry import Registry

__all__ = ["Directory"]

MAX_STAKEHOLDERS = 100_000  # per tenant
MAX_CONTRACTS = 1_000_000  # per tenant
MAX_POLICIES = 10_000  # per tenant
MAX_VERSIONS = 1_000  # per policy
MAX_DELAY_S = 366 * 86_400.0
# an owner (not the tenant admin) may not back-date a policy: older values keep theirs (A3)
OWNER_BACKDATE = timedelta(minutes=1)


def _now() -> datetime:
    return datetime.now(UTC)


class Directory:
    def __init__(self, catalog: AccessCatalog, registry: Registry) -> None:
        self._catalog = catalog
        self._registry = registry
        self._lock = threading.RLock()
        self._stakeholders: dict[str, dict[str, Stakeholder]] = {}
        self._contracts: dict[str, dict[str, Contract]] = {}
        # tenant -> supplier id -> its contracts
        self._by_supplier: dict[str, dict[str, list[Contract]]] = {}
        # tenant -> (supplier id, customer's site) -> contracts: what a read check looks up
        self._by_supplier_site: dict[str, dict[tuple[str, str], list[Contract]]] = {}
        # tenant -> customer id -> its contracts: what the overlap check and a switch look at
        self._by_customer: dict[str, dict[str, list[Contract]]] = {}
        # tenant -> sites that belong to a customer
        self._customer_sites: dict[str, frozenset[str]] = {}
        # tenant -> policy id -> versions (ascending)
        self._policies: dict[str, dict[str, list[PolicyVersion]]] = {}
        # tenant -> "grantee\0site" -> version lists of the policies the grantee holds there
        self._by_grantee: dict[str, dict[str, list[list[PolicyVersion]]]] = {}
        for s in catalog.stakeholders():
            self._stakeholders.setdefault(s.tenant, {})[s.id] = s
        for tenant in self._stakeholders:
            self._index_sites(tenant)
        self._index_contracts(catalog.contracts())
        for p in catalog.policies():
            versions = self._policies.setdefault(p.tenant, {}).setdefault(p.id, [])
            versions.append(p)
        for tenant, policies in self._policies.items():
            for versions in policies.values():
                self._index_policy(tenant, versions)

    # -- stakeholders ---------------------------------------------------------------------------

    def create_stakeholder(
        self, tenant: str, stakeholder_id: str, kind: Kind, name: str = "", site: str | None = None
    ) -> Stakeholder:
        return self.create_stakeholders(tenant, [(stakeholder_id, kind, name, site)])[0]

    def create_stakeholders(
        self, tenant: str, items: Sequence[tuple[str, Kind, str, str | None]]
    ) -> list[Stakeholder]:
        """Add stakeholders, each ``(id, kind, name, site)``: all or none, one transaction.

        In bulk so that onboarding a pilot's thousands of customers is one write and one
        re-index, not one per customer."""
        self._registry.tenant(tenant)
        sites = {s.id for s in self._registry.sites(tenant)} if items else set()
        now = _now()
        new: dict[str, Stakeholder] = {}
        for stakeholder_id, kind, name, site in items:
            check_name("stakeholder id", stakeholder_id)
            if len(name) > 200:
                raise InvalidRequest("stakeholder name: at most 200 characters")
            if kind is Kind.CUSTOMER:
                if site is None:
                    raise InvalidRequest("a customer is tied to a site: give its site")
                if site not in sites:
                    raise NotFound(f"site {site[:128]!r} not found in tenant {tenant!r}")
            elif site is not None:
                raise InvalidRequest(f"only a customer has a site, not a {kind.value}")
            if stakeholder_id in new:
                raise Conflict(f"stakeholder {stakeholder_id!r} given twice")
            new[stakeholder_id] = Stakeholder(tenant, stakeholder_id, kind, name, site, now)
        with self._lock:
            known = self._stakeholders.setdefault(tenant, {})
            for stakeholder_id in new:
                if stakeholder_id in known:
                    raise Conflict(f"stakeholder {stakeholder_id!r} exists in tenant {tenant!r}")
            if len(known) + len(new) > MAX_STAKEHOLDERS:
                raise InvalidRequest(f"at most {MAX_STAKEHOLDERS} stakeholders per tenant")
            self._catalog.add_stakeholders(list(new.values()))
            self._stakeholders[tenant] = {**known, **new}
            self._index_sites(tenant)
            return list(new.values())

    def find_stakeholder(self, tenant: str, stakeholder_id: str) -> Stakeholder | None:
        return self._stakeholders.get(tenant, {}).get(stakeholder_id)

    def stakeholder(self, tenant: str, stakeholder_id: str) -> Stakeholder:
        found = self.find_stakeholder(tenant, stakeholder_id)
        if found is None:
            raise NotFound(f"stakeholder {stakeholder_id!r} not found in tenant {tenant!r}")
        return found

    def stakeholders(self, tenant: str, kind: Kind | None = None) -> list[Stakeholder]:
        self._registry.tenant(tenant)
        return sorted(
            (s for s in self._stakeholders.get(tenant, {}).values() if kind in (None, s.kind)),
            key=lambda s: s.id,
        )

    def disable_stakeholder(self, tenant: str, stakeholder_id: str) -> Stakeholder:
        """Disable a stakeholder: its tokens stop working (the caller revokes them too)."""
        with self._lock:
            disabled = replace(self.stakeholder(tenant, stakeholder_id), disabled=True)
            self._catalog.put_stakeholder(disabled)
            self._stakeholders[tenant] = {**self._stakeholders[tenant], stakeholder_id: disabled}
            return disabled

    def customer_sites(self, tenant: str) -> frozenset[str]:
        """Sites that belong to a customer (a DSO reads every identifier of the others)."""
        return self._customer_sites.get(tenant, frozenset())

    def _index_sites(self, tenant: str) -> None:
        self._customer_sites[tenant] = frozenset(
            s.site
            for s in self._stakeholders.get(tenant, {}).values()
            if s.kind is Kind.CUSTOMER and s.site is not None
        )

    # -- contracts ------------------------------------------------------------------------------

    def _index_contract(self, contract: Contract) -> None:
        self._index_contracts([contract])

    def _index_contracts(self, contracts: Sequence[Contract]) -> None:
        """Put new or changed contracts into every index. Each touched list is rebuilt once
        (a bulk import of 10,000 contracts of one retailer must not copy its list each time),
        and replaced, never mutated, so a reader on another thread sees a consistent list."""
        pending: dict[tuple[str, str, Any], dict[str, Contract]] = {}

        def entries(t: str, index: str, key: Any) -> dict[str, Contract]:
            found = pending.get((t, index, key))
            if found is None:
                found = {c.id: c for c in self._index(t, index).get(key, [])}
                pending[(t, index, key)] = found
            return found

        for contract in contracts:
            t = contract.tenant
            known = self._contracts.setdefault(t, {})
            previous = known.get(contract.id)
            known[contract.id] = contract
            customer = self._stakeholders.get(t, {}).get(contract.customer)
            site = customer.site if customer is not None else None
            if previous is not None and previous.supplier != contract.supplier:
                entries(t, "supplier", previous.supplier).pop(contract.id, None)
                if site is not None:
                    entries(t, "site", (previous.supplier, site)).pop(contract.id, None)
            entries(t, "supplier", contract.supplier)[contract.id] = contract
            entries(t, "customer", contract.customer)[contract.id] = contract
            if site is not None:
                entries(t, "site", (contract.supplier, site))[contract.id] = contract
        for (t, index, key), found in pending.items():
            self._index(t, index)[key] = sorted(found.values(), key=lambda c: c.start)

    def _index(self, tenant: str, index: str) -> dict[Any, list[Contract]]:
        by: dict[str, Any] = {
            "supplier": self._by_supplier,
            "customer": self._by_customer,
            "site": self._by_supplier_site,
        }
        found: dict[Any, list[Contract]] = by[index].setdefault(tenant, {})
        return found

    def contracts_of(self, tenant: str, supplier: str) -> list[Contract]:
        return self._by_supplier.get(tenant, {}).get(supplier, [])

    def contracts_at(self, tenant: str, supplier: str, site: str) -> list[Contract]:
        """A supplier's contracts with the customer of ``site`` (the read check's lookup)."""
        return self._by_supplier_site.get(tenant, {}).get((supplier, site), [])

    def contracts(
        self, tenant: str, customer: str | None = None, supplier: str | None = None
    ) -> list[Contract]:
        self._registry.tenant(tenant)
        return sorted(
            (
                c
                for c in self._contracts.get(tenant, {}).values()
                if customer in (None, c.customer) and supplier in (None, c.supplier)
            ),
            key=lambda c: (c.start, c.id),
        )

    def contract(self, tenant: str, contract_id: str) -> Contract:
        found = self._contracts.get(tenant, {}).get(contract_id)
        if found is None:
            raise NotFound(f"contract {contract_id!r} not found in tenant {tenant!r}")
        return found

    def _check_contract(
        self,
        contract: Contract,
        replacing: tuple[str, ...] = (),
        staged: Sequence[Contract] = (),
    ) -> None:
        """Refuse a contract that is malformed or overlaps another of the customer's contracts
        with a supplier of the same kind (those in ``replacing`` left out; ``staged``: the
        customer's contracts of the same batch, not yet indexed)."""
        t = contract.tenant
        customer = self.stakeholder(t, contract.customer)
        supplier = self.stakeholder(t, contract.supplier)
        if customer.kind is not Kind.CUSTOMER:
            raise InvalidRequest(f"{customer.id!r} is a {customer.kind.value}, not a customer")
        if supplier.kind not in SUPPLIER_KINDS:
            kinds = ", ".join(k.value for k in SUPPLIER_KINDS)
            raise InvalidRequest(f"{supplier.id!r} is a {supplier.kind.value}, not one of {kinds}")
        if contract.start.tzinfo is None or (
            contract.end is not None and contract.end.tzinfo is None
        ):
            raise InvalidRequest("contract times need a UTC offset")
        if contract.end is not None and contract.end <= contract.start:
            raise InvalidRequest("a contract must end after it starts")
        lo, hi = contract.window()
        # a customer has one supplier of each kind at a time (one retailer, one aggregator, …)
        mine = self._by_customer.get(t, {}).get(contract.customer, [])
        for other in [*mine, *staged]:
            if other.id in replacing or other.id == contract.id:
                continue
            if self.stakeholder(t, other.supplier).kind is not supplier.kind:
                continue
            o_lo, o_hi = other.window()
            if o_lo < hi and lo < o_hi:
                raise Conflict(
                    f"customer {customer.id!r} already has {supplier.kind.value} contract "
                    f"{other.id!r} over that time; end it or switch supplier"
                )

    def create_contract(
        self,
        tenant: str,
        customer: str,
        supplier: str,
        start: datetime,
        end: datetime | None = None,
        contract_id: str | None = None,
    ) -> Contract:
        return self.create_contracts(tenant, [(customer, supplier, start, end, contract_id)])[0]

    def create_contracts(
        self,
        tenant: str,
        items: Sequence[tuple[str, str, datetime, datetime | None, str | None]],
    ) -> list[Contract]:
        """Add contracts, each ``(customer, supplier, start, end, id)``: all or none, checked
        against the existing ones and each other, written in one transaction."""
        self._registry.tenant(tenant)
        with self._lock:
            known = self._contracts.get(tenant, {})
            if len(known) + len(items) > MAX_CONTRACTS:
                raise InvalidRequest(f"at most {MAX_CONTRACTS} contracts per tenant")
            now = _now()
            staged: dict[str, Contract] = {}
            by_customer: dict[str, list[Contract]] = {}
            for customer, supplier, start, end, contract_id in items:
                cid = check_name("contract id", contract_id or f"c-{secrets.token_hex(6)}")
                if cid in known or cid in staged:
                    raise Conflict(f"contract {cid!r} exists")
                contract = Contract(tenant, cid, customer, supplier, start, end, now)
                self._check_contract(contract, staged=by_customer.get(customer, ()))
                staged[cid] = contract
                by_customer.setdefault(customer, []).append(contract)
            made = list(staged.values())
            self._catalog.add_contracts(made)
            self._index_contracts(made)
            return made

    def end_contract(self, tenant: str, contract_id: str, at: datetime) -> Contract:
        """End a contract at ``at`` (earlier than its current end, after its start)."""
        with self._lock:
            contract = self.contract(tenant, contract_id)
            if at.tzinfo is None:
                raise InvalidRequest("the end needs a UTC offset")
            if at <= contract.start or (contract.end is not None and at > contract.end):
                raise InvalidRequest(
                    f"contract {contract_id!r} runs from {contract.start.isoformat()}"
                    f" to {contract.end.isoformat() if contract.end else 'open end'}: "
                    "it can only be ended inside that period"
                )
            ended = replace(contract, end=at)
            self._catalog.put_contracts([ended])
            self._index_contract(ended)
            return ended

    def switch_supplier(
        self,
        tenant: str,
        customer: str,
        supplier: str,
        at: datetime,
        contract_id: str | None = None,
    ) -> tuple[Contract | None, Contract]:
        """A supplier switch at ``at``: the running contract of the same kind ends at ``at`` and
        a new open-ended one starts then, both in one transaction. The old supplier keeps its
        access to the values inside its own contract period, and gets none after ``at``."""
        self._registry.tenant(tenant)
        new_kind = self.stakeholder(tenant, supplier).kind
        contract_id = check_name("contract id", contract_id or f"c-{secrets.token_hex(6)}")
        with self._lock:
            if contract_id in self._contracts.get(tenant, {}):
                raise Conflict(f"contract {contract_id!r} exists")
            old: Contract | None = None
            instant = to_us(at)
            for c in self._by_customer.get(tenant, {}).get(customer, []):
                lo, hi = c.window()
                if lo <= instant < hi and self.stakeholder(tenant, c.supplier).kind is new_kind:
                    old = c
            if old is not None and old.supplier == supplier:
                raise Conflict(f"{customer!r} is already supplied by {supplier!r} at that time")
            ended = replace(old, end=at) if old is not None and old.start < at else None
            new = Contract(tenant, contract_id, customer, supplier, at, None, _now())
            replacing = (old.id,) if old is not None else ()
            self._check_contract(new, replacing)
            if old is not None and ended is None:
                raise InvalidRequest("the switch must come after the current contract's start")
            self._catalog.put_contracts([*([ended] if ended else []), new])
            self._index_contracts([*([ended] if ended else []), new])
            return ended, new

    # -- owner policies -------------------------------------------------------------------------

    def _index_policy(self, tenant: str, versions: list[PolicyVersion]) -> None:
        """Index by (grantee, site): a read check looks at its site's policies and the
        site-less ones only, however many policies the tenant has."""
        by_grantee = self._by_grantee.setdefault(tenant, {})
        first = versions[0]
        # a device-only policy is filed under no site: a device may move to another site
        key = f"{first.grantee}\x00{first.site or ''}"
        by_grantee[key] = [v for v in by_grantee.get(key, []) if v[0].id != first.id] + [versions]

    def policies_for(
        self, tenant: str, grantee: str, site: str | None
    ) -> list[list[PolicyVersion]]:
        """The policies of ``grantee`` that may select a series of ``site``."""
        index = self._by_grantee.get(tenant)
        if not index:
            return []
        anywhere = index.get(f"{grantee}\x00", [])
        if site is None:
            return anywhere
        here = index.get(f"{grantee}\x00{site}", [])
        return anywhere + here if here else anywhere

    def policies_of(self, tenant: str) -> list[list[PolicyVersion]]:
        """Every policy of a tenant (unsorted, no tenant check): for internal scans."""
        return list(self._policies.get(tenant, {}).values())

    def policies(self, tenant: str) -> list[list[PolicyVersion]]:
        self._registry.tenant(tenant)
        return [v for _, v in sorted(self._policies.get(tenant, {}).items())]

    def policy(self, tenant: str, policy_id: str) -> list[PolicyVersion]:
        found = self._policies.get(tenant, {}).get(policy_id)
        if found is None:
            raise NotFound(f"policy {policy_id!r} not found in tenant {tenant!r}")
        return found

    def create_policy(
        self,
        tenant: str,
        *,
        grantee: str,
        identifier: str,
        read: bool,
        write: bool,
        min_delay_s: float = 0.0,
        service: str = ANY,
        site: str | None = None,
        device: str | None = None,
        valid_from: datetime | None = None,
        policy_id: str | None = None,
        by: str = "",
    ) -> PolicyVersion:
        self._registry.tenant(tenant)
        policy_id = check_name("policy id", policy_id or f"p-{secrets.token_hex(6)}")
        if grantee != ANY:
            self.stakeholder(tenant, grantee)
        if service != ANY:
            check_name("service", service)
        check_glob(identifier)
        if site is not None:
            self._registry.site(tenant, site)
        if device is not None and self._registry.device(tenant, device) is None:
            raise NotFound(f"device {device!r} not found in tenant {tenant!r}")
        with self._lock:
            policies = self._policies.setdefault(tenant, {})
            if policy_id in policies:
                raise Conflict(f"policy {policy_id!r} exists; add a version to change it")
            if len(policies) >= MAX_POLICIES:
                raise InvalidRequest(f"at most {MAX_POLICIES} policies per tenant")
            version = PolicyVersion(
                tenant,
                policy_id,
                1,
                grantee,
                service,
                identifier,
                read,
                write,
                _check_delay(min_delay_s),
                _check_time(valid_from),
                site,
                device,
                _now(),
                by,
            )
            self._catalog.put_policy(version)
            policies[policy_id] = [version]
            self._index_policy(tenant, policies[policy_id])
            return version

    def add_policy_version(
        self,
        tenant: str,
        policy_id: str,
        *,
        read: bool,
        write: bool,
        min_delay_s: float = 0.0,
        valid_from: datetime | None = None,
        by: str = "",
        may_backdate: bool = True,
    ) -> PolicyVersion:
        """Change a policy from ``valid_from`` on (default now); earlier values keep theirs."""
        with self._lock:
            versions = self.policy(tenant, policy_id)
            last = versions[-1]
            start = _check_time(valid_from)
            if start < last.valid_from:
                raise InvalidRequest(
                    f"valid_from must not precede the current version's "
                    f"({last.valid_from.isoformat()})"
                )
            if not may_backdate and start < _now() - OWNER_BACKDATE:
                raise InvalidRequest("an owner cannot back-date a policy: older values keep theirs")
            if len(versions) >= MAX_VERSIONS:
                raise InvalidRequest(f"at most {MAX_VERSIONS} versions per policy")
            version = replace(
                last,
                version=last.version + 1,
                read=read,
                write=write,
                min_delay_s=_check_delay(min_delay_s),
                valid_from=start,
                created=_now(),
                created_by=by,
            )
            self._catalog.put_policy(version)
            updated = [*versions, version]
            self._policies[tenant][policy_id] = updated
            self._index_policy(tenant, updated)
            return version


def _check_delay(seconds: float) -> float:
    if not 0 <= seconds <= MAX_DELAY_S:
        raise InvalidRequest(f"min_delay_s must be 0..{MAX_DELAY_S:g}")
    return float(seconds)


def _check_time(moment: datetime | None) -> datetime:
    if moment is None:
        return _now()
    if moment.tzinfo is None:
        raise InvalidRequest("valid_from needs a UTC offset")
    if not 1970 <= moment.year <= 9998:
        raise InvalidRequest("valid_from must lie in the years 1970..9998")
    return moment
