"""ESPI code tables for the Green Button import: which gridhub series a ReadingType feeds.

An ESPI ReadingType describes a series by numeric codes (``uom``, ``powerOfTenMultiplier``,
``flowDirection``, ``accumulationBehaviour``, ``commodity``, ``dataQualifier``). This module
holds the declarative tables from those codes to gridhub identifiers and units, and
:func:`series_for`, which turns one ReadingType's codes into the series its readings feed, or
refuses it. How the codes are mapped, and why, is told in :mod:`gridhub.adapters.green_button`,
which reads the XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple

from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS
from gridhub.domain.rejections import RejectReason
from gridhub.domain.units import unit_factor
from gridhub.errors import RejectedMessage

__all__ = [
    "ESPI_UNITS",
    "GREEN_BUTTON_CUSTOM_IDENTIFIERS",
    "READING_TYPE_FIELDS",
    "EspiUnit",
    "Series",
    "series_for",
]


class EspiUnit(NamedTuple):
    """What one ESPI ``uom`` code feeds; ``{flow}`` is consumed/injected, ``{medium}`` gas/water.

    Amounts (energy, volume) have a ``register`` (Table 2, for cumulative readings) and an
    ``interval`` identifier (deltas, in the register's unit); their ``rate`` is the mean over the
    interval. Rates (power) have only ``rate``: the reading itself.
    """

    symbol: str  # as gridhub's unit table spells it
    register: str | None
    interval: str | None
    rate: str


_ACTIVE, _REACTIVE = "electricity.energy.active.{flow}", "electricity.energy.reactive.{flow}"
_APPARENT, _VOLUME = "electricity.energy.apparent", "{medium}.volume"
_P, _Q = "electricity.power.active.{flow}.total", "electricity.power.reactive.{flow}.total"
_S = "electricity.power.apparent.total"
ESPI_UNITS: Mapping[int, EspiUnit] = {
    72: EspiUnit("Wh", f"{_ACTIVE}.total", f"{_ACTIVE}.interval", _P),
    73: EspiUnit("VArh", f"{_REACTIVE}.total", f"{_REACTIVE}.interval", _Q),
    71: EspiUnit("VAh", f"{_APPARENT}.total", f"{_APPARENT}.interval", _S),
    38: EspiUnit("W", None, None, _P),
    63: EspiUnit("VAr", None, None, _Q),
    61: EspiUnit("VA", None, None, _S),
    42: EspiUnit("m3", _VOLUME, f"{_VOLUME}.interval", "{medium}.flowrate"),
    119: EspiUnit("ft3", _VOLUME, f"{_VOLUME}.interval", "{medium}.flowrate"),
    134: EspiUnit("L", _VOLUME, f"{_VOLUME}.interval", "{medium}.flowrate"),
    128: EspiUnit("gal", _VOLUME, f"{_VOLUME}.interval", "{medium}.flowrate"),
}
_UNMAPPED_UNITS = {169: "therm", 132: "BTU", 31: "J", 0: "none", 29: "V", 5: "A", 33: "Hz"}
_FLOWS = {None: "consumed", 0: "consumed", 1: "consumed", 19: "injected"}
_MEDIUM_BY_COMMODITY = {7: "gas", 9: "water"}  # natural gas, potable water
_MEDIUM_BY_SERVICE = {1: "gas", 2: "water"}  # the UsagePoint's ServiceCategory kind
_RATE_ACCUMULATIONS = (None, 0, 4, 6, 12)  # none, deltaData, indicating, instantaneous
_MEAN_QUALIFIERS = (None, 0, 2, 12)  # none, average, normal: not maximum or minimum demand

GREEN_BUTTON_CUSTOM_IDENTIFIERS: tuple[tuple[str, str], ...] = tuple(
    sorted(
        {
            (name, BUILTIN_IDENTIFIERS[unit.register.format(flow=flow, medium=medium)].unit)
            for unit in ESPI_UNITS.values()
            if unit.register is not None and unit.interval is not None
            for flow in ("consumed", "injected")
            for medium in ("gas", "water")
            if (name := unit.interval.format(flow=flow, medium=medium)) not in BUILTIN_IDENTIFIERS
        }
    )
)
"""(name, unit) of the identifiers beyond Table 2 this import produces: register them per tenant."""

READING_TYPE_FIELDS = (
    *("uom", "powerOfTenMultiplier", "flowDirection", "accumulationBehaviour"),
    *("commodity", "dataQualifier"),
)
"""The ReadingType fields that decide the series: the keys :func:`series_for` reads."""


@dataclass(frozen=True, slots=True)
class Series:
    """What the readings of one ReadingType feed, and how their values are scaled."""

    mode: Literal["delta", "register", "rate"]
    identifier: str  # the interval amount, the register or the rate
    rate: str | None  # deltas: the mean rate over the interval
    factor: Decimal  # value in the file × factor = value in the identifier's unit


def _unmapped(detail: str) -> RejectedMessage:
    return RejectedMessage(RejectReason.UNKNOWN_IDENTIFIER, detail)


def series_for(kind: dict[str, int | None], service_kind: int | None) -> Series:
    """The series a reading type feeds; :class:`RejectedMessage` says why there is none."""
    code, flow_code = kind["uom"], kind["flowDirection"]
    accumulation, commodity = kind["accumulationBehaviour"], kind["commodity"]
    unit = None if code is None else ESPI_UNITS.get(code)
    if unit is None:
        name = f" ({_UNMAPPED_UNITS[code]})" if code in _UNMAPPED_UNITS else ""
        raise _unmapped(f"uom {code}{name} has no gridhub series" if code is not None else "no uom")
    flow = _FLOWS.get(flow_code)
    if flow is None or (flow != "consumed" and "{flow}" not in unit.rate):
        raise _unmapped(
            f"flowDirection {flow_code}{' (net)' if flow_code == 4 else ''} of {unit.symbol} has "
            "no gridhub series; forward (1) and reverse (19) readings do"
        )
    medium = _MEDIUM_BY_COMMODITY.get(commodity or -1)
    if medium is None and not commodity:
        medium = _MEDIUM_BY_SERVICE.get(service_kind or -1)
    if medium is None and "{medium}" in unit.rate:
        raise _unmapped(f"{unit.symbol} of commodity {commodity}: only gas (7), water (9) map")
    rate = unit.rate.format(flow=flow, medium=medium)
    scale = Decimal(10) ** (kind["powerOfTenMultiplier"] or 0)
    if unit.register is None or unit.interval is None:
        if accumulation not in _RATE_ACCUMULATIONS or kind["dataQualifier"] not in _MEAN_QUALIFIERS:
            raise _unmapped(
                f"{unit.symbol} with accumulationBehaviour {accumulation}, dataQualifier "
                f"{kind['dataQualifier']}: not a mean or instantaneous {unit.symbol}"
            )
        return Series("rate", rate, None, scale * unit_factor(unit.symbol, _unit_of(rate)))
    register = unit.register.format(flow=flow, medium=medium)
    factor = scale * unit_factor(unit.symbol, _unit_of(register))
    if accumulation == 4:  # deltaData
        return Series("delta", unit.interval.format(flow=flow, medium=medium), rate, factor)
    if accumulation in (1, 3):  # bulkQuantity, cumulative
        return Series("register", register, None, factor)
    raise _unmapped(
        f"{unit.symbol} with accumulationBehaviour {accumulation}: only deltaData (4) and "
        "bulkQuantity or cumulative (1, 3) readings map"
    )


def _unit_of(identifier: str) -> str:
    return BUILTIN_IDENTIFIERS[identifier].unit
