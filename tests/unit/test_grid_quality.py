"""Quality of supply per EN 50160 (G8): weekly reports counted by hand.

One sample a minute for a week (10,080 samples, 1,008 ten-minute intervals), 230 V nominal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gridhub.errors import InvalidRequest
from gridhub.grid.quality import (
    Interruption,
    VoltageSample,
    report_rows,
    reports_csv,
    ten_minute_means,
    weekly_report,
    weekly_reports,
)

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def week(point: str, volts: Callable[[int], float | None]) -> list[VoltageSample]:
    """A sample per minute; ``volts(minute)`` None leaves a gap."""
    out = []
    for minute in range(7 * 24 * 60):
        v = volts(minute)
        if v is not None:
            out.append(VoltageSample(point, MONDAY + minute * MINUTE, v))
    return out


def test_ten_minute_values_are_rms_of_the_samples() -> None:
    # 5 samples at 220 V and 5 at 240 V: sqrt((5·220² + 5·240²)/10) = 230.217 V
    samples = [VoltageSample("cp", MONDAY + i * MINUTE, 220.0 if i < 5 else 240.0)
               for i in range(10)]  # fmt: skip
    (mean,) = ten_minute_means(samples, nominal_v=230.0)
    assert mean.voltage_v == pytest.approx(230.2173, abs=1e-4)
    assert mean.samples == 10 and not mean.flagged and mean.start == MONDAY


def test_compliant_week_with_40_low_intervals_and_two_interruptions() -> None:
    # 40 intervals (400 minutes) on Wednesday at 200 V: 0.87 pu, outside ±10 % but above −15 %.
    # Interruptions: Monday 10:00-10:02 (2 min, short) and Tuesday 12:00-12:30 (30 min, long).
    # Flagged intervals: Mon 10:00 and Tue 12:00, 12:10, 12:20 = 4; valid 1,008 − 4 = 1,004;
    # in band 1,004 − 40 = 964; share 964 / 1,004 = 96.02 % >= 95 %: compliant.
    wednesday = 2 * 24 * 60
    monday_10, tuesday_12 = 10 * 60, 24 * 60 + 12 * 60

    def volts(m: int) -> float:
        if monday_10 <= m < monday_10 + 2 or tuesday_12 <= m < tuesday_12 + 30:
            return 0.0
        return 200.0 if wednesday <= m < wednesday + 400 else 231.0

    report = weekly_report("cp1", MONDAY, week("cp1", volts))
    assert report.status == "compliant"
    assert (report.intervals_with_data, report.intervals_flagged) == (1008, 4)
    assert (report.intervals_valid, report.intervals_in_band) == (1004, 964)
    assert report.share_in_band == pytest.approx(964 / 1004)
    assert report.intervals_outside_limits == 0
    assert report.min_mean_v == pytest.approx(200.0) and report.max_mean_v == pytest.approx(231.0)
    assert (report.short_interruptions, report.long_interruptions) == (1, 1)
    assert report.long_interruption_time == timedelta(minutes=30)
    assert [i.duration for i in report.interruptions] == [2 * MINUTE, 30 * MINUTE]


def test_not_compliant_below_95_percent_or_outside_limits() -> None:
    # 60 low intervals: 948 / 1,008 = 94.05 % < 95 %
    low = weekly_report("cp", MONDAY, week("cp", lambda m: 200.0 if m < 600 else 230.0))
    assert low.status == "not_compliant" and low.intervals_in_band == 948
    # one interval at 190 V (0.826 pu, below −15 %): 99.9 % in band, yet not compliant
    dip = weekly_report("cp", MONDAY, week("cp", lambda m: 190.0 if m < 10 else 230.0))
    assert dip.share_in_band == pytest.approx(1007 / 1008)
    assert dip.intervals_outside_limits == 1 and dip.status == "not_compliant"


def test_a_week_with_a_day_missing_is_not_judged() -> None:
    # no data on Sunday: 864 of 1,008 intervals (85.7 %) < 90 % coverage
    report = weekly_report("cp", MONDAY, week("cp", lambda m: None if m >= 6 * 1440 else 230.0))
    assert report.status == "insufficient_data" and report.intervals_with_data == 864


def test_given_interruptions_merge_with_sampled_ones_and_flag_intervals() -> None:
    # the samples show 0 V at 05:00-05:01 (short); G1 reports an outage 04:58-05:05 for the
    # same point: merged into one interruption of 7 min (long), flagging 04:50 and 05:00.
    samples = week("cp", lambda m: 0.0 if 300 <= m < 301 else 230.0)
    given = [Interruption("cp", MONDAY + 298 * MINUTE, MONDAY + 305 * MINUTE),
             Interruption("other", MONDAY, MONDAY + MINUTE)]  # fmt: skip
    report = weekly_report("cp", MONDAY, samples, interruptions=given)
    assert report.interruptions == (given[0],)
    assert (report.short_interruptions, report.long_interruptions) == (0, 1)
    assert report.intervals_flagged == 2 and report.status == "compliant"


def test_batch_reports_and_renderers() -> None:
    samples = week("a", lambda m: 230.0) + week("b", lambda m: 200.0 if m < 600 else 230.0)
    reports = weekly_reports(MONDAY, samples, {"a": 230.0, "b": 230.0})
    assert [(r.connection_point, r.status) for r in reports] == [
        ("a", "compliant"), ("b", "not_compliant")
    ]  # fmt: skip
    rows = report_rows(reports)
    assert rows[1]["share_in_band"] == round(948 / 1008, 6)
    assert rows[0]["week_end"] == "2026-03-09T00:00:00+00:00"
    parsed = list(csv.DictReader(io.StringIO(reports_csv(reports))))
    assert [p["status"] for p in parsed] == ["compliant", "not_compliant"]
    assert parsed[0]["intervals_valid"] == "1008"


def test_inputs_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="no nominal"):
        weekly_reports(MONDAY, [VoltageSample("x", MONDAY, 230.0)], {"a": 230.0})
    with pytest.raises(InvalidRequest, match="voltage"):
        weekly_report("a", MONDAY, [VoltageSample("a", MONDAY, float("nan"))])
    with pytest.raises(InvalidRequest, match="UTC offset"):
        weekly_report("a", MONDAY.replace(tzinfo=None), [])
    backwards = Interruption("a", MONDAY + MINUTE, MONDAY)
    with pytest.raises(InvalidRequest, match="ends before"):
        weekly_report("a", MONDAY, [], interruptions=[backwards])


def test_a_local_week_with_the_dst_change_has_1002_intervals() -> None:
    # Brussels springs forward on Sunday 29 March 2026: Monday 23 March 00:00 CET to Monday 30
    # March 00:00 CEST is 167 hours = 1,002 intervals
    start = datetime(2026, 3, 23, tzinfo=ZoneInfo("Europe/Brussels"))
    first = start.astimezone(UTC)
    samples = [VoltageSample("cp", first + m * MINUTE, 230.0) for m in range(167 * 60)]
    report = weekly_report("cp", start, samples + [VoltageSample("cp", first - MINUTE, 230.0)])
    assert report.intervals_expected == 1002 and report.intervals_with_data == 1002
    assert report.week_end == datetime(2026, 3, 30, tzinfo=ZoneInfo("Europe/Brussels"))
    assert report.status == "compliant"
