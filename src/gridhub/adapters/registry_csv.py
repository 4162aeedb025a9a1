"""Bulk registration from CSV (P6): one row per device, sites derived from the rows.

A pilot's installers keep their household list in a spreadsheet; registering hundreds of meters
and plugs one by one is where provisioning mistakes come from. This adapter reads such a sheet
into :class:`~gridhub.domain.registry.Site` and :class:`~gridhub.domain.registry.Device`
objects and reports every unusable row with its line number, so the operator fixes the sheet and
imports again. It stores nothing: whoever calls it decides whether to register a partial import.

Columns (header case-insensitive, ``snake_case`` or ``camelCase``): ``hardwareId`` and
``deviceType`` (required), ``site``, ``name`` (the device's), and the site attributes reports
group by: ``location``, ``pilotPhase``, ``experiment``, ``applianceTypes`` (separated by ``|`` or
``;``) and ``hasPv`` (true/false, 1/0, yes/no). An attribute cell left empty says nothing; two
rows of one site that give different values are a conflict, reported on the later row. Unknown
columns are refused: a misspelt attribute would otherwise vanish without a word.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from gridhub.adapters.csv_lines import (
    MAX_LINE_BYTES,
    CsvLine,
    LineSplitter,
    column_key,
    read_header,
    read_lines,
)
from gridhub.domain.registry import Device, Site, check_site_id, check_tenant_id
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage

__all__ = ["RegistryImport", "RowError", "parse_registry"]


class RowError(NamedTuple):
    """A row that was not imported, and why."""

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class RegistryImport:
    """What a registry sheet holds: sites and devices to register, and the rows left out.

    A row is either imported whole or reported in ``errors``; nothing of an erroneous row (not
    even its site attributes) reaches ``sites`` or ``devices``.
    """

    sites: list[Site] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


# Column key (see column_key) → Site field, for the attributes sites are grouped by.
_SITE_ATTRIBUTES: dict[str, str] = {
    "location": "location",
    "pilotphase": "pilot_phase",
    "experiment": "experiment",
    "appliancetypes": "appliance_types",
    "haspv": "has_pv",
}
_COLUMNS = (
    "hardwareId",
    "deviceType",
    "site",
    "name",
    "location",
    "pilotPhase",
    "experiment",
    "applianceTypes",
    "hasPv",
)
_CANONICAL = {column_key(name): name for name in _COLUMNS}  # key → spelling for messages
_REQUIRED = ("hardwareid", "devicetype")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_APPLIANCE_SEPARATOR = re.compile(r"[|;]")
MAX_DEVICE_TYPE_LENGTH = 64


def parse_registry(
    data: Iterable[str] | TextIO,
    tenant: str,
    *,
    max_rows: int = 100_000,
    device_types: Container[str] | None = None,
) -> RegistryImport:
    """Read a registry sheet of ``tenant`` into sites, devices and row errors.

    With ``device_types`` (the tenant's built-in and own types), a row naming another type is
    an error: a misspelt type would leave the device without expectations for completeness.

    Raises :class:`~gridhub.errors.InvalidRequest` when the sheet as a whole cannot be used: no
    header, a required or unknown column, or more than ``max_rows`` data rows (the import is all
    in memory, so its size is bounded, N3). Row problems never raise; they become ``errors``.
    """
    check_tenant_id(tenant)
    lines = read_lines(data)
    names, splitter = read_header(lines)
    header = _columns(names)
    devices: list[Device] = []
    errors: list[RowError] = []
    sites: dict[str, dict[str, Any]] = {}  # site id → the attributes its rows stated
    device_lines: dict[str, int] = {}  # hardwareId → line it was registered on
    rows = 0
    for line in lines:
        if splitter.is_blank(line):
            continue
        rows += 1
        if rows > max_rows:
            raise InvalidRequest(f"more than {max_rows} data rows; split the file")
        try:
            device, site_id, attributes = _row(line, header, splitter, tenant)
            if device_types is not None and device.device_type not in device_types:
                raise InvalidRequest(
                    f"deviceType {device.device_type!r} is not a device type of this tenant"
                )
            if device.hardware_id in device_lines:
                raise InvalidRequest(
                    f"hardwareId {device.hardware_id!r} is already on line "
                    f"{device_lines[device.hardware_id]}"
                )
            if site_id is not None:
                _check_agreement(site_id, attributes, sites.get(site_id, {}))
        except InvalidRequest as exc:
            errors.append(RowError(line.number, str(exc)))
            continue
        device_lines[device.hardware_id] = line.number
        devices.append(device)
        if site_id is not None:
            sites.setdefault(site_id, {}).update(attributes)
    return RegistryImport(
        sites=[_site(tenant, site_id, stated) for site_id, stated in sites.items()],
        devices=devices,
        errors=errors,
    )


def _columns(names: list[str]) -> dict[str, int]:
    """Column key → position; refuses unknown, repeated and missing required columns."""
    columns: dict[str, int] = {}
    for position, name in enumerate(names):
        key = column_key(name)
        if key not in _CANONICAL:
            raise InvalidRequest(
                f"unknown column {name[:64]!r}; the columns are {', '.join(_COLUMNS)}"
            )
        if key in columns:
            raise InvalidRequest(f"column {_CANONICAL[key]} appears twice")
        columns[key] = position
    missing = [_CANONICAL[key] for key in _REQUIRED if key not in columns]
    if missing:
        raise InvalidRequest(f"missing required column(s): {', '.join(missing)}")
    return columns


def _row(
    line: CsvLine, header: dict[str, int], splitter: LineSplitter, tenant: str
) -> tuple[Device, str | None, dict[str, Any]]:
    """The device of one row, its site id and the site attributes the row states (by key)."""
    if line.oversized:
        raise InvalidRequest(f"line is longer than {MAX_LINE_BYTES} bytes")
    try:
        cells = splitter.split(line.text)
    except csv.Error as exc:
        raise InvalidRequest(f"not valid CSV: {exc}") from None
    if len(cells) != len(header):
        raise InvalidRequest(f"row has {len(cells)} columns, the header {len(header)}")
    values = {key: cells[position].strip() for key, position in header.items()}
    hardware_id = values["hardwareid"]
    try:
        check_hardware_id(hardware_id)
    except RejectedMessage as exc:
        raise InvalidRequest(exc.detail) from None
    device_type = values["devicetype"]
    if not device_type or len(device_type) > MAX_DEVICE_TYPE_LENGTH:
        raise InvalidRequest(f"deviceType must be 1..{MAX_DEVICE_TYPE_LENGTH} characters")
    site_id = values.get("site") or None
    attributes = {
        key: _attribute(key, text)
        for key, text in values.items()
        if key in _SITE_ATTRIBUTES and text
    }
    if site_id is None:
        if attributes:
            stated = ", ".join(_CANONICAL[key] for key in attributes)
            raise InvalidRequest(f"site attributes ({stated}) given without a site")
    else:
        check_site_id(site_id)
    device = Device(tenant, hardware_id, device_type, site_id, values.get("name", ""))
    return device, site_id, attributes


def _attribute(key: str, text: str) -> Any:
    if key == "haspv":
        flag = _BOOLEANS.get(text.lower())
        if flag is None:
            raise InvalidRequest(f"hasPv {text[:32]!r} is not one of true/false, 1/0, yes/no")
        return flag
    if key == "appliancetypes":
        # A set, really: the same appliances in another order are the same site.
        return tuple(sorted({part.strip() for part in _APPLIANCE_SEPARATOR.split(text)} - {""}))
    return text


def _check_agreement(site_id: str, attributes: dict[str, Any], known: dict[str, Any]) -> None:
    conflicts = [
        f"{_CANONICAL[key]} is {value!r} here but {known[key]!r} on earlier rows"
        for key, value in attributes.items()
        if key in known and known[key] != value
    ]
    if conflicts:
        raise InvalidRequest(f"site {site_id!r}: " + "; ".join(conflicts))


def _site(tenant: str, site_id: str, stated: dict[str, Any]) -> Site:
    return Site(tenant=tenant, id=site_id, **{_SITE_ATTRIBUTES[k]: v for k, v in stated.items()})


def to_registry_csv(sites: Iterable[Site], devices: Iterable[Device]) -> str:
    """Sites and devices in the layout :func:`parse_registry` reads (one row per device)."""
    by_id = {site.id: site for site in sites}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    for d in devices:
        s = by_id.get(d.site or "") or Site(d.tenant, d.site or "")
        writer.writerow(
            [
                d.hardware_id,
                d.device_type,
                d.site or "",
                d.name,
                s.location,
                s.pilot_phase,
                s.experiment,
                "|".join(s.appliance_types),
                str(s.has_pv).lower(),
            ]
        )
    return out.getvalue()
