"""Tariff periods and targets (O2, O3): pure rules."""

from __future__ import annotations

import pytest

from gridhub.domain.registry import Site
from gridhub.domain.tariffs import Period, Target, check_periods
from gridhub.errors import InvalidRequest

DAY = [Period("00:00", "07:00", 0.18, "night"), Period("07:00", "24:00", 0.31, "day")]


def test_periods_tiling_the_day_are_accepted() -> None:
    assert check_periods(DAY) == DAY
    assert check_periods([Period("00:00", "24:00", 0.2)])


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ([], "at least one period"),
        ([Period("01:00", "24:00", 0.2)], "period 1 starts at 01:00; it must start at 00:00"),
        ([Period("00:00", "07:00", 1), Period("06:00", "24:00", 1)],
         "period 2 starts at 06:00; it must start at where period 1 ends (07:00)"),
        ([Period("00:00", "07:00", 1), Period("07:00", "23:00", 1)], "must end at 24:00"),
        ([Period("00:00", "7:00", 1)], "must be HH:MM"),
        ([Period("00:00", "25:00", 1)], "must be HH:MM"),
        ([Period("00:00", "00:00", 1)], "ends (00:00) before it starts"),
        ([Period("00:00", "24:00", float("nan"))], "finite"),
    ],
)  # fmt: skip
def test_bad_periods_are_refused_precisely(periods: list[Period], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_periods(periods)
    assert message in str(caught.value)


SITES = [
    Site("t", "hh1", location="Genk", appliance_types=("boiler",), has_pv=True),
    Site("t", "hh2", location="Genk", appliance_types=("dryer",)),
    Site("t", "hh3", location="Leuven", experiment="tou"),
]


def test_targets_select_sites() -> None:
    assert [s.id for s in Target(("hh2",)).select(SITES)] == ["hh2"]
    assert [s.id for s in Target(attribute="location", value="Genk").select(SITES)] == [
        "hh1",
        "hh2",
    ]
    assert [s.id for s in Target(attribute="appliance_type", value="boiler").select(SITES)] == [
        "hh1"
    ]
    assert [s.id for s in Target(attribute="has_pv", value="true").select(SITES)] == ["hh1"]
    assert [s.id for s in Target(attribute="experiment", value="tou").select(SITES)] == ["hh3"]


def test_bad_targets_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="either sites or a group"):
        Target()
    with pytest.raises(InvalidRequest, match="either sites or a group"):
        Target(("hh1",), "location", "Genk")
    with pytest.raises(InvalidRequest, match="unknown group attribute 'colour'"):
        Target(attribute="colour", value="x")
    with pytest.raises(InvalidRequest, match="site 'hh9' is not registered"):
        Target(("hh1", "hh9")).select(SITES)
