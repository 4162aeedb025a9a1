"""When periodic grid runs are due (grid/schedule.py ``due``): in each tenant's local time."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from gridhub.grid.schedule import Job, due

BRUSSELS = ZoneInfo("Europe/Brussels")
TOKYO = ZoneInfo("Asia/Tokyo")


def test_nothing_before_five_past_midnight_local() -> None:
    now = datetime(2026, 11, 18, 23, 2, tzinfo=UTC)  # 00:02 in Brussels
    assert due(now, [("b", BRUSSELS)]) == []


def test_forecast_after_midnight_losses_after_one() -> None:
    at = datetime(2026, 11, 19, 0, 30, tzinfo=UTC)  # 01:30 Brussels (a Thursday)
    assert due(at, [("b", BRUSSELS)]) == [
        Job("b", "forecast", date(2026, 11, 19)),
        Job("b", "losses", date(2026, 11, 18)),
    ]
    before_one = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)  # 00:30 Brussels
    assert due(before_one, [("b", BRUSSELS)]) == [Job("b", "forecast", date(2026, 11, 19))]


def test_quality_of_the_previous_week_on_mondays_and_each_tenant_in_its_zone() -> None:
    at = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)  # Monday 02:00 Brussels, 10:00 Tokyo
    jobs = due(at, [("b", BRUSSELS), ("t", TOKYO)])
    assert Job("b", "quality", date(2026, 11, 9)) in jobs
    assert Job("t", "quality", date(2026, 11, 9)) in jobs
    sunday = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    assert not any(j.service == "quality" for j in due(sunday, [("b", BRUSSELS)]))


def test_a_dst_night_still_has_one_losses_run_for_the_short_day() -> None:
    at = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET, before the 02:00 → 03:00 jump
    assert Job("b", "losses", date(2026, 3, 28)) in due(at, [("b", BRUSSELS)])
