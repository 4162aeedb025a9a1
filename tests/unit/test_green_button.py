"""Green Button import: sample files, series and units, every rejection, hostile XML, streaming.

The sample feeds are in ``tests/data/green_button/`` (hand-written in the Green Button format, see
its README). Faulty documents are built here in the same format. Expected values are computed
from the files with ``xml.etree`` independently of the adapter.
"""

from __future__ import annotations

import io
import tracemalloc
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridhub.adapters import green_button
from gridhub.adapters.csv_history import unit_factor
from gridhub.adapters.green_button import (
    ESPI_UNITS,
    GREEN_BUTTON_CUSTOM_IDENTIFIERS,
    GreenButtonItem,
    GreenButtonMessage,
    GreenButtonRejection,
    parse_green_button,
)
from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS, IdentifierRegistry, validate_custom
from gridhub.domain.messages import DeviceMeasurements, decode
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import measurement_readings, to_us
from gridhub.errors import InvalidRequest

DATA = Path(__file__).resolve().parents[1] / "data" / "green_button"
FIFTEEN = DATA / "fifteen_minute_electricity.xml"
HOURLY = DATA / "hourly_net_metering.xml"
ATOM, ESPI = "http://www.w3.org/2005/Atom", "http://naesb.org/espi"
E_IN, P_IN = (
    "electricity.energy.active.consumed.interval",
    "electricity.power.active.consumed.total",
)
E_OUT, P_OUT = (
    "electricity.energy.active.injected.interval",
    "electricity.power.active.injected.total",
)
FAR_FUTURE_US = to_us(datetime(2100, 1, 1, tzinfo=UTC))
T0 = 1_700_000_100  # 2023-11-14T22:15:00Z


def run(data: bytes, **kwargs: object) -> list[GreenButtonItem]:
    return list(parse_green_button(data, **kwargs))  # type: ignore[arg-type]


def messages(items: list[GreenButtonItem]) -> list[DeviceMeasurements]:
    decoded = [decode(item.payload) for item in items if isinstance(item, GreenButtonMessage)]
    assert all(isinstance(m, DeviceMeasurements) for m in decoded)
    for item, message in zip(
        (i for i in items if isinstance(i, GreenButtonMessage)), decoded, strict=True
    ):
        assert item.kind == "message" and item.hardware_id == message.hardwareId  # type: ignore[union-attr]
    return decoded  # type: ignore[return-value]


def rejections(items: list[GreenButtonItem]) -> list[GreenButtonRejection]:
    return [item for item in items if isinstance(item, GreenButtonRejection)]


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def file_readings(path: Path) -> list[tuple[str, int, int, int]]:
    """(MeterReading id, start, duration, value) of every IntervalReading, in file order."""
    found = []
    for entry in ET.parse(path).getroot().iter(f"{{{ATOM}}}entry"):
        block = entry.find(f"{{{ATOM}}}content/{{{ESPI}}}IntervalBlock")
        if block is None:
            continue
        href = entry.find(f"{{{ATOM}}}link[@rel='self']").get("href")  # type: ignore[union-attr]
        meter_reading = href.split("/MeterReading/")[1].split("/")[0]  # type: ignore[union-attr]
        for reading in block.iter(f"{{{ESPI}}}IntervalReading"):
            start = int(reading.findtext(f"{{{ESPI}}}timePeriod/{{{ESPI}}}start", ""))
            duration = int(reading.findtext(f"{{{ESPI}}}timePeriod/{{{ESPI}}}duration", ""))
            found.append(
                (meter_reading, start, duration, int(reading.findtext(f"{{{ESPI}}}value", "")))
            )
    return found


# --- documents built in the tests ---------------------------------------------------------------

BASE = "/espi/1_1/resource/RetailCustomer/9/UsagePoint"


def entry(links: dict[str, str | list[str]], content: str) -> str:
    lines = [
        f'<link rel="{rel}" href="{href}"/>'
        for rel, hrefs in links.items()
        for href in ([hrefs] if isinstance(hrefs, str) else hrefs)
    ]
    return f"<entry><id>urn:uuid:x</id>{''.join(lines)}<content>{content}</content></entry>"


def usage_point(point: str = "UP1", kind: int = 0) -> str:
    return entry(
        {"self": f"{BASE}/{point}", "up": BASE},
        f'<UsagePoint xmlns="{ESPI}"><ServiceCategory><kind>{kind}</kind></ServiceCategory>'
        "</UsagePoint>",
    )


def meter_reading(point: str = "UP1", number: str = "01", kind: str | None = "RT1") -> str:
    related = [f"{BASE}/{point}/MeterReading/{number}/IntervalBlock"]
    related += [] if kind is None else [f"/espi/1_1/resource/ReadingType/{kind}"]
    links = {"self": f"{BASE}/{point}/MeterReading/{number}", "related": related}
    return entry(links, f'<MeterReading xmlns="{ESPI}"/>')


def reading_type(number: str = "RT1", **fields: object) -> str:
    values: dict[str, object] = {
        "accumulationBehaviour": 4,
        "commodity": 1,
        "dataQualifier": 12,
        "flowDirection": 1,
        "intervalLength": 900,
        "kind": 12,
        "powerOfTenMultiplier": 0,
        "uom": 72,
    }
    values.update(fields)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v is not None)
    links = {"self": f"/espi/1_1/resource/ReadingType/{number}"}
    return entry(links, f'<ReadingType xmlns="{ESPI}">{body}</ReadingType>')


def reading(start: object = T0, duration: object = 900, value: object = 1000) -> str:
    period = "" if start is None else f"<start>{start}</start>"
    period += "" if duration is None else f"<duration>{duration}</duration>"
    value_xml = "" if value is None else f"<value>{value}</value>"
    return f"<IntervalReading><timePeriod>{period}</timePeriod>{value_xml}</IntervalReading>"


def block(*readings: str, point: str = "UP1", number: str = "01", links: bool = True) -> str:
    path = f"{BASE}/{point}/MeterReading/{number}/IntervalBlock"
    body = f'<IntervalBlock xmlns="{ESPI}">{"".join(readings)}</IntervalBlock>'
    return entry({"self": f"{path}/1", "up": path} if links else {}, body)


def feed(*entries: str) -> bytes:
    return f'<?xml version="1.0"?><feed xmlns="{ATOM}">{"".join(entries)}</feed>'.encode()


def simple(*readings: str, **type_fields: object) -> bytes:
    return feed(usage_point(), meter_reading(), reading_type(**type_fields), block(*readings))


# --- the sample files -----------------------------------------------------------------------------


def test_fifteen_minute_feed_gives_one_message_per_reading() -> None:
    expected = file_readings(FIFTEEN)
    assert len(expected) == 96 + 92 + 96  # 11 March 2012 is 23 hours long in New York
    got = messages(run(FIFTEEN.read_bytes()))
    assert len(got) == len(expected)
    for message, (_, start, duration, value) in zip(got, expected, strict=True):
        assert message.hardwareId == "7A3D91E2"  # the UsagePoint id of the block's URL
        assert message.request.updateState is False
        assert message.request.eventDate == iso(start)  # the interval's start, in UTC
        kwh = value / 1000  # uom 72 (Wh), powerOfTenMultiplier 0
        kw = value * 3600 / (duration * 1000)  # one rounding, as the adapter's decimals
        assert message.request.measurements == {E_IN: kwh, P_IN: kw}
    assert got[0].request.eventDate == "2012-03-10T05:00:00+00:00"  # local midnight, EST
    assert got[-1].request.eventDate == "2012-03-13T03:45:00+00:00"  # 23:45 EDT


def test_fifteen_minute_totals_match_the_files_usage_summary() -> None:
    summary = (
        ET.parse(FIFTEEN).getroot().find(f".//{{{ESPI}}}currentBillingPeriodOverAllConsumption")
    )
    assert summary is not None
    total_kwh = int(summary.findtext(f"{{{ESPI}}}value", "")) / 1000
    got = messages(run(FIFTEEN.read_bytes()))
    assert sum(m.request.measurements[E_IN] for m in got) == pytest.approx(total_kwh, abs=1e-9)


def test_hourly_net_metering_feeds_the_consumed_and_injected_series() -> None:
    expected = file_readings(HOURLY)
    got = messages(run(HOURLY.read_bytes()))
    assert len(got) == len(expected) == 2 * 2 * 24
    for message, (meter, start, _, value) in zip(got, expected, strict=True):
        kwh = value / 1_000_000  # mWh: uom 72 with powerOfTenMultiplier -3
        energy, power = (E_IN, P_IN) if meter == "01" else (E_OUT, P_OUT)
        assert message.request.measurements == {energy: kwh, power: kwh}  # one hour: kW = kWh
        assert message.request.eventDate == iso(start)
    exported = {
        m.request.eventDate: m.request.measurements[E_OUT]
        for m in got
        if E_OUT in m.request.measurements
    }
    assert exported["2013-06-21T19:00:00+00:00"] > 1.0  # noon in California: the roof exports
    assert exported["2013-06-21T10:00:00+00:00"] == 0.0  # 3 am: nothing


@pytest.mark.parametrize("path", [FIFTEEN, HOURLY])
def test_messages_pass_the_domain_rules_once_the_custom_identifiers_are_registered(
    path: Path,
) -> None:
    custom = {name: validate_custom(name, unit) for name, unit in GREEN_BUTTON_CUSTOM_IDENTIFIERS}
    registry = IdentifierRegistry(custom)
    stored = [
        reading
        for message in messages(run(path.read_bytes()))
        for reading in measurement_readings(message, registry, FAR_FUTURE_US)
    ]
    assert len(stored) == 2 * len(file_readings(path))


def test_every_mapped_series_is_in_table_2_or_listed_as_custom() -> None:
    custom = dict(GREEN_BUTTON_CUSTOM_IDENTIFIERS)
    assert not set(custom) & set(BUILTIN_IDENTIFIERS)
    assert custom[E_IN] == custom[E_OUT] == "kWh"
    assert custom["gas.volume.interval"] == "m3"
    per_hour = {("kWh", "kW"), ("kVARh", "kVAR"), ("kVAh", "KVA"), ("m3", "m3/h")}
    for unit in ESPI_UNITS.values():
        for flow in ("consumed", "injected"):
            for medium in ("gas", "water"):
                rate = BUILTIN_IDENTIFIERS[unit.rate.format(flow=flow, medium=medium)]
                if unit.register is None or unit.interval is None:  # a rate: converted as read
                    unit_factor(unit.symbol, rate.unit)  # raises if it cannot be
                    continue
                register = BUILTIN_IDENTIFIERS[unit.register.format(flow=flow, medium=medium)]
                assert custom[unit.interval.format(flow=flow, medium=medium)] == register.unit
                assert (register.unit, rate.unit) in per_hour  # the rate is amount per hour
                unit_factor(unit.symbol, register.unit)


# --- series and units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_fields", "value", "expected"),
    [
        ({}, 250, {E_IN: 0.25, P_IN: 1.0}),
        ({"powerOfTenMultiplier": 3}, 2, {E_IN: 2.0, P_IN: 8.0}),  # kWh written as 10^3 Wh
        ({"powerOfTenMultiplier": -3}, 1234, {E_IN: 0.001234, P_IN: 0.004936}),
        ({"flowDirection": 19}, 500, {E_OUT: 0.5, P_OUT: 2.0}),
        ({"flowDirection": None}, 500, {E_IN: 0.5, P_IN: 2.0}),  # absent: forward
        (
            {"uom": 73, "flowDirection": 19},
            100,
            {
                "electricity.energy.reactive.injected.interval": 0.1,
                "electricity.power.reactive.injected.total": 0.4,
            },
        ),
        (
            {"uom": 71},
            100,
            {"electricity.energy.apparent.interval": 0.1, "electricity.power.apparent.total": 0.4},
        ),
        (  # hundreds of cubic feet (ccf) of natural gas
            {"uom": 119, "powerOfTenMultiplier": 2, "commodity": 7},
            1,
            {"gas.volume.interval": 2.8316846592, "gas.flowrate": 11.3267386368},
        ),
        ({"uom": 38, "accumulationBehaviour": 12}, 1500, {P_IN: 1.5}),  # W: mean power
        (
            {"uom": 61, "accumulationBehaviour": None},
            2000,
            {"electricity.power.apparent.total": 2.0},
        ),
    ],
)
def test_reading_types_map_to_series_in_gridhub_units(
    type_fields: dict[str, object], value: int, expected: dict[str, float]
) -> None:
    (message,) = messages(run(simple(reading(value=value), **type_fields)))
    assert message.request.measurements == pytest.approx(expected, rel=1e-15)
    assert message.request.eventDate == iso(T0)


def test_register_readings_go_to_the_table_2_register_at_the_end_of_their_period() -> None:
    data = simple(reading(duration=86_400, value=12345678), accumulationBehaviour=1)
    (message,) = messages(run(data))
    assert message.request.measurements == {"electricity.energy.active.consumed.total": 12345.678}
    assert message.request.eventDate == iso(T0 + 86_400)


def test_water_is_told_from_the_usage_points_service_category() -> None:
    data = feed(
        usage_point(kind=2),
        meter_reading(),
        reading_type(uom=134, commodity=None, intervalLength=3600),
        block(reading(duration=3600, value=150)),
    )
    (message,) = messages(run(data))
    assert message.request.measurements == {"water.volume.interval": 0.15, "water.flowrate": 0.15}


@settings(max_examples=200, deadline=None)
@given(
    value=st.integers(min_value=-(2**47), max_value=2**47),
    multiplier=st.integers(min_value=-6, max_value=6),
    duration=st.sampled_from([60, 300, 900, 1800, 3600, 86_400]),
)
def test_conversion_is_exact_decimal_arithmetic(value: int, multiplier: int, duration: int) -> None:
    data = simple(reading(duration=duration, value=value), powerOfTenMultiplier=multiplier)
    (message,) = messages(run(data))
    kwh = Decimal(value) * Decimal(10) ** multiplier / 1000
    assert message.request.measurements == {E_IN: float(kwh), P_IN: float(kwh * 3600 / duration)}


# --- device ids -----------------------------------------------------------------------------------


def test_hardware_id_names_the_device_of_a_one_usage_point_file() -> None:
    got = messages(run(HOURLY.read_bytes(), hardware_id="meter-42"))
    assert {m.hardwareId for m in got} == {"meter-42"}


def test_with_hardware_id_a_second_usage_point_is_rejected_not_merged() -> None:
    data = feed(
        usage_point("UP1"),
        meter_reading("UP1"),
        meter_reading("UP2"),
        reading_type(),
        block(reading(), point="UP1"),
        block(reading(), reading(T0 + 900), point="UP2"),
    )
    items = run(data, hardware_id="meter-42")
    assert [m.hardwareId for m in messages(items)] == ["meter-42"]
    assert [r.reason for r in rejections(items)] == [RejectReason.INVALID_MESSAGE] * 2
    assert "second" in rejections(items)[0].detail
    assert [m.hardwareId for m in messages(run(data))] == ["UP1", "UP2", "UP2"]  # without it


def test_a_usage_point_id_that_is_no_valid_hardware_id_is_rejected() -> None:
    data = feed(meter_reading("a%20b"), reading_type(), block(reading(), point="a%20b"))
    (rejection,) = run(data)
    assert isinstance(rejection, GreenButtonRejection)
    assert rejection.reason == RejectReason.INVALID_MESSAGE
    assert "hardwareId" in rejection.detail


@pytest.mark.parametrize("kwargs", [{"hardware_id": "bad id"}, {"max_bytes": 0}])
def test_bad_arguments_raise_at_the_call(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        parse_green_button(b"", **kwargs)  # type: ignore[arg-type]


# --- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason", "in_detail"),
    [
        (reading(value=None), RejectReason.WRONG_VALUE_TYPE, "no value"),
        (reading(value=" "), RejectReason.WRONG_VALUE_TYPE, "no value"),
        (reading(value="12kWh"), RejectReason.WRONG_VALUE_TYPE, "no number"),
        (reading(value="NaN"), RejectReason.WRONG_VALUE_TYPE, "no number"),
        (reading(value="1" * 70), RejectReason.WRONG_VALUE_TYPE, "no number"),
        (reading(value="1e999"), RejectReason.NON_FINITE_VALUE, "float range"),
        (
            "<IntervalReading><value>1</value></IntervalReading>",
            RejectReason.BAD_DATE,
            "timePeriod",
        ),
        (reading(start=None), RejectReason.BAD_DATE, "start is missing"),
        (reading(start="yesterday"), RejectReason.BAD_DATE, "start 'yesterday'"),
        (reading(start=-900), RejectReason.BAD_DATE, "start '-900'"),
        (reading(start=10**12), RejectReason.BAD_DATE, "start"),
        (reading(duration=None), RejectReason.BAD_DATE, "duration is missing"),
        (reading(duration=0), RejectReason.BAD_DATE, "duration of 0"),
        (reading(duration=10**9), RejectReason.BAD_DATE, "duration"),
    ],
)
def test_a_bad_reading_is_rejected_alone_with_its_xml(
    bad: str, reason: RejectReason, in_detail: str
) -> None:
    items = run(simple(reading(T0 - 900), bad, reading(T0 + 900)))
    assert [m.request.eventDate for m in messages(items)] == [iso(T0 - 900), iso(T0 + 900)]
    (rejection,) = rejections(items)
    assert items[1] == rejection  # in file order
    assert rejection.where == f"IntervalBlock {BASE}/UP1/MeterReading/01/IntervalBlock/1, reading 2"
    assert rejection.reason == reason
    assert in_detail in rejection.detail
    assert rejection.raw.startswith(f'<IntervalReading xmlns="{ESPI}">'.encode())
    assert ET.fromstring(rejection.raw).tag == f"{{{ESPI}}}IntervalReading"


@pytest.mark.parametrize(
    ("type_fields", "reason", "in_detail"),
    [
        ({"uom": 169}, RejectReason.UNKNOWN_IDENTIFIER, "uom 169 (therm)"),
        ({"uom": 999}, RejectReason.UNKNOWN_IDENTIFIER, "uom 999"),
        ({"uom": None}, RejectReason.UNKNOWN_IDENTIFIER, "no uom"),
        ({"flowDirection": 4}, RejectReason.UNKNOWN_IDENTIFIER, "flowDirection 4 (net)"),
        ({"uom": 71, "flowDirection": 19}, RejectReason.UNKNOWN_IDENTIFIER, "flowDirection 19"),
        ({"accumulationBehaviour": None}, RejectReason.UNKNOWN_IDENTIFIER, "deltaData (4)"),
        ({"accumulationBehaviour": 9}, RejectReason.UNKNOWN_IDENTIFIER, "accumulationBehaviour 9"),
        ({"uom": 42, "commodity": 1}, RejectReason.UNKNOWN_IDENTIFIER, "commodity 1"),
        ({"uom": 38, "dataQualifier": 8}, RejectReason.UNKNOWN_IDENTIFIER, "dataQualifier 8"),
        ({"uom": "Wh"}, RejectReason.INVALID_MESSAGE, "uom 'Wh' is not an integer"),
        ({"powerOfTenMultiplier": 99}, RejectReason.INVALID_MESSAGE, "out of range"),
    ],
)
def test_a_reading_type_without_a_series_rejects_each_reading_of_its_blocks(
    type_fields: dict[str, object], reason: RejectReason, in_detail: str
) -> None:
    items = run(simple(reading(), reading(T0 + 900), **type_fields))
    assert [(r.where, r.reason) for r in items] == [  # type: ignore[union-attr]
        (f"IntervalBlock {BASE}/UP1/MeterReading/01/IntervalBlock/1, reading {n}", reason)
        for n in (1, 2)
    ]
    assert all(in_detail in r.detail for r in rejections(items))


@pytest.mark.parametrize(
    ("document", "in_detail"),
    [
        (feed(usage_point(), block(reading())), "no MeterReading '01' with a ReadingType"),
        (feed(meter_reading(kind=None), reading_type(), block(reading())), "with a ReadingType"),
        (feed(meter_reading(kind="RT9"), reading_type(), block(reading())), "ReadingType 'RT9'"),
        (feed(meter_reading(), reading_type(), block(reading(), links=False)), "a link to its"),
    ],
)
def test_a_block_whose_reading_type_cannot_be_found_is_rejected(
    document: bytes, in_detail: str
) -> None:
    (rejection,) = run(document)
    assert isinstance(rejection, GreenButtonRejection)
    assert rejection.reason == RejectReason.INVALID_MESSAGE
    assert in_detail in rejection.detail


def test_a_reading_type_after_its_blocks_is_waited_for() -> None:
    data = feed(
        usage_point(),
        block(reading(), reading(T0 + 900)),
        meter_reading(),
        reading_type(flowDirection=19),
    )
    got = messages(run(data))
    assert [m.request.measurements for m in got] == [{E_OUT: 1.0, P_OUT: 4.0}] * 2


def test_readings_held_for_a_late_reading_type_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(green_button, "MAX_PENDING_READINGS", 3)
    data = feed(block(*(reading(T0 + 900 * i) for i in range(5))), meter_reading(), reading_type())
    items = run(data)
    assert [(r.reason, r.where[-9:]) for r in rejections(items)] == [  # type: ignore[index]
        (RejectReason.OVERSIZED_PAYLOAD, "reading 4"),
        (RejectReason.OVERSIZED_PAYLOAD, "reading 5"),
    ]
    assert [m.request.eventDate for m in messages(items)] == [iso(T0 + 900 * i) for i in range(3)]


# --- whole documents ------------------------------------------------------------------------------

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feed [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol3;</title></feed>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&xxe;</title></feed>"""


@pytest.mark.parametrize(
    ("document", "in_detail"),
    [
        (LAUGHS, "DOCTYPE"),
        (EXTERNAL, "DOCTYPE"),
        (b'<!DOCTYPE feed SYSTEM "http://example.invalid/feed.dtd"><feed/>', "DOCTYPE"),
        (b"<feed><title>&xxe;</title></feed>", "undefined entity"),
        (b"", "no element found"),
        (b"<feed><entry></feed>", "mismatched tag: line 1"),
        (b"\xff\xfe<feed/>", "not well-formed"),
        (f'<IntervalBlock xmlns="{ESPI}"/>'.encode(), "not an Atom feed"),
        (feed(usage_point()), "no IntervalBlock"),
    ],
)
def test_a_document_that_cannot_be_read_is_refused_whole(document: bytes, in_detail: str) -> None:
    (rejection,) = run(document)
    assert isinstance(rejection, GreenButtonRejection)
    assert rejection.where is None
    assert rejection.reason == RejectReason.INVALID_MESSAGE
    assert in_detail in rejection.detail
    if in_detail == "DOCTYPE":
        assert rejection.raw == document  # the piece being read: here all of it


def test_elements_that_no_entry_drops_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(green_button, "MAX_HELD_ELEMENTS", 1000)
    assert len(messages(run(FIFTEEN.read_bytes()))) == 284  # readings and entries are dropped
    junk = entry({}, "<a/>" * 2000)
    (rejection,) = run(feed(junk))
    assert isinstance(rejection, GreenButtonRejection)
    assert rejection.where is None
    assert "more than 1000 elements" in rejection.detail


def test_a_document_cut_short_keeps_the_readings_before_the_cut() -> None:
    data = FIFTEEN.read_bytes()
    cut = data.index(b"<IntervalReading>", len(data) // 2)
    items = run(data[: cut + 40])
    got = messages(items)
    expected = file_readings(FIFTEEN)
    assert 100 < len(got) < len(expected)
    assert [m.request.eventDate for m in got] == [iso(s) for _, s, _, _ in expected[: len(got)]]
    (rejection,) = rejections(items)
    assert items[-1] == rejection and rejection.where is None
    assert "not well-formed XML" in rejection.detail


def test_a_document_over_max_bytes_is_refused_before_parsing() -> None:
    data = FIFTEEN.read_bytes()
    (rejection,) = run(data, max_bytes=len(data) - 1)
    assert isinstance(rejection, GreenButtonRejection)
    assert rejection.reason == RejectReason.OVERSIZED_PAYLOAD
    assert rejection.raw == data[: 64 * 1024]
    assert run(data, max_bytes=len(data))[-1].kind == "message"  # exactly the limit is fine


def test_a_stream_over_max_bytes_ends_with_a_rejection_after_what_was_read() -> None:
    data = FIFTEEN.read_bytes()
    items = list(parse_green_button(io.BytesIO(data), max_bytes=len(data) - 1))
    assert len(messages(items)) > 100  # the first 64 KiB were read before the limit was passed
    assert [r.reason for r in rejections(items)] == [RejectReason.OVERSIZED_PAYLOAD]
    assert items[-1].kind == "rejected"


# --- streaming ------------------------------------------------------------------------------------


def big_feed(readings: int) -> bytes:
    body = "".join(reading(T0 + 900 * i, value=i % 997) for i in range(readings))
    return simple(body)


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_a_binary_file_gives_the_same_items_as_bytes() -> None:
    data = HOURLY.read_bytes()
    assert list(parse_green_button(io.BytesIO(data))) == run(data)


def test_the_file_is_read_as_items_are_taken() -> None:
    source = CountingReader(big_feed(20_000))
    items = parse_green_button(source)
    assert source.consumed == 0  # nothing read at the call
    next(items)
    assert source.consumed <= 64 * 1024
    assert len(source.getvalue()) > 20 * 64 * 1024


def test_memory_stays_bounded_by_a_reading_not_the_document() -> None:
    data = big_feed(12_000)  # about 1.5 MB in one IntervalBlock
    tracemalloc.start()
    try:
        count = sum(1 for _ in parse_green_button(io.BytesIO(data)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 12_000
    assert peak < min(1024 * 1024, len(data) // 2), peak  # about 0.4 MB, whatever the size
