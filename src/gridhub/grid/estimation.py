"""State estimation (G5): weighted least squares on pandapower, with uncertainty and bad data.

Convert → solve → typed results, as seed 002 §7.2 describes:

1. **convert**: the topology becomes a pandapower network (:func:`topology_import.to_pandapower`)
   and each :class:`~gridhub.grid.estimation_inputs.Measurement` a bus measurement of it;
2. **solve**: pandapower's WLS estimator (``pandapower.estimation.StateEstimation``, Gauss-Newton
   on ``G Δx = Hᵀ W (z − h(x))``) finds the state x = (angles of non-slack buses, all magnitudes);
3. **uncertainty**: the state covariance is the inverse of the gain matrix, ``Σx = G⁻¹`` with
   ``G = Hᵀ W H`` at the solution (seed 002 eq. 6); a node's P and Q injection σ follow by the
   law of propagation of uncertainty, ``σ² = J Σx Jᵀ`` with J the rows of ∂S/∂(θ, |V|) from the
   bus admittance matrix;
4. **bad data**: the χ² test on the objective ``J(x) = Σ rᵢ²/σᵢ²`` against
   ``χ²(1−α, m−n)`` (m measurements, n states) detects bad data; the largest normalised
   residual ``|rᵢ|/√Ωᵢᵢ`` with ``Ω = R − H G⁻¹ Hᵀ`` identifies it; that measurement is removed
   and the estimate repeated until the χ² test passes, no residual exceeds the threshold, or
   ``max_removals`` is reached. pandapower ships ``chi2_analysis``/``remove_bad_data`` doing the
   same steps, but they do not say *which* measurement they removed (and ``chi2_analysis`` in
   3.5 passes its angle flag as ``zero_injection``), so the test runs here on the solver's own
   H, G, R and r.

Hierarchical (seed 002 §7.2.2): :func:`upstream_measurements` turns an LV grid's estimate into
P, Q and V measurements at its secondary substation with the σ the LV estimate propagated, and
:func:`estimate_hierarchy` runs the LV grids first and the MV grid on their results. An LV grid
model must start at the MV busbar of its substation (the transformer included, as CIGRE LV does):
that node is the one the MV grid sees.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest, NotFound
from gridhub.grid.estimation_inputs import MAX_MEASUREMENTS, Measurement
from gridhub.grid.topology_import import bus_indices, pandapower_quiet, to_pandapower

__all__ = [
    "BadMeasurement",
    "LvGrid",
    "NodeState",
    "StateEstimate",
    "estimate",
    "estimate_hierarchy",
    "upstream_measurements",
]


@dataclass(frozen=True, slots=True)
class NodeState:
    """The estimate at one node, each quantity with its standard deviation. ``p_mw``/``q_mvar``
    are consumed (load convention): at a supply root they are negative, the power fed in.
    Nodes joined by closed bus-bus switches are one electrical node: they share ``group`` (the
    first of them) and the group's total p/q is reported at each of them."""

    node: str
    vm_pu: float
    vm_std_pu: float
    va_degree: float
    va_std_degree: float
    p_mw: float
    p_std_mw: float
    q_mvar: float
    q_std_mvar: float
    group: str


@dataclass(frozen=True, slots=True)
class BadMeasurement:
    """A measurement the bad-data test removed: its normalised residual and the objective and χ²
    threshold of the estimate that still held it."""

    measurement: Measurement
    normalized_residual: float
    objective: float
    chi2_threshold: float


@dataclass(frozen=True, slots=True)
class StateEstimate:
    """The final estimate. ``bad_data`` is True when the χ² test still fails after the removals
    (too many bad measurements, or a topology error: a switch state that is not true)."""

    grid: str
    iterations: int
    nodes: tuple[NodeState, ...]
    objective: float
    degrees_of_freedom: int
    chi2_threshold: float
    bad_data: bool
    removed: tuple[BadMeasurement, ...]
    measurements_used: int

    def node(self, node_id: str) -> NodeState:
        for state in self.nodes:
            if state.node == node_id:
                return state
        raise NotFound(f"no estimate for node {node_id[:64]!r} in {self.grid!r}")


@contextmanager
def _quiet() -> Iterator[None]:
    """pandapower's estimation module writes into DataFrame slices: pandas warns on each."""
    import pandas as pd

    with pandapower_quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.SettingWithCopyWarning)
        # fused buses without a measurement of a kind carry NaN through an integer cast
        warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning)
        yield


def _network(topology: Topology, measurements: tuple[Measurement, ...]) -> tuple[Any, list[int]]:
    import pandapower as pp

    net = to_pandapower(topology)
    bus = bus_indices(net)
    index = []
    for m in measurements:
        if m.node not in bus:
            raise NotFound(f"measurement at unknown node {m.node[:64]!r}")
        index.append(pp.create_measurement(net, m.kind, "bus", m.value, m.std_dev, bus[m.node]))
    return net, index


def _chi2_threshold(alpha: float, dof: int) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(1.0 - alpha, dof)) if dof > 0 else math.inf


def _injection_jacobian(solver: Any) -> tuple[Any, Any, Any]:
    """(S at each ppci bus, ∂S/∂θ of the non-slack buses, ∂S/∂|V|) at the solution."""
    from pandapower.pypower.dSbus_dV import dSbus_dV

    eppci = solver.eppci
    ybus, _, _ = eppci.get_Y()
    v = eppci.V
    ds_dvm, ds_dva = dSbus_dV(ybus, v)
    s = v * np.conj(ybus @ v)
    ds_dva = np.asarray(ds_dva.todense() if hasattr(ds_dva, "todense") else ds_dva)
    ds_dvm = np.asarray(ds_dvm.todense() if hasattr(ds_dvm, "todense") else ds_dvm)
    return s, ds_dva[:, eppci.non_slack_bus_mask], ds_dvm


def _node_states(net: Any, solver: Any) -> tuple[NodeState, ...]:
    eppci = solver.eppci
    cov = np.linalg.inv(solver.Gm)
    base = float(eppci["baseMVA"])
    s, ds_dva, ds_dvm = _injection_jacobian(solver)
    jac = np.hstack([ds_dva, ds_dvm])
    p_var = np.einsum("ij,jk,ik->i", jac.real, cov, jac.real)
    q_var = np.einsum("ij,jk,ik->i", jac.imag, cov, jac.imag)
    nns = int(eppci.num_non_slack_bus)
    angle_pos = np.full(len(eppci.v), -1)
    angle_pos[eppci.non_slack_buses] = np.arange(nns)
    lookup = net._pd2ppc_lookups["bus"]
    out = []
    groups: dict[int, str] = {}
    for index, name in zip(net.bus.index, net.bus.name, strict=True):
        k = int(lookup[index])
        if k < 0 or not net.bus.in_service[index]:
            continue  # out of service
        group = groups.setdefault(k, str(name))
        a = int(angle_pos[k])
        va_std = math.degrees(math.sqrt(max(cov[a, a], 0.0))) if a >= 0 else 0.0
        out.append(
            NodeState(
                str(name), float(eppci.v[k]), math.sqrt(max(cov[nns + k, nns + k], 0.0)),
                math.degrees(float(eppci.delta[k])), va_std,
                -float(s[k].real) * base, math.sqrt(max(p_var[k], 0.0)) * base,
                -float(s[k].imag) * base, math.sqrt(max(q_var[k], 0.0)) * base, group,
            )
        )  # fmt: skip
    return tuple(out)


def _normalized_residuals(solver: Any) -> Any:
    """``|rᵢ|/√Ωᵢᵢ`` with ``Ω = R − H G⁻¹ Hᵀ``; only the diagonal is needed (R is diagonal)."""
    h = solver.H
    r_var = 1.0 / np.diag(solver.R_inv)
    omega = r_var - np.einsum("ij,ji->i", h, np.linalg.solve(solver.Gm, h.T))
    return np.abs(solver.r.ravel()) / np.sqrt(np.abs(omega) + 1e-30)


def estimate(
    topology: Topology,
    measurements: Iterable[Measurement],
    *,
    detect_bad_data: bool = True,
    false_alarm: float = 0.01,
    lnr_threshold: float = 3.0,
    max_removals: int = 5,
    tolerance: float = 1e-8,
    max_iterations: int = 50,
) -> StateEstimate:
    """The WLS estimate of ``topology``'s state from ``measurements`` (see the module doc).

    ``false_alarm`` is the χ² test's probability of flagging a clean set; ``lnr_threshold`` the
    normalised residual above which a measurement is called bad. Raises ``InvalidRequest`` when
    the set cannot be estimated (fewer measurements than states, no convergence)."""
    from pandapower.estimation.state_estimation import StateEstimation

    kept = tuple(measurements)
    if len(kept) > MAX_MEASUREMENTS:
        raise InvalidRequest(f"at most {MAX_MEASUREMENTS} measurements per estimate")
    if not 0.0 < false_alarm < 1.0:
        raise InvalidRequest("false_alarm must lie in (0, 1)")
    if not any(m.kind == "v" for m in kept):
        raise InvalidRequest("a state estimate needs at least one voltage measurement")
    removed: list[BadMeasurement] = []
    while True:
        net, index = _network(topology, kept)
        se = StateEstimation(net, tolerance, max_iterations, algorithm="wls")
        try:
            with _quiet():
                result = se.estimate(zero_injection=None)
        except UserWarning as exc:  # pandapower's "not observable"
            raise InvalidRequest(f"{topology.name!r}: {exc}") from None
        solver = se.solver
        if not result["success"]:
            raise InvalidRequest(f"{topology.name!r}: the estimate did not converge")
        r = solver.r.ravel()
        objective = float(r @ (solver.R_inv @ r))
        dof = len(r) - solver.Gm.shape[0]
        threshold = _chi2_threshold(false_alarm, dof)
        failed = objective > threshold
        if not (detect_bad_data and failed and len(removed) < max_removals):
            break
        rn = _normalized_residuals(solver)
        worst = int(np.argmax(rn))
        if rn[worst] <= lnr_threshold:
            break
        pp_index = solver.pp_meas_indices[worst]
        if not np.isfinite(pp_index) or int(pp_index) not in index:
            break  # a merged row pandapower cannot trace to one measurement: report, keep
        position = index.index(int(pp_index))
        removed.append(BadMeasurement(kept[position], float(rn[worst]), objective, threshold))
        kept = kept[:position] + kept[position + 1 :]
    return StateEstimate(
        topology.name, int(solver.iterations), _node_states(net, solver), objective, dof,
        threshold, failed, tuple(removed), len(kept),
    )  # fmt: skip


def upstream_measurements(
    lv: StateEstimate, lv_node: str, mv_node: str, *, with_voltage: bool = True
) -> tuple[Measurement, ...]:
    """An LV estimate as measurements of the MV grid at ``mv_node``: the power the LV grid draws
    at ``lv_node`` (its supply root, the substation's MV busbar) and, optionally, that node's
    voltage, each with the σ the LV estimate propagated (seed 002 §7.2.2)."""
    state = lv.node(lv_node)
    ref = f"{lv.grid}:{lv_node}"
    floor = 1e-9  # a σ must be positive; an LV estimate is never exact
    out = [
        Measurement(mv_node, "p", -state.p_mw, max(state.p_std_mw, floor), "lv_estimate", ref),
        Measurement(mv_node, "q", -state.q_mvar, max(state.q_std_mvar, floor), "lv_estimate", ref),
    ]
    if with_voltage:
        std = max(state.vm_std_pu, floor)
        out.append(Measurement(mv_node, "v", state.vm_pu, std, "lv_estimate", ref))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LvGrid:
    """One LV grid under an MV node: its topology, measurements and supply-root node."""

    mv_node: str
    topology: Topology
    measurements: tuple[Measurement, ...]
    root: str


def estimate_hierarchy(
    mv: Topology,
    mv_measurements: Iterable[Measurement],
    lv_grids: Iterable[LvGrid],
    *,
    lv_voltage: bool = True,
    **options: Any,
) -> tuple[StateEstimate, Mapping[str, StateEstimate]]:
    """Estimate each LV grid, then the MV grid with the LV results as measurements at their
    MV nodes replacing any pseudo-measurement there; returns (MV estimate, {mv node: LV
    estimate}). ``options`` go to :func:`estimate` at both levels."""
    lv_estimates: dict[str, StateEstimate] = {}
    upstream: list[Measurement] = []
    for grid in lv_grids:
        if grid.mv_node in lv_estimates:
            raise InvalidRequest(f"two LV grids under MV node {grid.mv_node!r}")
        mv.node(grid.mv_node)
        lv_estimate = estimate(grid.topology, grid.measurements, **options)
        lv_estimates[grid.mv_node] = lv_estimate
        upstream += upstream_measurements(lv_estimate, grid.root, grid.mv_node,
                                          with_voltage=lv_voltage)  # fmt: skip
    replaced = {(m.node, m.kind) for m in upstream}
    kept = [
        m for m in mv_measurements if not (m.origin == "pseudo" and (m.node, m.kind) in replaced)
    ]
    return estimate(mv, (*kept, *upstream), **options), lv_estimates
