"""Alert types with a meaning to gridhub itself (the seed's dotted style, seed 002 §4.5.2).

Devices may send any alert type; these are the ones a grid service acts on or writes.
"""

from __future__ import annotations

__all__ = [
    "LAST_GASP",
    "OUTAGE_ENDED",
    "OUTAGE_RELOCATED",
    "OUTAGE_STARTED",
    "POWER_RESTORED",
]

#: a meter lost its supply (sent from the energy left in its capacitor)
LAST_GASP = "power.last.gasp"
#: a meter's supply is back
POWER_RESTORED = "power.restored"
#: written by outage detection (G1) from the virtual device ``grid:<node>``
OUTAGE_STARTED = "grid.outage.started"
OUTAGE_RELOCATED = "grid.outage.relocated"
OUTAGE_ENDED = "grid.outage.ended"
