"""Units gridhub converts between: a declarative table of proportional unit families.

Each unit is listed with its size in its family's smallest unit, as an exact decimal, so a
conversion factor is exact (1234 Wh is 1.234 kWh, not 1.2340000000000002). Used by the CSV
history import (column units) and the Green Button import (ESPI units of measure).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from gridhub.errors import InvalidRequest

__all__ = ["UNIT_CONVERSIONS", "unit_factor"]

# Unit families: each unit with its size in the family's smallest unit (exact decimals). Only
# proportional units: °C to K or °F needs an offset, not a factor, so temperatures are not here.
# Lookups ignore case (ESPI writes "VArh", Table 2 "kVARh", DSO exports "kvarh") unless that would
# confuse two sizes; no milli unit is listed whose case-folded spelling is a mega one (mW, MW).
# fmt: off
_UNIT_FAMILIES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("J", "1"), ("kJ", "1e3"), ("MJ", "1e6"), ("GJ", "1e9"),
     ("Wh", "3600"), ("kWh", "3.6e6"), ("MWh", "3.6e9"), ("GWh", "3.6e12")),
    (("W", "1"), ("kW", "1e3"), ("MW", "1e6"), ("GW", "1e9")),
    (("var", "1"), ("kvar", "1e3"), ("Mvar", "1e6")),
    (("varh", "1"), ("kvarh", "1e3"), ("Mvarh", "1e6")),
    (("VA", "1"), ("kVA", "1e3"), ("MVA", "1e6")),
    (("VAh", "1"), ("kVAh", "1e3"), ("MVAh", "1e6")),
    (("L", "1"), ("dm3", "1"), ("m3", "1e3"), ("m³", "1e3"), ("ft3", "28.316846592"),
     ("gal", "3.785411784")),  # US gallon
    (("L/h", "1"), ("L/min", "60"), ("L/s", "3600"), ("m3/h", "1e3"), ("m³/h", "1e3"),
     ("m3/s", "3.6e6")),
    (("Pa", "1"), ("hPa", "1e2"), ("mbar", "1e2"), ("kPa", "1e3"), ("bar", "1e5"),
     ("MPa", "1e6"), ("psi", "6894.757293168")),
    (("mA", "1"), ("A", "1e3"), ("Arms", "1e3"), ("kA", "1e6")),
    (("V", "1"), ("Vrms", "1"), ("kV", "1e3")),
    (("Hz", "1"),),
)
# fmt: on

_UNITS: dict[str, tuple[int, Decimal]] = {
    unit: (family, Decimal(size))
    for family, units in enumerate(_UNIT_FAMILIES)
    for unit, size in units
}
_FOLDED: dict[str, tuple[int, Decimal] | None] = {}
for _name, _size in _UNITS.items():
    if _FOLDED.setdefault(_name.casefold(), _size) not in (None, _size):
        _FOLDED[_name.casefold()] = None  # two sizes share this spelling: exact case needed

UNIT_CONVERSIONS: Mapping[tuple[str, str], Decimal] = {
    (source, target): (_UNITS[source][1] / _UNITS[target][1]).normalize()
    for units in _UNIT_FAMILIES
    for source, _ in units
    for target, _ in units
    if source != target
}
"""(from unit, to unit) → factor, e.g. ``("Wh", "kWh")`` → ``0.001``: every pair of one family."""


def _unit(name: str) -> tuple[int, Decimal] | None:
    text = name.strip()
    return _UNITS.get(text) or _FOLDED.get(text.casefold())


def unit_factor(source: str, target: str) -> Decimal:
    """The factor taking a value in ``source`` to ``target`` (``Wh`` → ``kWh``: ``0.001``).

    Raises :class:`~gridhub.errors.InvalidRequest` for a unit not in the table or a pair that
    measures different things: a wrong factor would corrupt every value of the import.
    """
    sizes = []
    for name in (source, target):
        found = _unit(name)
        if found is None:
            raise InvalidRequest(f"unit {name[:32]!r} is not one gridhub converts")
        sizes.append(found)
    (family, size), (other, other_size) = sizes
    if family != other:
        raise InvalidRequest(f"{source} cannot be converted to {target}: they measure apart")
    return Decimal(1) if size == other_size else (size / other_size).normalize()
