"""Pure parts of the reports: whitegood runs from quarter-hour power, appliance types, export."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pyarrow.parquet as pq

from gridhub.domain.registry import Device
from gridhub.services.export import ExportFormat, Table, encode, table_of
from gridhub.services.report_types import Missing
from gridhub.services.reports import _runs, appliance_of

Q = 900_000_000  # a quarter-hour in µs
T0 = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1e6)


def test_runs_are_contiguous_quarter_hours_above_the_threshold() -> None:
    grid = [T0 + i * Q for i in range(8)]
    values: list[float | None] = [0.0, 2.0, 1.0, 0.01, None, 0.5, 0.5, 0.5]
    runs = _runs(grid, values, "UTC")
    assert [(r.start.hour, r.start.minute, r.end.minute) for r in runs] == [
        (0, 15, 45),
        (1, 15, 0),
    ]
    assert runs[0].energy_kwh == 0.75 and runs[0].peak_kw == 2.0
    assert runs[1].end == datetime(2026, 6, 1, 2, 0, tzinfo=UTC)  # runs to the end of the day


def test_appliance_of_a_plug_is_its_name_suffix() -> None:
    assert appliance_of(Device("t", "hh001-plug-washer", "smart-plug")) == "plug:washer"
    assert appliance_of(Device("t", "hh001-meter", "smart-meter")) == "smart-meter"
    assert appliance_of(Device("t", "x", "smart-plug")) == "smart-plug"


def test_export_writes_csv_and_parquet_with_the_same_rows() -> None:
    view = Missing(
        "t",
        "d",
        date(2026, 6, 1),
        "UTC",
        900,
        96,
        94,
        [datetime(2026, 6, 1, 9, tzinfo=UTC), datetime(2026, 6, 1, 9, 15, tzinfo=UTC)],
    )
    table = table_of(view)
    assert table.columns == ["device", "day", "missing"] and len(table.rows) == 2
    csv = encode(table, ExportFormat.CSV).decode().splitlines()
    assert csv[0] == '"device","day","missing"' and len(csv) == 3
    parquet = pq.read_table(io.BytesIO(encode(table, ExportFormat.PARQUET)))
    assert parquet.num_rows == 2


def test_export_of_no_rows_keeps_the_header_and_repeated_names() -> None:
    csv = encode(Table(["a", "a"], []), ExportFormat.CSV).decode()
    assert csv.strip() == '"a","a_2"'
