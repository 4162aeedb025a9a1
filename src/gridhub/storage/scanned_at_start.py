"""An in-memory view of the store that starts from one scan in a background thread.

:class:`~gridhub.storage.high_water.HighWater` (newest reading per series) and
:class:`~gridhub.storage.latest_state.LatestState` (latest state per series) both need what
is stored when the hub starts, and must not make a large store slow to open; meanwhile the
writer records every commit into them. This base runs the scan, merges its rows under the lock
(the subclass decides how a scanned row and a recorded one combine) and says when it is done.
Until then the subclass answers "not known", and its caller asks DuckDB.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ScannedAtStart"]

log = logging.getLogger(__name__)


class ScannedAtStart:
    """Subclasses implement :meth:`_merge_scanned`; ``_lock`` guards their data."""

    what = "rows"  # for the log lines

    def __init__(self) -> None:
        self._ready = False
        self._loaded = threading.Event()
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """True once the stored rows were scanned."""
        return self._ready

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the scan; True if it is done (for tests and tools)."""
        return self._loaded.wait(timeout)

    def _merge_scanned(self, rows: Sequence[Any]) -> None:
        """Fold the scan's rows into what was recorded meanwhile (called under ``_lock``)."""
        raise NotImplementedError

    def load_in_background(self, scan: Callable[[], Sequence[Any]]) -> None:
        """Run ``scan`` in a thread of its own and merge its rows; a failed scan (the store
        closed meanwhile) leaves this not ready for good, which is always correct."""

        def run() -> None:
            try:
                rows = scan()
            except Exception as exc:
                log.warning("%s not read (%s); DuckDB answers instead", self.what, exc)
                return
            with self._lock:
                self._merge_scanned(rows)
                self._ready = True
            self._loaded.set()
            log.info("%s of %d series loaded", self.what, len(rows))

        name = f"gridhub-{type(self).__name__.lower()}"
        threading.Thread(target=run, name=name, daemon=True).start()
