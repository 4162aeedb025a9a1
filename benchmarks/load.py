"""Load for the benchmarks: canonical messages of a 1,000-meter fleet, and a publisher process."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime

METER_IDS = [
    "electricity.power.active.consumed.l1",
    "electricity.power.active.consumed.l2",
    "electricity.power.active.consumed.l3",
    "electricity.power.active.consumed.total",
    "electricity.power.active.injected.total",
    "electricity.voltage.rms.l1",
    "electricity.voltage.rms.l2",
    "electricity.voltage.rms.l3",
    "electricity.energy.active.consumed.total",
    "electricity.frequency",
]
T0_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)


def message(device: int, tick: int, readings: int) -> bytes:
    ts = datetime.fromtimestamp(T0_US / 1e6 + tick * 900, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = ",".join(
        f'"{METER_IDS[k]}":{(device * 7 + tick + k) % 1000 / 10}' for k in range(readings)
    )
    return (
        f'{{"hardwareId":"m{device:05d}","type":"DeviceMeasurements","request":'
        f'{{"measurements":{{{values}}},"eventDate":"{ts}"}}}}'
    ).encode()


def publish_all(url: str, count: int, readings: int, devices: int, ready: mp.Event) -> None:
    """A device fleet in one process: QoS 1, a window of 1,000 messages awaiting PUBACK."""
    from gridhub.sim.transport import MqttPublisher

    items = [
        (f"m{i % devices:05d}", message(i % devices, i // devices, readings)) for i in range(count)
    ]
    publisher = MqttPublisher(url, "bench", max_inflight=1000, timeout_s=600)
    ready.set()
    try:
        for start in range(0, count, 10_000):
            publisher.publish(items[start : start + 10_000])
    finally:
        publisher.close()
