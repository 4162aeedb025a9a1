"""Demand response (G7, seed 002 §7.4): which appliances to switch off so a substation's
consumption comes down to a feasible level, disturbing as few customers as possible.

Convert → solve → results:

* :func:`curtailment_problem` turns a substation's measured consumption, the feasible target and
  the controllable appliances (plain :class:`Appliance` records: customer, appliance, power) into
  a :class:`CurtailmentProblem`, refusing what cannot be used (unknown units, duplicates, sizes).
* :func:`solve_curtailment` chooses the appliances. The seed's two stages are lexicographic
  objectives, solved exactly as three small MILPs (scipy's HiGHS): (1) fewest customers affected,
  (2) with that many customers, fewest appliances, (3) with both fixed, the least power shed
  beyond what is needed, so a 2 kW boiler is not switched off where a 0.5 kW one suffices. A
  greedy (largest first) can be wrong at every stage; the tests check the MILP against brute force.
* :class:`CurtailmentPlan` is the answer: the chosen appliances (the curtailment commands to
  send), the customers, the power shed, and — when even every appliance together is not enough —
  ``status="infeasible"`` with the exact shortfall, never a partial plan passed off as enough.

Power is in kW throughout. "Needed" is ``consumption − target``; nothing is curtailed when it is
not positive. ``tolerance_kw`` absorbs float noise (a plan shedding 0.999999999 of 1 kW is fine).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_APPLIANCES",
    "Appliance",
    "CurtailmentPlan",
    "CurtailmentProblem",
    "curtailment_problem",
    "solve_curtailment",
]

MAX_APPLIANCES = 20_000
DEFAULT_TIME_LIMIT_S = 30.0

Status = Literal["nothing_needed", "optimal", "infeasible", "time_limit"]


@dataclass(frozen=True, slots=True)
class Appliance:
    """A controllable appliance of a customer and the power (kW) switching it off saves now."""

    customer: str
    appliance: str
    power_kw: float


@dataclass(frozen=True, slots=True)
class CurtailmentProblem:
    substation: str
    consumption_kw: float
    target_kw: float
    appliances: tuple[Appliance, ...]  # only those with positive power: the others cannot help
    tolerance_kw: float

    @property
    def needed_kw(self) -> float:
        return max(0.0, self.consumption_kw - self.target_kw)


@dataclass(frozen=True, slots=True)
class CurtailmentPlan:
    substation: str
    status: Status
    needed_kw: float
    curtailed: tuple[Appliance, ...]  # the appliances to switch off, by customer then id
    customers: tuple[str, ...]
    shed_kw: float  # the power the curtailed appliances save together
    shortfall_kw: float  # needed − available when infeasible, else 0
    available_kw: float  # every controllable appliance together

    @property
    def feasible(self) -> bool:
        return self.status in ("nothing_needed", "optimal")


def _finite(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{what} must be a finite number, got {value!r}")
    return float(value)


def curtailment_problem(
    substation: str,
    consumption_kw: float,
    target_kw: float,
    appliances: Iterable[Appliance],
    *,
    tolerance_kw: float = 1e-6,
) -> CurtailmentProblem:
    """Check and normalise the inputs: finite numbers, no appliance twice, at most
    :data:`MAX_APPLIANCES`; appliances drawing nothing (off already) are dropped."""
    consumption = _finite("consumption_kw", consumption_kw)
    target = _finite("target_kw", target_kw)
    if target < 0:
        raise InvalidRequest(f"target_kw must be >= 0, got {target}")
    tolerance = _finite("tolerance_kw", tolerance_kw)
    if tolerance < 0:
        raise InvalidRequest("tolerance_kw must be >= 0")
    kept: list[Appliance] = []
    seen: set[tuple[str, str]] = set()
    for count, item in enumerate(appliances, 1):
        if count > MAX_APPLIANCES:
            raise InvalidRequest(f"at most {MAX_APPLIANCES} appliances per substation")
        key = (item.customer, item.appliance)
        if key in seen:
            raise InvalidRequest(f"appliance {item.appliance!r} of {item.customer!r} listed twice")
        seen.add(key)
        power = _finite(f"power of {item.appliance!r} of {item.customer!r}", item.power_kw)
        if power < 0:
            raise InvalidRequest(f"appliance {item.appliance!r} of {item.customer!r}: power < 0")
        if power > 0:
            kept.append(item)
    kept.sort(key=lambda a: (a.customer, a.appliance))
    return CurtailmentProblem(substation, consumption, target, tuple(kept), tolerance)


def solve_curtailment(
    problem: CurtailmentProblem, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S
) -> CurtailmentPlan:
    """The curtailment with fewest customers, then fewest appliances, then least excess power.

    Variables: ``x_a`` (appliance a off), ``y_c`` (customer c affected), binary; ``x_a ≤ y_c``;
    ``Σ p_a x_a ≥ needed``. Each stage fixes the optimum of the one before as a constraint.
    ``status="time_limit"`` (with the best plan found) when HiGHS runs out of time — only on
    instances far larger than a substation's.
    """
    needed = problem.needed_kw
    available = math.fsum(a.power_kw for a in problem.appliances)

    def plan(
        status: Status, chosen: Iterable[Appliance], shortfall: float = 0.0
    ) -> CurtailmentPlan:
        items = tuple(chosen)
        customers = tuple(sorted({a.customer for a in items}))
        shed = math.fsum(a.power_kw for a in items)
        return CurtailmentPlan(
            problem.substation, status, needed, items, customers, shed, shortfall, available
        )

    if needed <= problem.tolerance_kw:
        return plan("nothing_needed", ())
    if available < needed - problem.tolerance_kw:
        return plan("infeasible", (), needed - available)
    status, chosen = _milp(problem, needed, time_limit_s)
    return plan(status, chosen)


def _milp(
    problem: CurtailmentProblem, needed: float, time_limit_s: float
) -> tuple[Status, list[Appliance]]:
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    appliances = problem.appliances
    customers = sorted({a.customer for a in appliances})
    column = {c: len(appliances) + i for i, c in enumerate(customers)}
    n = len(appliances) + len(customers)
    power = np.array([a.power_kw for a in appliances])
    # x_a - y_c <= 0 for each appliance
    rows = np.repeat(np.arange(len(appliances)), 2)
    cols = np.array([j for i, a in enumerate(appliances) for j in (i, column[a.customer])])
    vals = np.tile([1.0, -1.0], len(appliances))
    link = coo_array((vals, (rows, cols)), shape=(len(appliances), n)).tocsr()
    cover = np.concatenate([power, np.zeros(len(customers))])
    constraints = [
        LinearConstraint(link, -np.inf, 0.0),
        LinearConstraint(cover[None, :], needed - problem.tolerance_kw, np.inf),
    ]
    count_y = np.concatenate([np.zeros(len(appliances)), np.ones(len(customers))])
    count_x = np.concatenate([np.ones(len(appliances)), np.zeros(len(customers))])
    options = {"time_limit": time_limit_s, "mip_rel_gap": 0.0}
    integrality = np.ones(n)
    bounds = Bounds(0, 1)
    status: Status = "optimal"
    x: np.ndarray | None = None
    for objective, integral in ((count_y, True), (count_x, True), (cover, False)):
        result = milp(objective, integrality=integrality, bounds=bounds,
                      constraints=constraints, options=options)  # fmt: skip
        if result.x is None:  # cannot happen once coverage is possible; kept as a guard
            raise RuntimeError(f"demand response MILP failed: {result.message}")
        x = result.x
        if result.status != 0:
            status = "time_limit"
            break
        best = float(result.fun)
        bound = math.floor(best + 0.5) if integral else best + problem.tolerance_kw
        constraints.append(LinearConstraint(objective[None, :], -np.inf, bound))
    assert x is not None
    chosen = [a for a, value in zip(appliances, x[: len(appliances)], strict=True) if value > 0.5]
    return status, chosen
