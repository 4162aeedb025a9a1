"""The dashboard against the API: chart data, hover, zoom, completeness, export, SQL, tenants."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e.dashkit import GAP_DEVICE, OTHER, Dashboard, login, open_page, screenshot

pytestmark = pytest.mark.e2e

POWER = "electricity.power.active.consumed.total"
LINEAR = "/api/v1/tenants/linear"


def _household(page: Any, dashboard: Dashboard, site: str = "hh001") -> dict[str, Any]:
    open_page(page, dashboard, f"/ui/household?site={site}&day={dashboard.day}")
    page.wait_for_function("() => window.__gridhub.householdDrawn > 0")
    data: dict[str, Any] = page.evaluate(
        "() => { const c = window.__gridhub.charts.household;"
        " return { x: c.data[0], series: window.__gridhub.household.series,"
        " labels: c.series.map(s => s.label) }; }"
    )
    return data


def test_household_day_chart_holds_the_api_values(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    chart = _household(page, dashboard)
    assert len(chart["x"]) == 96
    meter = next(
        s for s in chart["series"] if s["device"] == "hh001-meter" and s["identifier"] == POWER
    )
    api = dashboard.get(
        f"{LINEAR}/devices/hh001-meter/series",
        identifier=POWER,
        day=str(dashboard.day),
        resolution="15m",
        function="avg",
    )
    assert api["count"] == 96
    assert meter["values"] == pytest.approx([p["value"] for p in api["points"]])
    # every plug of the household is drawn too, 96 values each
    plugs = [s for s in chart["series"] if "-plug-" in s["device"]]
    devices = dashboard.get(f"{LINEAR}/devices", site="hh001")
    assert {s["device"] for s in plugs} == {
        d["hardware_id"] for d in devices if d["device_type"] == "smart-plug"
    }
    assert all(len(s["values"]) == 96 for s in chart["series"])
    screenshot(page, "household-day")


def test_hover_shows_time_and_value(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    chart = _household(page, dashboard)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] / 2)
    page.wait_for_function("() => window.__gridhub.charts.household.cursor.idx != null")
    idx = page.evaluate("window.__gridhub.charts.household.cursor.idx")
    meter = chart["series"][0]
    assert meter["device"] == "hh001-meter"
    legend = page.locator(".u-legend .u-series").nth(1).locator(".u-value").text_content()
    assert legend == f"{meter['values'][idx]:.3f} kW"
    when = page.locator(".u-legend .u-series").nth(0).locator(".u-value").text_content()
    slot = dashboard.get(f"{LINEAR}/reports/household/hh001", day=str(dashboard.day))["slots"][idx]
    assert when is not None and when.endswith(slot[11:16])


def test_brush_zooms_into_part_of_the_day(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    _household(page, dashboard)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    scale = page.evaluate("window.__gridhub.charts.household.scales.x")
    x = page.evaluate("window.__gridhub.charts.household.data[0]")
    assert x[0] < scale["min"] < scale["max"] < x[-1]
    assert (scale["max"] - scale["min"]) < (x[-1] - x[0]) / 2


def test_step_to_the_next_day_and_week_view(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    day_before = dashboard.day - timedelta(days=1)
    open_page(page, dashboard, f"/ui/household?site=hh001&day={day_before}")
    page.click("#next")
    page.wait_for_url(re.compile(f"day={dashboard.day}"))
    page.wait_for_function("() => window.__gridhub.householdDrawn > 0")
    assert page.input_value("#day") == str(dashboard.day)
    open_page(page, dashboard, f"/ui/household?site=hh001&day={day_before}&days=7")
    page.wait_for_function("() => window.__gridhub.householdDrawn > 0")
    assert page.evaluate("window.__gridhub.charts.household.data[0].length") == 7 * 96


def test_completeness_equals_the_api(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    first = dashboard.day - timedelta(days=2)
    # 88 of 96 quarter-hours is 91.7 %: a warning below a 95 % threshold
    span = {"from": str(first), "to": str(dashboard.day), "threshold": "0.95"}
    open_page(page, dashboard, "/ui/completeness?" + "&".join(f"{k}={v}" for k, v in span.items()))
    assert page.input_value("#threshold") == "95"
    api = dashboard.get(f"{LINEAR}/reports/completeness", **span)
    cells = page.evaluate(
        "() => [...document.querySelectorAll('#heatmap tr[data-device]')].map(tr =>"
        " [tr.dataset.device, [...tr.querySelectorAll('td')].map(td =>"
        " [Number(td.dataset.received), Number(td.dataset.expected)])])"
    )
    assert [c[0] for c in cells] == [d["device"] for d in api["devices"]]
    for (device, row), expected in zip(cells, api["devices"], strict=True):
        assert [r for r, _ in row] == expected["received"], device
        assert [e for _, e in row] == expected["expected"]
    gap = next(d for d in api["devices"] if d["device"] == GAP_DEVICE)
    assert gap["received"][-1] == 96 - 8  # 09:00-11:00 missing
    assert page.text_content("#warning-count") == str(len(api["warnings"]))
    assert GAP_DEVICE in page.text_content("#warnings")
    page.click(f"#heatmap tr[data-device='{GAP_DEVICE}'] td[data-day='{dashboard.day}']")
    page.wait_for_selector("#missing-list")
    missing = dashboard.get(
        f"{LINEAR}/reports/completeness/{GAP_DEVICE}/missing", day=str(dashboard.day)
    )
    shown = page.text_content("#missing-list")
    assert shown == ", ".join(ts[11:16] for ts in missing["missing"])
    assert shown.startswith("09:00") and shown.endswith("10:45")
    screenshot(page, "completeness-heatmap")


def test_export_downloads_the_views_rows(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    open_page(page, dashboard, "/ui/export")
    page.select_option("#view", "household")
    page.select_option("#export-site", "hh001")
    page.fill("#export-to", str(dashboard.day))
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    path = download.path()
    assert path is not None
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    view = dashboard.get(f"{LINEAR}/reports/household/hh001", day=str(dashboard.day))
    assert len(rows) == 96 * len(view["series"])
    meter = [r for r in rows if r["device"] == "hh001-meter" and r["identifier"] == POWER]
    expected = next(s for s in view["series"] if s["device"] == "hh001-meter")["values"]
    assert [float(r["value"]) for r in meter] == pytest.approx(expected)
    assert download.suggested_filename.endswith(".csv")


def test_sql_console_runs_for_researchers_only(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    open_page(page, dashboard, "/ui/export")
    page.fill("#sql", "SELECT hardware_id FROM devices ORDER BY hardware_id")
    page.click("#run-sql")
    page.wait_for_function("() => window.__gridhub.sql !== undefined")
    result = page.evaluate("window.__gridhub.sql")
    devices = dashboard.get(f"{LINEAR}/devices")
    assert [r[0] for r in result["rows"]] == sorted(d["hardware_id"] for d in devices)
    assert page.locator("#sql-result table tr").count() == len(devices) + 1
    screenshot(page, "sql-console")
    customer = login(browser, dashboard, "customer")
    open_page(customer, dashboard, "/ui/export")
    assert customer.locator("#sql-denied").is_visible()
    assert customer.locator("#sql").count() == 0


PAGES = ("overview", "household", "devices", "aggregates", "completeness", "tariffs", "export")


@pytest.mark.parametrize(
    ("who", "own", "foreign"), [("researcher", "hh0", "nw0"), ("other", "nw0", "hh0")]
)
def test_no_page_shows_another_tenants_data(
    browser: Any, dashboard: Dashboard, who: str, own: str, foreign: str
) -> None:
    page = login(browser, dashboard, who)
    for name in PAGES:
        open_page(page, dashboard, f"/ui/{name}")
        text = page.content()
        assert foreign not in text, name
        if name in ("household", "devices", "completeness"):
            assert own in text, name
    # a hand-edited session pointing at the other tenant gets the API's 403, and no data
    victim = "linear" if who == "other" else OTHER
    page.evaluate(f"sessionStorage.setItem('gh.tenant', '{victim}')")
    for name in PAGES:
        open_page(page, dashboard, f"/ui/{name}")
        assert "403" in (page.text_content("#error") or ""), name
        assert foreign not in page.content(), name


def test_device_timelines_hold_the_api_values(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    sites = dashboard.get(f"{LINEAR}/devices")
    site = next(d["site"] for d in sites if d["device_type"] == "boiler")
    open_page(page, dashboard, f"/ui/devices?site={site}&day={dashboard.day}")
    chart = page.evaluate(
        "() => { const c = window.__gridhub.charts.boiler; return { x: c.data[0].length,"
        " labels: c.series.map(s => s.label) }; }"
    )
    assert chart["x"] == 96
    api = dashboard.get(
        f"{LINEAR}/devices/{site}-boiler/series",
        identifier="boiler.stateOfCharge",
        day=str(dashboard.day),
        resolution="15m",
    )
    shown = page.evaluate("window.__gridhub.timelines.boilers")
    soc = next(s for s in shown if s["identifier"] == "boiler.stateOfCharge")
    assert soc["values"] == pytest.approx([p["value"] for p in api["points"]])
    runs = dashboard.get(f"{LINEAR}/reports/timelines/{site}", day=str(dashboard.day))
    rows = page.locator("#runs tr").count() - 1
    assert rows == sum(max(1, len(w["runs"])) for w in runs["whitegoods"])
    screenshot(page, "device-timelines")


def _shown_at(iso: str | None, day: str) -> str:
    """How the timelines page writes a time: HH:MM on its day, MM-DD HH:MM on another."""
    if iso is None:
        return "–"
    return iso[11:16] if iso[:10] == day else f"{iso[5:10]} {iso[11:16]}"


def test_whitegood_cycles_show_the_apis_configuration_deadline_program_and_start(
    browser: Any, dashboard: Dashboard
) -> None:
    day = str(dashboard.day)
    plugs = sorted(
        {d["site"] for d in dashboard.get(f"{LINEAR}/devices") if d["device_type"] == "smart-plug"}
    )
    for site in plugs:  # the first household whose appliances reported a cycle that day
        api = dashboard.get(f"{LINEAR}/reports/timelines/{site}", day=day)
        cycles = [(w, c) for w in api["whitegoods"] for c in w["cycles"]]
        if cycles:
            break
    else:
        pytest.fail(f"no household reported a whitegood cycle on {day}")
    # the API holds what the simulated appliances sent (seed 000 §IV), not just anything
    assert all(c["configured_at"] and c["deadline"] and c["program"] for _, c in cycles)
    for _, c in cycles:
        moments = [
            datetime.fromisoformat(c[k]) for k in ("configured_at", "started_at", "deadline")
        ]
        assert moments[0] <= moments[1] < moments[2]
    page = login(browser, dashboard)
    open_page(page, dashboard, f"/ui/devices?site={site}&day={day}")
    rows = page.locator("#cycles tr.cycle")
    assert rows.count() == len(cycles)
    for i, (w, c) in enumerate(cycles):
        cells = rows.nth(i).locator("td").all_text_contents()
        run = c["run"]
        assert cells == [
            w["appliance"],
            w["device"],
            c["program"],
            _shown_at(c["configured_at"], day),
            _shown_at(c["deadline"], day),
            _shown_at(c["started_at"], day),
            _shown_at(run["end"], day) if run else "–",
            f"{run['energy_kwh']:.3f}" if run else "–",
        ], (site, i)
    screenshot(page, "whitegood-cycles")


def test_aggregates_page_equals_the_api(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    first = dashboard.day - timedelta(days=1)
    open_page(page, dashboard, f"/ui/aggregates?from={first}&to={dashboard.day}")
    api = dashboard.get(
        f"{LINEAR}/reports/aggregates", **{"from": str(first), "to": str(dashboard.day)}
    )
    cells = page.evaluate(
        "() => [...document.querySelectorAll('#by-appliance tr')].slice(1).map(tr =>"
        " [...tr.querySelectorAll('td')].map(td => td.textContent))"
    )
    assert [c[0] for c in cells] == [r["value"] for r in api["by_appliance"]]
    assert [float(c[3]) for c in cells] == pytest.approx(
        [r["consumed_kwh"] for r in api["by_appliance"]], abs=0.05
    )
    pv = page.evaluate(
        "() => [...document.querySelectorAll('#by-has_pv tr')].slice(1).map(tr =>"
        " Number(tr.querySelectorAll('td')[1].textContent))"
    )
    assert sum(pv) == len(dashboard.get(f"{LINEAR}/sites"))


def test_tariffs_page_shows_what_the_api_holds(browser: Any, dashboard: Dashboard) -> None:
    sites = [s["id"] for s in dashboard.get(f"{LINEAR}/sites")][:2]
    today = dashboard.day + timedelta(days=1)  # a day-ahead tariff: not for a day gone by
    page = login(browser, dashboard)
    open_page(page, dashboard, f"/ui/tariffs?month={today:%Y-%m}")
    assert "no tariffs" in (page.text_content("#tariffs") or "")
    with dashboard.client("admin") as admin:  # the DSO side publishes, the researcher reads
        tariff = admin.post(
            f"{LINEAR}/tariffs",
            json={
                "kind": "tou",
                "target": {"site": sites[0]},
                "currency": "EUR",
                "unit": "EUR/kWh",
                "days": [
                    {
                        "day": today.isoformat(),
                        "periods": [
                            {"start": "00:00", "end": "07:00", "price": 0.18, "label": "night"},
                            {"start": "07:00", "end": "24:00", "price": 0.31, "label": "day"},
                        ],
                    }
                ],
            },
        )
        assert tariff.status_code in (200, 201), tariff.text
        signal = admin.post(
            f"{LINEAR}/control-signals",
            json={
                "direction": "consumption",
                "limit_kw": 2.5,
                "target": {"sites": sites},
                "start": f"{today.isoformat()}T22:00:00+01:00",
                "end": f"{today.isoformat()}T23:00:00+01:00",
            },
        )
        assert signal.status_code in (200, 201), signal.text
    open_page(page, dashboard, f"/ui/tariffs?month={today:%Y-%m}")
    shown = page.text_content("#tariffs") or ""
    assert "00:00–07:00 0.18 (night)" in shown and "07:00–24:00 0.31 (day)" in shown
    signals = page.text_content("#control-signals") or ""
    assert "consumption" in signals and "2.5" in signals
    experiments = dashboard.get(f"{LINEAR}/reports/overview")["groups"]["experiment"]
    for name, count in experiments.items():
        assert page.locator("#experiments tr", has_text=name).text_content() == f"{name}{count}"


def test_installation_admin_switches_between_tenants(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard, "admin")
    open_page(page, dashboard, "/ui/household")
    page.wait_for_selector("#tenant")
    assert page.input_value("#tenant") == "linear"
    page.select_option("#tenant", OTHER)
    page.wait_for_function(f"() => sessionStorage.getItem('gh.tenant') === '{OTHER}'")
    page.wait_for_function("() => window.__gridhub && window.__gridhub.householdDrawn > 0")
    assert page.evaluate("window.__gridhub.household.site").startswith("nw")
    assert "hh0" not in page.content()


def test_stacked_plugs_still_hover_their_own_values(browser: Any, dashboard: Dashboard) -> None:
    page = login(browser, dashboard)
    open_page(page, dashboard, f"/ui/household?site=hh001&day={dashboard.day}&mode=stacked")
    page.wait_for_function("() => window.__gridhub.householdDrawn > 0")
    plotted = page.evaluate("window.__gridhub.charts.household.data")
    series = page.evaluate("window.__gridhub.household.series")
    plugs = [i for i, s in enumerate(series) if "-plug-" in s["device"]]
    # the plugs are drawn on top of each other: the last one plotted is their sum
    total = [sum(series[i]["values"][k] or 0 for i in plugs) for k in range(96)]
    assert plotted[plugs[-1] + 1] == pytest.approx(total)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    page.wait_for_function("() => window.__gridhub.charts.household.cursor.idx != null")
    idx = page.evaluate("window.__gridhub.charts.household.cursor.idx")
    legend = page.locator(".u-legend .u-series").nth(plugs[-1] + 1).locator(".u-value")
    assert legend.text_content() == f"{series[plugs[-1]]['values'][idx]:.3f} kW"
