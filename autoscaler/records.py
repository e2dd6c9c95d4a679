"""The audit records of a decision: what the intent and outcome events carry in `data`, as values.

An intent (`dev.fleetscale.decision.intent`, subject = the service) is written before anything is applied; it holds
the decision with its inputs' digest, the forecast and the model that made it, every stage with its values, the
reason and binding constraint, current / desired / target per shape, the predicted cost and the SLOs at risk, and
the actions apply mode is about to take. The outcome (`...decision.outcome`) follows with what the actuator
answered. `fleetscale explain` reads both back (`autoscaler/explain.py`).

Shapes are written as the configuration writes them (`H100-80GB/3g.40gb`); counts are integers, rates req/s, costs
USD per hour. Keys are added, never renamed (DESIGN.md section 9).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.model import Decision, ServiceDecision, ServiceObservation, StageTrace
from autoscaler.shapes import Shape
from forecasting import Forecast

OUTCOME_APPLIED = "applied"  # every action applied as asked
OUTCOME_PARTIAL = "partial"  # applied, but less than asked for somewhere (a quota)
OUTCOME_FAILED = "failed"  # at least one action failed
OUTCOME_NOT_APPLIED = "not_applied"  # observe or recommend mode, a hold, or nothing to do
OUTCOME_SKIPPED = "skipped"  # apply mode, but the intent could not be recorded, or the service is backing off


@dataclass(frozen=True, slots=True)
class Action:
    """One set-replicas call apply mode makes: `shape` from the platform's spec (`from_replicas`) to `replicas`."""

    shape: Shape
    from_replicas: int | None
    replicas: int


@dataclass(frozen=True, slots=True)
class Actuation:
    """What one action came to: the count applied (None when the call failed), a note and an error."""

    service: str
    shape: Shape
    requested: int
    applied: int | None
    note: str = ""
    error: str = ""


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float as None: JSON has no infinity, and a decision may hold one (the cost of
    a shape that cannot serve at all). One such number must not make a tick's intents unrecordable, which would
    stop everything the tick applies (safety rule 7)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _json_object(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _json_safe(value) for key, value in data.items()}


def counts(mapping: Mapping[Shape, int]) -> dict[str, int]:
    return {str(shape): n for shape, n in mapping.items()}


def inputs_digest(observation: ServiceObservation | None, forecast: Forecast | None) -> str:
    """A short SHA-256 of what the service's decision was computed from (its metrics, replicas and forecast), so
    that a replay of the same inputs can be shown to give the same decision."""
    parts: dict[str, Any] = {}
    if observation is not None:
        parts["observation"] = [
            observation.request_rps,
            observation.input_tokens_per_s,
            observation.output_tokens_per_s,
            None if observation.sampled_at is None else observation.sampled_at.isoformat(),
            sorted((str(s), r.ready, r.starting, r.spec) for s, r in observation.replicas.items()),
        ]
    if forecast is not None:
        parts["forecast"] = [
            forecast.model,
            forecast.issued_at_s,
            forecast.step_s,
            list(forecast.mean),
            sorted((q, list(v)) for q, v in forecast.quantiles.items()),
        ]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stage(stage: StageTrace) -> dict[str, Any]:
    return {
        "stage": stage.stage.value,
        "reason": stage.reason.value,
        "message": stage.message,
        "replicas": stage.replicas,
        "shape": None if stage.shape is None else str(stage.shape),
        "target": None if stage.target is None else counts(stage.target),
        "demand_rps": stage.demand_rps,
        "binding": None if stage.binding is None else stage.binding.value,
    }


def intent_data(
    decision: Decision,
    service: ServiceDecision,
    *,
    decision_id: str,
    tick: int,
    digest: str,
    actions: Sequence[Action],
) -> dict[str, Any]:
    alternative = service.rejected_alternative
    data = {
        "decision_id": decision_id,
        "tick": tick,
        "mode": decision.mode.value,
        "inputs_digest": digest,
        "tier": service.tier.value,
        "current": counts(service.current),
        "desired": counts(service.desired),
        "target": counts(service.target),
        "reason": service.reason.value,
        "message": service.message,
        "binding_constraint": service.binding_constraint.value,
        "hold": service.hold,
        "forecast": {
            "model": service.forecast_model,
            "predicted_demand_rps": service.predicted_demand_rps,
            "source": service.demand_source,
        },
        "capacity_rps_per_replica": service.capacity_rps_per_replica,
        "capacity_corrections": {
            str(shape): {
                "factor": c.factor,
                "ttft_slowdown": c.ttft_ratio,
                "tpot_slowdown": c.tpot_ratio,
                "explanation": c.sentence(service.service, str(shape)),
            }
            for shape, c in service.corrections.items()
        },
        "cost_usd_per_h": service.cost_usd_per_h,
        "current_cost_usd_per_h": service.current_cost_usd_per_h,
        "fleet_cost_usd_per_h": decision.cost_usd_per_h,
        "budget_usd_per_h": decision.budget_usd_per_h,
        "slo_at_risk": list(service.slo_at_risk),
        "rejected_alternative": None
        if alternative is None
        else {
            "shape": alternative.shape,
            "replicas": alternative.replicas,
            "cost_usd_per_h": alternative.cost_usd_per_h,
            "why": alternative.why_rejected,
        },
        "stages": [_stage(stage) for stage in service.trace],
        "actions": [{"shape": str(a.shape), "from": a.from_replicas, "to": a.replicas} for a in actions],
    }
    return _json_object(data)


def outcome_data(
    decision_id: str,
    tick: int,
    mode: str,
    outcome: str,
    target: Mapping[Shape, int],
    results: Sequence[Actuation],
    note: str = "",
) -> dict[str, Any]:
    return _json_object(
        {
            "decision_id": decision_id,
            "tick": tick,
            "mode": mode,
            "outcome": outcome,
            "target": counts(target),
            "results": [
                {
                    "shape": str(r.shape),
                    "requested": r.requested,
                    "applied": r.applied,
                    "note": r.note,
                    "error": r.error,
                }
                for r in results
            ],
            "note": note,
        }
    )


def outcome_of(results: Sequence[Actuation]) -> str:
    if any(r.error for r in results):
        return OUTCOME_FAILED
    if any(r.applied is not None and r.applied != r.requested for r in results):
        return OUTCOME_PARTIAL
    return OUTCOME_APPLIED if results else OUTCOME_NOT_APPLIED
