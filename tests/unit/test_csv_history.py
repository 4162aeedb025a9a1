"""CSV history import: layouts, grouping, every rejection reason, DST, streaming, round trip."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridhub.adapters.csv_history import (
    MAX_LINE_BYTES,
    UNIT_CONVERSIONS,
    HistoryMessage,
    HistoryRejection,
    parse_history,
    unit_factor,
)
from gridhub.domain.identifiers import BUILTIN_IDENTIFIERS, IdentifierRegistry
from gridhub.domain.messages import DeviceMeasurements, decode
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import measurement_readings, to_us
from gridhub.errors import InvalidRequest

P1 = "electricity.power.active.consumed.l1"
P2 = "electricity.power.active.consumed.l2"
E = "electricity.energy.active.consumed.total"
FAR_FUTURE_US = to_us(datetime(2100, 1, 1, tzinfo=UTC))


def run(text: str, **kwargs: object) -> list[HistoryMessage | HistoryRejection]:
    return list(parse_history(text.splitlines(keepends=True), **kwargs))  # type: ignore[arg-type]


def messages(items: list[HistoryMessage | HistoryRejection]) -> list[DeviceMeasurements]:
    decoded = [decode(item.payload) for item in items if isinstance(item, HistoryMessage)]
    assert all(isinstance(m, DeviceMeasurements) for m in decoded)
    return decoded  # type: ignore[return-value]


def rejections(items: list[HistoryMessage | HistoryRejection]) -> list[HistoryRejection]:
    return [item for item in items if isinstance(item, HistoryRejection)]


# --- layouts and delimiters --------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_long_layout_groups_rows_of_one_device_and_moment(delimiter: str) -> None:
    text = "\n".join(
        row.replace(",", delimiter)
        for row in [
            "hardwareId,identifier,timestamp,value",
            f"m1,{P1},2024-05-01T10:00:00+02:00,1.5",
            f"m1,{P2},2024-05-01T10:00:00+02:00,2",
            f"m1,{P1},2024-05-01T10:15:00+02:00,1.25",
            f"m2,{P1},2024-05-01T10:15:00+02:00,-3e2",
        ]
    )
    items = run(text)
    assert [(i.kind, i.hardware_id) for i in items if isinstance(i, HistoryMessage)] == [
        ("message", "m1"),
        ("message", "m1"),
        ("message", "m2"),
    ]
    first, second, third = messages(items)
    assert first.hardwareId == "m1"
    assert first.request.measurements == {P1: 1.5, P2: 2.0}
    assert first.request.eventDate == "2024-05-01T10:00:00+02:00"
    assert first.request.updateState is False
    assert second.request.measurements == {P1: 1.25}
    assert third.request.measurements == {P1: -300.0}


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_wide_layout_one_column_per_identifier(delimiter: str) -> None:
    rows = [
        f"hardwareId,timestamp,{P1},{P2},{E}",
        "m1,2024-05-01T08:00:00Z,1,2,100",
        "m1,2024-05-01T08:15:00Z,1.5,,101",  # an empty cell is "no reading", not an error
    ]
    items = run("\n".join(r.replace(",", delimiter) for r in rows))
    first, second = messages(items)
    assert first.request.measurements == {P1: 1.0, P2: 2.0, E: 100.0}
    assert first.request.eventDate == "2024-05-01T08:00:00+00:00"
    assert second.request.measurements == {P1: 1.5, E: 101.0}


def test_header_names_are_case_insensitive_but_identifiers_are_not() -> None:
    items = run(
        "\ufeffHARDWARE_ID;TimeStamp;Custom.Reading;custom.reading\nm1;2024-05-01T08:00:00Z;1;2\n"
    )
    (message,) = messages(items)
    assert message.request.measurements == {"Custom.Reading": 1.0, "custom.reading": 2.0}


def test_long_layout_columns_in_any_order_and_extra_columns_ignored() -> None:
    items = run(f"Value,unit,Identifier,TIMESTAMP,HardwareId\n7,kW,{P1},2024-05-01T08:00Z,m1\n")
    (message,) = messages(items)
    assert message.hardwareId == "m1"
    assert message.request.measurements == {P1: 7.0}


def test_semicolon_files_accept_a_decimal_comma() -> None:
    items = run(f"hardwareId;identifier;timestamp;value\nm1;{P1};2024-05-01T08:00Z;0,25\n")
    assert messages(items)[0].request.measurements == {P1: 0.25}


def test_quoted_fields_may_hold_the_delimiter() -> None:
    items = run(f'hardwareId,timestamp,"{P1}"\n"m1","2024-05-01T08:00:00Z","12.5"\n')
    assert messages(items)[0].request.measurements == {P1: 12.5}


def test_blank_and_delimiter_only_lines_are_skipped() -> None:
    items = run(f"\nhardwareId;identifier;timestamp;value\n\n;;;\nm1;{P1};2024-05-01T08:00Z;1\n")
    assert len(messages(items)) == 1
    assert rejections(items) == []


# --- grouping ----------------------------------------------------------------------------------


def test_only_consecutive_rows_are_grouped() -> None:
    text = (
        "hardwareId,identifier,timestamp,value\n"
        f"m1,{P1},2024-05-01T08:00:00Z,1\n"
        f"m2,{P1},2024-05-01T08:00:00Z,2\n"
        f"m1,{P2},2024-05-01T08:00:00Z,3\n"
    )
    assert [(m.hardwareId, m.request.measurements) for m in messages(run(text))] == [
        ("m1", {P1: 1.0}),
        ("m2", {P1: 2.0}),
        ("m1", {P2: 3.0}),
    ]


def test_same_instant_with_another_offset_is_the_same_moment() -> None:
    text = (
        "hardwareId,identifier,timestamp,value\n"
        f"m1,{P1},2024-05-01T08:00:00Z,1\n"
        f"m1,{P2},2024-05-01T10:00:00+02:00,2\n"
    )
    (message,) = messages(run(text))
    assert message.request.measurements == {P1: 1.0, P2: 2.0}
    assert message.request.eventDate == "2024-05-01T08:00:00+00:00"


def test_a_repeated_identifier_starts_a_new_message_instead_of_overwriting() -> None:
    text = (
        "hardwareId,identifier,timestamp,value\n"
        f"m1,{P1},2024-05-01T08:00:00Z,1\n"
        f"m1,{P1},2024-05-01T08:00:00Z,2\n"
    )
    assert [m.request.measurements for m in messages(run(text))] == [{P1: 1.0}, {P1: 2.0}]


def test_a_rejected_row_does_not_break_the_group() -> None:
    text = (
        "hardwareId,identifier,timestamp,value\n"
        f"m1,{P1},2024-05-01T08:00:00Z,1\n"
        f"m1,{P2},2024-05-01T08:00:00Z,oops\n"
        f"m1,{E},2024-05-01T08:00:00Z,3\n"
    )
    items = run(text)
    assert [r.line for r in rejections(items)] == [3]
    assert [m.request.measurements for m in messages(items)] == [{P1: 1.0, E: 3.0}]


# --- rejections --------------------------------------------------------------------------------

LONG_HEADER = "hardwareId,identifier,timestamp,value"


@pytest.mark.parametrize(
    ("row", "reason", "in_detail"),
    [
        (f"m1,{P1},2024-05-01T08:00:00Z", RejectReason.WRONG_VALUE_TYPE, "3 columns"),
        (f"m1,{P1},2024-05-01T08:00:00Z,1,2", RejectReason.WRONG_VALUE_TYPE, "5 columns"),
        (f"m1,{P1},2024-05-01T08:00:00Z,", RejectReason.WRONG_VALUE_TYPE, "empty value"),
        (f"m1,{P1},2024-05-01T08:00:00Z,  ", RejectReason.WRONG_VALUE_TYPE, "empty value"),
        (f"m1,{P1},2024-05-01T08:00:00Z,abc", RejectReason.WRONG_VALUE_TYPE, "not a number"),
        (f"m1,{P1},2024-05-01T08:00:00Z,1_000", RejectReason.WRONG_VALUE_TYPE, "not a number"),
        (f"m1,{P1},2024-05-01T08:00:00Z,true", RejectReason.WRONG_VALUE_TYPE, "not a number"),
        (f"m1,{P1},2024-05-01T08:00:00Z,NaN", RejectReason.WRONG_VALUE_TYPE, "not a number"),
        (f"m1,{P1},2024-05-01T08:00:00Z,0,5", RejectReason.WRONG_VALUE_TYPE, "5 columns"),
        (f"m1,{P1},2024-05-01T08:00:00Z,1e999", RejectReason.NON_FINITE_VALUE, "float range"),
        ("m1,,2024-05-01T08:00:00Z,1", RejectReason.WRONG_VALUE_TYPE, "identifier is empty"),
        (f",{P1},2024-05-01T08:00:00Z,1", RejectReason.WRONG_VALUE_TYPE, "hardwareId is empty"),
        (f"m/1,{P1},2024-05-01T08:00:00Z,1", RejectReason.INVALID_MESSAGE, "hardwareId"),
        (f"m1,{P1},yesterday,1", RejectReason.BAD_DATE, "ISO 8601"),
        (f"m1,{P1},2024-02-30T08:00:00Z,1", RejectReason.BAD_DATE, "ISO 8601"),
        (f"m1,{P1},,1", RejectReason.BAD_DATE, "empty"),
        (f"m1,{P1},2024-05-01T08:00:00,1", RejectReason.MISSING_OFFSET, "no UTC offset"),
        (f'm1,"{P1},2024-05-01T08:00:00Z,1', RejectReason.INVALID_MESSAGE, "not valid CSV"),
    ],
)
def test_each_rejection_keeps_line_raw_bytes_and_reason(
    row: str, reason: RejectReason, in_detail: str
) -> None:
    items = run(f"{LONG_HEADER}\n{row}\n")
    (rejection,) = items
    assert isinstance(rejection, HistoryRejection)
    assert rejection.kind == "rejected"
    assert rejection.line == 2
    assert rejection.raw == row.encode()
    assert rejection.reason == reason
    assert in_detail in rejection.detail


def test_wide_row_without_any_value_is_rejected_and_bad_cell_rejects_the_row() -> None:
    items = run(
        f"hardwareId,timestamp,{P1},{P2}\n"
        "m1,2024-05-01T08:00:00Z,,\n"
        "m1,2024-05-01T08:15:00Z,1,x\n"
        "m1,2024-05-01T08:30:00Z,1,2\n"
    )
    assert [(r.line, r.reason) for r in rejections(items)] == [
        (2, RejectReason.WRONG_VALUE_TYPE),
        (3, RejectReason.WRONG_VALUE_TYPE),
    ]
    assert [m.request.measurements for m in messages(items)] == [{P1: 1.0, P2: 2.0}]


def test_raw_bytes_are_utf8_of_the_line_without_its_ending() -> None:
    row = f"compteur-é,{P1},2024-05-01T08:00:00Z,x"
    (rejection,) = run(f"{LONG_HEADER}\r\n{row}\r\n")
    assert isinstance(rejection, HistoryRejection)
    assert rejection.raw == row.encode("utf-8")


@pytest.mark.parametrize("as_file", [True, False])
def test_a_line_longer_than_64_kib_is_rejected_and_reading_goes_on(as_file: bool) -> None:
    long_row = f"m1,{P1},2024-05-01T08:00:00Z," + "9" * MAX_LINE_BYTES
    text = f"{LONG_HEADER}\n{long_row}\nm1,{P1},2024-05-01T08:15:00Z,1\n"
    source = io.StringIO(text) if as_file else text.splitlines(keepends=True)
    items = list(parse_history(source))
    (rejection,) = rejections(items)
    assert rejection.line == 2
    assert rejection.reason == RejectReason.OVERSIZED_PAYLOAD
    assert len(rejection.raw) == MAX_LINE_BYTES  # only the start of the line is kept
    assert [m.request.eventDate for m in messages(items)] == ["2024-05-01T08:15:00+00:00"]


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    value_cell = "é" * (MAX_LINE_BYTES // 2)  # within the limit in characters, not in bytes
    items = run(f"{LONG_HEADER}\nm1,{P1},2024-05-01T08:00:00Z,{value_cell}\n")
    (rejection,) = rejections(items)
    assert rejection.reason == RejectReason.OVERSIZED_PAYLOAD
    assert len(rejection.raw) == MAX_LINE_BYTES  # bounded in bytes, not characters


def test_a_line_of_exactly_64_kib_is_not_oversized() -> None:
    prefix = f"m1,{P1},2024-05-01T08:00:00Z,1"
    row = prefix + " " * (MAX_LINE_BYTES - len(prefix))
    assert len(row.encode()) == MAX_LINE_BYTES
    items = list(parse_history(io.StringIO(f"{LONG_HEADER}\r\n{row}\r\n")))
    assert rejections(items) == []
    assert len(messages(items)) == 1


# --- time zones --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "event_date"),
    [
        ("2024-01-15T12:00:00", "2024-01-15T12:00:00+01:00"),
        ("2024-07-15 12:00", "2024-07-15T12:00:00+02:00"),
        ("2024-03-31T01:59:59", "2024-03-31T01:59:59+01:00"),  # just before the gap
        ("2024-03-31T03:00:00", "2024-03-31T03:00:00+02:00"),  # just after it
        ("2024-10-27T01:59:59", "2024-10-27T01:59:59+02:00"),  # just before the repeat
        ("2024-10-27T03:00:00", "2024-10-27T03:00:00+01:00"),  # just after it
        ("2024-10-27T02:30:00+01:00", "2024-10-27T02:30:00+01:00"),  # an offset decides
    ],
)
def test_naive_times_are_read_in_the_default_zone(local: str, event_date: str) -> None:
    items = run(f"{LONG_HEADER}\nm1,{P1},{local},1\n", default_zone="Europe/Brussels")
    (message,) = messages(items)
    assert message.request.eventDate == event_date


def test_an_ambiguous_local_time_is_refused_not_guessed() -> None:
    row = f"m1,{P1},2024-10-27T02:30:00,1"  # happens twice in Brussels: 00:30Z and 01:30Z
    (rejection,) = run(f"{LONG_HEADER}\n{row}\n", default_zone="Europe/Brussels")
    assert isinstance(rejection, HistoryRejection)
    assert rejection.reason == RejectReason.MISSING_OFFSET
    assert "ambiguous" in rejection.detail
    assert rejection.raw == row.encode()


def test_a_nonexistent_local_time_is_refused() -> None:
    row = f"m1,{P1},2024-03-31T02:30:00,1"  # clocks jump from 02:00 to 03:00 in Brussels
    (rejection,) = run(f"{LONG_HEADER}\n{row}\n", default_zone="Europe/Brussels")
    assert isinstance(rejection, HistoryRejection)
    assert rejection.reason == RejectReason.BAD_DATE
    assert "does not exist" in rejection.detail


def test_a_full_autumn_day_in_quarter_hours_loses_only_the_repeated_hour() -> None:
    start = datetime(2024, 10, 27, 0, 0)
    rows = [
        f"m1,{(start + timedelta(minutes=15 * i)).isoformat()},{i}"
        for i in range(96)  # the naive wall-clock quarters 00:00 .. 23:45
    ]
    items = run(f"hardwareId,timestamp,{E}\n" + "\n".join(rows), default_zone="Europe/Brussels")
    assert [r.line for r in rejections(items)] == [10, 11, 12, 13]  # 02:00 .. 02:45
    assert len(messages(items)) == 92


# --- whole-file problems -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "",
        "\n\n",
        "hardwareId,value",
        "identifier,timestamp,value",
        "hardwareId,timestamp",
        "hardwareId,timestamp,identifier",  # long layout needs both identifier and value
        f"hardwareId,timestamp,{P1},{P1}",
        "hardwareId,HardwareID,timestamp,identifier,value",
        f"hardwareId,timestamp,,{P1}",
        'hardwareId,"timestamp',
    ],
)
def test_an_unusable_header_raises_at_once(header: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_history([header])  # no iteration needed: the header is read at the call


def test_an_unknown_default_zone_raises_at_once() -> None:
    with pytest.raises(InvalidRequest):
        parse_history([LONG_HEADER], default_zone="Europe/Atlantis")


def test_max_rows_stops_the_import_after_what_came_before() -> None:
    text = LONG_HEADER + "".join(f"\nm{i},{P1},2024-05-01T08:00:00Z,{i}" for i in range(5))
    produced: list[HistoryMessage | HistoryRejection] = []
    with pytest.raises(InvalidRequest, match="more than 3 data rows"):
        for item in parse_history(text.splitlines(), max_rows=3):
            produced.append(item)
    assert [m.hardwareId for m in messages(produced)] == ["m0", "m1", "m2"]


# --- streaming ---------------------------------------------------------------------------------


def test_rows_are_read_as_items_are_taken() -> None:
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        yield f"hardwareId,timestamp,{P1}\n"
        for i in range(1_000_000):
            consumed += 1
            yield f"m1,{(datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=i)).isoformat()},1\n"

    items = parse_history(lines())
    next(items)
    next(items)
    assert consumed <= 3


def test_a_text_file_is_accepted() -> None:
    source = io.StringIO(f"{LONG_HEADER}\r\nm1,{P1},2024-05-01T08:00:00Z,1\r\n")
    assert messages(list(parse_history(source)))[0].request.measurements == {P1: 1.0}


# --- round trip --------------------------------------------------------------------------------

_TABLE_2 = sorted(BUILTIN_IDENTIFIERS)
_rows = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "meter-42"]),
        st.sampled_from(_TABLE_2),
        st.integers(min_value=0, max_value=3),  # quarter-hour index: repeats make groups
        st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(rows=_rows, delimiter=st.sampled_from([",", ";"]))
def test_round_trip_every_row_arrives_once_in_a_valid_message(
    rows: list[tuple[str, str, int, float]], delimiter: str
) -> None:
    base = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    lines = [delimiter.join(["hardwareId", "identifier", "timestamp", "value"])]
    for hardware_id, identifier, quarter, value in rows:
        moment = (base + timedelta(minutes=15 * quarter)).isoformat()
        lines.append(delimiter.join([hardware_id, identifier, moment, repr(value)]))
    items = list(parse_history(lines))
    assert rejections(items) == []
    registry = IdentifierRegistry()
    got: list[tuple[str, str, int, float]] = []
    for item in items:
        assert isinstance(item, HistoryMessage)
        message = decode(item.payload)
        assert isinstance(message, DeviceMeasurements)
        assert message.hardwareId == item.hardware_id
        for identifier, ts, value in measurement_readings(message, registry, FAR_FUTURE_US):
            got.append((message.hardwareId, identifier, ts, value))
    expected = [(h, i, to_us(base + timedelta(minutes=15 * q)), v) for h, i, q, v in rows]
    assert got == expected


# --- column mapping and unit conversion --------------------------------------------------------

DSO_EXPORT = (
    "EAN;Datum;Meterstand afname (Wh);Meterstand injectie (Wh);Status\n"
    "541448800000012345;2024-05-01 08:00;12345678;1000;Gemeten\n"
    "541448800000012345;2024-05-01 08:15;12345900;1000,5;Geschat\n"
    "541448800000012345;2024-05-01 08:30;;1001;Gemeten\n"
)
DSO_COLUMNS = {
    "EAN": "hardwareId",
    "Datum": "timestamp",
    "Meterstand afname (Wh)": E,
    "Meterstand injectie (Wh)": "electricity.energy.active.injected.total",
}


def test_a_dso_export_is_read_through_a_column_mapping_and_units() -> None:
    injected = "electricity.energy.active.injected.total"
    items = run(
        DSO_EXPORT,
        columns=DSO_COLUMNS,
        units={E: "Wh", injected: "Wh"},
        default_zone="Europe/Brussels",
    )
    assert rejections(items) == []  # the unmapped Status column is not read
    got = messages(items)
    assert [m.hardwareId for m in got] == ["541448800000012345"] * 3
    assert [m.request.measurements for m in got] == [
        {E: 12345.678, injected: 1.0},
        {E: 12345.9, injected: 1.0005},  # decimal comma, then Wh → kWh
        {injected: 1.001},
    ]
    assert got[0].request.eventDate == "2024-05-01T08:00:00+02:00"


def test_a_long_layout_is_mapped_and_converted_by_identifier() -> None:
    text = (
        "meter,quantity,time,reading,unit\n"
        f"m1,{P1},2024-05-01T08:00:00Z,1500,W\n"
        f"m1,{E},2024-05-01T08:00:00Z,2.5,MWh\n"
        f"m1,{P2},2024-05-01T08:00:00Z,7,W\n"
    )
    columns = {
        "meter": "hardwareId",
        "quantity": "identifier",
        "time": "timestamp",
        "reading": "value",
    }
    items = run(text, columns=columns, units={P1: "W", E: "MWh"})
    (message,) = messages(items)
    assert message.request.measurements == {P1: 1.5, E: 2500.0, P2: 7.0}  # P2: no unit given


def test_units_convert_in_decimal_arithmetic() -> None:
    rows = "".join(
        f"m1,2024-05-01T08:{i:02d}:00Z,{wh}\n" for i, wh in enumerate(["1234", "0.1", "7e3"])
    )
    items = run(f"hardwareId,timestamp,{E}\n{rows}", units={E: "Wh"})
    assert [m.request.measurements[E] for m in messages(items)] == [1.234, 0.0001, 7.0]


def test_a_unit_may_be_given_as_a_name_and_factor_for_tenant_identifiers() -> None:
    text = "hardwareId,timestamp,boiler.stateOfCharge\nm1,2024-05-01T08:00:00Z,87\n"
    items = run(text, units={"boiler.stateOfCharge": ("%", 0.01)})
    assert messages(items)[0].request.measurements == {"boiler.stateOfCharge": 0.87}


def test_a_converted_value_beyond_the_float_range_is_rejected() -> None:
    (rejection,) = run(
        f"hardwareId,timestamp,{E}\nm1,2024-05-01T08:00:00Z,1e308\n", units={E: "GWh"}
    )
    assert isinstance(rejection, HistoryRejection)
    assert rejection.reason == RejectReason.NON_FINITE_VALUE
    assert "float range" in rejection.detail


def test_the_unit_of_the_identifier_itself_changes_nothing() -> None:
    text = f"hardwareId,timestamp,{E}\nm1,2024-05-01T08:00:00Z,0.1\n"
    assert messages(run(text, units={E: "kWh"})) == messages(run(text))


@pytest.mark.parametrize(
    ("columns", "units"),
    [
        ({"EAN": "hardwareId", "Date": "timestamp"}, None),  # the header has no "Date"
        ({"EAN": "hardwareId", "Datum": ""}, None),
        ({"EAN": "hardwareId", "Datum": "timestamp"}, None),  # no value column left
        ({**DSO_COLUMNS, "Status": "timestamp"}, None),  # two timestamp columns
        (DSO_COLUMNS, {E: "m3"}),  # energy is not a volume
        (DSO_COLUMNS, {E: "furlongs"}),
        (DSO_COLUMNS, {"boiler.stateOfCharge": "%"}),  # not in Table 2: its unit is unknown
        (DSO_COLUMNS, {E: ("Wh", 0)}),
        (DSO_COLUMNS, {E: ("Wh", float("nan"))}),
        (DSO_COLUMNS, {E: ("Wh",)}),
    ],
)
def test_an_unusable_mapping_or_unit_raises_at_once(
    columns: dict[str, str], units: dict[str, object] | None
) -> None:
    with pytest.raises(InvalidRequest):
        parse_history(DSO_EXPORT.splitlines(), columns=columns, units=units)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "target", "factor"),
    [
        ("Wh", "kWh", "0.001"),
        ("kWh", "Wh", "1000"),
        ("MWh", "kWh", "1000"),
        ("W", "kW", "0.001"),
        ("kW", "W", "1000"),
        ("MW", "kW", "1000"),
        ("GJ", "MWh", "0.2777777777777777777777777778"),
        ("VArh", "kVARh", "0.001"),  # ESPI's spelling to Table 2's
        ("kvar", "kVAR", "1"),
        ("VA", "KVA", "0.001"),
        ("ft3", "m3", "0.028316846592"),
        ("L/min", "m3/h", "0.06"),
        ("mbar", "bar", "0.001"),
        ("A", "Arms", "1"),
        ("HZ", "Hz", "1"),
    ],
)
def test_the_conversion_table(source: str, target: str, factor: str) -> None:
    assert unit_factor(source, target) == Decimal(factor)
    if source != target and (source, target) in UNIT_CONVERSIONS:
        assert UNIT_CONVERSIONS[(source, target)] == Decimal(factor)


def test_every_table_2_unit_that_scales_is_in_the_conversion_table() -> None:
    scaling = {i.unit for i in BUILTIN_IDENTIFIERS.values()} - {"°C", "rad", "#"}
    for unit in scaling:
        assert unit_factor(unit, unit) == 1
