"""``gridhub gateway``: forward a meter's P1 or IEC 62056-21 port to a hub over MQTT.

Runs next to the meter (a Raspberry Pi with a P1 cable or an optical head, or any host that
reaches a ser2net-style P1 gateway). Telegrams are parsed on the spot and their canonical
messages kept in an on-disk outbox until the broker acknowledges them, so an outage of the
network or the broker loses nothing (see :mod:`gridhub.gateway`).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from gridhub.cli.common import err_console, setup_logging
from gridhub.gateway.outbox import MiB, OutboxLocked
from gridhub.gateway.runner import Gateway, GatewayConfig


def gateway(
    source: Annotated[
        str,
        typer.Option(
            help="serial:///dev/ttyUSB0, tcp://host:port (ser2net, P1 dongles) or file://path"
        ),
    ],
    tenant: Annotated[str, typer.Option(help="tenant id: topics gridhub/<tenant>/<id>/events")],
    protocol: Annotated[str, typer.Option(help="dsmr (P1 telegrams) or iec62056 (mode C)")] = (
        "dsmr"
    ),
    mqtt_url: Annotated[
        str,
        typer.Option(
            envvar="GRIDHUB_MQTT_URL",
            help="broker, mqtt://[user:password@]host:port or mqtts://… for TLS",
        ),
    ] = "mqtt://127.0.0.1:1883",
    zone: Annotated[str, typer.Option(help="the meter clock's time zone")] = "Europe/Amsterdam",
    hardware_id: Annotated[
        str | None, typer.Option(help="device id to use instead of the meter's own")
    ] = None,
    outbox: Annotated[Path, typer.Option(help="outbox file (SQLite)")] = Path(
        "gridhub-outbox.sqlite"
    ),
    max_outbox_mb: Annotated[
        float, typer.Option(min=0.001, help="outbox bound; when full, new telegrams are refused")
    ] = 256.0,
    max_outbox_messages: Annotated[int, typer.Option(min=1, help="outbox bound")] = 1_000_000,
    rejects: Annotated[
        Path | None, typer.Option(help="rejects file (JSON lines); default <outbox>.rejects.jsonl")
    ] = None,
    once: Annotated[
        bool, typer.Option(help="read the input to its end, exit when the outbox is empty")
    ] = False,
    baud: Annotated[
        int | None, typer.Option(help="serial baud rate (default: DSMR 115200, IEC 300)")
    ] = None,
    serial_mode: Annotated[
        str | None, typer.Option(help="8N1 or 7E1 (default: DSMR 8N1; DSMR 2.2 and IEC 7E1)")
    ] = None,
    iec_poll: Annotated[
        float, typer.Option(min=0, help="IEC: request a mode C readout every N s (0: listen)")
    ] = 0.0,
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (default gridhub-gw-<id or host>)")
    ] = None,
    mqtt_protocol: Annotated[str, typer.Option(help="5, or 3.1.1 for brokers without v5")] = "5",
    max_telegrams: Annotated[
        int | None, typer.Option(min=1, help="stop reading after N telegrams (with --once)")
    ] = None,
    idle_timeout: Annotated[
        float, typer.Option(min=0.1, help="--once: a port silent this long has ended (s)")
    ] = 15.0,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="--once: wait at most this long for PUBACKs (s)")
    ] = 60.0,
    status_every: Annotated[float, typer.Option(min=1, help="status log line every N s")] = 60.0,
    log_level: str = "INFO",
    log_format: Annotated[str, typer.Option(help="text, or json (one object per line)")] = "text",
) -> None:
    """Read a meter port and forward its readings over MQTT, buffered in an on-disk outbox.

    Exit codes with --once: 0 all delivered, 1 the source could not be read, 3 messages still
    undelivered at the drain deadline (they stay in the outbox for the next run), 2 bad options.
    """
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format is text or json")
    setup_logging(log_level, log_format)
    config = GatewayConfig(
        source=source,
        tenant=tenant,
        protocol=protocol,
        mqtt_url=mqtt_url,
        zone=zone,
        hardware_id=hardware_id,
        outbox=outbox,
        max_outbox_bytes=max(1, int(max_outbox_mb * MiB)),
        max_outbox_messages=max_outbox_messages,
        rejects=rejects,
        client_id=client_id,
        mqtt_protocol=mqtt_protocol,
        baud=baud,
        serial_mode=serial_mode,
        iec_poll_s=iec_poll,
        once=once,
        max_telegrams=max_telegrams,
        idle_timeout_s=idle_timeout,
        drain_timeout_s=drain_timeout,
        status_every_s=status_every,
    )
    try:
        runner = Gateway(config)
    except (ValueError, OutboxLocked, OSError, sqlite3.Error) as exc:
        err_console.print(f"[red]gateway:[/red] {exc}")
        raise typer.Exit(2) from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = runner.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code:
        raise typer.Exit(code)
