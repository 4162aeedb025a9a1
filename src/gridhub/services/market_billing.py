"""Billing and consumption profiles from the stored energy register (seed 003 use cases a, b).

Each device is read only inside its *allowed windows*: the parts of the period in which the
retailer supplied the site (its contract) and the enforcement point let it read the device's
series (``services/market_reads.py`` computes them). Nothing outside them is read, and no
figure spans a gap between two windows: energy over a window is the register's last reading
minus its first *inside* that window, and a profile's first quarter-hour of a window starts
from that window's own first reading — so the consumption during a period the retailer may not
see never shows up in a difference.

A billing line gives per site the windows billed (a supplier switch or an owner policy splits
the period) and how many readings each figure rests on, so a retailer can tell a quiet meter
from a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gridhub.storage.market_readings import MarketReadings

__all__ = ["Allowed", "billing_lines", "profile_lines", "site_windows"]

Window = tuple[datetime, datetime]
# site -> device -> the windows of the period that device may be read in (sorted, disjoint)
Allowed = Mapping[str, Mapping[str, Sequence[Window]]]


def site_windows(devices: Mapping[str, Sequence[Window]]) -> list[Window]:
    """The union of a site's device windows (what a billing line lists)."""
    merged: list[Window] = []
    for lo, hi in sorted(w for ws in devices.values() for w in ws):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _by_window(allowed: Allowed) -> dict[Window, list[str]]:
    """Devices grouped by window: devices sharing one (usually all of a request's) are read in
    one query."""
    out: dict[Window, list[str]] = {}
    for devices in allowed.values():
        for device, windows in devices.items():
            for w in windows:
                out.setdefault(w, []).append(device)
    return out


def billing_lines(
    readings: MarketReadings, tenant: str, identifier: str, allowed: Allowed
) -> list[dict[str, Any]]:
    """One line per site: energy per window and in total, readings counted."""
    spans = {
        (device, w): span
        for w, devices in _by_window(allowed).items()
        for device, span in readings.spans(tenant, devices, identifier, w[0], w[1]).items()
    }
    lines = []
    for site in sorted(allowed):
        devices = allowed[site]
        parts: list[dict[str, Any]] = []
        values: list[float] = []
        readings_total = 0
        for lo, hi in site_windows(devices):
            found = [
                spans[(d, w)]
                for d, ws in devices.items()
                for w in ws
                if lo <= w[0] and w[1] <= hi and (d, w) in spans
            ]
            value = sum(sp.last - sp.first for sp in found) if found else None
            count = sum(sp.count for sp in found)
            if value is not None:
                values.append(value)
            readings_total += count
            parts.append(
                {"from": lo.isoformat(), "to": hi.isoformat(), "energy": value, "readings": count}
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
    readings: MarketReadings, tenant: str, identifier: str, allowed: Allowed
) -> list[dict[str, Any]]:
    """One line per site: energy per quarter-hour inside its windows.

    A quarter-hour's energy is the register's rise from the previous quarter-hour's last reading
    to this one's last (a window's first quarter-hour: from its own first reading); quarter-hours
    without readings are left out rather than guessed.
    """
    site_of = {d: site for site, devices in allowed.items() for d in devices}
    points: dict[str, dict[datetime, float]] = {site: {} for site in allowed}
    for w, devices in _by_window(allowed).items():
        per_device = readings.quarter_hours(tenant, devices, identifier, *w)
        for device, buckets in per_device.items():
            site_points = points[site_of[device]]
            previous: float | None = None  # per window: never across a gap
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
        for site in sorted(allowed)
    ]
