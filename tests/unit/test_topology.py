"""Topology (P5) without pandapower: the domain model, its queries, the JSON format, households.

The grid of ``tests/data/topology/sample.json`` is small enough to check by hand::

    ps ─m1─ mvf ─m2─ ss1 ═t1═ lv1 ─fuse-1a─ f1a ─l1─ cp1 ─l2─ cp2
             │       ┊          └──fuse-1b─ f1b ─l3─ j ─l4─ cp3
             │      tie (switch sw-tie open)         └──l5─ cp4
             │       ┊
             └─m3─ ss2 ═t2═ lv2 ─l6─ cp5      (cb-t2: breaker on t2 at ss2)

Kinds: ps primary substation, mvf MV feeder, ss1/ss2 secondary substations, f1a/f1b/lv2 LV
feeders, cp1-cp5 connection points, lv1 and j plain buses. Loads 10, 5, 20, 15, 30 kW at cp1-cp5.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from gridhub.domain.topology import (
    DeviceAttachment,
    Line,
    Load,
    Node,
    NodeKind,
    SiteAttachment,
    Source,
    Switch,
    SwitchTarget,
    Topology,
    Transformer,
)
from gridhub.errors import InvalidRequest, NotFound
from gridhub.grid import topology_json
from gridhub.grid.households import attach_households
from gridhub.grid.topology_graph import (
    IssueCode,
    check_topology,
    find_loops,
    to_networkx,
    topology_counts,
)
from gridhub.grid.topology_json import topology_from_json, topology_to_json

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "topology" / "sample.json"
CP = NodeKind.CONNECTION_POINT


@pytest.fixture(scope="module")
def sample() -> Topology:
    return topology_from_json(SAMPLE.read_bytes())


def sample_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    return doc


def chain(*ids: str, kinds: dict[str, NodeKind] | None = None) -> Topology:
    """A source at ``ids[0]`` and one 1-ohm line between each consecutive pair of nodes."""
    kinds = kinds or {}
    return Topology(
        name="chain",
        nodes=tuple(Node(i, 0.4, kinds.get(i, NodeKind.BUS)) for i in ids),
        lines=tuple(Line(f"{a}-{b}", a, b, 1.0, 0.5) for a, b in zip(ids, ids[1:], strict=False)),
        sources=(Source("grid", ids[0]),),
    )


# --- the model and its queries ------------------------------------------------------------


def test_sample_reads_with_the_expected_counts_and_no_issues(sample: Topology) -> None:
    counts = topology_counts(sample)
    assert counts["nodes"] == 14 and counts["lines"] == 10 and counts["switches"] == 4
    assert counts["transformers"] == 2 and counts["loads"] == 5 and counts["generators"] == 1
    assert (counts["lv_feeder"], counts["connection_point"], counts["bus"]) == (3, 5, 2)
    assert check_topology(sample) == ()
    assert sample.is_radial() and sample.unsupplied() == ()
    assert sample.supply_roots == ("ps",)


def test_supply_path_names_each_level_of_the_hierarchy(sample: Topology) -> None:
    path = sample.supply_path("cp3")
    assert path.nodes == ("cp3", "j", "f1b", "lv1", "ss1", "mvf", "ps")
    assert path.edges == ("l4", "l3", "fuse-1b", "t1", "m2", "m1")
    assert (path.lv_feeder, path.secondary_substation) == ("f1b", "ss1")
    assert (path.mv_feeder, path.primary_substation) == ("mvf", "ps")
    assert sample.supply_path("cp5").lv_feeder == "lv2"
    assert sample.ancestor("cp2", NodeKind.LV_FEEDER) == "f1a"
    assert sample.ancestor("ss2", NodeKind.SECONDARY_SUBSTATION) == "ss2"  # itself counts
    assert sample.ancestor("ss2", NodeKind.LV_FEEDER) is None
    assert sample.parent("j") == "f1b" and sample.parent("ps") is None
    assert sample.children("j") == ("cp3", "cp4")


def test_downstream_queries(sample: Topology) -> None:
    assert sample.downstream("f1b") == ("f1b", "j", "cp3", "cp4")
    assert sample.connection_points_downstream("ss1") == ("cp1", "cp2", "cp3", "cp4")
    assert sample.connection_points_downstream("mvf") == ("cp5", "cp1", "cp2", "cp3", "cp4")
    assert sample.connection_points_downstream("cp5") == ("cp5",)
    assert sample.devices_downstream("f1b") == ("sensor-j", "meter-cp3")
    assert sample.devices_downstream("ss1") == ("sensor-lv1", "sensor-j", "meter-cp3")
    assert sample.sites_downstream("f1a") == ("hh-cp1",) and sample.sites_downstream("f1b") == ()
    assert sample.device_node("sensor-j") == "j" and sample.site_node("hh-cp1") == "cp1"


def test_path_between_sensors_and_its_impedance(sample: Topology) -> None:
    nodes, edges = sample.path_between("lv1", "cp3")
    assert nodes == ("lv1", "f1b", "j", "cp3") and edges == ("fuse-1b", "l3", "l4")
    # l3: 0.2 km of 0.2 + j0.08 ohm/km, two systems in parallel; l4: 0.05 + j0.02
    assert sample.series_impedance("f1b", "cp3") == pytest.approx(complex(0.07, 0.028))
    assert sample.series_impedance("cp3", "cp3") == 0
    with pytest.raises(InvalidRequest, match="not fed through"):
        sample.path_between("f1a", "cp3")


def test_unknown_ids_are_not_found(sample: Topology) -> None:
    for query in (sample.node, sample.supply_path, sample.downstream, sample.site_node):
        with pytest.raises(NotFound):
            query("nope")
    with pytest.raises(NotFound):
        sample.device_node("nope")


def test_an_open_switch_cuts_off_what_it_feeds(sample: Topology) -> None:
    cut = sample.with_switch_states({"fuse-1b": False})
    assert cut.unsupplied() == ("f1b", "j", "cp3", "cp4")
    assert cut.supply_path("cp3").nodes == ("cp3",) and not cut.is_supplied("cp3")
    assert cut.connection_points_downstream("ss1") == ("cp1", "cp2")
    assert [i.code for i in check_topology(cut)] == [IssueCode.UNSUPPLIED] * 4
    # opening the transformer's breaker takes the whole secondary substation out
    assert sample.with_switch_states({"cb-t2": False}).unsupplied() == ("lv2", "cp5")
    with pytest.raises(InvalidRequest, match="unknown switches"):
        sample.with_switch_states({"nope": True})


def test_closing_the_tie_makes_a_loop_that_is_reported(sample: Topology) -> None:
    meshed = sample.with_switch_states({"sw-tie": True})
    assert not meshed.is_radial()
    assert meshed.loop_branches() == (("tie", "ss1", "ss2"),)
    (loop,) = find_loops(meshed)
    assert loop.nodes == ("ss1", "mvf", "ss2") and loop.branches == ("m2", "m3", "tie")
    assert not loop.between_sources
    assert [(i.code, i.element) for i in check_topology(meshed)] == [(IssueCode.LOOP, "tie")]
    # queries still answer on a meshed grid
    assert meshed.supply_path("cp5").nodes[-3:] == ("ss2", "mvf", "ps")


def test_parallel_lines_and_two_sources_are_loops() -> None:
    base = chain("a", "b", "c")
    doubled = Topology(
        "doubled",
        base.nodes,
        (*base.lines, Line("b-c-2", "b", "c", 1.0, 0.5)),
        sources=base.sources,
    )
    (loop,) = find_loops(doubled)
    assert loop.nodes == ("b", "c") and set(loop.branches) == {"b-c", "b-c-2"}
    two_fed = Topology(
        "two", base.nodes, base.lines, sources=(Source("g1", "a"), Source("g2", "c"))
    )
    (tie,) = find_loops(two_fed)
    assert tie.between_sources and tie.nodes[0] in ("a", "c") and set(tie.nodes) == {"a", "b", "c"}
    assert [i.code for i in check_topology(two_fed)] == [IssueCode.PARALLEL_FEED]


def test_roots_fall_back_to_substations_without_sources() -> None:
    kinds = {"s": NodeKind.SECONDARY_SUBSTATION, "c": CP}
    no_source = Topology("gis", chain("s", "f", "c", kinds=kinds).nodes, chain("s", "f", "c").lines)
    assert no_source.supply_roots == ("s",)
    assert no_source.supply_path("c").secondary_substation == "s"
    bare = Topology("bare", (Node("x", 0.4),))
    assert bare.supply_roots == () and bare.unsupplied() == ("x",)
    assert IssueCode.NO_SUPPLY_ROOT in [i.code for i in check_topology(bare)]


def test_check_reports_hierarchy_and_voltage_oddities() -> None:
    kinds = {"a": NodeKind.SECONDARY_SUBSTATION, "b": CP, "c": NodeKind.LV_FEEDER}
    odd = chain("a", "b", "c", kinds=kinds)
    odd = Topology(
        "odd", (*odd.nodes[:2], Node("c", 20.0, NodeKind.LV_FEEDER)), odd.lines, sources=odd.sources
    )
    issues = [(i.code, i.element) for i in check_topology(odd)]
    assert issues == [(IssueCode.HIERARCHY, "c"), (IssueCode.VOLTAGE_MISMATCH, "b-c")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: {"nodes": (*t.nodes, Node("a", 0.4))}, "duplicate node id 'a'"),
        (
            lambda t: {"lines": (*t.lines, Line("a-b", "b", "c", 1, 1))},
            "duplicate element id 'a-b'",
        ),
        (lambda t: {"loads": (Load("a-b", "a", 1.0),)}, "duplicate element id 'a-b'"),
        (
            lambda t: {"lines": (Line("x", "a", "zz", 1, 1),)},
            "line 'x' refers to unknown node 'zz'",
        ),
        (lambda t: {"sites": (SiteAttachment("h", "q"),)}, "site 'h' refers to unknown node 'q'"),
        (
            lambda t: {"devices": (DeviceAttachment("m", "a"), DeviceAttachment("m", "b"))},
            "device 'm' attached twice",
        ),
        (
            lambda t: {"switches": (Switch("s", "a", SwitchTarget.LINE, "b-c"),)},
            "switch 's' is at node 'a', which line 'b-c' does not touch",
        ),
        (
            lambda t: {"switches": (Switch("s", "a", SwitchTarget.TRANSFORMER, "t9"),)},
            "switch 's' is on unknown transformer 't9'",
        ),
    ],
)
def test_structural_faults_raise(change: Any, message: str) -> None:
    base = chain("a", "b", "c")
    fields = {"name": "t", "nodes": base.nodes, "lines": base.lines, "sources": base.sources}
    with pytest.raises(InvalidRequest, match=message):
        Topology(**(fields | change(base)))


def test_element_values_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="r_ohm must be >= 0.0"):
        Line("l", "a", "b", -1.0, 0.1)
    with pytest.raises(InvalidRequest, match="starts and ends at node 'a'"):
        Line("l", "a", "a", 1.0, 0.1)
    with pytest.raises(InvalidRequest, match="vn_kv must be a finite number"):
        Node("n", float("nan"))
    with pytest.raises(InvalidRequest, match="node id 'bad id'"):
        Node("bad id", 0.4)
    with pytest.raises(InvalidRequest, match="vkr_percent must not exceed vk_percent"):
        Transformer("t", "a", "b", 0.4, 20, 0.4, vk_percent=4, vkr_percent=5)
    with pytest.raises(InvalidRequest, match="joins node 'a' to itself"):
        Switch("s", "a", SwitchTarget.NODE, "a")


def test_many_problems_are_listed_with_a_count() -> None:
    nodes = tuple(Node(f"n{i}", 0.4) for i in range(3))
    lines = tuple(Line(f"l{i}", "n0", f"x{i}", 1, 1) for i in range(30))
    with pytest.raises(InvalidRequest, match="and 10 more$"):
        Topology("t", nodes, lines)


def test_to_networkx_follows_switch_states(sample: Topology) -> None:
    graph = to_networkx(sample)
    assert nx.is_forest(graph) and graph.number_of_nodes() == 14
    assert graph.number_of_edges() == 10 + 2 + 2 - 1  # lines, trafos, couplers; the tie is open
    full = to_networkx(sample, conducting_only=False)
    tie = full.get_edge_data("ss1", "ss2", key="tie")
    assert tie["switches"] == ("sw-tie",) and tie["closed"] is False and tie["r_ohm"] == 0.4
    assert not nx.is_forest(full)


# --- the JSON format ----------------------------------------------------------------------


def test_json_round_trip_is_lossless(sample: Topology) -> None:
    doc = topology_to_json(sample)
    assert topology_from_json(json.dumps(doc)) == sample
    assert topology_from_json(doc) == sample
    line = next(x for x in sample.lines if x.id == "l3")
    assert (line.r_ohm, line.x_ohm, line.length_km) == pytest.approx((0.02, 0.008, 0.2))
    assert next(x for x in sample.transformers if x.id == "t1").tap is not None


def edited(path: str, value: Any) -> dict[str, Any]:
    """The sample document with ``path`` (``lines.0.r_ohm``) set to ``value``, or removed
    when ``value`` is ``...``."""
    doc = sample_doc()
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[last]
    else:
        target[int(last) if isinstance(target, list) else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "other", "format: must be 'gridhub.topology'"),
        ("version", 2, "version: only version 1"),
        ("nodes", [], r"nodes: must be a non-empty list"),
        ("nodes.1.vn_kv", ..., r"nodes\[1\]\.vn_kv: required"),
        ("nodes.1.vn_kv", "20", r"nodes\[1\]\.vn_kv: must be a number"),
        ("nodes.1.vn_kv", 0, r"nodes\[1\]: node 'mvf': vn_kv must be > 0.0"),
        ("nodes.2.kind", "substation", r"nodes\[2\]\.kind: must be one of primary_substation"),
        ("nodes.2.in_service", 1, r"nodes\[2\]\.in_service: must be true or false"),
        ("nodes.2.colour", "red", r"nodes\[2\]: unknown key 'colour'"),
        ("lines.1.to", "ss9", "line 'm2' refers to unknown node 'ss9'"),
        ("lines.1.r_ohm", -0.5, r"lines\[1\]: line 'm2': r_ohm must be >= 0.0"),
        ("lines.1.r_ohm_per_km", 0.5, r"lines\[1\]: give totals .* or per-km data, not both"),
        ("lines.0.length_km", ..., r"lines\[0\]\.length_km: required"),
        ("lines.6.parallel", 0, r"lines\[6\]: line 'l3': parallel must be an integer >= 1"),
        ("lines.4.id", "m1", "duplicate element id 'm1'"),
        ("transformers.0.tap.side", "mv", r"transformers\[0\]\.tap\.side: must be 'hv' or 'lv'"),
        ("switches.0.to_node", "ss2", r"switches\[0\]: needs exactly one of 'line'"),
        ("switches.0.state", "on", r"switches\[0\]\.state: must be 'open' or 'closed'"),
        ("switches.0.node", "mvf", "switch 'sw-tie' is at node 'mvf', which line 'tie'"),
        ("devices.0.hardwareId", "bad id!", r"devices\[0\]: hardwareId 'bad id!'"),
        ("sites", {"site": "h"}, r"sites: must be a list"),
        ("loads.0", [1], r"loads\[0\]: must be an object"),
        ("name", "x" * 201, r"^name: must be a string of at most 200"),
        ("extra", 1, r"^document: unknown key 'extra'"),
    ],
)
def test_json_errors_name_the_path(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        topology_from_json(json.dumps(edited(path, value)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"format": NaN}', "NaN is not a JSON number"),
        (b'{"format": "gridhub.topology", "format": "x"}', "duplicate key 'format'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", r"^document: must be an object"),
    ],
)
def test_json_documents_that_are_not_topologies(text: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        topology_from_json(text)


def test_json_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidRequest, match="more than 16777216"):
        topology_from_json(b" " * (topology_json.MAX_DOCUMENT_BYTES + 1))
    monkeypatch.setattr(topology_json, "MAX_ELEMENTS", 5)
    with pytest.raises(InvalidRequest, match="nodes: more than 5 elements"):
        topology_from_json(SAMPLE.read_bytes())


# --- households ---------------------------------------------------------------------------


def test_round_robin_deals_households_like_cards(sample: Topology) -> None:
    homes = [f"hh{i:03}" for i in range(1, 13)]
    placed = attach_households(sample, homes)
    where = {s.site_id: s.node for s in placed.sites}
    assert where["hh-cp1"] == "cp1"  # already attached, not listed: kept
    assert [where[h] for h in homes[:5]] == ["cp1", "cp2", "cp3", "cp4", "cp5"]
    assert Counter(where[h] for h in homes) == {"cp1": 3, "cp2": 3, "cp3": 2, "cp4": 2, "cp5": 2}
    assert attach_households(sample, homes) == placed  # deterministic
    assert placed.sites_downstream("f1b") == ("hh003", "hh004", "hh008", "hh009")


def test_load_share_follows_nominal_load(sample: Topology) -> None:
    # loads 10, 5, 20, 15, 30 kW of 80: 16 homes → 2, 1, 4, 3, 6
    homes = [f"hh{i:03}" for i in range(16)]
    placed = attach_households(sample, homes, strategy="load_share")
    count = Counter(s.node for s in placed.sites if s.site_id in homes)
    assert count == {"cp1": 2, "cp2": 1, "cp3": 4, "cp4": 3, "cp5": 6}
    # largest remainders: 3 homes → 0.375, 0.1875, 0.75, 0.5625, 1.125 → cp5, cp3, cp4
    few = attach_households(sample, ["a", "b", "c"], strategy="load_share")
    assert {s.site_id: s.node for s in few.sites} == {
        "hh-cp1": "cp1",
        "a": "cp3",
        "b": "cp4",
        "c": "cp5",
    }


def test_households_under_a_node_and_errors(sample: Topology) -> None:
    placed = attach_households(sample, ["x", "y", "z"], under="f1b")
    assert {s.site_id: s.node for s in placed.sites if s.site_id != "hh-cp1"} == {
        "x": "cp3", "y": "cp4", "z": "cp3",
    }  # fmt: skip
    with pytest.raises(InvalidRequest, match="listed twice"):
        attach_households(sample, ["x", "x"])
    with pytest.raises(InvalidRequest, match="no supplied connection point"):
        attach_households(sample.with_switch_states({"cb-t2": False}), ["x"], under="ss2")
    unknown: Any = "random"  # what an untyped caller (the CLI) could pass
    with pytest.raises(InvalidRequest, match="unknown strategy"):
        attach_households(sample, ["x"], strategy=unknown)
