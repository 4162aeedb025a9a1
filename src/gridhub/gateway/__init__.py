"""Gateway mode (issue 6): a meter's P1 or IEC 62056-21 port, forwarded over MQTT.

``gridhub gateway`` runs next to a meter. Modules, in the order a telegram goes through them:

* :mod:`~gridhub.gateway.sources` — serial port, TCP (ser2net-style) or file; mode C polling;
* :mod:`~gridhub.gateway.framing` — byte stream → whole telegrams (``/`` … ``!CRC``, … BCC);
* the adapters (:mod:`gridhub.adapters.dsmr_p1`, :mod:`gridhub.adapters.iec62056`) — telegram →
  canonical messages, checksum verified; what fails goes to :mod:`~gridhub.gateway.rejects`;
* :mod:`~gridhub.gateway.outbox` — every message on disk (SQLite, fsynced) before publication;
* :mod:`~gridhub.gateway.forwarder` — QoS 1 publication, deletion on PUBACK, replay in order;
* :mod:`~gridhub.gateway.runner` — the two threads (reading, forwarding) and ``--once``.
"""

from gridhub.gateway.outbox import Outbox, OutboxFull, OutboxLocked
from gridhub.gateway.runner import Gateway, GatewayConfig

__all__ = ["Gateway", "GatewayConfig", "Outbox", "OutboxFull", "OutboxLocked"]
