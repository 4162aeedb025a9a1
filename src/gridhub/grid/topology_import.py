"""Convert grids between pandapower and the domain :class:`Topology`: import, and back to solve.

Services run as convert → solve → write back: a topology becomes a pandapower network
(:func:`to_pandapower`), pandapower runs the load flow or the WLS estimate, and results are read
back by node id (buses are named by node id, lines, transformers and the rest by element id).
Imports come from pandapower networks (:func:`from_pandapower`, :func:`reference_network` for the
benchmarks the tests and the demo use) and from the JSON format of :mod:`topology_json`
(:func:`from_json`, re-exported here).

pandapower is imported inside the functions: it takes seconds, and the hub should not pay that to
start. Networks built here load-flow without warnings; pandapower's own networks may not (the IEEE
European LV feeder as shipped lacks ``tap_dependency_table`` and pandapower's ``build_branch``
raises a ``DeprecationWarning`` on every load flow), so :func:`pandapower_quiet` silences exactly
pandapower's deprecation noise where foreign networks are loaded or solved.

Node kinds of an imported network, first rule that applies (``LV_MAX_KV`` = 1 kV):

1. the HV-side bus of an MV/LV transformer (LV side ≤ 1 kV) → ``secondary_substation``;
2. the HV-side bus of any other transformer (HV/MV) → ``primary_substation``;
3. an external-grid bus → ``primary_substation`` above 1 kV, ``secondary_substation`` at LV;
4. feeder heads. The busbar a feeder leaves from is the LV-side bus of a transformer, or a
   substation node of rule 3 itself. If the busbar is still unclassified and exactly one line or
   bus-bus switch leaves it, the busbar is the feeder head; otherwise each bus at the far end of
   those branches is one. Heads are ``lv_feeder`` at ≤ 1 kV, ``mv_feeder`` above;
5. a bus with an in-service load or generator → ``connection_point`` at ≤ 1 kV, ``mv_load_kind``
   above (a connection point by default; ``secondary_substation`` where each MV load stands for
   an LV grid, as in the CIGRE MV benchmark);
6. every other bus → ``bus``.

Elements are named ``bus<i>``, ``line<i>``, ``trafo<i>``, ``switch<i>``, ``source<i>``, ``load<i>``
(``aload<i>`` for asymmetric loads, summed over phases), ``sgen<i>`` after their pandapower index;
original names are kept as ``name``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gridhub.domain.topology import (
    Generator,
    Load,
    Node,
    NodeKind,
    Source,
    Switch,
    SwitchTarget,
    TapChanger,
    Topology,
    Transformer,
)
from gridhub.errors import InvalidRequest
from gridhub.grid.topology_json import line_per_km
from gridhub.grid.topology_json import topology_from_json as from_json

__all__ = [
    "LV_MAX_KV",
    "REFERENCE_NETWORKS",
    "bus_indices",
    "from_json",
    "from_pandapower",
    "pandapower_quiet",
    "reference_network",
    "to_pandapower",
]

LV_MAX_KV = 1.0
REFERENCE_NETWORKS = ("cigre_lv", "cigre_mv", "ieee_european_lv", "case33bw")
_UNSUPPORTED_TABLES = (
    "trafo3w", "impedance", "shunt", "gen", "storage", "ward", "xward", "dcline", "motor",
    "asymmetric_sgen", "tcsc", "svc", "ssc", "vsc",
)  # fmt: skip
_SWITCH_ELEMENTS = {"b": ("bus", SwitchTarget.NODE), "l": ("line", SwitchTarget.LINE)}
_SWITCH_ELEMENTS["t"] = ("trafo", SwitchTarget.TRANSFORMER)


@contextmanager
def pandapower_quiet() -> Iterator[None]:
    """Silence the ``DeprecationWarning``/``FutureWarning`` that pandapower's own modules raise,
    and nothing else: a warning from our code or another library still reaches the caller.
    ``warnings.catch_warnings`` swaps process-wide state (before Python 3.14): use it around
    foreign networks, not in code that runs in many threads at once."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=r"pandapower(\..*)?$")
        yield


def reference_network(name: str, **options: Any) -> Topology:
    """One of pandapower's benchmark grids as a topology: ``cigre_lv``, ``cigre_mv``,
    ``ieee_european_lv`` (the IEEE European LV test feeder, ``on_peak_566`` scenario) or
    ``case33bw`` (Baran & Wu). ``options`` go to :func:`from_pandapower`."""
    with pandapower_quiet():
        import pandapower.networks as pn

        makers: dict[str, Callable[[], Any]] = {
            "cigre_lv": pn.create_cigre_network_lv,
            "cigre_mv": pn.create_cigre_network_mv,
            "ieee_european_lv": pn.ieee_european_lv_asymmetric,
            "case33bw": pn.case33bw,
        }
        if name not in makers:
            raise InvalidRequest(f"unknown reference network {name[:64]!r}: {REFERENCE_NETWORKS}")
        net = makers[name]()
    return from_pandapower(net, name=name, **options)


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)[:200]


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    return float(value) if _present(value) else None


def _rows(table: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, row in zip(table.index, table.to_dict("records"), strict=True):
        yield int(index), row


def _classify(net: Any, mv_load_kind: NodeKind) -> dict[int, NodeKind]:
    """Node kinds by the rules of the module docstring."""
    vn = {index: float(v) for index, v in zip(net.bus.index, net.bus.vn_kv, strict=True)}
    kinds: dict[int, NodeKind] = {}

    def put(bus: int, kind: NodeKind) -> None:
        kinds.setdefault(bus, kind)

    busbars: list[int] = []
    trafos = list(_rows(net.trafo))
    for _, t in trafos:
        if float(t["vn_lv_kv"]) <= LV_MAX_KV:
            put(int(t["hv_bus"]), NodeKind.SECONDARY_SUBSTATION)
    for _, t in trafos:
        put(int(t["hv_bus"]), NodeKind.PRIMARY_SUBSTATION)
        busbars.append(int(t["lv_bus"]))
    for _, g in _rows(net.ext_grid):
        bus = int(g["bus"])
        low = vn[bus] <= LV_MAX_KV
        put(bus, NodeKind.SECONDARY_SUBSTATION if low else NodeKind.PRIMARY_SUBSTATION)
        busbars.append(bus)
    neighbours: dict[int, list[int]] = {bus: [] for bus in vn}
    ends = [(int(a), int(b)) for a, b in zip(net.line.from_bus, net.line.to_bus, strict=True)]
    switches = net.switch[net.switch.et == "b"]
    ends += [(int(a), int(b)) for a, b in zip(switches.bus, switches.element, strict=True)]
    for a, b in ends:
        neighbours[a].append(b)
        neighbours[b].append(a)
    for busbar in dict.fromkeys(busbars):
        heads = [busbar] if busbar not in kinds and len(neighbours[busbar]) == 1 else []
        for head in heads or neighbours[busbar]:
            put(head, NodeKind.LV_FEEDER if vn[head] <= LV_MAX_KV else NodeKind.MV_FEEDER)
    for table in (net.load, net.asymmetric_load, net.sgen):
        for bus in table.bus[table.in_service]:
            put(int(bus), NodeKind.CONNECTION_POINT if vn[int(bus)] <= LV_MAX_KV else mv_load_kind)
    return kinds


def _tap(t: dict[str, Any], index: int) -> TapChanger | None:
    if t.get("tap_side") not in ("hv", "lv"):
        return None
    changer = t.get("tap_changer_type")
    if _present(changer) and changer != "Ratio":
        raise InvalidRequest(f"trafo {index}: tap changer type {changer!r} is not supported")

    def number(key: str) -> float:
        value: Any = t.get(key)
        return float(value) if _present(value) else 0.0

    keys = ("tap_pos", "tap_neutral", "tap_min", "tap_max", "tap_step_percent")
    pos, neutral, low, high, step = (number(key) for key in keys)
    return TapChanger(t["tap_side"], pos, neutral, low, high, step)


def from_pandapower(
    net: Any,
    *,
    name: str | None = None,
    open_lines_as_switches: bool = False,
    mv_load_kind: NodeKind = NodeKind.CONNECTION_POINT,
) -> Topology:
    """The topology of a pandapower network (balanced elements only).

    ``open_lines_as_switches``: an out-of-service line becomes an in-service line with an open
    switch at its ``from`` end. Baran & Wu's tie lines are out-of-service lines in pandapower;
    a DSO records them as normally-open points, which is what reconfiguration (G6) switches.
    """
    for table in _UNSUPPORTED_TABLES:
        if table in net and len(net[table]) and net[table].in_service.any():
            raise InvalidRequest(f"pandapower table {table!r} is not supported by the topology")
    kinds = _classify(net, mv_load_kind)
    nodes = tuple(
        Node(f"bus{i}", float(b["vn_kv"]), kinds.get(i, NodeKind.BUS), _text(b["name"]),
             bool(b["in_service"]))
        for i, b in _rows(net.bus)
    )  # fmt: skip
    lines, switches = [], []
    for i, ln in _rows(net.line):
        tie = open_lines_as_switches and not ln["in_service"]
        lines.append(
            line_per_km(
                f"line{i}", f"bus{ln['from_bus']}", f"bus{ln['to_bus']}",
                length_km=float(ln["length_km"]), r_ohm_per_km=float(ln["r_ohm_per_km"]),
                x_ohm_per_km=float(ln["x_ohm_per_km"]), c_nf_per_km=float(ln["c_nf_per_km"]),
                g_us_per_km=float(ln.get("g_us_per_km", 0.0)), max_i_ka=_number(ln["max_i_ka"]),
                parallel=int(ln["parallel"]), in_service=bool(ln["in_service"]) or tie,
                name=_text(ln["name"]),
            )
        )  # fmt: skip
        if tie:
            target = (SwitchTarget.LINE, f"line{i}")
            switches.append(Switch(f"tie{i}", f"bus{ln['from_bus']}", *target, closed=False))
    transformers = []
    for i, t in _rows(net.trafo):
        parallel = int(t["parallel"])
        transformers.append(
            Transformer(
                f"trafo{i}", f"bus{t['hv_bus']}", f"bus{t['lv_bus']}",
                sn_mva=float(t["sn_mva"]) * parallel, vn_hv_kv=float(t["vn_hv_kv"]),
                vn_lv_kv=float(t["vn_lv_kv"]), vk_percent=float(t["vk_percent"]),
                vkr_percent=float(t["vkr_percent"]), pfe_kw=float(t["pfe_kw"]) * parallel,
                i0_percent=float(t["i0_percent"]), shift_degree=float(t["shift_degree"]),
                tap=_tap(t, i), in_service=bool(t["in_service"]), name=_text(t["name"]),
            )
        )  # fmt: skip
    for i, s in _rows(net.switch):
        if s["et"] not in _SWITCH_ELEMENTS:
            raise InvalidRequest(f"switch {i}: element type {s['et']!r} is not supported")
        prefix, target_kind = _SWITCH_ELEMENTS[s["et"]]
        switches.append(
            Switch(
                f"switch{i}", f"bus{s['bus']}", target_kind, f"{prefix}{s['element']}",
                closed=bool(s["closed"]), kind=_text(s["type"]), name=_text(s["name"]),
            )
        )  # fmt: skip
    sources = tuple(
        Source(f"source{i}", f"bus{g['bus']}", float(g["vm_pu"]), float(g["va_degree"]),
               bool(g["in_service"]), _text(g["name"]))
        for i, g in _rows(net.ext_grid)
    )  # fmt: skip
    loads = [
        Load(f"load{i}", f"bus{x['bus']}", float(x["p_mw"]) * float(x["scaling"]),
             float(x["q_mvar"]) * float(x["scaling"]), bool(x["in_service"]), _text(x["name"]))
        for i, x in _rows(net.load)
    ]  # fmt: skip
    for i, x in _rows(net.asymmetric_load):
        p = sum(float(x[f"p_{phase}_mw"]) for phase in "abc") * float(x["scaling"])
        q = sum(float(x[f"q_{phase}_mvar"]) for phase in "abc") * float(x["scaling"])
        loads.append(Load(f"aload{i}", f"bus{x['bus']}", p, q, bool(x["in_service"]),
                          _text(x["name"])))  # fmt: skip
    generators = tuple(
        Generator(f"sgen{i}", f"bus{x['bus']}", float(x["p_mw"]) * float(x["scaling"]),
                  float(x["q_mvar"]) * float(x["scaling"]), bool(x["in_service"]),
                  _text(x["name"]))
        for i, x in _rows(net.sgen)
    )  # fmt: skip
    return Topology(
        name=name or _text(net.name) or "pandapower",
        nodes=nodes, lines=tuple(lines), transformers=tuple(transformers),
        switches=tuple(switches), sources=sources, loads=tuple(loads), generators=generators,
        f_hz=float(net.f_hz), sn_mva=float(net.sn_mva),
    )  # fmt: skip


def to_pandapower(topology: Topology) -> Any:
    """A pandapower network of ``topology`` to solve on: bus ``i`` is ``topology.nodes[i]``
    and is named by its node id; every other element is named by its id. A line of unknown
    length is built as 1 km with its totals as per-km values; one without a rating gets
    ``max_i_ka`` NaN, so its loading is unknown rather than invented."""
    import pandapower as pp

    net = pp.create_empty_network(name=topology.name, f_hz=topology.f_hz,
                                  sn_mva=topology.sn_mva)  # fmt: skip
    nodes = topology.nodes
    bus = {node.id: index for index, node in enumerate(nodes)}
    pp.create_buses(
        net, len(nodes), [n.vn_kv for n in nodes], index=range(len(nodes)),
        name=[n.id for n in nodes], in_service=[n.in_service for n in nodes],
    )  # fmt: skip
    lines = topology.lines
    lengths = [line.length_km or 1.0 for line in lines]
    line_index = {line.id: index for index, line in enumerate(lines)}
    if lines:
        pp.create_lines_from_parameters(
            net, [bus[x.from_node] for x in lines], [bus[x.to_node] for x in lines],
            length_km=lengths, index=range(len(lines)), name=[x.id for x in lines],
            r_ohm_per_km=[x.r_ohm / n for x, n in zip(lines, lengths, strict=True)],
            x_ohm_per_km=[x.x_ohm / n for x, n in zip(lines, lengths, strict=True)],
            c_nf_per_km=[x.c_nf / n for x, n in zip(lines, lengths, strict=True)],
            g_us_per_km=[x.g_us / n for x, n in zip(lines, lengths, strict=True)],
            max_i_ka=[math.nan if x.max_i_ka is None else x.max_i_ka for x in lines],
            in_service=[x.in_service for x in lines],
        )  # fmt: skip
    trafo_index: dict[str, int] = {}
    for t in topology.transformers:
        tap: dict[str, Any] = {}
        if t.tap is not None:
            tap = {
                "tap_side": t.tap.side, "tap_pos": t.tap.position, "tap_min": t.tap.min,
                "tap_neutral": t.tap.neutral, "tap_max": t.tap.max,
                "tap_step_percent": t.tap.step_percent, "tap_changer_type": "Ratio",
            }  # fmt: skip
        trafo_index[t.id] = pp.create_transformer_from_parameters(
            net, bus[t.hv_node], bus[t.lv_node], sn_mva=t.sn_mva, vn_hv_kv=t.vn_hv_kv,
            vn_lv_kv=t.vn_lv_kv, vkr_percent=t.vkr_percent, vk_percent=t.vk_percent,
            pfe_kw=t.pfe_kw, i0_percent=t.i0_percent, shift_degree=t.shift_degree,
            name=t.id, in_service=t.in_service, **tap,
        )  # fmt: skip
    targets = []
    for s in topology.switches:
        if s.target_kind is SwitchTarget.NODE:
            targets.append((bus[s.target], "b"))
        elif s.target_kind is SwitchTarget.LINE:
            targets.append((line_index[s.target], "l"))
        else:
            targets.append((trafo_index[s.target], "t"))
    if targets:
        switches = topology.switches
        indices = pp.create_switches(
            net, [bus[s.node] for s in switches], [t[0] for t in targets],
            [t[1] for t in targets], closed=[s.closed for s in switches],
            name=[s.id for s in switches], index=range(len(switches)),
        )  # fmt: skip
        net.switch.loc[indices, "type"] = [s.kind or None for s in switches]
    for g in topology.sources:
        pp.create_ext_grid(net, bus[g.node], vm_pu=g.vm_pu, va_degree=g.va_degree,
                           name=g.id, in_service=g.in_service)  # fmt: skip
    for create, injections in ((pp.create_loads, topology.loads),
                               (pp.create_sgens, topology.generators)):  # fmt: skip
        if injections:
            create(
                net, [bus[x.node] for x in injections], [x.p_mw for x in injections],
                [x.q_mvar for x in injections], name=[x.id for x in injections],
                index=range(len(injections)), in_service=[x.in_service for x in injections],
            )  # fmt: skip
    return net


def bus_indices(net: Any) -> dict[str, int]:
    """Node id → bus index of a network made by :func:`to_pandapower`, to read results back."""
    return {str(name): int(index) for index, name in zip(net.bus.index, net.bus.name, strict=True)}
