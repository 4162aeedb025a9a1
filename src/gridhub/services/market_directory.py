"""Who supplies whom: the one question the market hub asks before routing anything.

Every flow of the market hub asks "is this retailer this client's supplier now, or over that
period?" through :meth:`MarketDirectory.supply_windows` (and its two listings for routing). Two
implementations:

- :class:`RegistryMarketDirectory` — the market hub's own supplier table (``market_supplies``),
  managed with ``PUT /api/v1/tenants/{t}/market/supplies``. Works on its own.
- :class:`ContractsMarketDirectory` — the contracts of the access layer (customer ↔ retailer
  with validity, ``access/directory.py``). It is written against the small structural protocol
  :class:`ContractSource`, which the access branch's ``Directory`` satisfies as is; to switch,
  build the market service in ``hub.py`` with ``ContractsMarketDirectory(access.directory)``.

A retailer is then an access *stakeholder* (its id is the stakeholder id), and
:func:`retailer_of` takes it from the token's ``stakeholder`` when tokens carry one.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from gridhub.access.tokens import Principal
from gridhub.domain.market import Supply
from gridhub.errors import Conflict, Forbidden, InvalidRequest
from gridhub.storage.market_store import MarketStore

__all__ = [
    "ContractSource",
    "ContractsMarketDirectory",
    "MarketDirectory",
    "RegistryMarketDirectory",
    "Window",
    "is_supplier",
    "retailer_of",
]

Window = tuple[datetime, datetime]
_INSTANT = timedelta(microseconds=1)


class MarketDirectory(Protocol):
    def supply_windows(
        self, tenant: str, retailer: str, site: str, start: datetime, end: datetime
    ) -> list[Window]:
        """The parts of ``[start, end)`` in which ``retailer`` supplies ``site`` (none: never)."""
        ...

    def suppliers(self, tenant: str, sites: Iterable[str], at: datetime) -> dict[str, str]:
        """The retailer of each of ``sites`` at ``at`` (sites without one are left out)."""
        ...

    def clients(self, tenant: str, retailer: str, at: datetime) -> list[str]:
        """The sites ``retailer`` supplies at ``at``."""
        ...


def is_supplier(
    directory: MarketDirectory, tenant: str, retailer: str, site: str, at: datetime
) -> bool:
    """Is ``retailer`` the supplier of ``site`` at the instant ``at``?"""
    return bool(directory.supply_windows(tenant, retailer, site, at, at + _INSTANT))


def retailer_of(who: Principal, token_retailers: dict[str, str]) -> str:
    """The retailer a token acts for: its access stakeholder, else the retailer it was issued to."""
    if who.role != "retailer":
        raise Forbidden(f"a {who.role} token cannot act as a retailer")
    stakeholder = getattr(who, "stakeholder", None)  # tokens of the access layer carry one
    retailer = stakeholder or token_retailers.get(who.token_id)
    if retailer is None:
        raise Forbidden("this retailer token belongs to no registered market retailer")
    return str(retailer)


def _clip(start: datetime, end: datetime | None, lo: datetime, hi: datetime) -> Window | None:
    a, b = max(start, lo), hi if end is None else min(end, hi)
    return (a, b) if a < b else None


# -- the market hub's own supplier table -----------------------------------------------------------


class RegistryMarketDirectory:
    """Supplies kept in ``market_supplies``, indexed in memory per (tenant, site)."""

    def __init__(self, store: MarketStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._by_site: dict[tuple[str, str], list[Supply]] = {}
        for s in store.supplies():
            self._by_site.setdefault((s.tenant, s.site), []).append(s)

    def set_suppliers(
        self, tenant: str, changes: Sequence[tuple[str, str, datetime]]
    ) -> list[Supply]:
        """Each (site, retailer, start): the retailer supplies the site from ``start`` on and
        the running supply ends then (a supplier switch). All or nothing, one transaction."""
        with self._lock:
            ended: list[Supply] = []
            added: list[Supply] = []
            result: list[Supply] = []
            staged: dict[tuple[str, str], list[Supply]] = {}
            for site, retailer, start in changes:
                if start.tzinfo is None:
                    raise InvalidRequest("start needs a UTC offset")
                key = (tenant, site)
                history = staged.get(key, self._by_site.get(key, []))
                if history and history[-1].start >= start:
                    raise Conflict(
                        f"site {site!r} has a supply from {history[-1].start.isoformat()};"
                        " a new one must start later"
                    )
                last = history[-1] if history else None
                if last is not None and (last.end is None or last.end > start):
                    if last.retailer == retailer:
                        result.append(last)
                        continue
                    closed = Supply(tenant, site, last.retailer, last.start, start)
                    ended.append(closed)
                    history = [*history[:-1], closed]
                new = Supply(tenant, site, retailer, start)
                added.append(new)
                staged[key] = [*history, new]
                result.append(new)
            self._store.put_supplies(ended, added)
            self._by_site.update(staged)
            return result

    def history(self, tenant: str, site: str) -> list[Supply]:
        return list(self._by_site.get((tenant, site), []))

    def supply_windows(
        self, tenant: str, retailer: str, site: str, start: datetime, end: datetime
    ) -> list[Window]:
        out = []
        for s in self._by_site.get((tenant, site), []):
            if s.retailer == retailer:
                w = _clip(s.start, s.end, start, end)
                if w is not None:
                    out.append(w)
        return out

    def _at(self, tenant: str, site: str, at: datetime) -> str | None:
        history = self._by_site.get((tenant, site))
        if not history:
            return None
        i = bisect.bisect_right([s.start for s in history], at) - 1
        if i < 0:
            return None
        s = history[i]
        return s.retailer if s.end is None or at < s.end else None

    def suppliers(self, tenant: str, sites: Iterable[str], at: datetime) -> dict[str, str]:
        out = {}
        for site in sites:
            r = self._at(tenant, site, at)
            if r is not None:
                out[site] = r
        return out

    def clients(self, tenant: str, retailer: str, at: datetime) -> list[str]:
        return sorted(
            site
            for (t, site) in self._by_site
            if t == tenant and self._at(tenant, site, at) == retailer
        )


# -- the access layer's contracts ------------------------------------------------------------------


class _Kind(Protocol):
    @property
    def value(self) -> str: ...


class _Stakeholder(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> _Kind: ...
    @property
    def site(self) -> str | None: ...


class _Contract(Protocol):
    @property
    def customer(self) -> str: ...
    @property
    def supplier(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...


class ContractSource(Protocol):
    """What the market hub needs of the access layer's ``Directory`` (it has these methods)."""

    def contracts_at(self, tenant: str, supplier: str, site: str) -> Sequence[_Contract]: ...
    def contracts_of(self, tenant: str, supplier: str) -> Sequence[_Contract]: ...
    def contracts(
        self, tenant: str, customer: str | None = None, supplier: str | None = None
    ) -> Sequence[_Contract]: ...
    def stakeholders(self, tenant: str) -> Sequence[_Stakeholder]: ...
    def find_stakeholder(self, tenant: str, stakeholder_id: str) -> _Stakeholder | None: ...


class ContractsMarketDirectory:
    """Supplies read from customer ↔ retailer contracts (only suppliers of kind ``retailer``)."""

    def __init__(self, contracts: ContractSource) -> None:
        self._c = contracts

    def _is_retailer(self, tenant: str, stakeholder: str) -> bool:
        found = self._c.find_stakeholder(tenant, stakeholder)
        return found is not None and found.kind.value == "retailer"

    def supply_windows(
        self, tenant: str, retailer: str, site: str, start: datetime, end: datetime
    ) -> list[Window]:
        if not self._is_retailer(tenant, retailer):
            return []
        out = []
        for c in self._c.contracts_at(tenant, retailer, site):
            w = _clip(c.start, c.end, start, end)
            if w is not None:
                out.append(w)
        return sorted(out)

    def suppliers(self, tenant: str, sites: Iterable[str], at: datetime) -> dict[str, str]:
        wanted = set(sites)
        site_of = {
            s.id: s.site
            for s in self._c.stakeholders(tenant)
            if s.kind.value == "customer" and s.site in wanted
        }
        out: dict[str, str] = {}
        for c in self._c.contracts(tenant):  # one pass over the tenant's contracts
            site = site_of.get(c.customer)
            running = c.start <= at and (c.end is None or at < c.end)
            if site is not None and running and self._is_retailer(tenant, c.supplier):
                out[site] = c.supplier
        return out

    def clients(self, tenant: str, retailer: str, at: datetime) -> list[str]:
        if not self._is_retailer(tenant, retailer):
            return []
        customers = {
            c.customer
            for c in self._c.contracts_of(tenant, retailer)
            if c.start <= at and (c.end is None or at < c.end)
        }
        return sorted(
            s.site for s in self._c.stakeholders(tenant) if s.id in customers and s.site is not None
        )
