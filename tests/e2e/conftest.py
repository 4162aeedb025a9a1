"""Fixtures of the browser tests: one demo hub and one Chromium per test module."""

from __future__ import annotations

from e2e.dashkit import browser, dashboard

__all__ = ["browser", "dashboard"]
