"""Energy balancing (G9): desired profiles down, planned profiles and distances up.

Hand case: one LV unit under the top with two customers, two slots.
c1 predicts 2 kW in both slots, can plan 1..4 kW; c2 predicts 1 kW, can plan 0.5..1.5 kW.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridhub.domain.topology import NodeKind
from gridhub.errors import InvalidRequest
from gridhub.grid.balancing import (
    TOP,
    CustomerFlexibility,
    Level,
    balance,
    hierarchy_from_topology,
)
from gridhub.grid.households import attach_households
from gridhub.grid.topology_import import reference_network

START = datetime(2026, 6, 1, tzinfo=UTC)
HAND = {"lv": (TOP, Level.LV), "c1": ("lv", Level.CUSTOMER), "c2": ("lv", Level.CUSTOMER)}
CUSTOMERS = [
    CustomerFlexibility("c1", (2.0, 2.0), (1.0, 1.0), (4.0, 4.0)),
    CustomerFlexibility("c2", (1.0, 1.0), (0.5, 0.5), (1.5, 1.5)),
]


def test_hand_case_shares_by_headroom_and_reports_distances() -> None:
    # Slot 1: desired 5, predicted 3: +2 to share over headroom 2 (c1) + 0.5 (c2) = 2.5:
    #   c1 2 + 2·2/2.5 = 3.6, c2 1 + 2·0.5/2.5 = 1.4; both can: planned = desired.
    # Slot 2: desired 7: +4 > 2.5: c1 asked 2 + 4·0.8 = 5.2, plans 4; c2 asked 1.8, plans 1.5.
    #   Top plans 5.5 against 7: gaps (0, 1.5), RMS sqrt(2.25 / 2) = 1.0607 kW.
    #   c1 gaps (0, 1.2): RMS 0.8485; c2 gaps (0, 0.3): RMS 0.2121.
    result = balance(HAND, CUSTOMERS, [5.0, 7.0], start=START)
    units = result.units
    assert units["c1"].desired == pytest.approx((3.6, 5.2))
    assert units["c2"].desired == pytest.approx((1.4, 1.8))
    assert units["c1"].planned == pytest.approx((3.6, 4.0))
    assert units["c2"].planned == pytest.approx((1.4, 1.5))
    assert units[TOP].planned == pytest.approx((5.0, 5.5))
    assert units[TOP].distance_kw == pytest.approx(math.sqrt(2.25 / 2))
    assert units[TOP].max_gap_kw == pytest.approx(1.5)
    assert units["c1"].distance_kw == pytest.approx(math.sqrt(1.44 / 2))
    assert units["c2"].distance_kw == pytest.approx(math.sqrt(0.09 / 2))
    assert units["lv"].predicted == pytest.approx((3.0, 3.0))
    # messages: desired down top-first, planned up customers-first
    assert [u for u, _ in result.down()] == [TOP, "lv", "c1", "c2"]
    assert [u for u, _, _ in result.up()] == ["c2", "c1", "lv", TOP]


def test_consuming_less_uses_downward_headroom() -> None:
    # desired 2 (predicted 3): −1 over headroom 1 (c1) + 0.5 (c2): c1 2 − 1/1.5 = 1.3333,
    # c2 1 − 0.5/1.5 = 0.6667; exact.
    result = balance(HAND, CUSTOMERS, [2.0, 2.0], start=START)
    assert result.units["c1"].planned == pytest.approx((4 / 3,) * 2)
    assert result.units["c2"].planned == pytest.approx((2 / 3,) * 2)
    assert result.units[TOP].distance_kw == pytest.approx(0.0)


def test_cigre_lv_three_levels_sum_up() -> None:
    topology = attach_households(reference_network("cigre_lv"), [f"h{i}" for i in range(26)])
    hierarchy = hierarchy_from_topology(topology)
    # one MV unit (bus0), three LV units (bus1, bus20, bus23), 26 customers
    levels = [level for _, level in hierarchy.values()]
    assert levels.count(Level.MV) == 1 and levels.count(Level.LV) == 3
    assert levels.count(Level.CUSTOMER) == 26
    assert hierarchy["bus1"] == ("bus0", Level.LV) and hierarchy["bus0"] == (TOP, Level.MV)
    residential = {s for s, (p, _) in hierarchy.items() if p == "bus1"}
    node_of = {a.site_id: a.node for a in topology.sites}
    assert all(topology.ancestor(node_of[s], NodeKind.SECONDARY_SUBSTATION) == "bus1"
               for s in residential)  # fmt: skip
    slots = 96
    customers = [
        CustomerFlexibility(
            f"h{i}",
            tuple(0.5 + 0.5 * math.sin(t / 15 + i) ** 2 for t in range(slots)),
            (0.0,) * slots,
            (3.0,) * slots,
        )
        for i in range(26)
    ]
    predicted = sum(c.predicted[0] for c in customers)
    flat = [predicted + 5.0] * slots  # 5 kW more in every slot: well within 26 × ~2.5 kW
    result = balance(hierarchy, customers, flat, start=START)
    assert result.units[TOP].planned == pytest.approx(
        tuple(flat[:1]) * 0 + result.units[TOP].desired
    )
    assert result.units[TOP].distance_kw == pytest.approx(0.0, abs=1e-9)
    for unit, plan in result.units.items():
        below = result.children.get(unit, ())
        if below:  # every level's plan is its children's sum
            sums = [sum(result.units[k].planned[t] for k in below) for t in range(slots)]
            assert plan.planned == pytest.approx(tuple(sums))
    # beyond everyone's capacity: all saturate, the top's gap is what is left
    result = balance(hierarchy, customers, [100.0] * slots, start=START)
    assert result.units[TOP].planned == pytest.approx((78.0,) * slots)
    assert result.units[TOP].distance_kw == pytest.approx(22.0)


def test_inputs_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="outside its bounds"):
        balance(HAND, [CUSTOMERS[0], CustomerFlexibility("c2", (2.0, 1.0), (0.0, 0.0), (1.0, 1.0))],
                [1.0, 1.0],
                start=START)  # fmt: skip
    with pytest.raises(InvalidRequest, match="slots"):
        balance(HAND, CUSTOMERS, [1.0], start=START)
    with pytest.raises(InvalidRequest, match="no flexibility"):
        balance(HAND, CUSTOMERS[:1], [1.0, 1.0], start=START)
    with pytest.raises(InvalidRequest, match="unknown unit"):
        balance({"c1": ("nowhere", Level.CUSTOMER)}, CUSTOMERS[:1], [1.0, 1.0], start=START)
    with pytest.raises(InvalidRequest, match="non-finite"):
        balance(HAND, CUSTOMERS, [1.0, math.nan], start=START)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_top_distance_is_the_least_any_plan_in_the_bounds_reaches(data: st.DataObject) -> None:
    # random two-level trees; per slot the best reachable sum is the desired value clipped to
    # [sum of lowers, sum of uppers], so the least RMS distance is known in closed form
    lvs = data.draw(st.integers(1, 3))
    hierarchy: dict[str, tuple[str, Level]] = {}
    customers = []
    slots = 4
    for lv in range(lvs):
        hierarchy[f"lv{lv}"] = (TOP, Level.LV)
        for c in range(data.draw(st.integers(1, 4))):
            unit = f"c{lv}-{c}"
            hierarchy[unit] = (f"lv{lv}", Level.CUSTOMER)
            low = data.draw(st.lists(st.integers(-3, 3), min_size=slots, max_size=slots))
            span = data.draw(st.lists(st.integers(0, 4), min_size=slots, max_size=slots))
            where = data.draw(st.lists(st.floats(0, 1), min_size=slots, max_size=slots))
            customers.append(CustomerFlexibility(
                unit, tuple(lo + s * w for lo, s, w in zip(low, span, where, strict=True)),
                tuple(float(v) for v in low),
                tuple(float(lo + s) for lo, s in zip(low, span, strict=True)),
            ))  # fmt: skip
    desired = data.draw(st.lists(st.floats(-20, 20), min_size=slots, max_size=slots))
    result = balance(hierarchy, customers, desired, start=START)
    lo = [sum(c.lower[t] for c in customers) for t in range(slots)]
    hi = [sum(c.upper[t] for c in customers) for t in range(slots)]
    best = [min(max(d, a), b) for d, a, b in zip(desired, lo, hi, strict=True)]
    least = math.sqrt(sum((b - d) ** 2 for b, d in zip(best, desired, strict=True)) / slots)
    top = result.units[TOP]
    assert top.planned == pytest.approx(tuple(best), abs=1e-9)
    assert top.distance_kw == pytest.approx(least, abs=1e-9)
    for plan in result.units.values():  # every plan within its bounds, sums consistent
        below = result.children.get(plan.unit, ())
        if below:
            sums = [sum(result.units[k].planned[t] for k in below) for t in range(slots)]
            assert plan.planned == pytest.approx(tuple(sums), abs=1e-9)
