"""A caller's read scope for reports: the enforcement point asked per series, for many series.

Reports (the dashboard's household and timeline views, aggregates, completeness, exports) read
many devices at once. They ask :class:`ReadScope` — built per request from the one enforcement
point, :class:`~gridhub.access.enforce.AccessControl` — which windows of each series the caller
may read, and show nothing else:

* a series outside every window is left out; a quarter-hour is shown only if it lies wholly in
  a window (an average never mixes in a value the caller may not see);
* an aggregate counts a device only if the caller may read it over the whole range;
* completeness lists only the devices the caller may read some of;
* the SQL console, which reads tables directly, is for callers who may read every series of the
  tenant over all time (tenant admins, and stakeholders an owner policy grants everything).

These are aggregate reads: they do not count against an owner's minimum delay between reads
(the rate limit applies to the series API).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import Principal
from gridhub.domain.registry import Device
from gridhub.storage.base import StoredAlert

__all__ = ["ALL_SERIES", "ReadScope"]

#: the identifier a check uses for "every series" (only an owner policy on ``*`` matches it)
ALL_SERIES = "*"
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_FOREVER = datetime(9999, 1, 1, tzinfo=UTC)

Window = tuple[datetime, datetime]


class ReadScope:
    """What one caller may read of one tenant (see the module docstring)."""

    def __init__(self, access: AccessControl, who: Principal, tenant: str) -> None:
        who.require_tenant(tenant)
        self._access, self.who, self.tenant = access, who, tenant

    def windows(
        self, device: str, identifier: str | None, start: datetime, end: datetime
    ) -> list[Window]:
        """The parts of ``[start, end)`` of a series the caller may read (empty: none)."""
        decision = self._access.decide_read(self.who, self.tenant, device, identifier, start, end)
        return decision.spans() if decision.allowed else []

    def covers(self, device: str, identifier: str | None, start: datetime, end: datetime) -> bool:
        """Whether the caller may read the series over the whole of ``[start, end)``."""
        return any(
            lo <= start and end <= hi for lo, hi in self.windows(device, identifier, start, end)
        )

    def sees(self, device: str, start: datetime, end: datetime) -> bool:
        """Whether the caller may read anything of ``device`` in ``[start, end)``."""
        return bool(self.windows(device, None, start, end))

    def alerts(self, alerts: Sequence[StoredAlert]) -> list[StoredAlert]:
        return self._access.filter_alerts(self.who, self.tenant, alerts)

    def reads_everything(self, devices: Sequence[Device]) -> bool:
        """Whether every series of every device is readable over all time (the SQL console)."""
        return all(self.covers(d.hardware_id, ALL_SERIES, _BEGINNING, _FOREVER) for d in devices)


def inside(windows: Sequence[Window], start: datetime, end: datetime) -> bool:
    """Whether ``[start, end)`` lies wholly in one of ``windows``."""
    return any(lo <= start and end <= hi for lo, hi in windows)
