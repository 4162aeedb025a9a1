"""What both runners of the embedded MQTT broker share: port picking and start-failure messages.

The runners themselves live in :mod:`gridhub.ingest.broker_mosquitto` and
:mod:`gridhub.ingest.broker_amqtt`; :class:`gridhub.ingest.embedded_broker.EmbeddedBroker` picks
one of them and hands it the port picker (see there).
"""

from __future__ import annotations

import logging
import socket

__all__ = ["PORT_ATTEMPTS", "broker_log", "pick_free_port", "start_failure"]

#: The logger of the embedded broker, shared by its runners: their records keep the name they
#: had when the runners lived in :mod:`gridhub.ingest.embedded_broker`.
broker_log = logging.getLogger("gridhub.ingest.embedded_broker")

#: How often ``start()`` picks a new free port when another process took the picked one first.
PORT_ATTEMPTS = 5


def pick_free_port(host: str) -> int:
    """Ask the OS for a free port on ``host`` (it may be taken again before the broker binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def start_failure(kind: str, host: str, requested_port: int, reason: str) -> str:
    """The message of the RuntimeError raised when a broker of ``kind`` fails to start."""
    where = f"{host}:{requested_port or '<free port>'}"
    return f"could not start the embedded MQTT broker ({kind}) on {where}: {reason}"
