"""Losses and fraud (G4, seed 004 §4.3.2): the energy balance of a secondary substation.

Over an interval, what entered the substation should equal what its meters recorded plus the
technical losses of its LV grid. The rest, the *unexplained* energy, is non-technical: fraud,
unmetered connections, faulty or missing meters. Convert → solve → typed result:

1. **convert**: the topology with every load and generator below the substation replaced by its
   sites' metered energy turned into mean power (``E/T``; Q from ``power_factor``);
2. **solve**: one load flow at those mean powers gives the technical loss power of the lines
   below the substation (and of the transformer when the energy-in meter is on its MV side).
   Losses grow with the square of the current, so a varying load loses more than its mean:
   energy losses = ``P_loss(mean) × T × loss_factor``, ``loss_factor = mean(P²)/mean(P)²`` of
   the substation's power over the interval (1 for a flat load; pass it from the substation's
   own profile, :func:`loss_factor`). This is the loss-load-factor method of planning studies,
   one load flow instead of one per time step. With per-step site powers (``steps``) it runs
   one load flow per step instead and sums the losses (the exact method, a load flow each);
3. **uncertainty**: ``σ² = (a·E_in)² + Σ(bᵢ·eᵢ)² + (c·E_loss)²`` with the substation meter's
   accuracy ``a``, each site meter's ``b`` and the loss model's relative error ``c``
   (:class:`LossSettings`); the alarm is *critical* when the unexplained energy exceeds
   ``critical_sigma`` σ, a *warning* above ``warning_sigma`` σ, and neither when it is below
   ``min_fraction`` of the energy in (a tiny but certain difference is not worth a visit);
4. **where**: the substation's grid is cut into *sections* (its LV feeders; with a single
   feeder, the branches where it first splits). A section with a feeder-head meter gets its own
   energy balance, z = unexplained/σ. Otherwise voltages tell: an unmetered load makes the
   voltages of its section drop more than the metered loads explain, so each site's residual
   ``V_expected − V_measured`` (expected from the load flow above, the median over all sites
   subtracted to cancel a common source-voltage offset) is averaged per section and scored
   ``mean/(σ_V/√n)``. Sections are ranked by score, most suspect first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gridhub.domain.topology import Load, NodeKind, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.topology_import import bus_indices, pandapower_quiet, to_pandapower

__all__ = [
    "BalanceInput",
    "LossReport",
    "LossSettings",
    "SectionSuspicion",
    "balances",
    "energy_balance",
    "loss_factor",
    "sections",
]

Level = Literal["ok", "warning", "critical"]
MAX_SITES = 100_000
MAX_STEPS = 7 * 96  # a week of quarter-hours: one load flow each


@dataclass(frozen=True, slots=True)
class LossSettings:
    substation_relative: float = 0.005  # class 0.5 substation meter
    meter_relative: float = 0.01  # class 1 household meters
    loss_model_relative: float = 0.25  # line parameters, unbalance, the loss factor
    voltage_std_pu: float = 0.002
    warning_sigma: float = 2.0
    critical_sigma: float = 3.0
    min_fraction: float = 0.01


@dataclass(frozen=True, slots=True)
class BalanceInput:
    """One substation over one interval. ``sites``: site id → energy consumed (kWh, net of
    export); ``feeders``: section node → energy at its head meter (kWh), where there is one;
    ``voltages``: site id → mean voltage (p.u.), where meters report it. ``steps``, optional:
    site id → mean kW per equal step of the interval; with them the technical losses come from
    one load flow per step instead of the mean-power load flow × ``loss_factor``."""

    substation: str
    hours: float
    energy_in_kwh: float
    sites: Mapping[str, float]
    feeders: Mapping[str, float] = field(default_factory=dict)
    voltages: Mapping[str, float] = field(default_factory=dict)
    power_factor: float = 0.95
    loss_factor: float = 1.0
    meter_at: Literal["lv", "mv"] = "lv"
    steps: tuple[Mapping[str, float], ...] = ()

    def __post_init__(self) -> None:
        if len(self.steps) > MAX_STEPS:
            raise InvalidRequest(f"at most {MAX_STEPS} load-flow steps per balance")
        for step in self.steps:
            if set(step) - set(self.sites) or not all(math.isfinite(x) for x in step.values()):
                raise InvalidRequest("each step holds finite kW of listed sites only")
        if not (math.isfinite(self.hours) and 0.0 < self.hours <= 24.0 * 366):
            raise InvalidRequest("hours must lie in (0, 8784]")
        if len(self.sites) > MAX_SITES:
            raise InvalidRequest(f"at most {MAX_SITES} sites per substation")
        numbers = [self.energy_in_kwh, *self.sites.values(), *self.feeders.values()]
        if not all(math.isfinite(x) for x in [*numbers, *self.voltages.values()]):
            raise InvalidRequest("energies and voltages must be finite")
        if not 0.0 < self.power_factor <= 1.0:
            raise InvalidRequest("power_factor must lie in (0, 1]")
        if not (math.isfinite(self.loss_factor) and self.loss_factor >= 1.0):
            raise InvalidRequest("loss_factor is mean(P²)/mean(P)², at least 1")


@dataclass(frozen=True, slots=True)
class SectionSuspicion:
    section: str
    method: Literal["energy", "voltage", "none"]
    score: float  # z: unexplained/σ, or the section's mean voltage residual / its σ
    unexplained_kwh: float | None
    voltage_residual_pu: float | None
    sites: int


@dataclass(frozen=True, slots=True)
class LossReport:
    substation: str
    hours: float
    energy_in_kwh: float
    metered_kwh: float
    technical_losses_kwh: float
    unexplained_kwh: float
    unexplained_std_kwh: float
    unexplained_fraction: float
    level: Level
    missing_sites: tuple[str, ...]
    suspects: tuple[SectionSuspicion, ...]


def loss_factor(power: Sequence[float]) -> float:
    """``mean(P²)/mean(P)²`` of a power series over the interval (≥ 1)."""
    values = [float(x) for x in power if math.isfinite(x)]
    if not values:
        raise InvalidRequest("no finite power value to compute a loss factor from")
    mean = sum(values) / len(values)
    if mean == 0.0:
        return 1.0
    return max(1.0, sum(x * x for x in values) / len(values) / (mean * mean))


def sections(topology: Topology, substation: str) -> tuple[str, ...]:
    """Where a fraud search splits the substation's grid: its LV feeder heads when there are
    several; else the nodes below the first node where the single feeder branches."""
    feeders = []
    for node in topology.downstream(substation):
        up = topology.parent(node)
        if topology.node(node).kind is NodeKind.LV_FEEDER and up is not None:
            if topology.ancestor(up, NodeKind.LV_FEEDER) is None:  # the outermost heads only
                feeders.append(node)
    if len(feeders) > 1:
        return tuple(feeders)
    node = substation
    while len(topology.children(node)) == 1:
        node = topology.children(node)[0]
    return topology.children(node) or (node,)


def _metered_topology(
    topology: Topology, data: BalanceInput, region: set[str]
) -> tuple[Topology, dict[str, float]]:
    tan_phi = math.tan(math.acos(data.power_factor))
    per_node: dict[str, float] = {}
    for site, kwh in data.sites.items():
        node = topology.site_node(site)
        if node not in region:
            raise InvalidRequest(f"site {site!r} is not fed by substation {data.substation!r}")
        per_node[node] = per_node.get(node, 0.0) + kwh / data.hours / 1000.0
    loads = [x for x in topology.loads if x.node not in region]
    loads += [Load(f"metered-{node}", node, p, p * tan_phi) for node, p in per_node.items()]
    generators = tuple(x for x in topology.generators if x.node not in region)
    return replace(topology, loads=tuple(loads), generators=generators), per_node


def _region_losses(net: Any, region: set[str]) -> tuple[dict[str, float], float]:
    """(line id → loss MW, transformer loss MW) of the lines and transformers inside ``region``
    in the network's last load flow."""
    names = [str(x) for x in net.bus.name]
    lines = {
        str(name): float(loss) for name, loss, a, b in zip(
            net.line.name, net.res_line.pl_mw.fillna(0.0), net.line.from_bus, net.line.to_bus,
            strict=True,
        ) if names[a] in region and names[b] in region
    }  # fmt: skip
    trafo = sum(
        float(loss) for loss, hv in zip(net.res_trafo.pl_mw, net.trafo.hv_bus, strict=True)
        if names[hv] in region
    )  # fmt: skip
    return lines, trafo


def _stepped_losses(
    net: Any, region: set[str], data: BalanceInput, topology: Topology
) -> tuple[dict[str, float], float]:
    """Loss energies (kWh) from one load flow per step of ``data.steps``."""
    import pandapower as pp

    tan_phi = math.tan(math.acos(data.power_factor))
    row = {str(name): i for i, name in zip(net.load.index, net.load.name, strict=True)}
    step_h = data.hours / len(data.steps)
    lines: dict[str, float] = {}
    trafo = 0.0
    for step in data.steps:
        per_node: dict[str, float] = {}
        for site, kw in step.items():
            node = topology.site_node(site)
            per_node[node] = per_node.get(node, 0.0) + kw / 1000.0
        for name, index in row.items():
            if name.startswith("metered-"):
                p = per_node.get(name.removeprefix("metered-"), 0.0)
                net.load.loc[index, ["p_mw", "q_mvar"]] = p, p * tan_phi
        with pandapower_quiet():
            try:
                pp.runpp(net, numba=False)
            except pp.LoadflowNotConverged:
                raise InvalidRequest("a step's load flow does not converge") from None
        step_lines, step_trafo = _region_losses(net, region)
        for line, mw in step_lines.items():
            lines[line] = lines.get(line, 0.0) + mw * 1000.0 * step_h
        trafo += step_trafo * 1000.0 * step_h
    return lines, trafo


def energy_balance(
    topology: Topology, data: BalanceInput, settings: LossSettings = LossSettings()
) -> LossReport:
    """The balance, the alarm level and the ranked suspect sections (see the module doc)."""
    import pandapower as pp

    if topology.node(data.substation).kind is not NodeKind.SECONDARY_SUBSTATION:
        raise InvalidRequest(f"node {data.substation!r} is not a secondary substation")
    region = set(topology.downstream(data.substation))
    metered_topology, _ = _metered_topology(topology, data, region)
    net = to_pandapower(metered_topology)
    with pandapower_quiet():
        try:
            pp.runpp(net, numba=False)
        except pp.LoadflowNotConverged:
            raise InvalidRequest("the load flow at the metered powers does not converge") from None
    expected_v = {node: float(net.res_bus.vm_pu[index]) for node, index in bus_indices(net).items()}
    line_mw, trafo_mw = _region_losses(net, region)
    if data.steps:
        line_kwh, trafo_kwh = _stepped_losses(net, region, data, topology)
    else:
        scale = 1000.0 * data.hours * data.loss_factor
        line_kwh = {line: mw * scale for line, mw in line_mw.items()}
        trafo_kwh = trafo_mw * scale
    technical = sum(line_kwh.values()) + (trafo_kwh if data.meter_at == "mv" else 0.0)
    metered = sum(data.sites.values())
    unexplained = data.energy_in_kwh - metered - technical
    variance = (settings.substation_relative * data.energy_in_kwh) ** 2
    variance += sum((settings.meter_relative * e) ** 2 for e in data.sites.values())
    variance += (settings.loss_model_relative * technical) ** 2
    std = math.sqrt(variance)
    level = _level(unexplained, std, data.energy_in_kwh, settings)
    suspects = _suspects(topology, data, settings, line_kwh, expected_v)
    listed = set(data.sites)
    missing = tuple(s for s in topology.sites_downstream(data.substation) if s not in listed)
    fraction = unexplained / data.energy_in_kwh if data.energy_in_kwh else math.inf
    return LossReport(
        data.substation, data.hours, data.energy_in_kwh, metered, technical, unexplained, std,
        fraction, level, missing, suspects,
    )  # fmt: skip


def _level(unexplained: float, std: float, energy_in: float, settings: LossSettings) -> Level:
    if unexplained < settings.min_fraction * abs(energy_in):
        return "ok"
    if unexplained > settings.critical_sigma * std:
        return "critical"
    if unexplained > settings.warning_sigma * std:
        return "warning"
    return "ok"


def _suspects(
    topology: Topology,
    data: BalanceInput,
    settings: LossSettings,
    line_kwh: Mapping[str, float],
    expected_v: Mapping[str, float],
) -> tuple[SectionSuspicion, ...]:
    residual = {site: expected_v[topology.site_node(site)] - v for site, v in data.voltages.items()}
    offset = statistics.median(residual.values()) if residual else 0.0
    line_ends = {line.id: (line.from_node, line.to_node) for line in topology.lines}
    out = []
    for section in sections(topology, data.substation):
        below = set(topology.downstream(section))
        site_ids = [s for s in data.sites if topology.site_node(s) in below]
        if section in data.feeders:
            loss = sum(kwh for line, kwh in line_kwh.items() if set(line_ends[line]) <= below)
            metered = sum(data.sites[s] for s in site_ids)
            unexplained = data.feeders[section] - metered - loss
            variance = (settings.substation_relative * data.feeders[section]) ** 2
            variance += sum((settings.meter_relative * data.sites[s]) ** 2 for s in site_ids)
            variance += (settings.loss_model_relative * loss) ** 2
            score = unexplained / math.sqrt(variance) if variance > 0 else 0.0
            out.append(SectionSuspicion(section, "energy", score, unexplained, None, len(site_ids)))
            continue
        values = [residual[s] - offset for s in site_ids if s in residual]
        if values:
            mean = sum(values) / len(values)
            score = mean / (settings.voltage_std_pu / math.sqrt(len(values)))
            out.append(SectionSuspicion(section, "voltage", score, None, mean, len(site_ids)))
        else:
            out.append(SectionSuspicion(section, "none", 0.0, None, None, len(site_ids)))
    return tuple(sorted(out, key=lambda s: -s.score))


def balances(
    topology: Topology, inputs: Iterable[BalanceInput], settings: LossSettings = LossSettings()
) -> tuple[LossReport, ...]:
    """:func:`energy_balance` for each substation, worst unexplained fraction first."""
    reports = [energy_balance(topology, data, settings) for data in inputs]
    return tuple(sorted(reports, key=lambda r: -r.unexplained_fraction))
