"""Counters of the inbound pipeline, rendered in the Prometheus text format at ``/metrics``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class IngestMetrics:
    received_messages: int = 0
    accepted_messages: int = 0
    rejected_messages: int = 0  # refused with a reason (dead_lettered counts what was kept)
    stored_readings: int = 0
    duplicate_readings: int = 0
    dead_lettered: int = 0
    alerts_stored: int = 0
    acks_stored: int = 0
    batches: int = 0
    rollup_merges: int = 0
    rollup_merged_readings: int = 0
    store_errors: int = 0
    overloaded: int = 0
    last_batch_rows: int = 0
    last_batch_seconds: float = 0.0
    last_merge_seconds: float = 0.0
    buffer_rows: int = 0
    buffer_capacity: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, count in counts.items():
                setattr(self, name, getattr(self, name) + count)

    def render(self) -> str:
        lines: list[str] = []
        gauges = {
            "last_batch_rows",
            "last_batch_seconds",
            "last_merge_seconds",
            "buffer_rows",
            "buffer_capacity",
        }
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            name = f"gridhub_ingest_{f.name}" + ("" if f.name in gauges else "_total")
            kind = "gauge" if f.name in gauges else "counter"
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name} {getattr(self, f.name)}")
        return "\n".join(lines) + "\n"
