"""The gateway's rejects file: what could not be forwarded, with the reason, one JSON line each.

The hub dead-letters what it cannot store; a gateway must not be the place where data vanishes
either. A telegram that fails its CRC or BCC, a line the adapter cannot read, bytes that frame no
telegram, and a message the broker refuses (an MQTT 5 PUBACK with a failure reason, e.g. an ACL
that forbids the topic) are each written here with the reason codes the hub uses for its dead
letters (:class:`gridhub.domain.rejections.RejectReason`, plus ``broker_refused`` and
``parser_error``) and the raw bytes (Latin-1, so every byte survives the JSON round trip).

Each line is flushed and fsynced: rejects are rare, and one that vanished in a power cut would
be a silent drop. The file is bounded: past ``max_bytes`` it is renamed to ``<name>.1`` (the
previous ``.1`` is replaced, with a warning in the log) so a meter sending garbage for weeks
cannot fill the SD card of the gateway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["BROKER_REFUSED", "PARSER_ERROR", "RejectsFile"]

BROKER_REFUSED = "broker_refused"
PARSER_ERROR = "parser_error"


class RejectsFile:
    def __init__(self, path: Path | str, *, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.count = 0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self,
        reason: str,
        detail: str,
        raw: bytes,
        *,
        source: str,
        line: int | None = None,
        topic: str | None = None,
    ) -> None:
        """Append one reject; log it as a warning too, so it shows where the operator looks."""
        entry: dict[str, object] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "source": source,
            "reason": reason,
            "detail": detail,
        }
        if line is not None:
            entry["line"] = line
        if topic is not None:
            entry["topic"] = topic
        entry["raw"] = raw.decode("latin-1")
        data = (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")
        with self._lock:
            self._rotate(len(data))
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.count += 1
        log.warning("rejected (%s) from %s: %s", reason, source, detail)

    def _rotate(self, adding: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + adding <= self.max_bytes:
            return
        older = self.path.with_name(self.path.name + ".1")
        if older.exists():
            log.warning("rejects file %s is full: replacing %s", self.path, older)
        os.replace(self.path, older)
