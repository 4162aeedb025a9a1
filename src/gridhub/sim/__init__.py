"""Simulators and fault injection (S1-S3). The fleet simulator is the public surface so far.

Typical use (what ``gridhub simulate`` and the demo do)::

    from gridhub.sim import CUSTOM_IDENTIFIERS, Fleet, HttpPublisher, MqttPublisher, run_live

    fleet = Fleet(200, seed=1, zone="Europe/Brussels", prefix="hh", tenant="demo")
    # register fleet.sites(), fleet.devices() and CUSTOM_IDENTIFIERS with the tenant, then:
    publisher = MqttPublisher("mqtt://127.0.0.1:1883", "demo")
    for batch in fleet.batches(start, end, 900):      # backfill: as fast as the hub takes it
        publisher.publish(batch)
    run_live(fleet, publisher, 900, duration_s=None, stop=stop_event)  # then real time

:mod:`gridhub.sim.fleet` documents what is simulated and the message timing, and
:mod:`gridhub.sim.profiles` the load, PV, whitegood and boiler models behind the numbers.
:mod:`gridhub.sim.incidents` causes grid incidents (an outage, an LV fault, a fused luminaire)
as the devices would report them (``gridhub simulate incident``).
"""

from gridhub.sim.fleet import (
    CUSTOM_IDENTIFIERS,
    MALFORMED_CYCLE,
    Fleet,
    MalformedKind,
)
from gridhub.sim.profiles import Household
from gridhub.sim.transport import (
    HttpPublisher,
    MqttPublisher,
    Publisher,
    PublishResult,
    Rejection,
    run_live,
)

__all__ = [
    "CUSTOM_IDENTIFIERS",
    "MALFORMED_CYCLE",
    "Fleet",
    "Household",
    "HttpPublisher",
    "MalformedKind",
    "MqttPublisher",
    "PublishResult",
    "Publisher",
    "Rejection",
    "run_live",
]
