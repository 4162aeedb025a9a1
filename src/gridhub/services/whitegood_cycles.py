"""A smart whitegood's own reports, paired into cycles for the timelines report (R2).

Seed 000 §IV: the analysis tool shows "config times, deadlines, effective start times, selected
program" of the pilot's smart appliances. An appliance (the simulator's plugs do the same, see
:mod:`gridhub.sim.whitegoods`) reports each cycle as two alerts of its device:
``whitegood.configured`` (metadata ``configuredAt``, ``deadline``, ``program``) and
``whitegood.started`` at the actual start, carrying the same ``configuredAt``. The pair is joined
on that ``configuredAt``; either alert alone still makes a cycle (the other was lost, or the
cycle waits for its start). Alerts are read through the caller's access scope, so a stakeholder
sees exactly the cycles whose alerts it may read. Metadata that is missing or malformed leaves
the field ``None`` rather than failing the report: it comes from devices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from gridhub.access.scope import ReadScope
from gridhub.services.report_types import Run, WhitegoodCycle
from gridhub.storage.base import AlertQuery, Store, StoredAlert

__all__ = ["CONFIGURED", "CYCLE_REPORTS", "LOOKBACK", "STARTED", "device_cycles", "pair"]

CONFIGURED = "whitegood.configured"
STARTED = "whitegood.started"
CYCLE_REPORTS = frozenset({CONFIGURED, STARTED})  # routine status: the overview leaves them out
LOOKBACK = timedelta(days=1)  # a cycle started today may have been configured yesterday
MAX_ALERTS = 1000  # per device and report: a machine reports a few cycles a day
MAX_TEXT = 100  # longest program name kept; longer is cut
MAX_TIME_TEXT = 64
# a run starts at most this long after the reported start: a quarter-hour that only holds the
# first minutes of a low-power fill phase stays under the run threshold, the next one does not
MATCH = timedelta(minutes=15)


@dataclass(slots=True)
class _Cycle:
    configured_at: datetime | None = None
    deadline: datetime | None = None
    program: str | None = None
    started_at: datetime | None = None


def _metadata(alert: StoredAlert) -> dict[str, Any]:
    try:
        meta = json.loads(alert.metadata or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _time(value: object) -> datetime | None:
    """An aware ISO 8601 time from metadata, or ``None`` for anything else."""
    if not isinstance(value, str) or len(value) > MAX_TIME_TEXT:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(value: object) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None


def pair(
    alerts: Sequence[StoredAlert],
    start: datetime,
    end: datetime,
    zone: tzinfo,
    runs: Sequence[Run] = (),
) -> list[WhitegoodCycle]:
    """The cycles of ``[start, end)`` in one device's alerts, in time order.

    A cycle belongs to the span of its start, or of its configuration while it has not started.
    Repeated alerts (a resent backfill) collapse into one cycle. ``runs`` (from the plug's
    power) are matched to the cycle they follow: the first run not over by the start that begins
    at most :data:`MATCH` after it (two cycles close together may share one run).
    """
    cycles: dict[object, _Cycle] = {}
    for alert in sorted(alerts, key=lambda a: a.ts):
        if alert.type not in (CONFIGURED, STARTED):
            continue
        meta = _metadata(alert)
        configured = _time(meta.get("configuredAt"))
        if alert.type == CONFIGURED:
            configured = configured or alert.ts
        key: object = configured if configured is not None else ("unpaired", alert.ts)
        cycle = cycles.setdefault(key, _Cycle())
        cycle.configured_at = cycle.configured_at or configured
        if alert.type == STARTED and cycle.started_at is None:
            cycle.started_at = alert.ts
        if alert.type == CONFIGURED or cycle.deadline is None:
            cycle.deadline = _time(meta.get("deadline")) or cycle.deadline
        if alert.type == CONFIGURED or cycle.program is None:
            cycle.program = _text(meta.get("program")) or cycle.program
    out: list[tuple[datetime, WhitegoodCycle]] = []
    for c in cycles.values():
        anchor = c.started_at or c.configured_at
        if anchor is None or not start <= anchor < end:
            continue
        run = None
        if c.started_at is not None:
            begun = c.started_at
            run = next((r for r in runs if r.end > begun and r.start <= begun + MATCH), None)
        local = [t.astimezone(zone) if t else None for t in (c.configured_at, c.deadline)]
        started = c.started_at.astimezone(zone) if c.started_at else None
        out.append((anchor, WhitegoodCycle(local[0], local[1], c.program, started, run)))
    return [cycle for _, cycle in sorted(out, key=lambda pair: pair[0])]


def device_cycles(
    store: Store,
    tenant: str,
    device: str,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    runs: Sequence[Run],
    scope: ReadScope | None,
) -> list[WhitegoodCycle]:
    """One device's cycles of ``[start, end)`` from its stored alerts, as ``scope`` may read."""
    query = AlertQuery(tenant, device=device, start=start - LOOKBACK, end=end, limit=MAX_ALERTS)
    alerts = store.alerts(query)
    if scope is not None:
        alerts = scope.alerts(alerts)
    return pair(alerts, start, end, zone, runs)
