"""From received bytes to what the store keeps: readings, an alert, an ack, or a dead letter.

One function, :func:`prepare`, serves every source (MQTT, HTTP, CSV import, simulator). It never
raises for a bad message: a rejection becomes a :class:`~gridhub.storage.base.DeadLetter` carrying
the raw bytes and the precise reason, so nothing a device sent is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from gridhub.domain.messages import DeviceAlert, DeviceMeasurements, decode
from gridhub.domain.registry import GRID_DEVICE_PREFIX, UnknownDevicePolicy
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import (
    Reading,
    check_hardware_id,
    event_time_us,
    measurement_readings,
)
from gridhub.errors import RejectedMessage
from gridhub.storage.base import AckRecord, AlertRecord, DeadLetter
from gridhub.storage.registry import Registry

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class Envelope:
    """One message as it arrived, before anything is trusted."""

    source: str  # "mqtt", "http", "csv", "sim"
    raw: bytes
    tenant: str | None
    received_us: int
    topic_device: str | None = None  # the hardwareId named by the MQTT topic
    problem: tuple[RejectReason, str] | None = None  # rejected before decoding (e.g. bad topic)
    redelivered: bool = False  # MQTT DUP: the broker may have given it to us before


@dataclass(slots=True)
class Prepared:
    envelope: Envelope
    tenant: str | None
    device: str | None = None
    readings: list[Reading] | None = None
    update_state: bool = False
    alert: AlertRecord | None = None
    ack: AckRecord | None = None
    dead_letter: DeadLetter | None = None

    def as_dead_letter(self, reason: RejectReason, detail: str) -> Prepared:
        """This message, kept as a dead letter instead (e.g. when the store refuses it)."""
        env = self.envelope
        return Prepared(
            env,
            tenant=self.tenant,
            dead_letter=DeadLetter(
                self.tenant,
                env.source,
                env.received_us,
                reason.value,
                detail,
                env.raw,
                env.redelivered,
            ),
        )

    @property
    def rows(self) -> int:
        return len(self.readings) if self.readings is not None else 1


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    max_future_s: float = 86_400.0


def _reject(
    env: Envelope, tenant: str | None, reason: RejectReason, detail: str, keep: int | None = None
) -> Prepared:
    raw = env.raw if keep is None else env.raw[:keep]
    return Prepared(
        env,
        tenant=tenant,
        dead_letter=DeadLetter(
            tenant, env.source, env.received_us, reason.value, detail, raw, env.redelivered
        ),
    )


GRID_SOURCE = "grid"  # the source of the grid services' write-back (hub.py)


def prepare(env: Envelope, registry: Registry, limits: Limits) -> Prepared:
    """Validate one envelope against the registry; return storable rows or a dead letter."""
    if env.problem is not None:
        owner = env.tenant if env.tenant and registry.find_tenant(env.tenant) else None
        return _reject(env, owner, *env.problem, keep=limits.max_message_bytes)
    if len(env.raw) > limits.max_message_bytes:
        # Keep the head of it (the limit exists so that nobody can make us store gigabytes).
        return _reject(
            env,
            env.tenant if env.tenant and registry.find_tenant(env.tenant) else None,
            RejectReason.OVERSIZED_PAYLOAD,
            f"{len(env.raw)} bytes; at most {limits.max_message_bytes} per message "
            f"(the first {limits.max_message_bytes} bytes are kept)",
            keep=limits.max_message_bytes,
        )
    tenant = registry.find_tenant(env.tenant) if env.tenant else None
    if tenant is None:
        # No tenant to file it under: keep it unowned so no tenant created later can read it.
        return _reject(
            env, None, RejectReason.UNKNOWN_TENANT, f"tenant {str(env.tenant)[:64]!r} unknown"
        )
    try:
        message = decode(env.raw)
        hardware_id = check_hardware_id(message.hardwareId)
        if hardware_id.startswith(GRID_DEVICE_PREFIX) and env.source != GRID_SOURCE:
            # nobody but the hub's own grid services may speak for a topology node (a forged
            # grid:<node> alert would start or end a DSO's outage)
            raise RejectedMessage(
                RejectReason.RESERVED_DEVICE,
                f"hardwareId {hardware_id[:64]!r}: '{GRID_DEVICE_PREFIX}' ids are the grid "
                "services' own",
            )
        if env.topic_device is not None and env.topic_device != hardware_id:
            raise RejectedMessage(
                RejectReason.TOPIC_MISMATCH,
                f"message for device {hardware_id!r} published on the topic of device "
                f"{env.topic_device!r}",
            )
        if registry.device(tenant.id, hardware_id) is None:
            if tenant.unknown_devices is UnknownDevicePolicy.AUTO_REGISTER:
                registry.auto_register(tenant.id, hardware_id)
            else:
                raise RejectedMessage(
                    RejectReason.UNKNOWN_DEVICE,
                    f"device {hardware_id!r} is not registered in tenant {tenant.id!r}",
                )
        if isinstance(message, DeviceMeasurements):
            readings = measurement_readings(
                message, registry.identifiers(tenant.id), env.received_us, limits.max_future_s
            )
            return Prepared(
                env, tenant.id, hardware_id, readings, update_state=message.request.updateState
            )
        if isinstance(message, DeviceAlert):
            req = message.request
            ts = event_time_us(req.eventDate, env.received_us, limits.max_future_s)
            metadata = _json.encode(req.metadata or {}).decode()
            alert = AlertRecord(
                tenant.id,
                hardware_id,
                ts,
                req.type,
                req.level.value,
                req.message,
                metadata,
                env.received_us,
            )
            return Prepared(env, tenant.id, hardware_id, alert=alert)
        # the decoder's union has three members: what is left is an Acknowledge
        areq = message.request
        ts = event_time_us(areq.eventDate, env.received_us, limits.max_future_s)
        ack = AckRecord(
            tenant.id, hardware_id, ts, areq.originatingEventId, areq.response, env.received_us
        )
        return Prepared(env, tenant.id, hardware_id, ack=ack)
    except RejectedMessage as exc:
        return _reject(env, tenant.id, exc.reason, exc.detail)
