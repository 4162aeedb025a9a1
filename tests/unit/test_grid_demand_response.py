"""Demand response (G7): fewest customers, then fewest appliances, then least excess — exact."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridhub.errors import InvalidRequest
from gridhub.grid.demand_response import (
    Appliance,
    CurtailmentPlan,
    curtailment_problem,
    fewest_customers,
    solve_curtailment,
)


def solve(consumption: float, target: float, appliances: list[Appliance]) -> CurtailmentPlan:
    return solve_curtailment(curtailment_problem("ss1", consumption, target, appliances))


def ids(plan: CurtailmentPlan) -> set[tuple[str, str]]:
    return {(a.customer, a.appliance) for a in plan.curtailed}


def test_one_customer_beats_several_even_with_more_appliances() -> None:
    # needed = 100 - 94 = 6 kW. Greedy by largest appliance takes c2's 4 kW then c3's 3 kW
    # (2 customers). Customer c1 alone has 3 + 2 + 1.5 = 6.5 kW >= 6: one customer, three
    # appliances — the seed's first stage prefers it.
    appliances = [
        Appliance("c1", "boiler", 3.0), Appliance("c1", "ev", 2.0),
        Appliance("c1", "wm", 1.5), Appliance("c2", "hp", 4.0), Appliance("c3", "ev", 3.0),
    ]  # fmt: skip
    plan = solve(100.0, 94.0, appliances)
    assert plan.status == "optimal" and plan.feasible
    assert plan.customers == ("c1",)
    assert ids(plan) == {("c1", "boiler"), ("c1", "ev"), ("c1", "wm")}
    assert plan.shed_kw == pytest.approx(6.5)
    assert plan.needed_kw == pytest.approx(6.0)


def test_fewest_appliances_then_least_excess_within_the_customer() -> None:
    # needed 2 kW; c1 has 2.5, 1.0, 1.0, 0.5. One appliance suffices (2.5); the second stage
    # picks it over 1.0 + 1.0; c2's 2.2 kW would also be one customer, one appliance, but sheds
    # 0.2 kW excess instead of 0.5: the third stage picks c2.
    appliances = [
        Appliance("c1", "a", 2.5), Appliance("c1", "b", 1.0), Appliance("c1", "c", 1.0),
        Appliance("c1", "d", 0.5), Appliance("c2", "x", 2.2),
    ]  # fmt: skip
    plan = solve(12.0, 10.0, appliances)
    assert ids(plan) == {("c2", "x")}
    assert plan.shed_kw == pytest.approx(2.2)


def test_nothing_needed_when_already_below_target() -> None:
    plan = solve(9.0, 10.0, [Appliance("c1", "a", 1.0)])
    assert plan.status == "nothing_needed" and plan.curtailed == () and plan.needed_kw == 0


def test_infeasible_reports_the_exact_shortfall() -> None:
    # needed 10 kW, all controllable power 3 + 4 = 7 kW: short by 3 kW; no partial plan.
    plan = solve(30.0, 20.0, [Appliance("c1", "a", 3.0), Appliance("c2", "b", 4.0)])
    assert plan.status == "infeasible" and not plan.feasible
    assert plan.shortfall_kw == pytest.approx(3.0)
    assert plan.available_kw == pytest.approx(7.0)
    assert plan.curtailed == ()


def test_exactly_enough_is_feasible() -> None:
    plan = solve(10.0, 7.0, [Appliance("c1", "a", 1.0), Appliance("c2", "b", 2.0)])
    assert plan.status == "optimal" and plan.customers == ("c1", "c2")


@pytest.mark.parametrize(
    ("consumption", "target", "appliances", "message"),
    [
        (math.nan, 1.0, [], "consumption_kw"),
        (10.0, -1.0, [], "target_kw"),
        (10.0, 1.0, [Appliance("c", "a", 1.0), Appliance("c", "a", 2.0)], "twice"),
        (10.0, 1.0, [Appliance("c", "a", -1.0)], "power < 0"),
        (10.0, 1.0, [Appliance("c", "a", math.inf)], "finite"),
    ],
)
def test_bad_inputs_are_refused_precisely(
    consumption: float, target: float, appliances: list[Appliance], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        curtailment_problem("ss1", consumption, target, appliances)


def test_too_many_appliances_refused() -> None:
    many = (Appliance(f"c{i}", "a", 1.0) for i in range(20_001))
    with pytest.raises(InvalidRequest, match="at most"):
        curtailment_problem("ss1", 10.0, 1.0, many)


def brute_force(needed: float, appliances: list[Appliance]) -> tuple[int, int, float] | None:
    best: tuple[int, int, float] | None = None
    for size in range(len(appliances) + 1):
        for subset in itertools.combinations(appliances, size):
            shed = math.fsum(a.power_kw for a in subset)
            if shed < needed - 1e-6:
                continue
            key = (len({a.customer for a in subset}), len(subset), round(shed, 6))
            best = key if best is None or key < best else best
    return best


@settings(max_examples=60, deadline=None)
@given(
    powers=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40)), min_size=1, max_size=9),
    needed_tenths=st.integers(1, 150),
)
def test_matches_brute_force(powers: list[tuple[int, int]], needed_tenths: int) -> None:
    appliances = [Appliance(f"c{c}", f"a{i}", p / 10) for i, (c, p) in enumerate(powers)]
    needed = needed_tenths / 10
    plan = solve(50.0 + needed, 50.0, appliances)
    expected = brute_force(needed, appliances)
    if expected is None:
        assert plan.status == "infeasible"
        total = math.fsum(a.power_kw for a in appliances)
        assert plan.shortfall_kw == pytest.approx(needed - total)
        return
    assert plan.status == "optimal"
    assert plan.shed_kw >= needed - 1e-6
    got = (len(plan.customers), len(plan.curtailed), round(plan.shed_kw, 6))
    assert got[:2] == expected[:2]
    assert got[2] == pytest.approx(expected[2], abs=1e-5)


def test_fewest_customers_in_closed_form() -> None:
    # totals: c1 3 + 1 = 4, c2 3.5, c3 2 + 2 + 2 = 6. Need 9: 6 + 4 = 10 >= 9 -> 2 customers;
    # need 10.5: 6 + 4 = 10 < 10.5, + 3.5 -> 3.
    appliances = [
        Appliance("c1", "a", 3.0), Appliance("c1", "b", 1.0), Appliance("c2", "a", 3.5),
        Appliance("c3", "a", 2.0), Appliance("c3", "b", 2.0), Appliance("c3", "c", 2.0),
    ]  # fmt: skip
    problem = curtailment_problem("ss1", 20.0, 11.0, appliances)
    assert fewest_customers(problem, 9.0) == 2
    assert fewest_customers(problem, 10.5) == 3
    plan = solve_curtailment(problem)
    # needed 20 - 11 = 9 kW from 2 customers, with 4 appliances at best (3 are at most
    # 3.5 + 3 + 2 = 8.5): c3's three (6) + c2's 3.5 sheds 9.5; c3's three + c1's 3 kW sheds
    # exactly 9: the third stage (least excess) picks c1 and c3
    assert plan.customers == ("c1", "c3") and len(plan.curtailed) == 4
    assert plan.shed_kw == pytest.approx(9.0) and plan.proven_stages == 3
