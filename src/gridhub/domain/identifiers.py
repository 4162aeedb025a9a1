"""Measurement identifiers and their units (seed 002 §4.5.1, Table 2).

The built-in table is declarative: one row per identifier, with the ``l1|l2|l3`` families expanded
into three identifiers each. Units are kept as the seed writes them (``KVA``, ``HZ``, ``Vrms``) so
that data from FLEXMETER-style devices maps one to one. A tenant can register more identifiers,
each with its unit; those live next to the built-ins in an :class:`IdentifierRegistry`.
"""

from __future__ import annotations

import re
from collections.abc import KeysView
from dataclasses import dataclass

from gridhub.errors import Conflict, InvalidRequest


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str
    unit: str
    builtin: bool = True


# (identifier, unit, per-phase?) — Table 2 of seed 002, in its order.
_TABLE_2: tuple[tuple[str, str, bool | None], ...] = (
    ("electricity.power.active.consumed", "kW", True),
    ("electricity.power.active.injected", "kW", True),
    ("electricity.power.reactive.consumed", "kVAR", True),
    ("electricity.power.reactive.injected", "kVAR", True),
    ("electricity.power.apparent", "KVA", True),
    ("electricity.energy.active.consumed", "kWh", True),
    ("electricity.energy.active.injected", "kWh", True),
    ("electricity.energy.reactive.consumed", "kVARh", True),
    ("electricity.energy.reactive.injected", "kVARh", True),
    ("electricity.energy.apparent", "kVAh", True),
    ("electricity.current.rms", "Arms", False),
    ("electricity.current.phase", "rad", False),
    ("electricity.current.instant", "A", False),
    ("electricity.voltage.rms", "Vrms", False),
    ("electricity.voltage.phase", "rad", False),
    ("electricity.voltage.instant", "V", False),
    ("electricity.powerFactor", "rad", False),
    ("electricity.frequency", "HZ", None),
    ("electricity.energy.blink", "Wh", None),
    ("heating.energy", "MWh", None),
    ("heating.power", "MW", None),
    ("heating.volume", "m3", None),
    ("heating.temp.primary.inlet", "°C", None),
    ("heating.temp.secondary.inlet", "°C", None),
    ("heating.flowrate", "m3/h", None),
    ("heating.temp.primary.outlet", "°C", None),
    ("heating.temp.secondary.outlet", "°C", None),
    ("heating.temp.external", "°C", None),
    ("heating.set.point", "°C", None),
    ("heating.time.slot", "#", None),
    ("heating.pump.status", "#", None),
    ("gas.flowrate", "m3/h", None),
    ("gas.temperature", "°C", None),
    ("gas.volume", "m3", None),
    ("gas.pressure", "bar", None),
    ("water.flowrate", "m3/h", None),
    ("water.volume", "m3", None),
    ("water.pressure", "bar", None),
)
# The third column: True = ``.l1|.l2|.l3`` and ``.total``; False = ``.l1|.l2|.l3`` only;
# None = a single identifier without phases.

PHASES = ("l1", "l2", "l3")


def _expand() -> dict[str, Identifier]:
    table: dict[str, Identifier] = {}
    for base, unit, phased in _TABLE_2:
        if phased is None:
            table[base] = Identifier(base, unit)
            continue
        for phase in PHASES:
            table[f"{base}.{phase}"] = Identifier(f"{base}.{phase}", unit)
        if phased:
            table[f"{base}.total"] = Identifier(f"{base}.total", unit)
    return table


BUILTIN_IDENTIFIERS: dict[str, Identifier] = _expand()

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+")
MAX_NAME_LENGTH = 128
MAX_UNIT_LENGTH = 32


def validate_custom(name: str, unit: str) -> Identifier:
    """Check a tenant-registered identifier: dotted name, short unit, no clash with Table 2."""
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"identifier {name!r} must be dotted words of letters, digits or _ "
            f"(e.g. 'boiler.stateOfCharge'), at most {MAX_NAME_LENGTH} characters"
        )
    if not unit or len(unit) > MAX_UNIT_LENGTH:
        raise InvalidRequest(f"unit for {name!r} must be 1..{MAX_UNIT_LENGTH} characters")
    if name in BUILTIN_IDENTIFIERS:
        raise Conflict(f"identifier {name!r} is built in (seed 002 Table 2)")
    return Identifier(name, unit, builtin=False)


class IdentifierRegistry:
    """The identifiers one tenant accepts: Table 2 plus its own."""

    __slots__ = ("_custom",)

    def __init__(self, custom: dict[str, Identifier] | None = None) -> None:
        self._custom: dict[str, Identifier] = dict(custom or {})

    def get(self, name: str) -> Identifier | None:
        return BUILTIN_IDENTIFIERS.get(name) or self._custom.get(name)

    def __contains__(self, name: object) -> bool:
        return name in BUILTIN_IDENTIFIERS or name in self._custom

    def knows_all(self, names: KeysView[str]) -> bool:
        """Whether every name is accepted (one set comparison for Table 2's names)."""
        if BUILTIN_IDENTIFIERS.keys() >= names:
            return True
        return all(name in BUILTIN_IDENTIFIERS or name in self._custom for name in names)

    def add(self, identifier: Identifier) -> None:
        existing = self._custom.get(identifier.name)
        if existing is not None and existing.unit != identifier.unit:
            raise Conflict(
                f"identifier {identifier.name!r} is registered with unit {existing.unit!r}"
            )
        self._custom[identifier.name] = identifier

    def all(self) -> list[Identifier]:
        return [*BUILTIN_IDENTIFIERS.values(), *self._custom.values()]
