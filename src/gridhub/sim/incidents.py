"""Grid incidents the simulator can cause (S1, issue #7): what the devices would send.

Each function returns canonical messages, ``(hardwareId, JSON bytes)`` in time order, ready for
any :class:`~gridhub.sim.transport.Publisher` — so an incident reaches the hub through the real
ingest path, and the grid service that should notice it is tested end to end.

* :func:`outage` — supply lost below a topology node: every meter of the households fed through
  it sends a last gasp (``power.last.gasp``) within seconds of the fault, and ``power.restored``
  when supply is back. Real AMI networks lose some last gasps (the meter's capacitor empties
  before the radio gets through): ``lost`` drops that share, chosen reproducibly by ``seed``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from gridhub.domain.alert_types import LAST_GASP, POWER_RESTORED
from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest

__all__ = ["meters_below", "outage"]


def meters_below(
    topology: Topology, node: str, site_meters: Mapping[str, Sequence[str]]
) -> list[str]:
    """The meters (``site → hardwareIds``) of the households fed through ``node``."""
    return [m for site in topology.sites_downstream(node) for m in site_meters.get(site, ())]


def _alert(hardware_id: str, kind: str, level: str, text: str, at: datetime) -> bytes:
    message = {
        "hardwareId": hardware_id,
        "type": "DeviceAlert",
        "request": {"type": kind, "level": level, "message": text, "eventDate": at.isoformat()},
    }
    return json.dumps(message, separators=(",", ":")).encode()


def outage(
    topology: Topology,
    node: str,
    site_meters: Mapping[str, Sequence[str]],
    start: datetime,
    end: datetime | None = None,
    *,
    spread: timedelta = timedelta(seconds=20),
    lost: float = 0.0,
    seed: int = 0,
) -> list[tuple[str, bytes]]:
    """Last gasps of the meters below ``node`` from ``start`` (spread over ``spread``), and,
    if ``end`` is given, their power-restored alerts from then on. ``start`` must be aware."""
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise InvalidRequest("incident times need a UTC offset")
    if end is not None and end <= start:
        raise InvalidRequest("an outage ends after it starts")
    if not 0 <= lost < 1:
        raise InvalidRequest("lost is a share of last gasps in [0, 1)")
    meters = meters_below(topology, node, site_meters)
    if not meters:
        raise InvalidRequest(f"no meter is fed through node {node!r}")
    rng = random.Random(seed)
    gasps, restores = [], []
    for meter in meters:
        offset = timedelta(seconds=rng.uniform(0, spread.total_seconds()))
        if rng.random() >= lost:
            gasps.append((start + offset, meter))
        if end is not None:
            restores.append((end + offset, meter))
    messages = [
        (meter, _alert(meter, LAST_GASP, "Critical", "supply lost", at))
        for at, meter in sorted(gasps)
    ]
    messages += [
        (meter, _alert(meter, POWER_RESTORED, "Info", "supply restored", at))
        for at, meter in sorted(restores)
    ]
    return messages
