"""Outbound transport (O1–O3): what carries commands, tariffs and signals to devices.

The same layer as :mod:`gridhub.ingest` (services use it; it uses only storage and domain).
"""
