"""Energy balancing (G9, seed 004 §4.3.1): a desired power profile sent down the hierarchy of
management units — top → MV grid → LV grid → customer — and the planned profiles, with their
distance from the desired ones, sent back up and aggregated at each level.

Convert → solve → results:

* :func:`hierarchy_from_topology` names the units of a grid: the top unit, one MV unit per primary
  substation, one LV unit per secondary substation, one customer unit per attached site, each
  under the nearest unit above it (a level the grid lacks is skipped: an LV-only grid hangs its
  LV units under the top). :class:`CustomerFlexibility` says what a customer's unit (the seed's
  CMU) can do: its predicted profile and, per slot, the lowest and highest power it can plan.
* :func:`balance` runs the exchange.
  1. *Up, flexibility*: each unit's predicted profile and bounds are its children's sums.
  2. *Down, desired profiles*: a unit asked for ``d`` asks each child for its own prediction
     plus a share of the correction ``d − prediction``, shared in proportion to the child's
     headroom in that direction (``upper − prediction`` to consume more, ``prediction − lower``
     to consume less), so the desired profile is obtained as the sum (seed: "asks its
     subordinated MUs to correct their profiles such that the desired power profile is obtained
     as a sum").
  3. *Customers plan*: a customer plans the desired profile clipped to its bounds.
  4. *Up, planned profiles*: each unit's planned profile is its children's sum, with its
     *distance*: the RMS deviation (kW) between planned and desired, the seed's single value.

  Because the correction is shared by headroom, a slot whose correction fits in a unit's total
  headroom is met exactly by every unit below, and one that does not saturates all of them —
  the seed's iteration between LV unit and customers converges in this one round, and the
  top's distance is the least any plan within the bounds can reach, slot by slot.
* :class:`BalancingResult` holds every unit's :class:`UnitPlan`; :meth:`BalancingResult.down`
  and :meth:`BalancingResult.up` list the messages in the order they flow.

Profiles are kW per slot (consumption positive, production negative), all of one length and
resolution. Limits: flexibility is a box per slot, not the energy-shifting constraints of real
appliances (a deferred wash must still run); the plan is as good as the bounds the customer
units report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_SLOTS",
    "MAX_UNITS",
    "TOP",
    "BalancingResult",
    "CustomerFlexibility",
    "Level",
    "UnitPlan",
    "balance",
    "hierarchy_from_topology",
]

TOP = "top"
MAX_UNITS = 200_000
MAX_SLOTS = 7 * 96  # a week of quarter-hours


class Level(StrEnum):
    TOP = "top"
    MV = "mv"
    LV = "lv"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class CustomerFlexibility:
    """A customer unit: predicted profile and the bounds it can plan within, per slot (kW)."""

    unit: str
    predicted: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class UnitPlan:
    unit: str
    level: Level
    parent: str | None
    predicted: tuple[float, ...]
    desired: tuple[float, ...]
    planned: tuple[float, ...]
    distance_kw: float  # RMS of planned − desired
    max_gap_kw: float  # the largest |planned − desired| of a slot


@dataclass(frozen=True, slots=True)
class BalancingResult:
    start: datetime
    resolution: timedelta
    units: Mapping[str, UnitPlan]
    children: Mapping[str, tuple[str, ...]]

    def down(self) -> list[tuple[str, tuple[float, ...]]]:
        """(unit, desired profile) in the order they are sent: top first, breadth first."""
        order, out = [TOP], []
        for unit in order:
            out.append((unit, self.units[unit].desired))
            order.extend(self.children.get(unit, ()))
        return out

    def up(self) -> list[tuple[str, tuple[float, ...], float]]:
        """(unit, planned profile, distance) in the order they are sent: customers first."""
        return [(u, self.units[u].planned, self.units[u].distance_kw) for u, _ in self.down()[::-1]]


def hierarchy_from_topology(
    topology: Topology, sites: Sequence[str] | None = None
) -> dict[str, tuple[str, Level]]:
    """``{unit: (parent unit, level)}`` for ``topology``'s substations and its attached sites
    (or only ``sites``). Unit ids are node ids and site ids; site ids must not clash with node
    ids or with ``top``. Sites on unsupplied nodes cannot be balanced and are refused."""
    units: dict[str, tuple[str, Level]] = {}
    nodes = {n.id for n in topology.nodes}
    for node in topology.nodes:
        if not node.in_service or not topology.is_supplied(node.id):
            continue
        path = topology.supply_path(node.id)
        if node.id == path.primary_substation:
            units[node.id] = (TOP, Level.MV)
        elif node.id == path.secondary_substation:
            units[node.id] = (path.primary_substation or TOP, Level.LV)
    wanted = set(sites) if sites is not None else None
    for attachment in topology.sites:
        site = attachment.site_id
        if wanted is not None and site not in wanted:
            continue
        if site in nodes or site == TOP:
            raise InvalidRequest(f"site id {site!r} clashes with a node id")
        if not topology.is_supplied(attachment.node):
            raise InvalidRequest(f"site {site!r} is on an unsupplied node")
        path = topology.supply_path(attachment.node)
        units[site] = (path.secondary_substation or path.primary_substation or TOP,
                       Level.CUSTOMER)  # fmt: skip
    if wanted is not None and wanted - set(units):
        missing = sorted(wanted - set(units))[:5]
        raise InvalidRequest(f"sites not attached to {topology.name!r}: {missing}")
    return units


def _check(customer: CustomerFlexibility, slots: int) -> None:
    profiles = (customer.predicted, customer.lower, customer.upper)
    if any(len(p) != slots for p in profiles):
        raise InvalidRequest(f"customer {customer.unit!r}: profiles must have {slots} slots")
    for p, lo, hi in zip(*profiles, strict=True):
        if not all(math.isfinite(v) for v in (p, lo, hi)):
            raise InvalidRequest(f"customer {customer.unit!r}: non-finite value")
        if not lo <= p <= hi:
            raise InvalidRequest(
                f"customer {customer.unit!r}: prediction {p} outside its bounds [{lo}, {hi}]"
            )


def balance(
    hierarchy: Mapping[str, tuple[str, Level]],
    customers: Sequence[CustomerFlexibility],
    desired: Sequence[float],
    *,
    start: datetime,
    resolution: timedelta = timedelta(minutes=15),
) -> BalancingResult:
    """Send ``desired`` (the top's profile) down ``hierarchy`` and the plans back up."""
    slots = len(desired)
    if not 1 <= slots <= MAX_SLOTS:
        raise InvalidRequest(f"a profile has 1..{MAX_SLOTS} slots")
    if not all(math.isfinite(v) for v in desired):
        raise InvalidRequest("desired profile has a non-finite value")
    if resolution <= timedelta(0):
        raise InvalidRequest("resolution must be positive")
    if len(hierarchy) > MAX_UNITS:
        raise InvalidRequest(f"at most {MAX_UNITS} units")
    flex = {c.unit: c for c in customers}
    if len(flex) != len(customers):
        raise InvalidRequest("a customer unit is listed twice")
    children: dict[str, list[str]] = {}
    for unit, (parent, _) in hierarchy.items():
        if parent != TOP and parent not in hierarchy:
            raise InvalidRequest(f"unit {unit!r} hangs under unknown unit {parent!r}")
        children.setdefault(parent, []).append(unit)
    for unit, (_, level) in hierarchy.items():
        if level is Level.CUSTOMER and unit not in flex:
            raise InvalidRequest(f"no flexibility for customer unit {unit!r}")
    for customer in customers:
        if hierarchy.get(customer.unit, ("", None))[1] is not Level.CUSTOMER:
            raise InvalidRequest(f"{customer.unit!r} is not a customer unit of the hierarchy")
        _check(customer, slots)
    order = [TOP]
    for unit in order:  # breadth first: parents before children
        order.extend(sorted(children.get(unit, ())))
    if len(order) != len(hierarchy) + 1:
        raise InvalidRequest("the hierarchy has a cycle or units not under the top")

    zero = (0.0,) * slots
    predicted: dict[str, tuple[float, ...]] = {}
    lower: dict[str, tuple[float, ...]] = {}
    upper: dict[str, tuple[float, ...]] = {}
    for unit in reversed(order):  # 1. up: flexibility
        if unit in flex:
            c = flex[unit]
            predicted[unit], lower[unit], upper[unit] = c.predicted, c.lower, c.upper
        else:
            below = children.get(unit, [])
            predicted[unit] = _sum([predicted[k] for k in below], zero)
            lower[unit] = _sum([lower[k] for k in below], zero)
            upper[unit] = _sum([upper[k] for k in below], zero)
    wanted: dict[str, tuple[float, ...]] = {TOP: tuple(float(v) for v in desired)}
    for unit in order:  # 2. down: desired profiles
        below = sorted(children.get(unit, ()))
        if below:
            shares = [_share(wanted[unit], predicted[unit], [
                (predicted[k][t], lower[k][t], upper[k][t]) for k in below
            ], t) for t in range(slots)]  # fmt: skip
            for i, k in enumerate(below):
                wanted[k] = tuple(shares[t][i] for t in range(slots))
    planned: dict[str, tuple[float, ...]] = {}
    for unit in reversed(order):  # 3. customers plan; 4. up: planned profiles
        if unit in flex:
            planned[unit] = tuple(
                min(max(d, lo), hi) for d, lo, hi in zip(wanted[unit], lower[unit], upper[unit],
                                                        strict=True)
            )  # fmt: skip
        else:
            planned[unit] = _sum([planned[k] for k in children.get(unit, [])], zero)
    plans = {}
    for unit in order:
        gaps = [p - d for p, d in zip(planned[unit], wanted[unit], strict=True)]
        above: str | None = hierarchy[unit][0] if unit != TOP else None
        level = hierarchy[unit][1] if unit != TOP else Level.TOP
        plans[unit] = UnitPlan(
            unit, level, above, predicted[unit], wanted[unit], planned[unit],
            math.sqrt(math.fsum(g * g for g in gaps) / slots), max(abs(g) for g in gaps),
        )  # fmt: skip
    frozen_children = {u: tuple(sorted(k)) for u, k in children.items()}
    return BalancingResult(start, resolution, plans, frozen_children)


def _sum(profiles: list[tuple[float, ...]], zero: tuple[float, ...]) -> tuple[float, ...]:
    if not profiles:
        return zero
    return tuple(math.fsum(values) for values in zip(*profiles, strict=True))


def _share(
    desired: tuple[float, ...],
    predicted: tuple[float, ...],
    children: list[tuple[float, float, float]],
    t: int,
) -> list[float]:
    """Slot ``t``'s desired value for each child: its prediction plus a share of the
    correction in proportion to its headroom in the correction's direction."""
    correction = desired[t] - predicted[t]
    room = [(hi - p) if correction >= 0 else (p - lo) for p, lo, hi in children]
    total = math.fsum(room)
    if total > 0:
        return [p + correction * r / total for (p, _, _), r in zip(children, room, strict=True)]
    return [p + correction / len(children) for p, _, _ in children]
