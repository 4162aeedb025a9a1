"""Who supplies whom: the one question the market hub asks before routing anything.

The answer comes from one place: the customer ↔ retailer contracts of the access layer
(``access/directory.py``, managed under ``/api/v1/tenants/{t}/contracts``). A retailer is an
access stakeholder of kind ``retailer``; its clients are the sites of the customers it has a
contract with, over that contract's period. A supplier switch at *s* ends the old retailer's
period at *s* and starts the new one's; the market hub sends nothing about a client to a
retailer outside its period, and reads nothing for it there (the reads themselves also pass the
enforcement point, ``access/enforce.py``, which applies the owners' policies on top).

Every flow asks :class:`ContractsMarketDirectory` — "over which parts of this period is this
retailer the client's supplier?" (:meth:`~ContractsMarketDirectory.supply_windows`) and, for
routing a DSO request, "which retailer supplies each of these sites now?"
(:meth:`~ContractsMarketDirectory.by_retailer`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from gridhub.access.directory import Directory
from gridhub.access.tokens import Principal
from gridhub.domain.access import Contract, Kind, Stakeholder
from gridhub.errors import Forbidden

__all__ = ["ContractsMarketDirectory", "Window", "retailer_of"]

Window = tuple[datetime, datetime]
_INSTANT = timedelta(microseconds=1)


def retailer_of(who: Principal) -> str:
    """The retailer a token acts for: its access stakeholder (a retailer token carries one)."""
    if who.role != "retailer":
        raise Forbidden(f"a {who.role} token cannot act as a retailer")
    if who.stakeholder is None:
        raise Forbidden(
            "this retailer token acts for no stakeholder; create the retailer as a stakeholder "
            "of kind retailer and use a token issued for it"
        )
    return who.stakeholder


def _clip(start: datetime, end: datetime | None, lo: datetime, hi: datetime) -> Window | None:
    a, b = max(start, lo), hi if end is None else min(end, hi)
    return (a, b) if a < b else None


def _runs(contract: Contract, at: datetime) -> bool:
    return contract.start <= at and (contract.end is None or at < contract.end)


class ContractsMarketDirectory:
    """Supplies read from customer ↔ retailer contracts (suppliers of kind ``retailer`` only:
    an aggregator's or ESCO's contract makes no one a client of the market hub's retailers)."""

    def __init__(self, directory: Directory) -> None:
        self._d = directory

    def retailer(self, tenant: str, stakeholder: str) -> Stakeholder | None:
        """The enabled retailer stakeholder of that id, or None."""
        found = self._d.find_stakeholder(tenant, stakeholder)
        if found is None or found.disabled or found.kind is not Kind.RETAILER:
            return None
        return found

    def supply_windows(
        self, tenant: str, retailer: str, site: str, start: datetime, end: datetime
    ) -> list[Window]:
        """The parts of ``[start, end)`` in which ``retailer`` supplies ``site`` (none: never)."""
        if self.retailer(tenant, retailer) is None:
            return []
        out = []
        for c in self._d.contracts_at(tenant, retailer, site):
            w = _clip(c.start, c.end, start, end)
            if w is not None:
                out.append(w)
        return sorted(out)

    def supplies(self, tenant: str, retailer: str, site: str, at: datetime) -> bool:
        """Is ``retailer`` the supplier of ``site`` at the instant ``at``?"""
        return bool(self.supply_windows(tenant, retailer, site, at, at + _INSTANT))

    def by_retailer(self, tenant: str, sites: Iterable[str], at: datetime) -> dict[str, list[str]]:
        """The sites among ``sites`` each retailer supplies at ``at`` (sites without a running
        retailer contract are left out; so are disabled retailers)."""
        retailers = [s.id for s in self._d.stakeholders(tenant, Kind.RETAILER) if not s.disabled]
        out: dict[str, list[str]] = {}
        for site in dict.fromkeys(sites):
            for r in retailers:
                if any(_runs(c, at) for c in self._d.contracts_at(tenant, r, site)):
                    out.setdefault(r, []).append(site)
        return {r: sorted(s) for r, s in sorted(out.items())}
