"""What LV sensors measure before and during a short circuit, from pandapower (IEC 60909).

The simulator's fault incident (:func:`gridhub.sim.incidents.fault`) needs, for each sensor, the
voltage at its node and the current in the branch feeding it, in service (a load flow) and during
a three-phase fault at a given node (pandapower's short-circuit calculation, maximum case, with
branch results). The grid's switches are folded in first, because pandapower's branch results
of a short circuit need a network without them: a closed bus-bus switch fuses its buses, an open
switch on a line or a transformer takes that element out of service.

The medium-voltage grid behind the topology's sources is a network feeder of ``mv_sc_mva``
short-circuit power (R/X 0.1); cables at 80 °C at the end of the fault (IEC 60909's maximum
case uses 20 °C resistance; the end temperature matters only for the minimum case).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridhub.domain.topology import SwitchTarget, Topology
from gridhub.errors import InvalidRequest

__all__ = ["SensorCurrents", "fault_currents"]


@dataclass(frozen=True, slots=True)
class SensorCurrents:
    """Phase-to-neutral RMS voltage (V) at the sensor's node and current (A) in the branch feeding
    it, in service and during the fault."""

    voltage_v: float
    current_a: float
    fault_voltage_v: float
    fault_current_a: float


def fault_currents(
    topology: Topology, sensors: Mapping[str, str], node: str, *, mv_sc_mva: float = 100.0
) -> dict[str, SensorCurrents]:
    """Per sensor (id → node): what it measures in service and during a fault at ``node``."""
    import pandapower as pp
    import pandapower.shortcircuit as sc

    from gridhub.grid.topology_import import bus_indices, pandapower_quiet, to_pandapower

    if node not in {n.id for n in topology.nodes}:
        raise InvalidRequest(f"unknown fault node {node[:64]!r}")
    if not mv_sc_mva > 0:
        raise InvalidRequest("mv_sc_mva must be positive")
    lines = {line.id: index for index, line in enumerate(topology.lines)}
    trafos = {t.id: index for index, t in enumerate(topology.transformers)}
    feeding: dict[str, tuple[str, int]] = {}
    for sensor, at in sensors.items():
        edges = topology.supply_path(at).edges if topology.is_supplied(at) else ()
        edge = edges[0] if edges else ""
        if edge in lines:
            feeding[sensor] = ("line", lines[edge])
        elif edge in trafos:
            feeding[sensor] = ("trafo", trafos[edge])
        else:
            raise InvalidRequest(
                f"sensor {sensor!r} on {at!r}: it must sit at the end of a line or a transformer"
            )
    net = to_pandapower(topology)
    bus = bus_indices(net)
    with pandapower_quiet():
        pp.runpp(net, numba=False)
        before = {s: _measure(net, topology, sensors[s], *feeding[s], bus, False) for s in sensors}
        fused = _fold_switches(net, topology, bus)
        net.ext_grid["s_sc_max_mva"] = mv_sc_mva
        net.ext_grid["rx_max"] = 0.1
        net.line["endtemp_degree"] = 80.0
        sc.calc_sc(net, bus=fused.get(bus[node], bus[node]), branch_results=True, case="max")
        during = {s: _measure(net, topology, sensors[s], *feeding[s], bus, True) for s in sensors}
    return {s: SensorCurrents(*before[s], *during[s]) for s in sensors}


def _fold_switches(net: Any, topology: Topology, bus: dict[str, int]) -> dict[int, int]:
    """Fuse the buses of closed bus-bus switches, take elements of open ones out of service,
    drop all switches; answer which bus each fused one became."""
    import pandapower as pp

    fused: dict[int, int] = {}
    for index, switch in enumerate(topology.switches):
        element = int(net.switch.at[index, "element"])
        if switch.target_kind is SwitchTarget.NODE:
            if switch.closed:
                keep = fused.get(bus[switch.node], bus[switch.node])
                gone = fused.get(element, element)
                if keep != gone:
                    pp.toolbox.fuse_buses(net, keep, [gone])
                    fused = {b: keep if k == gone else k for b, k in fused.items()}
                    fused[gone] = keep
        elif not switch.closed:
            table = "line" if switch.target_kind is SwitchTarget.LINE else "trafo"
            net[table].at[element, "in_service"] = False
    net.switch.drop(net.switch.index, inplace=True)
    return fused


def _measure(
    net: Any,
    topology: Topology,
    node: str,
    table: str,
    index: int,
    bus: dict[str, int],
    short_circuit: bool,
) -> tuple[float, float]:
    """(V phase-to-neutral, A) at ``node``, fed by ``table[index]``."""
    vn_kv = topology.node(node).vn_kv
    if short_circuit:
        result = net[f"res_{table}_sc"].loc[index]
        if table == "trafo":
            current, vm = result["ikss_lv_ka"], result["vm_lv_pu"]
        else:
            end = "to" if topology.lines[index].to_node == node else "from"
            current, vm = result["ikss_ka"], result[f"vm_{end}_pu"]
    else:
        current = net[f"res_{table}"].at[index, "i_lv_ka" if table == "trafo" else "i_ka"]
        vm = net.res_bus.at[bus[node], "vm_pu"]
    current = 0.0 if not math.isfinite(current) else float(current)
    vm = 0.0 if not math.isfinite(vm) else float(vm)
    return vm * vn_kv * 1000 / math.sqrt(3), current * 1000
