"""The documented JSON format of a grid topology (P5), read strictly and written back losslessly.

Why strict: a topology comes from a DSO's GIS export or a hand-written file, and a typo (``"from"``
spelt ``"form"``, a switch on a line that does not touch its node) would otherwise surface weeks
later as a wrong outage location. Every problem is an :class:`~gridhub.errors.InvalidRequest`
naming the JSON path (``lines[3].r_ohm: ...``); unknown keys, duplicate keys, NaN and Infinity
are refused; the document is at most ``MAX_DOCUMENT_BYTES`` and each list ``MAX_ELEMENTS`` long.

The format, JSON-Schema-like (``?`` marks optional keys, defaults after ``=``; ids match
``[A-Za-z0-9][A-Za-z0-9._:@-]*``, at most 128 characters; names at most 200 characters)::

    {
      "format": "gridhub.topology",  "version": 1,  "name": string,
      "f_hz"?: number > 0 = 50,  "sn_mva"?: number > 0 = 1,
      "nodes": [{                    # at least one
        "id": id, "vn_kv": number > 0,
        "kind"?: "primary_substation" | "mv_feeder" | "secondary_substation" | "lv_feeder"
                 | "connection_point" | "bus" = "bus",
        "name"?: string, "in_service"?: boolean = true }],
      "lines"?: [{
        "id": id, "from": node id, "to": node id,
        # either totals:
        "r_ohm": number >= 0, "x_ohm": number, "length_km"?: number >= 0 = 0 (unknown),
        "c_nf"?: number >= 0 = 0, "g_us"?: number >= 0 = 0,
        # or per km (any *_per_km key or "parallel" picks this form; parallel systems divide
        # the impedance and multiply capacitance and rating; totals are stored):
        "length_km": number > 0, "r_ohm_per_km": number >= 0, "x_ohm_per_km": number,
        "c_nf_per_km"?: number >= 0, "g_us_per_km"?: number >= 0, "parallel"?: integer >= 1 = 1,
        "max_i_ka"?: number > 0, "in_service"?: boolean = true, "name"?: string }],
      "transformers"?: [{
        "id": id, "hv": node id, "lv": node id, "sn_mva": number > 0, "vn_hv_kv": number > 0,
        "vn_lv_kv": number > 0, "vk_percent": number > 0, "vkr_percent": number >= 0,
        "pfe_kw"?: number >= 0 = 0, "i0_percent"?: number >= 0 = 0, "shift_degree"?: number = 0,
        "tap"?: {"side": "hv" | "lv", "position"?: number = 0, "neutral"?: number = 0,
                 "min"?: number = 0, "max"?: number = 0, "step_percent"?: number = 0},
        "in_service"?: boolean = true, "name"?: string }],
      "switches"?: [{
        "id": id, "node": node id,
        # exactly one of: a line or transformer touching "node", or the node it couples to
        "line": line id | "transformer": transformer id | "to_node": node id,
        "state": "open" | "closed", "kind"?: string (CB, LBS, DS, fuse...), "name"?: string }],
      "sources"?: [{"id": id, "node": node id, "vm_pu"?: number > 0 = 1,
                    "va_degree"?: number = 0, "in_service"?: boolean = true, "name"?: string}],
      "loads"?: [{"id": id, "node": node id, "p_mw": number, "q_mvar"?: number = 0,
                  "in_service"?: boolean = true, "name"?: string}],
      "generators"?: [ same keys as loads; p_mw is injected ],
      "devices"?: [{"hardwareId": id, "node": node id}],
      "sites"?: [{"site": id, "node": node id}]
    }

Line, transformer, switch, source, load and generator ids share one namespace; node ids another.
Reading checks structure (unknown nodes, duplicate ids, a switch on a line away from its node);
electrical oddities (loops, unsupplied nodes) are for ``topology_graph.check_topology`` to report.
``tests/data/topology/sample.json`` is a small grid in this format.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from gridhub.domain.topology import (
    DeviceAttachment,
    Generator,
    Line,
    Load,
    Node,
    NodeKind,
    SiteAttachment,
    Source,
    Switch,
    SwitchTarget,
    TapChanger,
    Topology,
    Transformer,
)
from gridhub.errors import InvalidRequest

FORMAT = "gridhub.topology"
VERSION = 1
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_ELEMENTS = 200_000
MAX_NAME_LENGTH = 200

T = TypeVar("T")
_SWITCH_TARGETS = {"line": SwitchTarget.LINE, "transformer": SwitchTarget.TRANSFORMER}
_SWITCH_TARGETS["to_node"] = SwitchTarget.NODE
_TAP_SIDES: dict[str, Literal["hv", "lv"]] = {"hv": "hv", "lv": "lv"}


def line_per_km(
    id: str, from_node: str, to_node: str, *, length_km: float, r_ohm_per_km: float,
    x_ohm_per_km: float, c_nf_per_km: float = 0.0, g_us_per_km: float = 0.0,
    max_i_ka: float | None = None, parallel: int = 1, in_service: bool = True, name: str = "",
) -> Line:  # fmt: skip
    """A :class:`Line` from per-km data, as cable catalogues and pandapower give it; ``parallel``
    identical systems divide the impedance and multiply the capacitance and rating."""
    if isinstance(length_km, bool) or not isinstance(length_km, int | float) or length_km <= 0:
        raise InvalidRequest(f"line {id!r}: length_km must be > 0 with per-km data")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise InvalidRequest(f"line {id!r}: parallel must be an integer >= 1")
    return Line(
        id, from_node, to_node,
        r_ohm=r_ohm_per_km * length_km / parallel, x_ohm=x_ohm_per_km * length_km / parallel,
        length_km=length_km, c_nf=c_nf_per_km * length_km * parallel,
        g_us=g_us_per_km * length_km * parallel,
        max_i_ka=None if max_i_ka is None else max_i_ka * parallel,
        in_service=in_service, name=name,
    )  # fmt: skip


def _at(path: str, key: str) -> str:
    """The JSON path of ``key`` in the object at ``path`` (``""`` for the document itself)."""
    return f"{path}.{key}" if path else key


class _Object:
    """One JSON object being read: typed access by key, with its path for messages."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise InvalidRequest(f"{path or 'document'}: must be an object")
        self.value: dict[str, Any] = value
        self.path = path
        self.read: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.value

    def get(self, key: str, check: Callable[[object, str], T], default: T | None = None) -> T:
        self.read.add(key)
        where = _at(self.path, key)
        if key not in self.value:
            if default is None:
                raise InvalidRequest(f"{where}: required")
            return default
        return check(self.value[key], where)

    def finish(self) -> None:
        extra = sorted(set(self.value) - self.read)
        if extra:
            raise InvalidRequest(f"{self.path or 'document'}: unknown key {extra[0][:64]!r}")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{where}: must be a string of at most {MAX_NAME_LENGTH} characters")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{where}: must be a number")
    return float(value)


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{where}: must be an integer")
    return value


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{where}: must be true or false")
    return value


def _kind(value: object, where: str) -> NodeKind:
    try:
        return NodeKind(_string(value, where))
    except ValueError:
        kinds = ", ".join(kind.value for kind in NodeKind)
        raise InvalidRequest(f"{where}: must be one of {kinds}") from None


def _items(document: _Object, key: str, *, required: bool = False) -> list[_Object]:
    document.read.add(key)
    where = _at(document.path, key)
    value = document.value.get(key, None if required else [])
    if not isinstance(value, list) or (required and not value):
        raise InvalidRequest(f"{where}: must be a{' non-empty' if required else ''} list")
    if len(value) > MAX_ELEMENTS:
        raise InvalidRequest(f"{where}: more than {MAX_ELEMENTS} elements")
    return [_Object(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _all(document: _Object, key: str, make: Callable[[_Object], T], **kw: bool) -> tuple[T, ...]:
    """Build the domain element of each item of ``document[key]``; an element's own complaint
    (a negative impedance, a bad id) gets the item's path."""
    built = []
    for item in _items(document, key, **kw):
        try:
            built.append(make(item))
        except InvalidRequest as error:
            if str(error).startswith(item.path):
                raise
            raise InvalidRequest(f"{item.path}: {error}") from None
        item.finish()
    return tuple(built)


def _node(o: _Object) -> Node:
    return Node(
        o.get("id", _string), o.get("vn_kv", _number), o.get("kind", _kind, NodeKind.BUS),
        o.get("name", _string, ""), o.get("in_service", _boolean, True),
    )  # fmt: skip


def _source(o: _Object) -> Source:
    return Source(
        o.get("id", _string), o.get("node", _string), o.get("vm_pu", _number, 1.0),
        o.get("va_degree", _number, 0.0), o.get("in_service", _boolean, True),
        o.get("name", _string, ""),
    )  # fmt: skip


def _device(o: _Object) -> DeviceAttachment:
    return DeviceAttachment(o.get("hardwareId", _string), o.get("node", _string))


def _site(o: _Object) -> SiteAttachment:
    return SiteAttachment(o.get("site", _string), o.get("node", _string))


def _line(o: _Object) -> Line:
    ends = (o.get("id", _string), o.get("from", _string), o.get("to", _string))
    common: dict[str, Any] = {
        "max_i_ka": o.get("max_i_ka", _number) if o.has("max_i_ka") else None,
        "in_service": o.get("in_service", _boolean, True),
        "name": o.get("name", _string, ""),
    }
    per_km = ("r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km", "g_us_per_km", "parallel")
    if any(o.has(key) for key in per_km):
        if o.has("r_ohm") or o.has("x_ohm") or o.has("c_nf") or o.has("g_us"):
            raise InvalidRequest(f"{o.path}: give totals (r_ohm, x_ohm) or per-km data, not both")
        return line_per_km(
            *ends, length_km=o.get("length_km", _number),
            r_ohm_per_km=o.get("r_ohm_per_km", _number),
            x_ohm_per_km=o.get("x_ohm_per_km", _number),
            c_nf_per_km=o.get("c_nf_per_km", _number, 0.0),
            g_us_per_km=o.get("g_us_per_km", _number, 0.0),
            parallel=o.get("parallel", _integer, 1), **common,
        )  # fmt: skip
    return Line(
        *ends, r_ohm=o.get("r_ohm", _number), x_ohm=o.get("x_ohm", _number),
        length_km=o.get("length_km", _number, 0.0), c_nf=o.get("c_nf", _number, 0.0),
        g_us=o.get("g_us", _number, 0.0), **common,
    )  # fmt: skip


def _tap(value: object, where: str) -> TapChanger:
    o = _Object(value, where)
    side = o.get("side", _string)
    if side not in _TAP_SIDES:
        raise InvalidRequest(f"{where}.side: must be 'hv' or 'lv'")
    numbers = {k: o.get(k, _number, 0.0) for k in ("position", "neutral", "min", "max")}
    tap = TapChanger(_TAP_SIDES[side], step_percent=o.get("step_percent", _number, 0.0), **numbers)
    o.finish()
    return tap


def _transformer(o: _Object) -> Transformer:
    required = ("sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent", "vkr_percent")
    optional = ("pfe_kw", "i0_percent", "shift_degree")
    return Transformer(
        o.get("id", _string), o.get("hv", _string), o.get("lv", _string),
        **{key: o.get(key, _number) for key in required},
        **{key: o.get(key, _number, 0.0) for key in optional},
        tap=o.get("tap", _tap) if o.has("tap") else None,
        in_service=o.get("in_service", _boolean, True), name=o.get("name", _string, ""),
    )  # fmt: skip


def _switch(o: _Object) -> Switch:
    given = [key for key in _SWITCH_TARGETS if o.has(key)]
    if len(given) != 1:
        raise InvalidRequest(f"{o.path}: needs exactly one of 'line', 'transformer', 'to_node'")
    state = o.get("state", _string)
    if state not in ("open", "closed"):
        raise InvalidRequest(f"{o.path}.state: must be 'open' or 'closed'")
    return Switch(
        o.get("id", _string), o.get("node", _string), _SWITCH_TARGETS[given[0]],
        o.get(given[0], _string), closed=state == "closed",
        kind=o.get("kind", _string, ""), name=o.get("name", _string, ""),
    )  # fmt: skip


def _load(o: _Object) -> Load:
    return Load(*_injection(o))


def _generator(o: _Object) -> Generator:
    return Generator(*_injection(o))


def _injection(o: _Object) -> tuple[str, str, float, float, bool, str]:
    return (
        o.get("id", _string), o.get("node", _string), o.get("p_mw", _number),
        o.get("q_mvar", _number, 0.0), o.get("in_service", _boolean, True),
        o.get("name", _string, ""),
    )  # fmt: skip


def _parse(data: bytes | str) -> object:
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidRequest(f"topology document is {size} bytes, more than {MAX_DOCUMENT_BYTES}")

    def no_constant(name: str) -> None:
        raise InvalidRequest(f"{name} is not a JSON number")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise InvalidRequest(f"duplicate key {key[:64]!r} in an object")
            result[key] = value
        return result

    try:
        return json.loads(data, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"topology document is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidRequest("topology document is nested too deeply") from None


def topology_from_json(data: bytes | str | Mapping[str, Any]) -> Topology:
    """Read a topology document (bytes, text, or already-decoded JSON)."""
    doc = _Object(dict(data) if isinstance(data, Mapping) else _parse(data), "")
    if doc.get("format", _string) != FORMAT:
        raise InvalidRequest(f"format: must be {FORMAT!r}")
    if doc.get("version", _integer) != VERSION:
        raise InvalidRequest(f"version: only version {VERSION} is understood")
    topology = Topology(
        name=doc.get("name", _string),
        nodes=_all(doc, "nodes", _node, required=True),
        lines=_all(doc, "lines", _line),
        transformers=_all(doc, "transformers", _transformer),
        switches=_all(doc, "switches", _switch),
        sources=_all(doc, "sources", _source),
        loads=_all(doc, "loads", _load),
        generators=_all(doc, "generators", _generator),
        devices=_all(doc, "devices", _device),
        sites=_all(doc, "sites", _site),
        f_hz=doc.get("f_hz", _number, 50.0),
        sn_mva=doc.get("sn_mva", _number, 1.0),
    )
    doc.finish()
    return topology


def topology_to_json(topology: Topology) -> dict[str, Any]:
    """The document :func:`topology_from_json` reads back into an equal topology (lines as
    totals, so nothing is rounded through per-km values)."""

    def named(fields: dict[str, Any], name: str) -> dict[str, Any]:
        return {**fields, "name": name} if name else fields

    def injection(x: Load | Generator) -> dict[str, Any]:
        fields = {"id": x.id, "node": x.node, "p_mw": x.p_mw, "q_mvar": x.q_mvar}
        return named({**fields, "in_service": x.in_service}, x.name)

    def line(x: Line) -> dict[str, Any]:
        fields = {"id": x.id, "from": x.from_node, "to": x.to_node, "r_ohm": x.r_ohm}
        fields |= {"x_ohm": x.x_ohm, "length_km": x.length_km, "c_nf": x.c_nf, "g_us": x.g_us}
        if x.max_i_ka is not None:
            fields["max_i_ka"] = x.max_i_ka
        return named({**fields, "in_service": x.in_service}, x.name)

    def transformer(x: Transformer) -> dict[str, Any]:
        fields: dict[str, Any] = {"id": x.id, "hv": x.hv_node, "lv": x.lv_node}
        fields["sn_mva"] = x.sn_mva
        fields |= {"vn_hv_kv": x.vn_hv_kv, "vn_lv_kv": x.vn_lv_kv, "vk_percent": x.vk_percent}
        fields |= {"vkr_percent": x.vkr_percent, "pfe_kw": x.pfe_kw, "i0_percent": x.i0_percent}
        fields |= {"shift_degree": x.shift_degree, "in_service": x.in_service}
        if x.tap is not None:
            fields["tap"] = {"side": x.tap.side, "position": x.tap.position}
            fields["tap"] |= {"neutral": x.tap.neutral, "min": x.tap.min, "max": x.tap.max}
            fields["tap"]["step_percent"] = x.tap.step_percent
        return named(fields, x.name)

    def switch(x: Switch) -> dict[str, Any]:
        key = {v: k for k, v in _SWITCH_TARGETS.items()}[x.target_kind]
        fields = {"id": x.id, "node": x.node, key: x.target, "state": x.state}
        return named({**fields, "kind": x.kind} if x.kind else fields, x.name)

    return {
        "format": FORMAT, "version": VERSION, "name": topology.name,
        "f_hz": topology.f_hz, "sn_mva": topology.sn_mva,
        "nodes": [
            named({"id": n.id, "vn_kv": n.vn_kv, "kind": n.kind.value,
                   "in_service": n.in_service}, n.name)
            for n in topology.nodes
        ],
        "lines": [line(x) for x in topology.lines],
        "transformers": [transformer(x) for x in topology.transformers],
        "switches": [switch(x) for x in topology.switches],
        "sources": [
            named({"id": x.id, "node": x.node, "vm_pu": x.vm_pu, "va_degree": x.va_degree,
                   "in_service": x.in_service}, x.name)
            for x in topology.sources
        ],
        "loads": [injection(x) for x in topology.loads],
        "generators": [injection(x) for x in topology.generators],
        "devices": [{"hardwareId": d.hardware_id, "node": d.node} for d in topology.devices],
        "sites": [{"site": s.site_id, "node": s.node} for s in topology.sites],
    }  # fmt: skip
