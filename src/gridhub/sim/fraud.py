"""Energy theft and the grid meters that reveal it (S1, issue #7 G4), for end-to-end tests.

The fleet simulator's messages are what honest household meters send. Two additions make the
losses service (G4) testable through the real ingest path:

* :class:`Bypass` — a meter bypass: part of a household's load is wired around its meter, so the
  meter under-reports its consumed power (and its register grows that much slower) by
  ``share``; everything else it sends (voltages, injection) is unchanged;
* :class:`NodeMeter` — a meter at a topology node (a secondary substation's LV busbar, a
  feeder head) that sees the *true* consumption of every household below it, plus the
  technical losses of the lines it feeds, ``loss_coefficient × P²`` (kW, with P the net kW
  below: I²R at a roughly constant voltage).

:func:`fraudulent` wraps the fleet's batches: node meters read the honest messages, then the
bypass is applied to what the household meter sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gridhub.domain.messages import DeviceMeasurements, MeasurementsRequest, encode
from gridhub.domain.topology import Topology
from gridhub.errors import InvalidRequest

__all__ = ["Bypass", "NodeMeter", "fraudulent"]

POWER = "electricity.power.active.consumed.total"
INJECTED = "electricity.power.active.injected.total"
REGISTER = "electricity.energy.active.consumed.total"

Message = tuple[str, bytes]


@dataclass
class Bypass:
    """``meter`` reports ``1 − share`` of its consumed power and of its register's growth."""

    meter: str
    share: float
    _first_register: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise InvalidRequest("a bypass hides a share of the load in (0, 1)")

    def apply(self, message: bytes) -> bytes:
        data = json.loads(message)
        values = data["request"]["measurements"]
        if POWER in values:
            values[POWER] = round(values[POWER] * (1.0 - self.share), 4)
        if REGISTER in values:
            if self._first_register is None:
                self._first_register = values[REGISTER]
            grown = values[REGISTER] - self._first_register
            values[REGISTER] = round(self._first_register + grown * (1.0 - self.share), 4)
        return json.dumps(data, separators=(",", ":")).encode()


@dataclass
class NodeMeter:
    """A meter at ``node`` of ``topology``: per tick, the true net power of the site meters
    below it plus ``loss_coefficient × P²``. ``site_meters``: site → its meters' hardwareIds."""

    hardware_id: str
    topology: Topology
    node: str
    site_meters: dict[str, Sequence[str]]
    loss_coefficient: float = 0.0
    _meters: frozenset[str] = field(default=frozenset(), init=False)
    _ticks: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        below = self.topology.sites_downstream(self.node)
        self._meters = frozenset(m for s in below for m in self.site_meters.get(s, ()))
        if not self._meters:
            raise InvalidRequest(f"no site meter below node {self.node!r}")
        if self.loss_coefficient < 0:
            raise InvalidRequest("loss_coefficient must be >= 0")

    def observe(self, hardware_id: str, message: bytes) -> None:
        if hardware_id not in self._meters:
            return
        request = json.loads(message)["request"]
        values, at = request["measurements"], request["eventDate"]
        net = values.get(POWER, 0.0) - values.get(INJECTED, 0.0)
        self._ticks[at] = self._ticks.get(at, 0.0) + net

    def flush(self) -> list[Message]:
        """The node meter's messages for the ticks observed since the last flush."""
        out = []
        for at, net in self._ticks.items():
            total = net + self.loss_coefficient * net * net
            values = {POWER: round(max(total, 0.0), 4), INJECTED: round(max(-total, 0.0), 4)}
            msg = DeviceMeasurements(self.hardware_id, MeasurementsRequest(values, True, at))
            out.append((self.hardware_id, encode(msg)))
        self._ticks.clear()
        return out


def fraudulent(
    batches: Iterable[list[Message]], bypasses: Sequence[Bypass], meters: Sequence[NodeMeter]
) -> Iterator[list[Message]]:
    """Fleet batches as the hub receives them with ``bypasses`` in place: node meters see the
    true load; the bypassed household meters send less. Batches must hold whole ticks (the
    fleet's do when ``batch_size`` is a multiple of its device count)."""
    hidden = {b.meter: b for b in bypasses}
    for batch in batches:
        out = []
        for hardware_id, raw in batch:
            for meter in meters:
                meter.observe(hardware_id, raw)
            cheat = hidden.get(hardware_id)
            out.append((hardware_id, cheat.apply(raw) if cheat is not None else raw))
        for meter in meters:
            out.extend(meter.flush())
        yield out
