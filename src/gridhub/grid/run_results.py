"""How on-demand grid results are written back: identifiers, alert types, canonical messages.

Results are messages of the virtual devices ``grid:<node>`` (type ``grid-node``, as the outage
monitor's), sent through the ingest pipeline: durable, deduplicated by (device, identifier,
time) — so running a service twice over the same period overwrites nothing and adds nothing —
and readable through the normal series, latest and alerts API. Series are stamped at the start
of the interval they describe (like meter readings); events at the end of the period judged.

``grid:*`` series and alerts are the DSO's (issue #7, Q4). Owner policies are another module's
(``access``); :func:`result_owner` is the one place that says who owns what a service writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gridhub.domain.messages import (
    AlertRequest,
    DeviceAlert,
    DeviceMeasurements,
    MeasurementsRequest,
    encode,
)
from gridhub.grid.outage_monitor import grid_device

if TYPE_CHECKING:
    from gridhub.grid.losses import LossReport
    from gridhub.grid.run_inputs import Period

__all__ = [
    "BAD_DATA",
    "DEMAND_RESPONSE_PLAN",
    "IDENTIFIERS",
    "LOSSES_ALARM",
    "QUALITY_FAILED",
    "RECONFIGURATION_PROPOSED",
    "alert_message",
    "loss_alarm",
    "loss_values",
    "with_missing",
    "result_owner",
    "series_message",
]

#: derived series of the grid services: (identifier, unit), registered per tenant on first use
IDENTIFIERS: tuple[tuple[str, str], ...] = (
    ("grid.losses.technical", "kWh"),
    ("grid.losses.unexplained", "kWh"),
    ("grid.losses.unexplained.std", "kWh"),
    ("grid.energy.in", "kWh"),
    ("grid.energy.metered", "kWh"),
    ("grid.voltage.estimated", "pu"),
    ("grid.voltage.estimated.std", "pu"),
    ("grid.power.estimated", "kW"),
    ("grid.power.estimated.std", "kW"),
    ("grid.forecast.consumption", "kW"),
    ("grid.forecast.production", "kW"),
    ("grid.balancing.planned", "kW"),
    ("grid.balancing.desired", "kW"),
    ("grid.quality.share.in.band", "%"),
)

# alert types (the seed's dotted style), level in brackets
LOSSES_ALARM = "grid.losses.alarm"  # Warning / Critical; metadata: ranked suspect sections
BAD_DATA = "grid.estimation.bad.data"  # Warning: a measurement the estimator removed
RECONFIGURATION_PROPOSED = "grid.reconfiguration.proposal"  # Info: switch changes
QUALITY_FAILED = "grid.quality.failed"  # Warning: an EN 50160 week failed at a point
DEMAND_RESPONSE_PLAN = "grid.demand.response.plan"  # Info / Warning when infeasible


def result_owner(_identifier_or_type: str) -> str:
    """The stakeholder kind owning a grid service's output: always the DSO (issue #7, Q4).
    The seam for owner policies: when ``access`` lands, writes are declared with this owner."""
    return "dso"


def _when(at: datetime) -> str:
    return at.isoformat()


def series_message(device: str, at: datetime, values: Mapping[str, float]) -> bytes:
    """One ``DeviceMeasurements`` of ``device`` at ``at`` (canonical JSON bytes)."""
    request = MeasurementsRequest(
        {k: float(v) for k, v in values.items()}, updateState=True, eventDate=_when(at)
    )
    return encode(DeviceMeasurements(device, request))


def alert_message(
    device: str, at: datetime, kind: str, level: str, text: str, metadata: dict[str, Any]
) -> bytes:
    """One ``DeviceAlert`` of ``device`` (canonical JSON bytes); ``owner`` joins the metadata."""
    facts = {**metadata, "owner": result_owner(kind)}
    request = AlertRequest(kind, level, text[:1000], eventDate=_when(at), metadata=facts)  # type: ignore[arg-type]
    return encode(DeviceAlert(device, request))


def with_missing(report: LossReport, missing: list[str]) -> LossReport:
    """The report with the sites the store had too few readings of among its missing ones."""
    from dataclasses import replace

    extra = tuple(s for s in missing if s not in report.missing_sites)
    return replace(report, missing_sites=report.missing_sites + extra) if extra else report


def loss_values(report: LossReport) -> dict[str, float]:
    """G4's series on ``grid:<substation>`` (kWh over the period, stamped at its start)."""
    return {
        "grid.energy.in": report.energy_in_kwh,
        "grid.energy.metered": report.metered_kwh,
        "grid.losses.technical": report.technical_losses_kwh,
        "grid.losses.unexplained": report.unexplained_kwh,
        "grid.losses.unexplained.std": report.unexplained_std_kwh,
    }


def loss_alarm(report: LossReport, period: Period) -> bytes:
    """The ``grid.losses.alarm`` of a significant imbalance: ranked suspects in metadata, so an
    inspector knows which feeder to walk first."""
    facts = {
        "substation": report.substation,
        "periodStart": period.start.isoformat(),
        "periodEnd": period.end.isoformat(),
        "energyInKwh": report.energy_in_kwh,
        "meteredKwh": report.metered_kwh,
        "technicalLossesKwh": report.technical_losses_kwh,
        "unexplainedKwh": report.unexplained_kwh,
        "unexplainedStdKwh": report.unexplained_std_kwh,
        "unexplainedFraction": report.unexplained_fraction,
        "missingSites": list(report.missing_sites[:50]),
        "suspects": [
            {
                "rank": rank,
                "section": s.section,
                "method": s.method,
                "score": s.score,
                "unexplainedKwh": s.unexplained_kwh,
                "voltageResidualPu": s.voltage_residual_pu,
                "sites": s.sites,
            }
            for rank, s in enumerate(report.suspects, 1)
        ],
    }
    first = report.suspects[0].section if report.suspects else "none"
    text = (
        f"{report.unexplained_kwh:.1f} kWh unexplained at {report.substation} "
        f"({report.unexplained_fraction:.1%} of the energy in, "
        f"{report.unexplained_kwh / report.unexplained_std_kwh:.1f}σ); most suspect: {first}"
    )
    level = "Critical" if report.level == "critical" else "Warning"
    return alert_message(
        grid_device(report.substation), period.end, LOSSES_ALARM, level, text, facts
    )
