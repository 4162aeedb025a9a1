"""What a smart whitegood of the Linear pilot reports about its own cycles (seed 000 §II, §IV).

The pilot's washing machines, dryers and dishwashers reported, "on every configuration", the
configuration time, the deadline the user set, the selected program, the estimated power train
and the actual start. The fleet sends this for every cycle of :func:`profiles.whitegood_day` as
two canonical ``DeviceAlert`` messages of the appliance's plug, both at level ``Info``:

* ``whitegood.configured`` at the configuration time: metadata ``configuredAt``, ``deadline``,
  ``program``, ``estimatedDurationS`` and ``estimatedEnergyKwh`` (the power train's summary);
* ``whitegood.started`` at the actual start: the same ``configuredAt``, ``deadline`` and
  ``program``, so a reader pairs the two by (device, ``configuredAt``).

Users configure "before going to work with a deadline at the time they return home": the
configuration comes 5 min to 3 h before the start (a dryer's 1-5 min: it is loaded after the
wash), never before the machine's previous cycle ended; the deadline is 15 min to 4 h after the
program's end, on a quarter-hour, as a user picks it on the appliance's clock. The program is read
off the cycle's own power curve (a washer's heating phase gives its temperature), so the name
always matches the energy the plug measures. Every draw comes from a generator seeded by
(seed, purpose, household, day): the events are the same however a span is cut into calls.

An event belongs to the tick whose interval ``[t, t + dt)`` holds it and is sent after that
tick's measurements, as the measurements of ``[t, t + dt)`` are: in live mode an event is sent
at the start of its interval, at most ``dt`` early.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np

from gridhub.domain.messages import AlertLevel, AlertRequest, DeviceAlert, encode
from gridhub.sim.profiles import Cycle

__all__ = [
    "CONFIGURED",
    "STARTED",
    "Event",
    "by_tick",
    "cycle_events",
    "program_of",
]

CONFIGURED = "whitegood.configured"
STARTED = "whitegood.started"
QUARTER_S = 900
# seconds between configuration and start: (shortest, longest) per appliance
LEAD_S: Mapping[str, tuple[float, float]] = {
    "washing_machine": (300.0, 10_800.0),
    "dishwasher": (300.0, 10_800.0),
    "dryer": (60.0, 300.0),
}
SLACK_S = (900.0, 14_400.0)  # deadline beyond the program's end, before rounding up
MIN_GAP_S = 60.0  # a machine is configured at least this long after its previous cycle ended


def _washer(cycle: Cycle) -> str:
    heat_min = cycle.durations_s[1] / 60  # profiles.washer_program: 6-9, 13-17, 17-21 min
    return "cotton 30°C" if heat_min < 11 else "cotton 40°C" if heat_min < 17 else "cotton 60°C"


def _dryer(cycle: Cycle) -> str:
    drying_min = sum(cycle.durations_s[:2]) / 60  # two heating phases, 60-90 min together
    return "cupboard dry" if drying_min < 75 else "extra dry"


def _dishwasher(cycle: Cycle) -> str:
    heat_min = (cycle.durations_s[1] + cycle.durations_s[3]) / 60  # two heats, 24-35 min
    return "eco 50°C" if heat_min < 30 else "normal 65°C"


PROGRAMS: Mapping[str, Callable[[Cycle], str]] = {
    "washing_machine": _washer,
    "dryer": _dryer,
    "dishwasher": _dishwasher,
}


def program_of(appliance: str, cycle: Cycle) -> str:
    """The program name the appliance shows for a cycle, from the cycle's own power curve."""
    return PROGRAMS[appliance](cycle)


@dataclass(frozen=True, slots=True)
class Event:
    """One alert to send: when (UTC epoch s), which device (index in ``Fleet.devices()``)."""

    at_s: int
    device: int
    hardware_id: str
    payload: bytes


def _iso(at_s: int, zone: tzinfo) -> str:
    text = datetime.fromtimestamp(at_s, zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _alert(hardware_id: str, kind: str, at: str, text: str, meta: dict[str, object]) -> bytes:
    request = AlertRequest(kind, AlertLevel.INFO, text, eventDate=at, metadata=meta)
    return encode(DeviceAlert(hardware_id, request))


def cycle_events(
    rng: np.random.Generator,
    hardware_id: str,
    device: int,
    appliance: str,
    cycles: Sequence[Cycle],
    zone: tzinfo,
) -> list[Event]:
    """The configured and started events of one appliance's cycles of a day, in time order.

    ``cycles`` are in start order and never overlap (:func:`profiles.whitegood_day`).
    """
    lead_lo, lead_hi = LEAD_S[appliance]
    events: list[Event] = []
    previous_end: float | None = None
    for cycle in cycles:
        lead, slack = rng.uniform(lead_lo, lead_hi), rng.uniform(*SLACK_S)
        start = round(cycle.start_s)
        configured = round(cycle.start_s - lead)
        if previous_end is not None:
            configured = max(configured, round(previous_end + MIN_GAP_S))
        configured = min(configured, start)
        deadline = -(-round(cycle.end_s + slack) // QUARTER_S) * QUARTER_S
        previous_end = cycle.end_s
        program = program_of(appliance, cycle)
        common: dict[str, object] = {
            "configuredAt": _iso(configured, zone),
            "deadline": _iso(deadline, zone),
            "program": program,
        }
        configured_meta = {
            **common,
            "estimatedDurationS": round(cycle.end_s - cycle.start_s),
            "estimatedEnergyKwh": round(cycle.energy_kwh, 3),
        }
        events.append(
            Event(
                configured,
                device,
                hardware_id,
                _alert(
                    hardware_id,
                    CONFIGURED,
                    _iso(configured, zone),
                    f"{program} configured, to finish by {common['deadline']}",
                    configured_meta,
                ),
            )
        )
        events.append(
            Event(
                start,
                device,
                hardware_id,
                _alert(hardware_id, STARTED, _iso(start, zone), f"{program} started", common),
            )
        )
    return events


def by_tick(events: Sequence[Event], ticks: Sequence[int], dt: int) -> list[list[Event]]:
    """The events whose time lies in each tick's ``[t, t + dt)``; ``events`` in time order."""
    times = [e.at_s for e in events]
    out: list[list[Event]] = []
    for t in ticks:
        lo, hi = bisect.bisect_left(times, t), bisect.bisect_left(times, t + dt)
        out.append(list(events[lo:hi]))
    return out
