"""Periodic grid services (issue #7): the day's losses, the next day's forecast, the week's quality.

Seed 004 runs the losses calculation per day and the forecasts day-ahead; EN 50160 judges whole
weeks. :class:`GridSchedule` decides, from the clock and each tenant's local time, which runs
are due (:func:`due`, pure) and a thread runs them through :class:`~gridhub.grid.runs.GridRuns`:

* ``losses`` of the previous local day, from ``LOSSES_AT`` (01:00) local — late readings of the
  evening have arrived by then;
* ``forecast`` of the next 24 h, from ``FORECAST_AT`` (00:05) local, once a day;
* ``quality`` of the previous local week (Monday to Monday), on Mondays from ``LOSSES_AT``.

Only tenants with a topology are run. What was run is remembered in memory; after a restart the
day's runs are redone, which writes nothing new (results are deduplicated by device, identifier
or alert type and time). A failing run is logged and retried at the next tick, at most
``MAX_ATTEMPTS`` times a period, so a tenant with no substation meter does not fill the log.
Enabled by the ``grid_schedule`` setting (off by default: a hub without meters has nothing to
run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gridhub.errors import GridhubError, NotFound
from gridhub.grid.run_inputs import Period
from gridhub.grid.runs import GridRuns
from gridhub.storage.registry import Registry

__all__ = ["FORECAST_AT", "LOSSES_AT", "GridSchedule", "Job", "due"]

log = logging.getLogger(__name__)

LOSSES_AT = time(1, 0)
FORECAST_AT = time(0, 5)
TICK_S = 60.0
MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Job:
    """One periodic run: ``service`` of ``tenant`` for the local day or week ``key``."""

    tenant: str
    service: str  # losses | forecast | quality
    key: date


def due(now: datetime, tenants: Iterable[tuple[str, ZoneInfo]]) -> list[Job]:
    """The runs that should have happened by ``now`` (aware) for each ``(tenant, zone)``."""
    jobs = []
    for tenant, zone in tenants:
        local = now.astimezone(zone)
        today = local.date()
        if local.time() >= FORECAST_AT:
            jobs.append(Job(tenant, "forecast", today))
        if local.time() >= LOSSES_AT:
            jobs.append(Job(tenant, "losses", today - timedelta(days=1)))
            if today.weekday() == 0:
                jobs.append(Job(tenant, "quality", today - timedelta(days=7)))
    return jobs


def _day(day: date, zone: ZoneInfo) -> Period:
    start = datetime.combine(day, time(0), zone)
    end = datetime.combine(day + timedelta(days=1), time(0), zone)
    return Period(start.astimezone(UTC), end.astimezone(UTC))


class GridSchedule:
    """Runs the due jobs of every tenant with a topology (see the module doc)."""

    def __init__(
        self,
        runs: GridRuns,
        registry: Registry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._runs = runs
        self._registry = registry
        self._clock = clock
        self._done: set[Job] = set()
        self._attempts: dict[Job, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="grid-schedule", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug must not end the schedule
                log.exception("grid schedule tick failed")
            if self._stop.wait(TICK_S):
                return

    def tick(self) -> list[Job]:
        """Run what is due and not done; return the jobs run successfully."""
        now = self._clock()
        tenants = [(t.id, t.zone) for t in self._registry.tenants()]
        zones = dict(tenants)
        oldest = now.date() - timedelta(days=14)  # forget what can no longer be due
        self._done = {j for j in self._done if j.key >= oldest}
        self._attempts = {j: n for j, n in self._attempts.items() if j.key >= oldest}
        ran = []
        for job in due(now, tenants):
            if job in self._done or self._attempts.get(job, 0) >= MAX_ATTEMPTS:
                continue
            try:
                self._run(job, zones[job.tenant])
            except NotFound:  # no topology (yet): nothing to run, ask again tomorrow
                self._done.add(job)
                continue
            except GridhubError as exc:
                self._attempts[job] = self._attempts.get(job, 0) + 1
                log.warning("grid %s of %s for %s: %s", job.service, job.tenant, job.key, exc)
                continue
            self._done.add(job)
            ran.append(job)
        return ran

    def _run(self, job: Job, zone: ZoneInfo) -> None:
        if job.service == "losses":
            self._runs.losses(job.tenant, _day(job.key, zone))
        elif job.service == "forecast":
            self._runs.forecast(job.tenant, 24)
        else:
            self._runs.quality(job.tenant, job.key)
        log.info("grid %s of %s for %s written", job.service, job.tenant, job.key)
