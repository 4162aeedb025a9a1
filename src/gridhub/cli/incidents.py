"""``gridhub simulate incident``: cause a grid incident on a running hub, as its devices would
report it — an outage (meters' last gasps), an LV fault (sensors' fault reports or polled V/I),
a fused luminaire (public-lighting sensors' readings) — over MQTT or HTTP.

The incident is computed from the tenant's own topology and devices, read from the hub's API:
meters are the registered electricity meters of the households attached to the topology, LV
sensors the devices of type ``lv-sensor`` attached to its nodes, public-lighting sensors those of
type ``pl-sensor``. ``gridhub simulate incident sensors`` registers such sensors and attaches them
to nodes (docs/grid-services.md, "Running on arrival").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from gridhub.cli.common import DEFAULT_URL, TokenOpt, UrlOpt, api_call, console, err_console
from gridhub.domain.alert_types import POWER_RESTORED
from gridhub.domain.topology import Topology
from gridhub.errors import GridhubError, NotFound
from gridhub.grid.fault_monitor import LV_SENSOR_TYPE
from gridhub.grid.luminaire_monitor import PL_SENSOR_TYPE
from gridhub.grid.outage_monitor import METER_TYPES
from gridhub.grid.topology_json import topology_from_json
from gridhub.sim import incidents
from gridhub.sim.transport import HttpPublisher, MqttPublisher

__all__ = ["app"]

app = typer.Typer(help="Cause a grid incident (outage, fault, luminaire).", no_args_is_help=True)
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]
MqttOpt = Annotated[
    str | None, typer.Option("--mqtt-url", help="send over MQTT (mqtt://host:port); else HTTP")
]
NodeOpt = Annotated[str, typer.Option("--node", help="topology node id or name (e.g. 'Bus R8')")]
MAX_SENSORS_LISTED = 1_000


def _base(url: str, tenant: str) -> str:
    return f"{url.rstrip('/')}/api/v1/tenants/{tenant}"


def _topology(url: str, tenant: str, token: str) -> Topology:
    return topology_from_json(json.dumps(api_call("GET", f"{_base(url, tenant)}/topology", token)))


def _devices(url: str, tenant: str, token: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api_call("GET", f"{_base(url, tenant)}/devices", token)
    return found


def _node(topology: Topology, node: str) -> str:
    if node in {n.id for n in topology.nodes}:
        return node
    try:
        return topology.node_named(node).id
    except NotFound as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _sensors(topology: Topology, devices: list[dict[str, Any]], kind: str) -> dict[str, str]:
    of_kind = {d["hardware_id"] for d in devices if d["device_type"] == kind}
    sensors = {d.hardware_id: d.node for d in topology.devices if d.hardware_id in of_kind}
    if not sensors:
        err_console.print(
            f"[red]no {kind} device is attached to the topology[/red]: "
            f"gridhub simulate incident sensors --kind {kind} --nodes ..."
        )
        raise typer.Exit(2)
    return sensors


def _send(
    messages: list[tuple[str, bytes]], url: str, tenant: str, token: str, mqtt_url: str | None
) -> None:
    publisher = MqttPublisher(mqtt_url, tenant) if mqtt_url else HttpPublisher(url, tenant, token)
    try:
        result = publisher.publish(messages)
    finally:
        publisher.close()
    rejected = getattr(result, "rejected", [])
    if rejected:
        err_console.print(f"[red]{len(rejected)} messages refused[/red]: {rejected[:5]}")
        raise typer.Exit(1)
    console.print(f"sent {len(messages)} messages over {'MQTT' if mqtt_url else 'HTTP'}")


def _run(build: Any) -> list[tuple[str, bytes]]:
    try:
        messages: list[tuple[str, bytes]] = build()
    except GridhubError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return messages


@app.command("outage")
def outage(
    node: NodeOpt,
    tenant: TenantOpt = "demo",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    mqtt_url: MqttOpt = None,
    ago: Annotated[float, typer.Option(min=0, max=1440, help="minutes ago it started")] = 0.0,
    restore_after: Annotated[
        float | None, typer.Option(min=0.1, max=1440, help="minutes until supply is back")
    ] = None,
    lost: Annotated[float, typer.Option(min=0, max=0.99, help="share of gasps lost")] = 0.0,
    restore: Annotated[
        bool, typer.Option("--restore", help="only the restores, now (end a running outage)")
    ] = False,
    seed: int = 0,
) -> None:
    """Supply lost below NODE: its households' meters send last gasps (and restores)."""
    topology = _topology(url, tenant, token)
    site_meters: dict[str, list[str]] = {}
    for d in _devices(url, tenant, token):
        if d["site"] is not None and d["device_type"] in METER_TYPES:
            site_meters.setdefault(d["site"], []).append(d["hardware_id"])
    start = datetime.now(UTC) - timedelta(minutes=ago)
    end = start + timedelta(minutes=restore_after) if restore_after is not None else None
    if restore:  # the supply comes back now: the gasps were sent before
        start, end = datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC)
    where = _node(topology, node)
    messages = _run(
        lambda: incidents.outage(topology, where, site_meters, start, end, lost=lost, seed=seed)
    )
    if restore:
        messages = [(meter, raw) for meter, raw in messages if POWER_RESTORED.encode() in raw]
    _send(messages, url, tenant, token, mqtt_url)


@app.command("fault")
def fault(
    node: NodeOpt,
    tenant: TenantOpt = "demo",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    mqtt_url: MqttOpt = None,
    mode: Annotated[
        str, typer.Option(help="reports: the sensors decide; samples: polled V/I, the hub decides")
    ] = "reports",
    mv_sc_mva: Annotated[
        float, typer.Option(min=1, max=10_000, help="short-circuit power of the MV grid")
    ] = 100.0,
) -> None:
    """A three-phase short circuit at NODE, seen by the tenant's LV sensors (pandapower)."""
    topology = _topology(url, tenant, token)
    sensors = _sensors(topology, _devices(url, tenant, token), LV_SENSOR_TYPE)
    where = _node(topology, node)
    at = datetime.now(UTC)
    if mode not in ("reports", "samples"):
        err_console.print("[red]--mode is reports or samples[/red]")
        raise typer.Exit(2)
    chosen: Any = mode
    _send(
        _run(
            lambda: incidents.fault(topology, sensors, where, at, mode=chosen, mv_sc_mva=mv_sc_mva)
        ),
        url,
        tenant,
        token,
        mqtt_url,
    )


@app.command("luminaire")
def luminaire(
    after: Annotated[str, typer.Option("--after", help="the fused segment's upstream sensor")],
    tenant: TenantOpt = "demo",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    mqtt_url: MqttOpt = None,
    bulbs: Annotated[int, typer.Option(min=1, max=500, help="bulbs per segment")] = 5,
    fused: Annotated[int, typer.Option(min=1, max=500, help="bulbs that fuse")] = 1,
    sets: Annotated[int, typer.Option(min=12, max=10_000, help="readings sets sent")] = 30,
    interval: Annotated[int, typer.Option(min=1, max=3600, help="seconds between sets")] = 60,
    seed: int = 0,
) -> None:
    """Bulbs of the segment after sensor AFTER fuse: the lighting sensors' last SETS readings
    sets (up to now), the bulbs going out two thirds of the way."""
    topology = _topology(url, tenant, token)
    sensors = _sensors(topology, _devices(url, tenant, token), PL_SENSOR_TYPE)
    step = timedelta(seconds=interval)
    start = datetime.now(UTC).replace(microsecond=0) - (sets - 1) * step
    counts = dict.fromkeys(sensors, bulbs)
    _send(
        _run(
            lambda: incidents.luminaire(
                topology,
                sensors,
                counts,
                after,
                start,
                sets,
                (2 * sets) // 3,
                fused=fused,
                interval=step,
                seed=seed,
            )  # fmt: skip
        ),
        url,
        tenant,
        token,
        mqtt_url,
    )


@app.command("sensors")
def sensors(
    kind: Annotated[str, typer.Option("--kind", help=f"{LV_SENSOR_TYPE} or {PL_SENSOR_TYPE}")],
    nodes: Annotated[str, typer.Option("--nodes", help="comma-separated node ids or names")],
    tenant: TenantOpt = "demo",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    prefix: Annotated[str, typer.Option(help="hardwareId prefix")] = "",
) -> None:
    """Register sensors of KIND and attach one to each of NODES in the tenant's topology (the
    topology document is read, its ``devices`` extended, and put back)."""
    if kind not in (LV_SENSOR_TYPE, PL_SENSOR_TYPE):
        err_console.print(f"[red]--kind is {LV_SENSOR_TYPE} or {PL_SENSOR_TYPE}[/red]")
        raise typer.Exit(2)
    wanted = [n.strip() for n in nodes.split(",") if n.strip()]
    if not 1 <= len(wanted) <= MAX_SENSORS_LISTED:
        err_console.print(f"[red]--nodes: 1..{MAX_SENSORS_LISTED} nodes[/red]")
        raise typer.Exit(2)
    base = _base(url, tenant)
    document = api_call("GET", f"{base}/topology", token)
    topology = topology_from_json(json.dumps(document))
    head = prefix or ("lv" if kind == LV_SENSOR_TYPE else "pl")
    attached = {d["hardwareId"]: d["node"] for d in document.get("devices", [])}
    for wanted_node in wanted:
        node = _node(topology, wanted_node)
        hardware_id = f"{head}-{node}"
        api_call(
            "POST",
            f"{base}/devices",
            token,
            json={"hardware_id": hardware_id, "device_type": kind, "name": wanted_node},
        )
        attached[hardware_id] = node
        console.print(f"{hardware_id} ({kind}) on {node} ({topology.node(node).name})")
    document["devices"] = [{"hardwareId": h, "node": n} for h, n in attached.items()]
    summary = api_call("PUT", f"{base}/topology", token, content=json.dumps(document))
    console.print(f"topology {summary['name']!r}: {summary['devices']} devices attached")
