"""Pairing a whitegood's configured and started alerts into the timelines' cycles (R2)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gridhub.services.report_types import Run
from gridhub.services.whitegood_cycles import CONFIGURED, STARTED, device_cycles, pair
from gridhub.storage.base import AlertQuery, StoredAlert

ZONE = ZoneInfo("Europe/Brussels")
START = datetime(2026, 3, 4, tzinfo=ZONE)
END = START + timedelta(days=1)


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def alert(
    kind: str, when: datetime, device: str = "hh001-plug-washer", **meta: object
) -> StoredAlert:
    return StoredAlert(device, when, kind, "Info", "", json.dumps(meta), when)


def configured(when: datetime, deadline: datetime, program: str = "cotton 40°C") -> StoredAlert:
    meta = {"configuredAt": when.isoformat(), "deadline": deadline.isoformat(), "program": program}
    return alert(CONFIGURED, when, **meta)


def started(when: datetime, config: datetime, deadline: datetime, program: str = "cotton 40°C"):
    meta = {
        "configuredAt": config.isoformat(),
        "deadline": deadline.isoformat(),
        "program": program,
    }
    return alert(STARTED, when, **meta)


def test_configuration_and_start_pair_on_configured_at_and_match_the_run() -> None:
    run = Run(at(9), at(10.5), 0.8, 2.1)
    other_run = Run(at(20), at(21), 0.6, 2.0)
    alerts = [
        started(at(9.1), at(7.5), at(13)),
        configured(at(7.5), at(13)),
        configured(at(18), at(23), "cotton 60°C"),
        started(at(20.2), at(18), at(23), "cotton 60°C"),
        alert("outage.start", at(8)),  # not a whitegood alert
    ]
    cycles = pair(alerts, START, END, ZONE, [run, other_run])
    assert [(c.configured_at, c.deadline, c.program, c.started_at, c.run) for c in cycles] == [
        (at(7.5), at(13), "cotton 40°C", at(9.1), run),
        (at(18), at(23), "cotton 60°C", at(20.2), other_run),
    ]
    assert all(c.started_at is not None and c.started_at.tzinfo == ZONE for c in cycles)


def test_resent_alerts_make_one_cycle() -> None:
    alerts = [configured(at(7), at(12)), started(at(8), at(7), at(12))] * 3
    assert len(pair(alerts, START, END, ZONE)) == 1


def test_a_lost_alert_still_leaves_the_other_half() -> None:
    only_start = pair([started(at(8), at(7), at(12))], START, END, ZONE)
    assert [(c.configured_at, c.deadline, c.program) for c in only_start] == [
        (at(7), at(12), "cotton 40°C")
    ]
    pending = pair([configured(at(22), at(30))], START, END, ZONE)
    assert [(c.configured_at, c.started_at, c.run) for c in pending] == [(at(22), None, None)]
    bare = pair([alert(STARTED, at(9))], START, END, ZONE)
    assert [(c.configured_at, c.deadline, c.program, c.started_at) for c in bare] == [
        (None, None, None, at(9))
    ]


def test_a_cycle_belongs_to_the_day_it_starts() -> None:
    yesterday_config = [configured(at(-2), at(10)), started(at(1), at(-2), at(10))]
    assert [c.configured_at for c in pair(yesterday_config, START, END, ZONE)] == [at(-2)]
    tomorrow = [configured(at(23.5), at(33)), started(at(24.5), at(23.5), at(33))]
    assert pair(tomorrow, START, END, ZONE) == []
    assert pair(yesterday_config[:1], START, END, ZONE) == []  # configured yesterday, no start


def test_malformed_metadata_leaves_fields_empty() -> None:
    broken = [
        StoredAlert("d", at(7), CONFIGURED, "Info", "not json", "{", at(7)),
        StoredAlert("d", at(8), STARTED, "Info", "", json.dumps(["a"]), at(8)),
        alert(CONFIGURED, at(9), configuredAt="2026-03-04T09:00:00", deadline=7, program=""),
        alert(CONFIGURED, at(10), configuredAt="x" * 500, program="p" * 500),
    ]
    cycles = pair(broken, START, END, ZONE)
    assert [(c.configured_at, c.deadline, c.started_at) for c in cycles] == [
        (at(7), None, None),
        (None, None, at(8)),
        (at(9), None, None),  # a naive configuredAt falls back to the alert's own time
        (at(10), None, None),
    ]
    assert cycles[3].program == "p" * 100


class _Store:
    def __init__(self, alerts: Sequence[StoredAlert]) -> None:
        self._alerts = list(alerts)
        self.queries: list[AlertQuery] = []

    def alerts(self, query: AlertQuery) -> list[StoredAlert]:
        self.queries.append(query)
        return [a for a in self._alerts if a.device == query.device]


class _Scope:
    """Reads only alerts from 08:00 on, like a consent window that opens at 08:00."""

    def alerts(self, alerts: Sequence[StoredAlert]) -> list[StoredAlert]:
        return [a for a in alerts if a.ts >= at(8)]


def test_device_cycles_reads_the_device_day_and_yesterday_through_the_scope() -> None:
    store = _Store([configured(at(7), at(12)), started(at(9), at(7), at(12))])
    unscoped = device_cycles(store, "t", "hh001-plug-washer", START, END, ZONE, [], None)  # type: ignore[arg-type]
    assert [(c.configured_at, c.started_at) for c in unscoped] == [(at(7), at(9))]
    query = store.queries[0]
    assert (query.tenant, query.device, query.start, query.end) == (
        "t",
        "hh001-plug-washer",
        START - timedelta(days=1),
        END,
    )
    scoped = device_cycles(store, "t", "hh001-plug-washer", START, END, ZONE, [], _Scope())  # type: ignore[arg-type]
    # the configuration alert is outside the scope; the start's own copy of its facts remains
    assert [(c.configured_at, c.started_at) for c in scoped] == [(at(7), at(9))]
    assert device_cycles(store, "t", "other", START, END, ZONE, [], _Scope()) == []  # type: ignore[arg-type]


def test_a_start_late_in_a_quiet_quarter_matches_the_run_of_the_next() -> None:
    late = Run(at(15), at(16.5), 0.7, 2.0)  # the 14:45 quarter stayed under the threshold
    far = Run(at(17), at(18), 0.5, 2.0)
    alerts = [started(at(14.98), at(14), at(19)), started(at(16.6), at(16.55), at(20))]
    cycles = pair(alerts, START, END, ZONE, [late, far])
    assert [c.run for c in cycles] == [late, None]  # 16:36 is over 15 min before 17:00's run
