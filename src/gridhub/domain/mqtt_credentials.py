"""An MQTT user as gridhub keeps it (issue #6): the record, never the password; and the two
topics of a device, written in this one place.

It lives in ``domain`` because the catalog stores it (``storage/devices_catalog.py``) and the
access layer writes Mosquitto's password and ACL files from it (``access/mqtt_auth.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["MqttCredential", "Role", "commands_topic", "events_topic"]

Role = Literal["device", "hub"]


def events_topic(tenant: str, hardware_id: str) -> str:
    """Where a device publishes its messages (and may publish nothing else)."""
    return f"gridhub/{tenant}/{hardware_id}/events"


def commands_topic(tenant: str, hardware_id: str) -> str:
    """Where the hub sends a device its commands (and the device may read nothing else)."""
    return f"gridhub/{tenant}/{hardware_id}/commands"


@dataclass(frozen=True, slots=True)
class MqttCredential:
    """One MQTT user as the catalog keeps it: never the password, only its ``$7$`` hash."""

    username: str
    role: Role
    hash: str
    created: datetime
    rotated: datetime
    tenant: str | None = None
    hardware_id: str | None = None

    @property
    def events_topic(self) -> str:
        return events_topic(str(self.tenant), str(self.hardware_id))

    @property
    def commands_topic(self) -> str:
        return commands_topic(str(self.tenant), str(self.hardware_id))
