"""The on-arrival grid services' own logic (G2, G3), without the pipeline: what a message
carries for them, how synchronised sets are assembled, and the alerts they write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gridhub.domain.messages import DeviceAlert, decode
from gridhub.domain.validation import to_us
from gridhub.errors import InvalidRequest
from gridhub.grid import fault_monitor, luminaire_monitor
from gridhub.grid.fault_location import FaultReport, locate_fault, sensor_layout
from gridhub.grid.monitoring import GridAlert, grid_alert_message
from gridhub.grid.topology_import import reference_network
from gridhub.sim.incidents import fault, luminaire

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
PL = {"pl-1": "bus2", "pl-2": "bus5", "pl-3": "bus7", "pl-4": "bus9"}
LV = {"lv-h": "bus2", "lv-a": "bus5", "lv-b": "bus7", "lv-c": "bus10", "lv-d": "bus16"}


@pytest.fixture(scope="module")
def cigre() -> Any:
    return reference_network("cigre_lv")


def _measurements(raw: bytes) -> tuple[int, list[tuple[str, int, float]]]:
    request = json.loads(raw)["request"]
    ts = to_us(datetime.fromisoformat(request["eventDate"]))
    return ts, [(k, ts, v) for k, v in request["measurements"].items()]


def test_grid_alert_is_a_canonical_device_alert() -> None:
    alert = GridAlert("bus7", "grid.fault.located", "Critical", "here", T0, {"a": [1]})
    device, raw = grid_alert_message(alert, 42)
    message = decode(raw)
    assert device == "grid:bus7" and isinstance(message, DeviceAlert)
    assert message.request.metadata == {"sequence": 42, "a": [1]}
    sensor, _ = grid_alert_message(GridAlert("bus7", "x.y", "Info", "", T0, device="lv-b"))
    assert sensor == "lv-b"  # a sensor's own report, decided by the hub


def test_fault_samples_take_the_worst_phase() -> None:
    ts = to_us(T0)
    readings = [
        ("electricity.voltage.rms.l1", ts, 230.0),
        ("electricity.voltage.rms.l2", ts, 120.0),
        ("electricity.current.rms.l1", ts, 80.0),
        ("electricity.current.rms.l3", ts, 900.0),
        ("electricity.voltage.rms.l1", ts + 1, 231.0),  # no current at that time: no sample
        ("electricity.power.active.consumed.total", ts, 3.0),
    ]
    [sample] = fault_monitor._samples("lv-a", readings)
    assert (sample.at, sample.voltage_v, sample.current_a) == (T0, 120.0, 900.0)


def test_fault_location_alert_names_the_section(cigre: Any) -> None:
    layout = sensor_layout(cigre, LV)
    reports = [FaultReport(s, T0) for s in ("lv-h", "lv-a", "lv-b")]
    location = locate_fault(layout, reports)
    assert location is not None
    alert = fault_monitor.location_alert(location, layout, "lv-a")
    assert alert.node == "bus7" and alert.at == T0 and alert.level == "Critical"
    assert alert.text == "LV fault between sensor lv-b (Bus R6) and lv-c (Bus R9)"
    assert alert.facts["narrows"] == "lv-a" and alert.facts["downstreamNodes"] == ["bus10"]
    last = locate_fault(layout, [*reports, FaultReport("lv-c", T0)])
    assert last is not None
    text = fault_monitor.location_alert(last, layout, None).text
    assert text == "LV fault after the last sensor sensor lv-c (Bus R9)"


def test_fault_incident_samples_decided_like_the_sensors_would(cigre: Any) -> None:
    """The polled samples of a fault at R13, judged centrally, give the reports the sensors
    send in distributed mode, and the same location."""
    samples = fault(cigre, LV, "bus14", T0, mode="samples")
    reports = fault(cigre, LV, "bus14", T0)
    monitor = fault_monitor.FaultMonitor(None, None, None, None)  # type: ignore[arg-type]
    state = monitor.build("t", cigre, tuple(LV.items()))
    assert state is not None
    inputs = [s for _, raw in samples for s in fault_monitor._samples("x", _measurements(raw)[1])]
    inputs = [type(s)(sensor, s.at, s.voltage_v, s.current_a)
              for (sensor, _), s in zip(samples, inputs, strict=True)]  # fmt: skip
    alerts = monitor.feed("t", state, inputs)
    decided = sorted(a.device or "" for a in alerts if a.type == "fault.current.detected")
    assert decided == sorted(sensor for sensor, _ in reports) == ["lv-a", "lv-h"]
    [located] = [a for a in alerts if a.type == "grid.fault.located"]
    assert located.node == "bus5" and located.facts["downstreamSensors"] == ["lv-b", "lv-d"]
    assert monitor.feed("t", state, inputs[-5:]) == []  # the same fault again: nothing new


def test_fault_incident_refuses_what_it_cannot_compute(cigre: Any) -> None:
    with pytest.raises(InvalidRequest, match="end of a line or a transformer"):
        fault(cigre, {"s": "bus1"}, "bus9", T0)  # R0 hangs on a switch
    with pytest.raises(InvalidRequest, match="unknown fault node"):
        fault(cigre, LV, "nowhere", T0)
    with pytest.raises(InvalidRequest, match="UTC offset"):
        fault(cigre, LV, "bus9", T0.replace(tzinfo=None))


def test_luminaire_sets_assembled_in_order_despite_a_missed_poll(cigre: Any) -> None:
    bulbs = {"pl-1": 6, "pl-2": 5, "pl-3": 4, "pl-4": 5}
    messages = luminaire(cigre, PL, bulbs, "pl-3", T0, 30, 18, seed=5)
    service = luminaire_monitor.LuminaireService(None, None, None, None)  # type: ignore[arg-type]
    state = service.build("t", cigre, tuple(PL.items()))
    assert state is not None and [f.feeder.sensors for f in state.feeders] == [tuple(PL)]
    readings = []
    for index, (sensor, raw) in enumerate(messages):
        if index == 5 * len(PL) + 1:
            continue  # pl-2 missed the sixth poll: that set is incomplete
        readings += luminaire_monitor._readings(sensor, _measurements(raw)[1])
    # the sensors' messages arrive shuffled within each minute
    readings.sort(key=lambda r: (r.at_us, r.sensor[::-1]))
    alerts = service.feed("t", state, readings[:200]) + service.feed("t", state, readings[200:])
    [fused] = alerts
    assert fused.node == "bus7" and fused.type == "grid.luminaire.fused"
    assert fused.at == T0 + timedelta(minutes=18)
    assert (fused.facts["upstreamSensor"], fused.facts["downstreamSensor"]) == ("pl-3", "pl-4")
    assert state.feeders[0].dropped == 1


def test_luminaire_readings_need_voltage_and_current() -> None:
    ts = to_us(T0)
    found = luminaire_monitor._readings(
        "pl-1",
        [
            ("electricity.voltage.rms.l1", ts, 230.0),
            ("electricity.current.rms.l1", ts, 2.0),
            ("electricity.powerFactor.l1", ts, 0.451),  # φ in rad: cos φ 0.9
            ("electricity.voltage.rms.l1", ts + 1, 230.0),
        ],
    )
    [reading] = found
    assert reading.reading.power_factor == pytest.approx(0.9, abs=1e-3)


def test_luminaire_incident_validates_its_inputs(cigre: Any) -> None:
    with pytest.raises(InvalidRequest, match="fewer than 2 bulbs"):
        luminaire(cigre, PL, {"pl-3": 1}, "pl-3", T0, 30, 18, fused=2)
    with pytest.raises(InvalidRequest, match="one path"):
        luminaire(cigre, {**PL, "pl-5": "bus16"}, {"pl-3": 1}, "pl-3", T0, 30, 18)
