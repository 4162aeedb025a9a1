"""The simulator's shapes (S1): H0 load, clear-sky PV, whitegood cycles, boilers, households."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from gridhub.sim import profiles as pf


def epoch(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("year", "easter"),
    [(2024, date(2024, 3, 31)), (2025, date(2025, 4, 20)), (2026, date(2026, 4, 5))],
)
def test_easter_and_belgian_holidays(year: int, easter: date) -> None:
    assert pf.easter_sunday(year) == easter
    holidays = pf.belgian_holidays(year)
    assert len(holidays) == 10
    assert date(year, 7, 21) in holidays  # the national day
    assert date.fromordinal(easter.toordinal() + 1) in holidays  # Easter Monday


def test_h0_year_is_one_kwh_a_year_per_local_quarter() -> None:
    table = pf.h0_year(2026)
    assert table.shape == (365, 96)
    assert table.sum() * 0.25 == pytest.approx(1.0, rel=1e-6)
    # a winter evening uses more than a summer night: the shape has seasons and a day cycle
    assert table[14, 76] > 2 * table[180, 16]


def test_h0_at_keeps_each_quarter_value_at_its_middle() -> None:
    day = date(2026, 2, 10)
    middles = np.arange(96) * 900 + 450.0
    np.testing.assert_allclose(pf.h0_at(day, middles), pf.h0_year(2026)[40])
    # shifted an hour past midnight it reads the next day's first hour, no wrap to the same day
    late = pf.h0_at(day, np.array([86400 + 450.0]))
    assert late[0] == pytest.approx(pf.h0_year(2026)[41, 0])


def test_clear_sky_is_zero_at_night_and_strong_at_noon_in_june() -> None:
    night = pf.clear_sky_per_kwp(np.array([epoch(2026, 6, 21, 0), epoch(2026, 6, 21, 23)]))
    assert np.all(night == 0.0)
    noon = pf.clear_sky_per_kwp(np.array([epoch(2026, 6, 21, 11, 45)]))
    assert np.all(noon > 0.6) and np.all(noon < 1.0)
    december = pf.clear_sky_per_kwp(np.array([epoch(2026, 12, 21, 11, 45)]))
    assert np.all(december < noon)


def test_clear_sky_day_energy_is_plausible_for_flanders() -> None:
    # a clear June day gives about 6-8 kWh per kWp on a south roof, a clear December day ~2
    june = pf.clear_sky_per_kwp(np.arange(epoch(2026, 6, 21), epoch(2026, 6, 22), 300.0))
    december = pf.clear_sky_per_kwp(np.arange(epoch(2026, 12, 21), epoch(2026, 12, 22), 300.0))
    south = pf.PV_AZIMUTHS_DEG.index(180.0)
    assert 6.0 < june[south].sum() * 300 / 3600 < 9.0
    assert 1.0 < december[south].sum() * 300 / 3600 < 3.0


def test_sky_transmission_stays_in_range() -> None:
    for seed in range(20):
        sky = pf.sky_transmission(np.random.default_rng(seed), 7, 100)
        assert sky.shape == (100,)
        assert np.all((sky >= 0.08) & (sky <= 1.0))


@pytest.mark.parametrize("dt", [900, 60, 7, 1])
def test_mean_power_integrates_a_cycle_exactly_at_any_interval(dt: int) -> None:
    durations, powers = pf.washer_program(np.random.default_rng(3))
    cycle = pf.Cycle(1000.0, durations, powers)
    edges = np.arange(0.0, 3 * 3600 + dt, dt)
    power = pf.mean_power(edges, [cycle])
    assert np.sum(power * np.diff(edges)) / 3600 == pytest.approx(cycle.energy_kwh, rel=1e-9)
    assert power.max() <= max(powers) + 1e-9
    assert power[edges[1:] <= 1000.0].sum() == 0.0


def test_mean_power_without_cycles_is_zero() -> None:
    assert np.all(pf.mean_power(np.arange(0.0, 3600.0, 900.0), []) == 0.0)


def test_program_energies_are_those_of_real_machines() -> None:
    rng = np.random.default_rng(11)
    for program, low, high in [
        (pf.washer_program, 0.4, 1.4),
        (pf.dryer_program, 2.0, 4.5),
        (pf.dishwasher_program, 0.7, 1.6),
    ]:
        for _ in range(20):
            cycle = pf.Cycle(0.0, *program(rng))
            assert low < cycle.energy_kwh < high
            assert 3000 < cycle.end_s < 2.5 * 3600


def test_whitegood_cycles_never_overlap_and_start_after_six() -> None:
    habits = {"washing_machine": 6.0, "dryer": 0.9, "dishwasher": 7.0}
    appliances = ("washing_machine", "dryer", "dishwasher")
    for seed in range(50):
        rng = np.random.default_rng(seed)
        day = pf.whitegood_day(rng, 0.0, seed % 2 == 0, appliances, habits, seed % 3 == 0)
        for cycles in day.values():
            for cycle in cycles:
                assert cycle.start_s >= 6 * 3600
                assert cycle.end_s < 26 * 3600  # at most into the small hours
            for before, after in zip(cycles, cycles[1:], strict=False):
                assert after.start_s >= before.end_s
        assert len(day["dryer"]) <= len(day["washing_machine"])


def test_boilers_start_full_drop_with_draws_and_refill_by_night() -> None:
    draws = np.stack([pf.boiler_draws(np.random.default_rng(s), False, 1.0) for s in range(6)])
    capacity = np.full(6, 8.7)
    soc, heat = pf.simulate_boilers(draws, capacity, np.full(6, 2.4), np.full(6, 0.05))
    assert soc.shape == heat.shape == (6, pf.BOILER_STEPS + 1)
    assert np.all((soc >= 0) & (soc <= 1 + 1e-12))
    assert np.all(soc[:, 0] == 1.0)
    assert np.all(soc.min(axis=1) < 0.8)  # the morning showers show
    assert np.all(np.diff(heat, axis=1) >= 0)
    assert np.all(np.diff(heat, axis=1) <= 2.4 / 60 + 1e-12)  # never more than the element
    assert np.all(soc[:, 24 * 60] > 0.995)  # full again at 05:00 the next day
    # energy balance: heat in = drawn + lost + what the tank lost in charge
    lost = 0.05 * pf.BOILER_STEPS / 60
    balance = heat[:, -1] - draws.sum(axis=1) - lost - (soc[:, -1] - 1.0) * capacity
    np.testing.assert_allclose(balance, 0.0, atol=0.05)


def test_boiler_temperature_follows_state_of_charge() -> None:
    temps = pf.boiler_temperature(np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(temps, [40.0, 52.5, 65.0])


def test_lerp_grid_interpolates_per_minute_values() -> None:
    grid = np.array([np.arange(pf.BOILER_STEPS + 1, dtype=float)])
    at = np.array([1000.0, 1030.0, 1000.0 + 60 * pf.BOILER_STEPS])
    np.testing.assert_allclose(pf.lerp_grid(grid, 1000.0, at)[0], [0.0, 0.5, pf.BOILER_STEPS])


def test_households_are_deterministic_and_independent_of_fleet_size() -> None:
    a = pf.make_household(5, 17, "hh", "demo")
    b = pf.make_household(5, 17, "hh", "demo")
    assert a == b
    assert a.site.id == "hh017" and a.site.tenant == "demo"
    assert pf.make_household(6, 17, "hh", "demo") != a


def test_household_attributes_cover_the_pilot() -> None:
    homes = [pf.make_household(1, n, "hh", "t") for n in range(1, 401)]
    assert {h.site.location for h in homes} <= set(pf.LOCATIONS)
    assert {h.site.pilot_phase for h in homes} == set(pf.PILOT_PHASES)
    assert {h.site.experiment for h in homes} == set(pf.EXPERIMENTS)
    assert 0.3 < np.mean([h.site.has_pv for h in homes]) < 0.5
    for home in homes:
        owned = home.site.appliance_types
        assert set(owned) <= set(pf.APPLIANCES) and set(owned) - {"boiler"}
        assert "dryer" not in owned or "washing_machine" in owned
        assert 2500 <= home.annual_kwh <= 5500 and 0 < home.base_kwh <= home.annual_kwh
        assert (home.pv_kwp > 0) == home.site.has_pv
        assert home.pv_kwp == 0 or 2.0 <= home.pv_kwp <= 6.0
