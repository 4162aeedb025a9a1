"""The wire form of a command invocation: seed 002 §4.5.3 JSON, what a device receives.

``command.command`` is the spec, ``command.invocation`` the invocation (its ``id`` is what the
device's ``Acknowledge`` names as ``originatingEventId``; ``parameterValues`` as strings, as in
the seed; ``metadata`` with ``expires``, ``attempt`` and the tariff or signal it delivers), and
``command.parameters`` the typed values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from gridhub.domain.commands import Invocation, Spec
from gridhub.domain.messages import (
    CommandEnvelope,
    CommandInvocation,
    CommandMessage,
    CommandParameter,
    CommandSpec,
    encode,
)

__all__ = ["to_message"]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)


def to_message(inv: Invocation, spec: Spec) -> bytes:
    """The seed 002 §4.5.3 JSON of an invocation (what the device receives)."""
    return encode(
        CommandMessage(
            CommandEnvelope(
                command=CommandSpec(
                    name=spec.name,
                    parameters=[
                        CommandParameter(p.name, p.type.value, p.required) for p in spec.parameters
                    ],
                    namespace="gridhub",
                    description=spec.description or None,
                ),
                invocation=CommandInvocation(
                    id=inv.id,
                    eventDate=_iso(inv.created),
                    initiator="REST",
                    initiatorId=inv.initiator or None,
                    parameterValues={k: _as_text(v) for k, v in inv.parameters.items()},
                    status="Pending",
                    metadata={
                        "expires": _iso(inv.expires),
                        "attempt": str(inv.attempts + 1),
                        **({"origin": inv.origin} if inv.origin else {}),
                    },
                ),
                parameters=inv.parameters,
            )
        )
    )
