"""On-demand grid services for a tenant (issue #7): gather from the store → solve → write back.

:class:`GridRuns` is what the API and the CLI call. For each service it loads the tenant's
topology (:class:`~gridhub.errors.NotFound` without one), reads the meters it needs through
:class:`~gridhub.grid.run_inputs.GridData`, runs the solver of ``grid/`` and writes the result
back as series and alerts of ``grid:<node>`` devices (:mod:`gridhub.grid.run_results`), then
returns the solver's typed result. The solvers stay pure; this module is their wiring.

Services: G4 :meth:`losses`, G5 :meth:`estimate`, G6 :meth:`reconfigure`, G7
:meth:`demand_response`, G8 :meth:`quality`, G9 :meth:`balance` (in ``runs_planning``), G10
:meth:`forecast` (idem). Each docstring says what is read and what is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from gridhub.domain.registry import Device
from gridhub.domain.timeutil import Resolution, checked_day
from gridhub.domain.topology import Load, NodeKind, Topology
from gridhub.errors import InvalidRequest
from gridhub.grid.monitoring import GRID_DEVICE_TYPE, grid_device
from gridhub.grid.run_inputs import VOLTAGES, GridData, MeterEnergy, Period
from gridhub.grid.run_results import (
    BAD_DATA,
    DEMAND_RESPONSE_PLAN,
    IDENTIFIERS,
    QUALITY_FAILED,
    RECONFIGURATION_PROPOSED,
    alert_message,
    loss_alarm,
    loss_values,
    series_message,
    with_missing,
)
from gridhub.grid.topologies import TopologyService
from gridhub.storage.base import Store
from gridhub.storage.registry import Registry

__all__ = ["GridRuns", "LossRun", "Written"]

WriteBack = Callable[[str, list[bytes]], None]  # tenant, canonical messages; returns when durable
CONTROLLABLE_TYPES = frozenset({"smart-plug", "boiler"})
POWER_FACTOR = 0.95
_TAN_PHI = math.tan(math.acos(POWER_FACTOR))


@dataclass
class Written:
    """What a run wrote back: series values and alerts (counts), for the caller to report."""

    series: int = 0
    alerts: int = 0
    devices: list[str] = field(default_factory=list)
    beyond_horizon: int = 0  # series values not written: further ahead than the hub accepts


@dataclass(frozen=True)
class LossRun:
    """G4 over one period: a report per metered secondary substation, and those skipped."""

    period: Period
    reports: tuple[Any, ...]  # LossReport
    skipped: tuple[tuple[str, str], ...]  # (substation, why)
    written: Written


class GridRuns:
    """The on-demand services of one hub (see the module doc)."""

    def __init__(
        self,
        topologies: TopologyService,
        registry: Registry,
        store: Store,
        write: WriteBack,
        *,
        horizon_s: float = 86_400.0,
    ) -> None:
        self._topologies = topologies
        self._registry = registry
        self._store = store
        self._write = write
        self.horizon = timedelta(seconds=horizon_s) - timedelta(minutes=1)  # the hub's max_future_s

    # -- shared ------------------------------------------------------------------------------

    def context(self, tenant: str) -> tuple[Topology, GridData]:
        topology = self._topologies.get(tenant)  # NotFound without one
        return topology, GridData(self._store, self._registry, tenant)

    def write(
        self,
        tenant: str,
        topology: Topology,
        series: Sequence[tuple[str, datetime, dict[str, float]]] = (),
        alerts: Sequence[tuple[str, bytes]] = (),
    ) -> Written:
        """Write ``(node, at, {identifier: value})`` series and ``(node, alert bytes)`` alerts
        of ``grid:<node>`` devices, registering the identifiers and devices first. Values
        further ahead than the hub accepts (``max_future_s``) are counted, not written."""
        limit = datetime.now(UTC) + self.horizon
        ahead = [item for item in series if item[1] > limit]
        series = [item for item in series if item[1] <= limit]
        beyond = sum(len(v) for _n, _a, v in ahead)
        if not series and not alerts:
            return Written(beyond_horizon=beyond)
        self._registry.ensure_identifiers(tenant, IDENTIFIERS)
        nodes = {node for node, _at, _v in series} | {node for node, _raw in alerts}
        known = {d.hardware_id for d in self._registry.devices(tenant)}
        new = []
        for node in sorted(nodes):
            device = grid_device(node)
            if device not in known:
                name = topology.node(node).name if node in _node_ids(topology) else node
                new.append(Device(tenant, device, GRID_DEVICE_TYPE, None, name or node))
        if new:
            self._registry.register_devices(new)
        messages = [series_message(grid_device(n), at, v) for n, at, v in series if v]
        messages += [raw for _node, raw in alerts]
        self._write(tenant, messages)
        devices = sorted(grid_device(n) for n in nodes)
        return Written(sum(len(v) for _n, _a, v in series), len(alerts), devices, beyond)

    # -- G4 losses and fraud -----------------------------------------------------------------

    def losses(
        self,
        tenant: str,
        period: Period,
        *,
        substation: str | None = None,
        settings: Any = None,
        power_factor: float = POWER_FACTOR,
    ) -> LossRun:
        """Energy balance of each secondary substation that has a meter attached (on its node:
        MV side, or on its transformer's LV busbar). Reads the substation meter, the feeder-head
        meters on its sections, and every attached site's meters (energy, voltages). Writes
        ``grid.energy.in``, ``grid.energy.metered``, ``grid.losses.technical``,
        ``grid.losses.unexplained`` (and ``.std``) on ``grid:<substation>`` at the period's
        start; a ``grid.losses.alarm`` (Warning or Critical, ranked suspects in metadata) at
        its end when the unexplained energy is significant."""
        from gridhub.grid.losses import BalanceInput, LossSettings, energy_balance, loss_factor
        from gridhub.grid.losses import sections as loss_sections

        topology, data = self.context(tenant)
        subs = topology.nodes_of_kind(NodeKind.SECONDARY_SUBSTATION)
        if substation is not None:
            if substation not in subs:
                raise InvalidRequest(f"node {substation[:64]!r} is not a secondary substation")
            subs = (substation,)
        reports, skipped = [], []
        series: list[tuple[str, datetime, dict[str, float]]] = []
        alerts: list[tuple[str, bytes]] = []
        for sub in subs:
            meter, meter_at = _substation_meter(topology, data, sub)
            if meter is None:
                skipped.append((sub, "no meter attached to the substation"))
                continue
            energy_in = data.energy(meter, period)
            if energy_in is None:
                skipped.append((sub, f"substation meter {meter[0]!r}: too few readings"))
                continue
            site_ids = topology.sites_downstream(sub)
            sites, missing = data.site_energies(site_ids, period, voltages=True)
            feeders = {}
            for section in loss_sections(topology, sub):
                head = data.energy(data.node_meters(topology, section), period)
                if head is not None:
                    feeders[section] = head.energy_kwh
            profile = [v for v in energy_in.profile_kw if not math.isnan(v)]
            balance = BalanceInput(
                substation=sub,
                hours=period.hours,
                energy_in_kwh=energy_in.energy_kwh,
                sites={s: e.energy_kwh for s, e in sites.items()},
                feeders=feeders,
                voltages={s: e.voltage_pu for s, e in sites.items() if e.voltage_pu is not None},
                power_factor=power_factor,
                loss_factor=max(1.0, loss_factor(profile)),
                meter_at=meter_at,
            )
            report = energy_balance(topology, balance, settings or LossSettings())
            report = with_missing(report, missing)
            reports.append(report)
            series.append((sub, period.start, loss_values(report)))
            if report.level != "ok":
                alerts.append((sub, loss_alarm(report, period)))
        if substation is not None and skipped:
            raise InvalidRequest(f"substation {substation!r}: {skipped[0][1]}")
        written = self.write(tenant, topology, series, alerts)
        return LossRun(period, tuple(reports), tuple(skipped), written)

    # -- G5 state estimation -----------------------------------------------------------------

    def estimate(self, tenant: str, period: Period) -> tuple[Any, Written]:
        """WLS state estimate from every site's mean power and voltage over ``period``
        (pseudo-measurements from nominal loads elsewhere, zero injections at junctions).
        Writes ``grid.voltage.estimated`` (+ ``.std``) and ``grid.power.estimated`` (+ ``.std``,
        kW consumed) per node at the period's start, and a ``grid.estimation.bad.data`` alert
        per measurement the bad-data test removed (its sites in metadata)."""
        from gridhub.grid.estimation import estimate
        from gridhub.grid.estimation_inputs import MeterReading, measurement_set

        topology, data = self.context(tenant)
        sites, _missing = data.site_energies(
            [s.site_id for s in topology.sites], period, voltages=True
        )
        readings = [
            MeterReading(site, e.mean_kw / 1000, e.mean_kw / 1000 * _TAN_PHI, e.voltage_pu)
            for site, e in sites.items()
        ]
        if not any(r.vm_pu is not None for r in readings):
            raise InvalidRequest("no site meter reports a voltage in this period: not observable")
        result = estimate(topology, measurement_set(topology, readings))
        series = [
            (
                state.node,
                period.start,
                {
                    "grid.voltage.estimated": state.vm_pu,
                    "grid.voltage.estimated.std": state.vm_std_pu,
                    "grid.power.estimated": state.p_mw * 1000,
                    "grid.power.estimated.std": state.p_std_mw * 1000,
                },
            )
            for state in result.nodes
            if all(math.isfinite(v) for v in (state.vm_pu, state.vm_std_pu, state.p_mw))
        ]
        alerts = []
        for i, bad in enumerate(result.removed):
            m = bad.measurement
            facts = {
                "node": m.node,
                "kind": m.kind,
                "value": m.value,
                "stdDev": m.std_dev,
                "origin": m.origin,
                "ref": m.ref,
                "normalizedResidual": bad.normalized_residual,
                "objective": bad.objective,
                "chi2Threshold": bad.chi2_threshold,
                "periodStart": period.start.isoformat(),
            }
            text = (
                f"bad {m.kind} measurement at {m.node} ({m.ref}): rN {bad.normalized_residual:.1f}"
            )
            at = period.end + timedelta(milliseconds=i)  # one alert each (deduplicated by time)
            alerts.append(
                (m.node, alert_message(grid_device(m.node), at, BAD_DATA, "Warning", text, facts))
            )
        return result, self.write(tenant, topology, series, alerts)

    # -- G6 reconfiguration ------------------------------------------------------------------

    def reconfigure(
        self,
        tenant: str,
        *,
        period: Period | None = None,
        all_lines_switchable: bool = False,
        threshold: float = 0.01,
        max_load_flows: int = 400,
    ) -> tuple[Any, Written]:
        """The loss-minimising radial configuration. Loads: the topology's nominal ones, or with
        ``period`` each connection point's sites' mean metered power in place of its nominal
        load. Writes a ``grid.reconfiguration.proposal`` alert (switch changes, losses) on the
        supply root's device when the proposal is accepted."""
        from gridhub.grid.reconfiguration import reconfigure, with_line_switches

        topology, data = self.context(tenant)
        grid = topology
        if period is not None:
            sites, _missing = data.site_energies([s.site_id for s in topology.sites], period)
            grid = _metered_loads(topology, sites)
        if all_lines_switchable:
            grid = with_line_switches(grid)
        result = reconfigure(grid, threshold=threshold, max_load_flows=max_load_flows)
        alerts = []
        if result.accepted:
            root = topology.supply_roots[0]
            at = period.end if period is not None else _now()
            facts = {
                "reason": result.reason,
                "baseLossesKw": result.base_losses_mw * 1000,
                "lossesKw": result.losses_mw * 1000,
                "reduction": result.reduction,
                "openLines": list(result.open_lines),
                "changes": [
                    {"switch": c.switch, "line": c.line, "closed": c.closed} for c in result.changes
                ],
            }
            text = (
                f"reconfiguration cuts losses {result.reduction:.1%} with "
                f"{len(result.changes)} switch operations"
            )
            alerts.append(
                (
                    root,
                    alert_message(
                        grid_device(root), at, RECONFIGURATION_PROPOSED, "Info", text, facts
                    ),
                )
            )
        return result, self.write(tenant, topology, (), alerts)

    # -- G7 demand response ------------------------------------------------------------------

    def demand_response(
        self, tenant: str, substation: str, target_kw: float, *, time_limit_s: float = 30.0
    ) -> tuple[Any, float, Written]:
        """Which appliances to switch off so the load below ``substation`` falls to
        ``target_kw``: consumption is its meter's latest power (or, without one, the sum of
        its sites' meters' latest), appliances the smart plugs and boilers of the sites below
        with their latest power. Writes a ``grid.demand.response.plan`` alert (the appliances
        in metadata; Warning when infeasible). Sending the switch commands is the outbound
        module's (O1), deliberately not automatic."""
        from gridhub.grid.demand_response import Appliance, curtailment_problem, solve_curtailment

        topology, data = self.context(tenant)
        if substation not in _node_ids(topology):
            raise InvalidRequest(f"node {substation[:64]!r} is not in the topology")
        meter, _at = _substation_meter(topology, data, substation)
        sites = topology.sites_downstream(substation)
        if meter:
            consumption = math.fsum(data.latest_power(meter).values())
        else:
            meters = [m for ms in data.site_meters(sites).values() for m in ms]
            consumption = math.fsum(data.latest_power(meters).values())
        appliances = []
        for site in sites:
            devices = [hw for hw, kind in data.site_devices(site) if kind in CONTROLLABLE_TYPES]
            for hw, kw in data.latest_power(devices).items():
                appliances.append(Appliance(site, hw, kw))
        problem = curtailment_problem(substation, consumption, target_kw, appliances)
        plan = solve_curtailment(problem, time_limit_s=time_limit_s)
        facts = {
            "status": plan.status,
            "consumptionKw": consumption,
            "targetKw": target_kw,
            "neededKw": plan.needed_kw,
            "shedKw": plan.shed_kw,
            "shortfallKw": plan.shortfall_kw,
            "customers": list(plan.customers),
            "appliances": [
                {"customer": a.customer, "device": a.appliance, "powerKw": a.power_kw}
                for a in plan.curtailed
            ],
        }
        level = "Info" if plan.feasible else "Warning"
        text = (
            f"demand response at {substation}: {plan.status}, switch off "
            f"{len(plan.curtailed)} appliances of {len(plan.customers)} customers"
        )
        raw = alert_message(
            grid_device(substation), _now(), DEMAND_RESPONSE_PLAN, level, text, facts
        )
        return plan, consumption, self.write(tenant, topology, (), [(substation, raw)])

    # -- G8 quality of supply ----------------------------------------------------------------

    def quality(
        self, tenant: str, week_start: date, *, node: str | None = None, nominal_v: float = 230.0
    ) -> tuple[list[Any], Written]:
        """EN 50160 week (in the tenant's zone) of each phase of each site meter below ``node``
        (all attached sites by default), as connection points ``<site>:l<phase>``. Several
        sites share a node, so no series is written (it would collide); a ``grid.quality.failed``
        alert per non-compliant point goes to its connection point's ``grid:<node>`` (site and
        phase in metadata, one millisecond apart so each is kept)."""
        from zoneinfo import ZoneInfo

        from gridhub.grid.quality import VoltageSample, week_end, weekly_reports

        checked_day(week_start, "week_start")  # its week's end must not overflow datetime
        topology, data = self.context(tenant)
        zone = ZoneInfo(data.zone)
        start = datetime.combine(week_start, datetime.min.time(), zone)
        end = week_end(start)
        if end > _now() + timedelta(days=1):
            raise InvalidRequest("the week has not ended yet")
        attached = {s.site_id: s.node for s in topology.sites}
        wanted = topology.sites_downstream(node) if node is not None else tuple(attached)
        if node is not None and node not in _node_ids(topology):
            raise InvalidRequest(f"node {node[:64]!r} is not in the topology")
        samples: list[VoltageSample] = []
        nominal: dict[str, float] = {}
        for site, meters in sorted(data.site_meters(wanted).items()):
            for phase, identifier in enumerate(VOLTAGES, 1):
                point = f"{site}:l{phase}"
                nominal[point] = nominal_v  # a silent meter is reported, as insufficient_data
                for meter in meters:
                    for p in data.points(meter, identifier, start, end, Resolution.RAW):
                        samples.append(VoltageSample(point, p.ts, p.value))
        reports = weekly_reports(start, samples, nominal)
        alerts = []
        for i, report in enumerate(r for r in reports if r.status == "not_compliant"):
            site, _, phase_name = report.connection_point.rpartition(":")
            where = attached[site]
            facts = {
                "site": site,
                "phase": phase_name,
                "weekStart": start.isoformat(),
                "shareInBand": report.share_in_band,
                "intervalsValid": report.intervals_valid,
                "intervalsOutsideLimits": report.intervals_outside_limits,
                "minMeanV": report.min_mean_v,
                "maxMeanV": report.max_mean_v,
                "longInterruptions": report.long_interruptions,
            }
            share = report.share_in_band or 0.0
            text = (
                f"EN 50160 week failed at {site} {phase_name}: {share:.1%} of 10-min values in band"
            )
            at = end + timedelta(milliseconds=i)  # one alert per point, even at one node
            alerts.append(
                (
                    where,
                    alert_message(grid_device(where), at, QUALITY_FAILED, "Warning", text, facts),
                )
            )
        return reports, self.write(tenant, topology, (), alerts)

    # -- G9 balancing, G10 forecasts (gridhub.grid.runs_planning) ---------------------------

    def forecast(self, tenant: str, hours: int = 24, pv: Any = None) -> Any:
        """G10: see :func:`gridhub.grid.runs_planning.forecast`."""
        from gridhub.grid import runs_planning

        return runs_planning.forecast(self, tenant, hours, pv)

    def balance(
        self,
        tenant: str,
        day: date,
        *,
        flexibility: float = 0.2,
        desired: Sequence[float] | None = None,
    ) -> tuple[Any, Written]:
        """G9: see :func:`gridhub.grid.runs_planning.balance`."""
        from gridhub.grid import runs_planning

        checked_day(day)  # its history weeks back and its local bounds must not overflow
        return runs_planning.balance(self, tenant, day, flexibility=flexibility, desired=desired)


# -- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _node_ids(topology: Topology) -> set[str]:
    return {n.id for n in topology.nodes}


def _substation_meter(
    topology: Topology, data: GridData, substation: str
) -> tuple[list[str] | None, Literal["lv", "mv"]]:
    """The meters measuring what enters ``substation``: attached to its transformer's LV
    busbar (``lv``), else to the substation node itself (``mv`` when that node is above 1 kV)."""
    for trafo in topology.transformers:
        if trafo.hv_node == substation and trafo.in_service:
            found = data.node_meters(topology, trafo.lv_node)
            if found:
                return found, "lv"
    found = data.node_meters(topology, substation)
    if found:
        return found, "mv" if topology.node(substation).vn_kv > 1.0 else "lv"
    return None, "lv"


def _metered_loads(topology: Topology, sites: dict[str, MeterEnergy]) -> Topology:
    """``topology`` with each connection point's nominal loads replaced by its sites' mean
    metered power (Q at the default power factor); other loads kept."""
    from dataclasses import replace

    per_node: dict[str, float] = {}
    for attachment in topology.sites:
        if attachment.site_id in sites:
            kw = sites[attachment.site_id].mean_kw
            per_node[attachment.node] = per_node.get(attachment.node, 0.0) + kw
    kept = tuple(load for load in topology.loads if load.node not in per_node)
    metered = tuple(
        Load(f"metered-{node}", node, kw / 1000, kw / 1000 * _TAN_PHI)
        for node, kw in sorted(per_node.items())
    )
    return replace(topology, loads=kept + metered)
