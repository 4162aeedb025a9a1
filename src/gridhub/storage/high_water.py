"""Per series, the newest stored reading: lets a batch of new readings skip the dedupe join.

Deduplication (issue #3: a resent reading never makes a second row) normally costs an anti-join
of the batch against the stored readings of its time span: about 2.5 ms for a single live
reading, a quarter of its whole write. But live meters send readings newer than anything they
sent before, and a reading newer than the newest stored one of its series cannot be a duplicate.
:class:`HighWater` keeps, per (tenant, device, identifier), the newest stored timestamp; a
reading newer than that (and than the batch's own earlier readings of the series) is known to be
new and is appended straight away. Only the rest — a resend, a backfill, readings out of order —
takes the anti-join, and only they: a batch of live readings with one resent message among them
joins that message's readings alone.

The marks are an upper bound by construction: they start from one scan of the stored readings
(in a background thread, so a large store opens at once; until the scan is done every batch
takes the anti-join) and every committed batch raises them. A mark too high only sends a batch
to the anti-join; a mark too low could store a duplicate, which is why the writer's own marks
are recorded from before the scan starts and the two are merged by taking the larger. Nothing
else writes readings: they go through :meth:`DuckDBStore.write` only.

Memory: one entry per series (about 200 bytes): 100,000 series (10,000 meters × 10 quantities)
take some 20 MB.
"""

from __future__ import annotations

from collections.abc import Sequence

from gridhub.storage.base import MeasurementColumns
from gridhub.storage.scanned_at_start import ScannedAtStart

__all__ = ["HighWater", "SeriesKey"]

SeriesKey = tuple[str, str, str]  # tenant, device, identifier


class HighWater(ScannedAtStart):
    what = "dedupe marks"

    def __init__(self) -> None:
        super().__init__()
        self._marks: dict[SeriesKey, int] = {}

    def _merge_scanned(self, rows: Sequence[tuple[str, str, str, int]]) -> None:
        """Rows of tenant, device, identifier, newest µs: the larger mark wins."""
        marks = self._marks
        for tenant, device, identifier, newest in rows:
            key = (tenant, device, identifier)
            if newest > marks.get(key, newest - 1):
                marks[key] = newest

    def sift(self, cols: MeasurementColumns) -> tuple[int, list[bool], dict[SeriesKey, int]]:
        """Which readings of ``cols`` are known to be new: newer than the newest stored one of
        their series and than the batch's earlier readings of it.

        Returns how many are, a flag per reading, and per series of the batch the newest
        timestamp known once the batch is stored (for :meth:`record`). Only the readings not
        known new need the dedupe join, so a resent message among live ones (an MQTT
        redelivery after a reconnect, say) costs a join of its own readings, not of the whole
        batch. Before the scan is done nothing is known new."""
        if not self._ready:
            return 0, [False] * len(cols), self.newest(cols)
        floors: dict[SeriesKey, int] = {}  # per series: the newest stored or seen so far
        floors_get, marks_get = floors.get, self._marks.get
        flags: list[bool] = []
        known = 0
        series_keys = zip(cols.tenant, cols.device, cols.identifier, strict=True)
        for series, ts in zip(series_keys, cols.ts, strict=True):
            floor = floors_get(series)
            if floor is None:
                floor = marks_get(series)
            if floor is None or ts > floor:
                floors[series] = ts
                flags.append(True)
                known += 1
            else:
                floors[series] = floor
                flags.append(False)
        return known, flags, floors

    @staticmethod
    def newest(cols: MeasurementColumns) -> dict[SeriesKey, int]:
        """The newest timestamp per series of ``cols``, in any order."""
        newest: dict[SeriesKey, int] = {}
        for tenant, device, identifier, ts in zip(
            cols.tenant, cols.device, cols.identifier, cols.ts, strict=True
        ):
            series = (tenant, device, identifier)
            if ts > newest.get(series, ts - 1):
                newest[series] = ts
        return newest

    def record(self, newest: dict[SeriesKey, int]) -> None:
        """Raise the marks after a commit (every reading of a batch is stored once it commits:
        the new ones just now, the duplicates before)."""
        with self._lock:
            marks = self._marks
            for series, ts in newest.items():
                if ts > marks.get(series, ts - 1):
                    marks[series] = ts
