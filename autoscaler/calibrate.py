"""`fleetscale profile calibrate`: the loop's capacity correction, estimated from a stretch of history instead of
live, and a measured profile written from it.

The estimate is the loop's own (`autoscaler/correction.py`, the scenario's `policy.capacity_correction`), run over
the history's steps in order as if each were a tick, so that what it prints is what the loop would hold after that
stretch. The measured profile is the model's profile file with an anchor for the shape's GPU type, GPU count and
precision whose decode base and prefill speed are the profile's, slowed by the measured slowdowns (TPOT's for
decode, TTFT's for prefill), and whose sources say where and when they were measured. Only whole-GPU shapes take an
anchor: MIG and fractional shapes are derived from their GPU's (calibrate the whole GPU, or keep the correction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autoscaler.capacity import LatencySlo, Routing, TokenMix
from autoscaler.config import CapacityCorrectionPolicy
from autoscaler.correction import update_correction
from autoscaler.model import CapacityCorrection, ShapeTelemetry
from autoscaler.perf import ReplicaProfile
from autoscaler.shapes import ShapeKind


@dataclass(frozen=True, slots=True)
class Calibration:
    """The correction after the history, the steps read and those that carried evidence, and their span."""

    correction: CapacityCorrection
    steps: int
    evidence_steps: int
    requests: float  # behind the evidence (each step's requests over the step)
    start: datetime | None
    end: datetime | None


def calibrate(
    points: Sequence[tuple[datetime, ShapeTelemetry]],
    *,
    profile: ReplicaProfile,
    slo: LatencySlo,
    mix: TokenMix,
    routing: Routing,
    window_s: float,
    step_s: float,
    policy: CapacityCorrectionPolicy,
    replicas: int | None = None,
) -> Calibration:
    """Run the loop's estimator over `points` (oldest first); `replicas` where the telemetry does not count them."""
    correction: CapacityCorrection | None = None
    evidence = 0
    requests = 0.0
    for at, telemetry in points:
        n = telemetry.replicas if telemetry.replicas else (replicas or 0)
        correction = update_correction(
            correction, telemetry, replicas=n, profile=profile, slo=slo, mix=mix, routing=routing,
            window_s=window_s, tick_s=step_s, now_s=at.timestamp(), policy=policy,
        )  # fmt: skip
        if correction.evidence is not None and correction.updated_s == at.timestamp():
            evidence += 1
            requests += (telemetry.request_rps or 0.0) * step_s
    return Calibration(
        correction or CapacityCorrection(),
        len(points),
        evidence,
        requests,
        points[0][0] if points else None,
        points[-1][0] if points else None,
    )


def mean_mix(tokens: Sequence[tuple[float | None, float | None, float]], default: TokenMix) -> TokenMix:
    """The request-weighted token mix of (input tokens/s, output tokens/s, requests/s) steps; `default` without any."""
    known = [(i, o, r) for i, o, r in tokens if i is not None and o is not None and r > 0]
    requests = sum(r for _, _, r in known)
    if requests <= 0:
        return default
    tokens_in = sum(i for i, _, _ in known if i is not None)
    tokens_out = sum(o for _, o, _ in known if o is not None)
    return TokenMix(tokens_in / requests, max(tokens_out / requests, 1.0)).bucketed()


def measured_anchor(profile: ReplicaProfile, calibration: Calibration, where: str) -> dict[str, Any]:
    """The profile anchor of `profile`'s shape with the measured slowdowns applied (module docstring); `where` says
    what was measured ("Prometheus http://...: service chat"). Raises ValueError for a shape that takes none."""
    shape = profile.shape
    if shape.kind is not ShapeKind.GPU:
        raise ValueError(
            f"{shape} is a {shape.kind} shape, derived from its GPU's profile: a measured anchor is for whole GPUs "
            "(calibrate a service on the whole GPU, or keep the loop's correction)"
        )
    c = calibration.correction
    span = (
        f"{calibration.start:%Y-%m-%d %H:%M}-{calibration.end:%H:%M} UTC"
        if calibration.start and calibration.end
        else ""
    )
    basis = (
        f"fleetscale profile calibrate, {where}, {span}: {calibration.evidence_steps} of {calibration.steps} steps "
        f"with evidence, about {calibration.requests:,.0f} requests"
    )
    return {
        "gpu": shape.gpu_type,
        "gpus": shape.gpus,
        "precision": profile.precision.value,
        "decode_base_ms": {
            "value": round(profile.decode_base_ms.value * c.tpot_ratio, 4),
            "source": f"{basis}; the profile's {profile.decode_base_ms.value:.4g} ms x the observed TPOT slowdown "
            f"{c.tpot_ratio:.3f}",
        },
        "prefill_tokens_per_s": {
            "value": round(profile.prefill_tokens_per_s.value / c.ttft_ratio, 1),
            "source": f"{basis}; the profile's {profile.prefill_tokens_per_s.value:,.0f} tokens/s / the observed TTFT "
            f"slowdown {c.ttft_ratio:.3f}",
        },
    }


def with_anchor(document: Mapping[str, Any], anchor: Mapping[str, Any]) -> dict[str, Any]:
    """A profile document with `anchor` in place of the one for the same GPU type, count and precision."""
    key = (anchor["gpu"], anchor["gpus"], anchor["precision"])
    anchors = [
        a for a in document.get("anchors", []) if (a.get("gpu"), a.get("gpus", 1), a.get("precision", "bf16")) != key
    ]
    return {**document, "anchors": [*anchors, dict(anchor)]}


def describe(calibration: Calibration, service: str, shape: str) -> str:
    """The estimate in sentences, for the command line."""
    c = calibration.correction
    if calibration.evidence_steps == 0:
        return (
            f"{service} on {shape}: no evidence in {calibration.steps} steps (too few requests in the window, a fleet "
            "that kept changing, or no latency histograms): the profile stands, capacity x1.00"
        )
    return (
        f"{c.sentence(service, shape)}\n"
        f"slowdown against the profile: TTFT {c.ttft_ratio:.3f}, TPOT {c.tpot_ratio:.3f} "
        f"(capacity uses {c.slowdown:.3f}); "
        f"{calibration.evidence_steps} of {calibration.steps} steps with evidence, about "
        f"{calibration.requests:,.0f} requests"
    )
