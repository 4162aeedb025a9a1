"""Structured logs: one JSON object per line."""

from __future__ import annotations

import json
import logging

from gridhub.cli.common import JsonFormatter


def test_json_log_line() -> None:
    record = logging.LogRecord("gridhub.ingest", logging.WARNING, __file__, 1,
                               "store write failed, retrying in %.1f s", (0.4,), None)  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "gridhub.ingest"
    assert entry["message"] == "store write failed, retrying in 0.4 s"
    assert entry["ts"].endswith("+00:00")
