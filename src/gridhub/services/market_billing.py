"""Billing and consumption profiles from the stored energy register (seed 003 use cases a, b).

Energy over a window is the register's last reading minus its first inside the window, summed
over the site's devices that report it. A supplier switch inside the period clips each site to
the retailer's own supply windows; the answer says which windows were billed and how many
readings each figure rests on, so a retailer can tell a quiet meter from a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gridhub.storage.market_readings import MarketReadings

__all__ = ["billing_lines", "profile_lines"]

Window = tuple[datetime, datetime]


def billing_lines(
    readings: MarketReadings,
    tenant: str,
    identifier: str,
    windows: Mapping[str, Sequence[Window]],
    devices: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """One line per site: energy per supply window and in total, readings counted."""
    # sites sharing a window are read in one query (usually: all of them share the period)
    by_window: dict[Window, list[str]] = {}
    for site, ws in windows.items():
        for w in ws:
            by_window.setdefault(w, []).append(site)
    energy: dict[tuple[str, Window], tuple[float | None, int]] = {}
    for w, sites in by_window.items():
        devs = [d for s in sites for d in devices.get(s, ())]
        spans = readings.spans(tenant, devs, identifier, w[0], w[1])
        for s in sites:
            found = [spans[d] for d in devices.get(s, ()) if d in spans]
            total = sum(sp.last - sp.first for sp in found) if found else None
            energy[(s, w)] = (total, sum(sp.count for sp in found))
    lines = []
    for site in sorted(windows):
        parts: list[dict[str, Any]] = []
        values: list[float] = []
        readings_total = 0
        for w in windows[site]:
            value, count = energy[(site, w)]
            if value is not None:
                values.append(value)
            readings_total += count
            parts.append(
                {
                    "from": w[0].isoformat(),
                    "to": w[1].isoformat(),
                    "energy": value,
                    "readings": count,
                }
            )
        lines.append(
            {
                "site": site,
                "energy": sum(values) if values else None,
                "readings": readings_total,
                "windows": parts,
            }
        )
    return lines


def profile_lines(
    readings: MarketReadings,
    tenant: str,
    identifier: str,
    windows: Mapping[str, Sequence[Window]],
    devices: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """One line per site: energy per quarter-hour inside its supply windows.

    A quarter-hour's energy is the register's rise from the previous quarter-hour's last reading
    to this one's last (the first quarter-hour: from its own first reading); quarter-hours
    without readings are left out rather than guessed.
    """
    by_window: dict[Window, list[str]] = {}
    for site, ws in windows.items():
        for w in ws:
            by_window.setdefault(w, []).append(site)
    points: dict[str, dict[datetime, float]] = {site: {} for site in windows}
    for w, sites in by_window.items():
        owner = {d: s for s in sites for d in devices.get(s, ())}
        per_device = readings.quarter_hours(tenant, list(owner), identifier, *w)
        for device, buckets in per_device.items():
            site_points = points[owner[device]]
            previous: float | None = None
            for bucket, first, last in buckets:
                base = first if previous is None else previous
                site_points[bucket] = site_points.get(bucket, 0.0) + (last - base)
                previous = last
    return [
        {
            "site": site,
            "points": [
                {"ts": ts.isoformat(), "energy": v} for ts, v in sorted(points[site].items())
            ],
        }
        for site in sorted(windows)
    ]
