"""Bulk registration from CSV: columns, sites derived from rows, every row error."""

from __future__ import annotations

import io

import pytest

from gridhub.adapters.csv_history import MAX_LINE_BYTES
from gridhub.adapters.registry_csv import RegistryImport, RowError, parse_registry
from gridhub.domain.registry import Device, Site
from gridhub.errors import InvalidRequest


def run(text: str, tenant: str = "pilot", **kwargs: int) -> RegistryImport:
    return parse_registry(text.splitlines(), tenant, **kwargs)


def error_lines(result: RegistryImport) -> list[int]:
    return [error.line for error in result.errors]


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_devices_and_sites_from_a_sheet(delimiter: str) -> None:
    rows = [
        "hardwareId,deviceType,site,name,location,pilotPhase,experiment,applianceTypes,hasPv",
        "m1,smart_meter,h1,Main meter,Gent,3,tou-2024,boiler|washing_machine,yes",
        "p1,plug,h1,Fridge plug,,,,,",
        "m2,smart_meter,h2,,Leuven,2,,,0",
        "t1,transformer_sensor,,,,,,,",
    ]
    result = run("\n".join(row.replace(",", delimiter) for row in rows))
    assert result.errors == []
    assert result.devices == [
        Device("pilot", "m1", "smart_meter", "h1", "Main meter"),
        Device("pilot", "p1", "plug", "h1", "Fridge plug"),
        Device("pilot", "m2", "smart_meter", "h2", ""),
        Device("pilot", "t1", "transformer_sensor", None, ""),
    ]
    assert result.sites == [
        Site(
            "pilot",
            "h1",
            location="Gent",
            pilot_phase="3",
            experiment="tou-2024",
            appliance_types=("boiler", "washing_machine"),
            has_pv=True,
        ),
        Site("pilot", "h2", location="Leuven", pilot_phase="2", has_pv=False),
    ]


@pytest.mark.parametrize(
    "header",
    [
        "hardware_id,device_type,site,location,pilot_phase,appliance_types,has_pv",
        "HardwareId,DeviceType,Site,Location,PilotPhase,ApplianceTypes,HasPV",
        "\ufeffHARDWAREID, devicetype ,SITE,LOCATION,PILOTPHASE,APPLIANCETYPES,HASPV",
    ],
)
def test_header_is_case_insensitive_in_snake_or_camel_case(header: str) -> None:
    result = run(f"{header}\nm1,meter,h1,Gent,1,pv,true\n")
    assert result.errors == []
    assert result.devices == [Device("pilot", "m1", "meter", "h1")]
    assert result.sites == [
        Site("pilot", "h1", location="Gent", pilot_phase="1", appliance_types=("pv",), has_pv=True)
    ]


@pytest.mark.parametrize(
    ("cell", "delimiter"),
    [("boiler|pv|heat_pump", ","), ("boiler;pv;heat_pump", ","), ('"boiler;pv;heat_pump"', ";")],
)
def test_appliance_types_split_on_pipe_or_semicolon(cell: str, delimiter: str) -> None:
    result = run(
        f"hardwareId{delimiter}deviceType{delimiter}site{delimiter}applianceTypes\n"
        f"m1{delimiter}meter{delimiter}h1{delimiter}{cell}\n"
    )
    assert result.sites[0].appliance_types == ("boiler", "heat_pump", "pv")


@pytest.mark.parametrize(
    ("cell", "has_pv"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
    ],
)
def test_has_pv_spellings(cell: str, has_pv: bool) -> None:
    result = run(f"hardwareId,deviceType,site,hasPv\nm1,meter,h1,{cell}\n")
    assert result.sites[0].has_pv is has_pv


def test_a_duplicate_hardware_id_is_a_row_error_and_the_first_row_stays() -> None:
    result = run("hardwareId,deviceType,site\nm1,meter,h1\nm2,meter,h2\nm1,plug,h3\n")
    assert result.errors == [RowError(4, "hardwareId 'm1' is already on line 2")]
    assert [(d.hardware_id, d.device_type) for d in result.devices] == [
        ("m1", "meter"),
        ("m2", "meter"),
    ]
    assert [s.id for s in result.sites] == ["h1", "h2"]  # h3 came only from the refused row


def test_site_attributes_must_agree_between_rows() -> None:
    result = run(
        "hardwareId,deviceType,site,location,pilotPhase,hasPv\n"
        "m1,meter,h1,Gent,3,yes\n"
        "p1,plug,h1,,,\n"  # empty cells say nothing: no conflict
        "p2,plug,h1,Leuven,3,no\n"  # two conflicts, one error
        "p3,plug,h1,Gent,3,1\n"  # the same values, spelt otherwise
    )
    assert error_lines(result) == [4]
    message = result.errors[0].message
    assert "site 'h1'" in message
    assert "location is 'Leuven' here but 'Gent'" in message
    assert "hasPv is False here but True" in message
    assert [d.hardware_id for d in result.devices] == ["m1", "p1", "p3"]
    assert result.sites == [Site("pilot", "h1", location="Gent", pilot_phase="3", has_pv=True)]


def test_an_attribute_first_stated_on_a_later_row_completes_the_site() -> None:
    result = run(
        "hardwareId,deviceType,site,location,experiment\n"
        "m1,meter,h1,,\n"
        "p1,plug,h1,Gent,\n"
        "p2,plug,h1,,dr-1\n"
    )
    assert result.errors == []
    assert result.sites == [Site("pilot", "h1", location="Gent", experiment="dr-1")]


def test_appliance_types_agree_in_any_order() -> None:
    result = run(
        "hardwareId,deviceType,site,applianceTypes\n"
        "m1,meter,h1,boiler|pv\n"
        "p1,plug,h1,pv|boiler\n"
        "p2,plug,h1,pv\n"
    )
    assert error_lines(result) == [4]
    assert "applianceTypes" in result.errors[0].message


@pytest.mark.parametrize(
    ("row", "in_message"),
    [
        ("bad/id,meter,h1,,", "hardwareId"),
        (",meter,h1,,", "hardwareId"),
        ("m1,,h1,,", "deviceType"),
        ("m1," + "x" * 65 + ",h1,,", "deviceType"),
        ("m1,meter,bad site,,", "site id"),
        ("m1,meter,,Gent,", "site attributes (location) given without a site"),
        ("m1,meter,h1,,maybe", "hasPv 'maybe'"),
        ("m1,meter,h1,", "4 columns"),
        ("m1,meter,h1,,,", "6 columns"),
        ('m1,"meter,h1,,', "not valid CSV"),
    ],
)
def test_row_errors(row: str, in_message: str) -> None:
    result = run(f"hardwareId,deviceType,site,location,hasPv\n{row}\nok1,meter,h9,,\n")
    assert error_lines(result) == [2]
    assert in_message in result.errors[0].message
    assert [d.hardware_id for d in result.devices] == ["ok1"]  # the next row is still read
    assert [s.id for s in result.sites] == ["h9"]


def test_an_oversized_line_is_a_row_error() -> None:
    text = f"hardwareId,deviceType,name\nm1,meter,{'n' * MAX_LINE_BYTES}\nm2,meter,\n"
    result = parse_registry(io.StringIO(text), "pilot")
    assert error_lines(result) == [2]
    assert [d.hardware_id for d in result.devices] == ["m2"]


def test_blank_lines_are_skipped_and_line_numbers_stay_physical() -> None:
    result = run("hardwareId;deviceType\n\n;\nm1;meter\n\nbad/id;meter\n")
    assert error_lines(result) == [6]
    assert [d.hardware_id for d in result.devices] == ["m1"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("hardwareId\nm1\n", "deviceType"),
        ("deviceType,site\nmeter,h1\n", "hardwareId"),
        ("hardwareId,deviceType,hasPV,has_pv\n", "appears twice"),
        ("hardwareId,deviceType,colour\n", "unknown column 'colour'"),
        ("hardwareId,deviceType,appliances\n", "unknown column"),
    ],
)
def test_an_unusable_header_raises(text: str, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        run(text)


def test_the_tenant_id_is_checked() -> None:
    with pytest.raises(InvalidRequest):
        run("hardwareId,deviceType\nm1,meter\n", tenant="Not A Slug")


def test_max_rows_bounds_the_import() -> None:
    text = "hardwareId,deviceType\n" + "".join(f"m{i},meter\n" for i in range(4))
    assert len(run(text, max_rows=4).devices) == 4
    with pytest.raises(InvalidRequest, match="more than 3"):
        run(text, max_rows=3)
