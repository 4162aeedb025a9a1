"""What a state estimate (G5) runs on: measurements with their standard deviations.

A WLS estimate weights each measurement by ``1/σ²`` (seed 002 §7.2.1), so the σ is as much input
as the value. Three kinds of input, from most to least trusted:

* **meter readings** (:func:`meter_measurements`): smart meters attached to a node by site, summed
  per node (P, Q add; their variances add), voltages averaged with inverse-variance weights. σ
  from the meter's accuracy class (:class:`MeterAccuracy`, class 1 by default: 1 % of reading);
* **pseudo-measurements** (:func:`pseudo_measurements`): a forecast (G10) or the nominal load of
  a node no meter covers, with a large σ (50 % of the value by default) so it only fills the
  observability gap and never outweighs a meter;
* **virtual measurements** (:func:`zero_injections`): a node with nothing attached draws exactly
  nothing; tiny σ.

Values use the load convention at a node: ``p``/``q`` are what the node *consumes* (MW, Mvar;
a PV surplus is negative), ``v`` is the voltage magnitude in p.u. of the node's nominal voltage.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from gridhub.domain.topology import SwitchTarget, Topology
from gridhub.errors import InvalidRequest

__all__ = [
    "MAX_MEASUREMENTS",
    "MAX_READINGS",
    "Measurement",
    "MeterAccuracy",
    "MeterReading",
    "PseudoSettings",
    "measurement_set",
    "meter_measurements",
    "pseudo_measurements",
    "zero_injections",
]

MAX_READINGS = 200_000  # meter readings, summed per node
# pandapower's WLS keeps the weight matrix dense (m × m): 5,000 measurements are 200 MB. Larger
# grids are what the hierarchy is for: estimate LV grids apart and pass their results up.
MAX_MEASUREMENTS = 5_000
Kind = Literal["p", "q", "v"]
Origin = Literal["meter", "pseudo", "virtual", "lv_estimate"]
ZERO_INJECTION_STD_PU = 1e-5  # of the grid's sn_mva; pandapower floors σ at 1e-5 p.u. anyway


@dataclass(frozen=True, slots=True)
class Measurement:
    """One input of the estimate. ``ref`` says where it came from (site ids, a forecast, the LV
    grid whose estimate it is) so a removed bad measurement can be traced to a meter."""

    node: str
    kind: Kind
    value: float
    std_dev: float
    origin: Origin = "meter"
    ref: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("p", "q", "v"):
            raise InvalidRequest(f"measurement kind must be p, q or v, got {self.kind!r}")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "std_dev", float(self.std_dev))
        if not math.isfinite(self.value):
            raise InvalidRequest(f"measurement {self.kind} at {self.node!r} is not finite")
        if not (math.isfinite(self.std_dev) and self.std_dev > 0.0):
            raise InvalidRequest(f"measurement {self.kind} at {self.node!r}: std_dev must be > 0")


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A site's meter over one interval: mean active/reactive power consumed (MW, Mvar; export
    negative) and mean voltage in p.u., each optional but P."""

    site_id: str
    p_mw: float
    q_mvar: float | None = None
    vm_pu: float | None = None


@dataclass(frozen=True, slots=True)
class MeterAccuracy:
    """σ of a meter reading: ``relative`` of the value with ``floor_mw`` as a minimum (a meter
    reading zero still has an error), voltage σ in p.u."""

    relative: float = 0.01
    floor_mw: float = 1e-5
    v_pu: float = 0.002

    def power(self, value: float) -> float:
        return max(abs(value) * self.relative, self.floor_mw)


@dataclass(frozen=True, slots=True)
class PseudoSettings:
    """σ of a pseudo-measurement: ``relative`` of the value, at least ``floor_mw``."""

    relative: float = 0.5
    floor_mw: float = 1e-3

    def power(self, value: float) -> float:
        return max(abs(value) * self.relative, self.floor_mw)


def meter_measurements(
    topology: Topology, readings: Iterable[MeterReading], accuracy: MeterAccuracy = MeterAccuracy()
) -> tuple[Measurement, ...]:
    """P, Q (where given) and V per node from the readings of the sites attached to it."""
    p: dict[str, float] = defaultdict(float)
    q: dict[str, float] = defaultdict(float)
    p_var: dict[str, float] = defaultdict(float)
    q_var: dict[str, float] = defaultdict(float)
    v_num: dict[str, float] = defaultdict(float)
    v_den: dict[str, float] = defaultdict(float)
    sites: dict[str, list[str]] = defaultdict(list)
    q_missing: set[str] = set()
    count = 0
    for reading in readings:
        count += 1
        if count > MAX_READINGS:
            raise InvalidRequest(f"at most {MAX_READINGS} meter readings per estimate")
        node = topology.site_node(reading.site_id)
        sites[node].append(reading.site_id)
        for value in (reading.p_mw, reading.q_mvar, reading.vm_pu):
            if value is not None and not math.isfinite(value):
                raise InvalidRequest(f"site {reading.site_id!r}: a reading is not finite")
        p[node] += reading.p_mw
        p_var[node] += accuracy.power(reading.p_mw) ** 2
        if reading.q_mvar is None:
            q_missing.add(node)
        else:
            q[node] += reading.q_mvar
            q_var[node] += accuracy.power(reading.q_mvar) ** 2
        if reading.vm_pu is not None:
            weight = 1.0 / accuracy.v_pu**2
            v_num[node] += weight * reading.vm_pu
            v_den[node] += weight
    out: list[Measurement] = []
    for node, site_ids in sites.items():
        ref = ",".join(site_ids[:20]) + ("…" if len(site_ids) > 20 else "")
        out.append(Measurement(node, "p", p[node], math.sqrt(p_var[node]), "meter", ref))
        if node not in q_missing:  # a node's Q is known only when every meter on it gives Q
            out.append(Measurement(node, "q", q[node], math.sqrt(q_var[node]), "meter", ref))
        if v_den[node]:
            v = v_num[node] / v_den[node]
            out.append(Measurement(node, "v", v, 1.0 / math.sqrt(v_den[node]), "meter", ref))
    return tuple(out)


def _nominal(topology: Topology) -> dict[str, tuple[float, float]]:
    """Nominal consumption per node: loads minus generators in service (the standard profile a
    node falls back to without a forecast)."""
    out: dict[str, tuple[float, float]] = {}
    for sign, items in ((1.0, topology.loads), (-1.0, topology.generators)):
        for x in items:
            if x.in_service:
                p0, q0 = out.get(x.node, (0.0, 0.0))
                out[x.node] = (p0 + sign * x.p_mw, q0 + sign * x.q_mvar)
    return out


def pseudo_measurements(
    topology: Topology,
    covered: Iterable[str],
    forecasts: Mapping[str, tuple[float, float]] | None = None,
    settings: PseudoSettings = PseudoSettings(),
) -> tuple[Measurement, ...]:
    """P and Q for every node with a load or generator (or a forecast) that ``covered`` (nodes
    with meter P) leaves out: the forecast ``{node: (p_mw, q_mvar)}`` where given, else the
    nominal load."""
    done = set(covered)
    values = _nominal(topology) | dict(forecasts or {})
    out: list[Measurement] = []
    for node, (p, q) in values.items():
        topology.node(node)
        if node in done:
            continue
        ref = "forecast" if forecasts and node in forecasts else "nominal"
        out.append(Measurement(node, "p", p, settings.power(p), "pseudo", ref))
        out.append(Measurement(node, "q", q, settings.power(q), "pseudo", ref))
    return tuple(out)


def _fused_groups(topology: Topology) -> dict[str, str]:
    """Node → a representative of the nodes joined by closed bus-bus switches: a load flow (and
    pandapower's estimator) fuses them into one bus, so their injections add up and a zero
    injection on one of them would contradict a load on another."""
    parent = {node.id: node.id for node in topology.nodes}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for switch in topology.switches:
        if switch.target_kind is SwitchTarget.NODE and switch.closed:
            parent[find(switch.node)] = find(switch.target)
    return {node: find(node) for node in parent}


def zero_injections(topology: Topology, covered: Iterable[str]) -> tuple[Measurement, ...]:
    """P = Q = 0 at every in-service node without loads, generators, sites, sources or a
    measurement of its own (junctions, feeder heads, busbars), nor fused by a closed bus-bus switch
    to a node that has one."""
    busy = set(covered) | set(_nominal(topology))
    busy |= {s.node for s in topology.sources} | {s.node for s in topology.sites}
    busy |= {x.node for x in (*topology.loads, *topology.generators)}
    group = _fused_groups(topology)
    busy_groups = {group[node] for node in busy}
    std = ZERO_INJECTION_STD_PU * topology.sn_mva
    out: list[Measurement] = []
    for node in topology.nodes:
        if group[node.id] in busy_groups or not node.in_service:
            continue
        if topology.is_supplied(node.id):
            out.append(Measurement(node.id, "p", 0.0, std, "virtual", "zero injection"))
            out.append(Measurement(node.id, "q", 0.0, std, "virtual", "zero injection"))
    return tuple(out)


def measurement_set(
    topology: Topology,
    readings: Iterable[MeterReading] = (),
    *,
    extra: Iterable[Measurement] = (),
    forecasts: Mapping[str, tuple[float, float]] | None = None,
    accuracy: MeterAccuracy = MeterAccuracy(),
    pseudo: PseudoSettings = PseudoSettings(),
) -> tuple[Measurement, ...]:
    """Meters, then ``extra`` (substation sensors, an LV estimate), then pseudo-measurements for
    the nodes neither covers and zero injections for the empty ones: a set that is observable
    whenever the grid has a voltage measurement somewhere."""
    measured = meter_measurements(topology, readings, accuracy) + tuple(extra)
    covered = {m.node for m in measured if m.kind == "p"}
    return (
        measured
        + pseudo_measurements(topology, covered, forecasts, pseudo)
        + zero_injections(topology, covered)
    )
