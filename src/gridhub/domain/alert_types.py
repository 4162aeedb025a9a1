"""Alert types with a meaning to gridhub itself (the seed's dotted style, seed 002 §4.5.2).

Devices may send any alert type; these are the ones a grid service acts on or writes.
"""

from __future__ import annotations

__all__ = [
    "FAULT_CURRENT",
    "FAULT_LOCATED",
    "LAST_GASP",
    "LUMINAIRE_FUSED",
    "LUMINAIRE_REPAIRED",
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
#: an LV sensor saw fault current (distributed fault detection, seed 004 §4.3.2.9.1); optional
#: ``metadata``: ``currentA`` and ``voltageV`` it measured. The alert's time is the report's.
FAULT_CURRENT = "fault.current.detected"
#: written by LV fault location (G2) from ``grid:<upstream node>``: the faulty section
FAULT_LOCATED = "grid.fault.located"
#: written by fused-luminaire detection (G3) from ``grid:<segment's upstream node>``
LUMINAIRE_FUSED = "grid.luminaire.fused"
LUMINAIRE_REPAIRED = "grid.luminaire.repaired"
