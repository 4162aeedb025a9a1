"""Quality of supply per EN 50160 (G8, seed 004 §4.3.2.7): a weekly report per connection point
on the supply voltage magnitude and the interruptions.

Convert → solve → results:

* the inputs are plain records: :class:`VoltageSample` (RMS voltage of a connection point at a
  time, any rate) and, optionally, :class:`Interruption` records known from elsewhere (G1's
  outages mapped to their connection points);
* :func:`ten_minute_means` aggregates samples into 10-minute values, the quantity EN 50160 judges
  (the root mean square of the RMS values in each interval, as IEC 61000-4-30 aggregates;
  intervals aligned to UTC);
* :func:`weekly_report` judges one connection point's week; :func:`weekly_reports` does every
  connection point in a batch; :func:`report_rows` and :func:`reports_csv` render the typed
  :class:`QualityReport` as plain dicts or CSV for the integrator to store or serve.

The rules, for LV supply (EN 50160 §4.2.2, §4.2.6 and §4.2.7):

* *voltage*: during each week, 95 % of the 10-minute mean values must lie within ±10 % of the
  nominal voltage, and all of them within +10 % / −15 %;
* *interruptions*: the voltage below 5 % of nominal; *short* up to 3 minutes, *long* beyond.
  From samples an interruption runs from the first sample below 5 % to the next sample above;
  its resolution is the sampling interval. Interruptions given as records are merged with those
  seen in the samples (overlapping ones become one);
* 10-minute intervals that overlap an interruption are *flagged* and left out of the voltage
  statistic (IEC 61000-4-30's flagging concept), so an outage is counted once, as an
  interruption, and not also as a voltage violation;
* a week with fewer than ``min_coverage`` of its 1,008 intervals holding data is reported as
  ``insufficient_data`` rather than judged: missing data is neither good nor bad supply.

A week runs from ``week_start`` for seven calendar days in ``week_start``'s zone: give it in the
tenant's zone (``zoneinfo``) and a week with a DST change has 1,002 or 1,014 intervals.

An interruption belongs to the week it starts in; its duration is its full length.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from gridhub.errors import InvalidRequest

__all__ = [
    "INTERVAL",
    "MAX_SAMPLES",
    "Interruption",
    "QualityReport",
    "QualityRules",
    "TenMinuteMean",
    "VoltageSample",
    "report_rows",
    "reports_csv",
    "ten_minute_means",
    "week_end",
    "weekly_report",
    "weekly_reports",
]

INTERVAL = timedelta(minutes=10)
WEEK = timedelta(days=7)
INTERVALS_PER_WEEK = WEEK // INTERVAL  # 1,008 (1,002 or 1,014 in a local week with a DST change)
MAX_SAMPLES = 5_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Status = Literal["compliant", "not_compliant", "insufficient_data"]


@dataclass(frozen=True, slots=True)
class VoltageSample:
    connection_point: str
    at: datetime
    voltage_v: float


@dataclass(frozen=True, slots=True)
class Interruption:
    connection_point: str
    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class QualityRules:
    band_pu: float = 0.10  # ±10 % for 95 % of the week
    share: float = 0.95
    floor_pu: float = 0.85  # all values at least −15 % ...
    ceiling_pu: float = 1.10  # ... and at most +10 %
    interruption_pu: float = 0.05
    short_max: timedelta = timedelta(minutes=3)
    min_coverage: float = 0.9


@dataclass(frozen=True, slots=True)
class TenMinuteMean:
    start: datetime
    voltage_v: float
    samples: int
    flagged: bool  # overlaps an interruption: not judged


@dataclass(frozen=True, slots=True)
class QualityReport:
    connection_point: str
    week_start: datetime
    nominal_v: float
    status: Status
    intervals_expected: int
    intervals_with_data: int
    intervals_flagged: int
    intervals_valid: int  # with data and not flagged: the ones judged
    intervals_in_band: int  # within ±10 %
    share_in_band: float | None  # of the valid ones; None without any
    intervals_outside_limits: int  # below −15 % or above +10 %
    min_mean_v: float | None
    max_mean_v: float | None
    interruptions: tuple[Interruption, ...]
    short_interruptions: int
    long_interruptions: int
    long_interruption_time: timedelta

    @property
    def week_end(self) -> datetime:
        return week_end(self.week_start)


def week_end(week_start: datetime) -> datetime:
    """Seven calendar days on: with a ``zoneinfo`` start (the tenant's week, Monday 00:00
    local) a week with a DST change lasts 167 or 169 hours."""
    return week_start + WEEK  # aware + timedelta is wall-clock arithmetic in the start's zone


def _floor(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise InvalidRequest(f"time {at} has no UTC offset")
    return _EPOCH + ((at - _EPOCH) // INTERVAL) * INTERVAL


def ten_minute_means(
    samples: Iterable[VoltageSample], interruptions: Iterable[Interruption] = (),
    *, nominal_v: float, rules: QualityRules = QualityRules(),
) -> list[TenMinuteMean]:  # fmt: skip
    """10-minute values of one connection point's samples; samples below the interruption
    threshold are interruption, not voltage, and count only towards flagging."""
    squares: dict[datetime, list[float]] = defaultdict(list)
    low = rules.interruption_pu * nominal_v
    for sample in samples:
        squares.setdefault(_floor(sample.at), [])
        if sample.voltage_v >= low:
            squares[_floor(sample.at)].append(sample.voltage_v**2)
    spans = [(i.start, i.end) for i in interruptions]
    means = []
    for start in sorted(squares):
        values = squares[start]
        end = start + INTERVAL
        flagged = not values or any(a < end and b > start for a, b in spans)
        mean = math.sqrt(math.fsum(values) / len(values)) if values else 0.0
        means.append(TenMinuteMean(start, mean, len(values), flagged))
    return means


def _interruptions_from(point: str, samples: list[VoltageSample], low: float) -> list[Interruption]:
    found, start = [], None
    for sample in samples:
        if sample.voltage_v < low and start is None:
            start = sample.at
        elif sample.voltage_v >= low and start is not None:
            found.append(Interruption(point, start, sample.at))
            start = None
    if start is not None:  # still out at the last sample
        found.append(Interruption(point, start, samples[-1].at))
    return found


def _merge(items: list[Interruption]) -> list[Interruption]:
    merged: list[Interruption] = []
    for item in sorted(items, key=lambda i: i.start):
        if merged and item.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interruption(last.connection_point, last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return merged


def weekly_report(
    connection_point: str,
    week_start: datetime,
    samples: Iterable[VoltageSample],
    *,
    nominal_v: float = 230.0,
    interruptions: Iterable[Interruption] = (),
    rules: QualityRules = QualityRules(),
) -> QualityReport:
    """Judge one week (``week_start`` to 7 days later) of one connection point."""
    if not math.isfinite(nominal_v) or nominal_v <= 0:
        raise InvalidRequest(f"nominal_v must be a positive number, got {nominal_v}")
    if week_start.tzinfo is None:
        raise InvalidRequest("week_start needs a UTC offset")
    end = week_end(week_start)
    expected = (end.astimezone(UTC) - week_start.astimezone(UTC)) // INTERVAL
    ordered = sorted((s for s in samples if s.connection_point == connection_point),
                     key=lambda s: s.at)  # fmt: skip
    if len(ordered) > MAX_SAMPLES:
        raise InvalidRequest(f"at most {MAX_SAMPLES} samples per connection point and week")
    for s in ordered:
        if not math.isfinite(s.voltage_v) or s.voltage_v < 0:
            raise InvalidRequest(f"{connection_point!r} at {s.at}: voltage {s.voltage_v!r}")
    ordered = [s for s in ordered if week_start <= s.at < end]
    low = rules.interruption_pu * nominal_v
    given = [i for i in interruptions if i.connection_point == connection_point]
    for item in given:
        if item.end < item.start:
            raise InvalidRequest(f"interruption of {connection_point!r} ends before it starts")
    merged = _merge(_interruptions_from(connection_point, ordered, low) + given)
    means = ten_minute_means(ordered, merged, nominal_v=nominal_v, rules=rules)
    valid = [m.voltage_v for m in means if not m.flagged]
    band = (1 - rules.band_pu) * nominal_v, (1 + rules.band_pu) * nominal_v
    limits = rules.floor_pu * nominal_v, rules.ceiling_pu * nominal_v
    in_band = sum(1 for v in valid if band[0] <= v <= band[1])
    outside = sum(1 for v in valid if not limits[0] <= v <= limits[1])
    share = in_band / len(valid) if valid else None
    status: Status
    if len(means) < rules.min_coverage * expected or share is None:
        status = "insufficient_data"
    elif share >= rules.share and outside == 0:
        status = "compliant"
    else:
        status = "not_compliant"
    counted = tuple(i for i in merged if week_start <= i.start < end)
    short = [i for i in counted if i.duration <= rules.short_max]
    long = [i for i in counted if i.duration > rules.short_max]
    return QualityReport(
        connection_point, week_start, nominal_v, status, expected, len(means),
        sum(1 for m in means if m.flagged), len(valid), in_band, share, outside,
        min(valid, default=None), max(valid, default=None), counted, len(short), len(long),
        sum((i.duration for i in long), timedelta(0)),
    )  # fmt: skip


def weekly_reports(
    week_start: datetime,
    samples: Iterable[VoltageSample],
    nominal_v: Mapping[str, float],
    *,
    interruptions: Iterable[Interruption] = (),
    rules: QualityRules = QualityRules(),
) -> list[QualityReport]:
    """One report per connection point of ``nominal_v`` (its nominal voltage), by id."""
    by_point: dict[str, list[VoltageSample]] = defaultdict(list)
    for sample in samples:
        if sample.connection_point not in nominal_v:
            raise InvalidRequest(f"no nominal voltage for {sample.connection_point!r}")
        by_point[sample.connection_point].append(sample)
    cuts: dict[str, list[Interruption]] = defaultdict(list)
    for item in interruptions:
        cuts[item.connection_point].append(item)
    return [
        weekly_report(point, week_start, by_point[point], nominal_v=nominal_v[point],
                      interruptions=cuts[point], rules=rules)
        for point in sorted(nominal_v)
    ]  # fmt: skip


def report_rows(reports: Iterable[QualityReport]) -> list[dict[str, str | int | float | None]]:
    """Flat rows, one per report: what a CSV, a table or a JSON answer shows."""
    rows: list[dict[str, str | int | float | None]] = []
    for r in reports:
        rows.append({
            "connection_point": r.connection_point,
            "week_start": r.week_start.isoformat(),
            "week_end": r.week_end.isoformat(),
            "nominal_v": r.nominal_v,
            "status": r.status,
            "intervals_expected": r.intervals_expected,
            "intervals_with_data": r.intervals_with_data,
            "intervals_flagged": r.intervals_flagged,
            "intervals_valid": r.intervals_valid,
            "intervals_in_band": r.intervals_in_band,
            "share_in_band": None if r.share_in_band is None else round(r.share_in_band, 6),
            "intervals_outside_limits": r.intervals_outside_limits,
            "min_mean_v": None if r.min_mean_v is None else round(r.min_mean_v, 3),
            "max_mean_v": None if r.max_mean_v is None else round(r.max_mean_v, 3),
            "short_interruptions": r.short_interruptions,
            "long_interruptions": r.long_interruptions,
            "long_interruption_s": r.long_interruption_time.total_seconds(),
        })  # fmt: skip
    return rows


def reports_csv(reports: Iterable[QualityReport]) -> str:
    rows = report_rows(reports)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()
