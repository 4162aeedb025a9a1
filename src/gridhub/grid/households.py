"""Place households (sites) on a topology's connection points, deterministically.

The demo simulates N households and needs them on a grid ("the demo attaches its households to
the CIGRE LV network") so that outages, losses and estimates have meters to work with. The same
sites and topology must always give the same placement — tests, the simulator and the services
each compute it and must agree — so there is no randomness: sites are placed in the order given.

``round_robin`` deals sites to connection points in topology order, like cards; ``load_share``
gives each connection point a number of sites proportional to its nominal load (largest-remainder
rounding, ties to the earlier connection point), so a 50 kW connection point gets about three
times the households of a 15 kW one, then deals them in the same card-like way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from gridhub.domain.topology import NodeKind, SiteAttachment, Topology
from gridhub.errors import InvalidRequest

Strategy = Literal["round_robin", "load_share"]
MAX_HOUSEHOLDS = 1_000_000


def attach_households(
    topology: Topology,
    site_ids: Iterable[str],
    *,
    strategy: Strategy = "round_robin",
    under: str | None = None,
) -> Topology:
    """``topology`` with ``site_ids`` attached to its supplied connection points (those fed
    through node ``under``, if given). Sites already attached elsewhere keep their place unless
    listed again."""
    sites = list(site_ids)
    if len(sites) > MAX_HOUSEHOLDS:
        raise InvalidRequest(f"at most {MAX_HOUSEHOLDS} households can be attached at once")
    if len(set(sites)) != len(sites):
        raise InvalidRequest("a household is listed twice")
    below = set(topology.downstream(under)) if under is not None else None
    points = [
        cp
        for cp in topology.nodes_of_kind(NodeKind.CONNECTION_POINT)
        if topology.is_supplied(cp) and (below is None or cp in below)
    ]
    if not points:
        raise InvalidRequest(f"topology {topology.name!r} has no supplied connection point")
    if strategy == "round_robin":
        quota = _equal(len(sites), len(points))
    elif strategy == "load_share":
        demand = dict.fromkeys(points, 0.0)
        for load in topology.loads:
            if load.in_service and load.node in demand:
                demand[load.node] += max(load.p_mw, 0.0)
        quota = _proportional(len(sites), [demand[cp] for cp in points])
    else:
        raise InvalidRequest(f"unknown strategy {strategy!r}: round_robin or load_share")
    placed = [
        SiteAttachment(site, cp) for site, cp in zip(sites, _deal(points, quota), strict=True)
    ]
    listed = set(sites)
    kept = [attached for attached in topology.sites if attached.site_id not in listed]
    return topology.with_sites([*kept, *placed])


def _equal(count: int, slots: int) -> list[int]:
    return [count // slots + (1 if i < count % slots else 0) for i in range(slots)]


def _proportional(count: int, weights: list[float]) -> list[int]:
    """Largest-remainder apportionment of ``count`` by ``weights`` (equal if all are zero)."""
    total = math.fsum(weights)
    if total <= 0:
        return _equal(count, len(weights))
    shares = [count * w / total for w in weights]
    quota = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (quota[i] - shares[i], i))
    for i in by_remainder[: count - sum(quota)]:
        quota[i] += 1
    return quota


def _deal(points: list[str], quota: list[int]) -> list[str]:
    """One point per site: a round over every point that still has room, then the next round."""
    active = [(point, room) for point, room in zip(points, quota, strict=True) if room]
    order: list[str] = []
    while active:
        order.extend(point for point, _ in active)
        active = [(point, room - 1) for point, room in active if room > 1]
    return order
