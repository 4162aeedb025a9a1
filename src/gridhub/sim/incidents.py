"""Grid incidents the simulator can cause (S1, issue #7): what the devices would send.

Each function returns canonical messages, ``(hardwareId, JSON bytes)`` in time order, ready for
any :class:`~gridhub.sim.transport.Publisher` — so an incident reaches the hub through the real
ingest path, and the grid service that should notice it is tested end to end.

* :func:`outage` — supply lost below a topology node: every meter of the households fed through
  it sends a last gasp (``power.last.gasp``) within seconds of the fault, and ``power.restored``
  when supply is back. Real AMI networks lose some last gasps (the meter's capacitor empties
  before the radio gets through): ``lost`` drops that share, chosen reproducibly by ``seed``.
* :func:`fault` — a three-phase short circuit at a topology node, seen by the LV sensors
  (``lv-sensor`` devices) with the currents and voltages of pandapower's IEC 60909 calculation
  (:mod:`gridhub.sim.fault_currents`). ``mode="reports"``: the sensors that see fault current
  decide so themselves, by the seed's rule (:class:`~gridhub.grid.fault_location.FaultDetector`
  on their own pre-fault and fault values), and send ``fault.current.detected`` alerts;
  ``mode="samples"``: every sensor sends its polled V and I (per phase) before and during the
  fault, and the hub decides.
* :func:`luminaire` — bulbs of one public-lighting segment fuse: synchronised readings sets of
  the ``pl-sensor`` devices along a lighting feeder (each sees the voltage and the current of all
  the bulbs below it: constant-impedance lamps, cable impedance neglected as in the seed), the
  supply voltage wandering, with a little measurement noise.
"""

from __future__ import annotations

import cmath
import json
import math
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from gridhub.domain.alert_types import FAULT_CURRENT, LAST_GASP, POWER_RESTORED
from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.fault_location import FaultDetector, SensorSample, sensor_layout
from gridhub.grid.luminaires import lighting_feeder
from gridhub.sim.fault_currents import fault_currents

__all__ = ["fault", "luminaire", "meters_below", "outage"]

MAX_SETS = 100_000


def meters_below(
    topology: Topology, node: str, site_meters: Mapping[str, Sequence[str]]
) -> list[str]:
    """The meters (``site → hardwareIds``) of the households fed through ``node``."""
    return [m for site in topology.sites_downstream(node) for m in site_meters.get(site, ())]


def _alert(
    hardware_id: str,
    kind: str,
    level: str,
    text: str,
    at: datetime,
    metadata: Mapping[str, object] | None = None,
) -> bytes:
    request: dict[str, object] = {
        "type": kind,
        "level": level,
        "message": text,
        "eventDate": at.isoformat(),
    }
    if metadata:
        request["metadata"] = dict(metadata)
    message = {"hardwareId": hardware_id, "type": "DeviceAlert", "request": request}
    return json.dumps(message, separators=(",", ":")).encode()


def _measurements(hardware_id: str, values: Mapping[str, float], at: datetime) -> bytes:
    request = {"measurements": dict(values), "eventDate": at.isoformat()}
    message = {"hardwareId": hardware_id, "type": "DeviceMeasurements", "request": request}
    return json.dumps(message, separators=(",", ":")).encode()


def _aware(*moments: datetime | None) -> None:
    if any(m is not None and m.tzinfo is None for m in moments):
        raise InvalidRequest("incident times need a UTC offset")


def outage(
    topology: Topology,
    node: str,
    site_meters: Mapping[str, Sequence[str]],
    start: datetime,
    end: datetime | None = None,
    *,
    spread: timedelta = timedelta(seconds=20),
    lost: float = 0.0,
    seed: int = 0,
) -> list[tuple[str, bytes]]:
    """Last gasps of the meters below ``node`` from ``start`` (spread over ``spread``), and,
    if ``end`` is given, their power-restored alerts from then on. ``start`` must be aware."""
    _aware(start, end)
    if end is not None and end <= start:
        raise InvalidRequest("an outage ends after it starts")
    if not 0 <= lost < 1:
        raise InvalidRequest("lost is a share of last gasps in [0, 1)")
    meters = meters_below(topology, node, site_meters)
    if not meters:
        raise InvalidRequest(f"no meter is fed through node {node!r}")
    rng = random.Random(seed)
    gasps, restores = [], []
    for meter in meters:
        offset = timedelta(seconds=rng.uniform(0, spread.total_seconds()))
        if rng.random() >= lost:
            gasps.append((start + offset, meter))
        if end is not None:
            restores.append((end + offset, meter))
    messages = [
        (meter, _alert(meter, LAST_GASP, "Critical", "supply lost", at))
        for at, meter in sorted(gasps)
    ]
    messages += [
        (meter, _alert(meter, POWER_RESTORED, "Info", "supply restored", at))
        for at, meter in sorted(restores)
    ]
    return messages


def _phases(voltage_v: float, current_a: float) -> dict[str, float]:
    """A three-phase fault is symmetric: the same RMS values on the three phases."""
    values = {f"electricity.voltage.rms.l{p}": round(voltage_v, 2) for p in (1, 2, 3)}
    values |= {f"electricity.current.rms.l{p}": round(current_a, 2) for p in (1, 2, 3)}
    return values


def fault(
    topology: Topology,
    sensors: Mapping[str, str],
    node: str,
    at: datetime,
    *,
    mode: Literal["reports", "samples"] = "reports",
    poll: timedelta = timedelta(seconds=10),
    mv_sc_mva: float = 100.0,
    seed: int = 0,
) -> list[tuple[str, bytes]]:
    """What the LV sensors (id → node) send for a three-phase fault at ``node`` at ``at``:
    their fault reports (within 20 ms of ``at``), or their polled samples (``poll`` before, and
    at ``at``). ``at`` must be aware."""
    _aware(at)
    if mode not in ("reports", "samples"):
        raise InvalidRequest("mode is 'reports' or 'samples'")
    if not sensors:
        raise InvalidRequest("no LV sensor to see the fault")
    measured = fault_currents(topology, sensors, node, mv_sc_mva=mv_sc_mva)
    healthy, faulted = at - poll, at
    if mode == "samples":
        messages = [
            (s, _measurements(s, _phases(m.voltage_v, m.current_a), healthy))
            for s, m in sorted(measured.items())
        ]
        messages += [
            (s, _measurements(s, _phases(m.fault_voltage_v, m.fault_current_a), faulted))
            for s, m in sorted(measured.items())
        ]
        return messages
    # each sensor applies the seed's rule to what it measures itself
    detector = FaultDetector(sensor_layout(topology, sensors))
    rng = random.Random(seed)
    reports = []
    for sensor, m in sorted(measured.items()):
        detector.sample(SensorSample(sensor, healthy, m.voltage_v, m.current_a))
        sample = SensorSample(sensor, faulted, m.fault_voltage_v, m.fault_current_a)
        if detector.sample(sample) is not None:
            when = at + timedelta(milliseconds=rng.uniform(0, 20))
            facts = {
                "currentA": round(m.fault_current_a, 1),
                "voltageV": round(m.fault_voltage_v, 1),
            }
            text = f"fault current {m.fault_current_a:.0f} A"
            reports.append(
                (when, sensor, _alert(sensor, FAULT_CURRENT, "Warning", text, when, facts))
            )
    return [(sensor, raw) for _when, sensor, raw in sorted(reports)]


def luminaire(
    topology: Topology,
    sensors: Mapping[str, str],
    bulbs: Mapping[str, int],
    fused_after: str,
    start: datetime,
    sets: int,
    fused_at: int,
    *,
    fused: int = 1,
    interval: timedelta = timedelta(minutes=1),
    bulb_w: float = 70.0,
    power_factor: float = 0.9,
    wander: float = 0.03,
    noise: float = 0.001,
    seed: int = 0,
) -> list[tuple[str, bytes]]:
    """Readings sets of the public-lighting sensors (id → node, along one feeder) every
    ``interval`` from ``start``: ``bulbs`` per segment (keyed by its upstream sensor) of
    ``bulb_w`` at 230 V, ``fused`` of the segment after sensor ``fused_after`` going out from set
    ``fused_at`` on. The supply wanders ±``wander`` pu; each value carries ``noise`` (relative)."""
    _aware(start)
    feeder = lighting_feeder(topology, sensors)
    if not 1 <= sets <= MAX_SETS or not 0 <= fused_at < sets:
        raise InvalidRequest(f"sets must be 1..{MAX_SETS} and fused_at one of them")
    if fused_after not in sensors:
        raise InvalidRequest(f"unknown sensor {fused_after!r}")
    counts = [bulbs.get(s, 0) for s in feeder.sensors]
    if any(c < 0 for c in counts) or not 0 < fused <= bulbs.get(fused_after, 0):
        raise InvalidRequest(f"segment after {fused_after!r} has fewer than {fused} bulbs")
    if not 0 < power_factor <= 1 or not 0 <= wander < 0.5 or not 0 <= noise < 0.1:
        raise InvalidRequest("power_factor in (0, 1], wander < 0.5, noise < 0.1")
    angle = math.acos(power_factor)
    bulb = cmath.rect(bulb_w / 230.0**2, -angle)  # one lamp's admittance (S)
    rng = random.Random(seed)
    index = feeder.sensors.index(fused_after)
    messages = []
    for k in range(sets):
        at = start + k * interval
        lit = list(counts)
        if k >= fused_at:
            lit[index] -= fused
        volts = 230.0 * (1 + rng.uniform(-wander, wander))
        for i, sensor in enumerate(feeder.sensors):
            current = abs(volts * bulb * sum(lit[i:]))
            values = {
                "electricity.voltage.rms.l1": round(volts * (1 + rng.gauss(0, noise)), 3),
                "electricity.current.rms.l1": round(current * (1 + rng.gauss(0, noise)), 5),
                "electricity.powerFactor.l1": round(angle, 5),
            }
            messages.append((sensor, _measurements(sensor, values, at)))
    return messages
