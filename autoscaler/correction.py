"""Online correction of the performance model: replicas that are slower (or faster) than their profile says.

A profile derived from specifications is an estimate. The correction takes a replica that is off as one whose every
step (prefill and decode) takes `s` times the profile's: at an arrival rate lambda it behaves as the profile's
replica at s x lambda, with every time s times longer, so its latency is L(lambda) = s x L0(s x lambda) (L0 the
model's). Each tick, per (service, shape) with replicas serving, `s` is estimated from the observed p95 TTFT and
TPOT (the engine's histograms, through the metrics source) at the load each replica carries now (the shape's
request rate over its replicas, the current token mix, the router's smoothing):

- the evidence of one tick is log(observed / L0(s_hat x lambda)), with s_hat the current estimate: a fixed-point
  step whose fixed point is the s that explains the observation (at low load, where L0 hardly moves with the load,
  it is the plain ratio of observed to predicted);
- it counts only when the window behind the quantiles holds `min_requests` requests (a p95 of a dozen requests is
  noise), when the replicas serving have not changed for that window (the quantiles of a window in which the fleet
  grew mix the latencies of fewer replicas into a load spread over more, and would overstate the slowdown), and
  when the model predicts a stable replica at that load;
- it moves the estimate as an exponentially weighted mean of log-ratios, with weight 1 - 2^(-tick / half_life_s),
  each tick's move clipped to a factor of `max_step_ratio`, so that one wild quantile cannot throw it;
- without evidence (no telemetry, too few requests) the log-ratios decay toward 0 (s = 1) with `decay_half_life_s`:
  the profile regains its say when the evidence goes.

TTFT and TPOT are estimated apart (prefill and decode can be off by different amounts); the slower of the two is
the `s` of the capacity. Replicas slower by s meet a latency bound B where the model meets B / s, at s times the
arrival rate, so their capacity at SLO is C0(SLO / s) / s, and the factor is that over C0(SLO), bounded to
[`min_factor`, `max_factor`]. Sizing multiplies each replica's capacity by it.

Pure: state in (`CapacityCorrection`, carried in `ServiceState.corrections`), state out. Loads and ratios are
rounded to three significant digits before the model is asked (its answers are cached), so that a steady fleet does
not pay a capacity search every tick.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from autoscaler.capacity import LatencyEstimate, LatencySlo, Routing, TokenMix, capacity_at_slo, predict_latency
from autoscaler.config import CapacityCorrectionPolicy
from autoscaler.model import CapacityCorrection, Evidence, ShapeTelemetry, usable_metric
from autoscaler.perf import ReplicaProfile


def _round(x: float) -> float:
    return float(f"{x:.3g}")


@functools.lru_cache(maxsize=65536)
def _latency(profile: ReplicaProfile, rps: float, mix: TokenMix, replicas: int, routing: Routing) -> LatencyEstimate:
    return predict_latency(profile, rps, mix, 0.95, replicas, routing)


def _log_evidence(observed: float | None, predicted: float) -> float | None:
    """log(observed / predicted), or None when either is not a usable positive latency."""
    if observed is None or not usable_metric(observed) or observed <= 0:
        return None
    if not math.isfinite(predicted) or predicted <= 0:
        return None
    return math.log(observed / predicted)


def _step(current: float, seen: float | None, weight: float, max_step: float) -> float:
    if seen is None:
        return current
    move = weight * (seen - current)
    return current + max(-max_step, min(max_step, move))


def capacity_factor(
    profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix, replicas: int, routing: Routing, slowdown: float
) -> float:
    """Capacity at the SLO of replicas `slowdown` times slower than the model (C0(SLO / s) / s), over the model's
    own (1 when the model cannot serve at all: there is nothing to correct)."""
    base = capacity_at_slo(profile, slo, mix, replicas, routing).rps
    if base <= 0:
        return 1.0
    s = _round(slowdown)
    scaled = LatencySlo(slo.ttft_s / s, slo.tpot_s / s, slo.quantile)
    return capacity_at_slo(profile, scaled, mix, replicas, routing).rps / s / base


def update_correction(
    previous: CapacityCorrection | None,
    telemetry: ShapeTelemetry | None,
    *,
    replicas: int,
    profile: ReplicaProfile,
    slo: LatencySlo,
    mix: TokenMix,
    routing: Routing,
    window_s: float,
    tick_s: float,
    now_s: float,
    policy: CapacityCorrectionPolicy,
) -> CapacityCorrection:
    """This tick's correction of one shape (see the module docstring)."""
    current = previous or CapacityCorrection()
    since_s = current.replicas_since_s
    if since_s is None or replicas != current.replicas:
        since_s = now_s
    evidence = None
    if now_s - since_s < window_s:  # the fleet changed within the window: wait for evidence of one fleet
        log_ttft, log_tpot = current.log_ttft_ratio, current.log_tpot_ratio
        evidence = current.evidence
    elif (evidence := _evidence(telemetry, replicas, profile, mix, routing, window_s, policy.min_requests)) is None:
        decay = 2.0 ** (-tick_s / policy.decay_half_life_s)
        log_ttft, log_tpot = current.log_ttft_ratio * decay, current.log_tpot_ratio * decay
    else:
        weight = 1.0 - 2.0 ** (-tick_s / policy.half_life_s)
        max_step = math.log(policy.max_step_ratio)
        n = max(replicas, 1)
        # The fixed-point step: the model's latency at the load the replicas behave as under the current estimate.
        at_ttft = _latency(profile, _round(evidence.per_replica_rps * current.ttft_ratio), mix, n, routing)
        at_tpot = _latency(profile, _round(evidence.per_replica_rps * current.tpot_ratio), mix, n, routing)
        ttft = _log_evidence(evidence.ttft_observed_s, at_ttft.ttft_s) if at_ttft.stable else None
        tpot = _log_evidence(evidence.tpot_observed_s, at_tpot.tpot_s) if at_tpot.stable else None
        log_ttft = _step(current.log_ttft_ratio, ttft, weight, max_step)
        log_tpot = _step(current.log_tpot_ratio, tpot, weight, max_step)
    if abs(log_ttft) < 1e-4 and abs(log_tpot) < 1e-4:
        log_ttft = log_tpot = 0.0
    updated = replace(
        current,
        log_ttft_ratio=log_ttft,
        log_tpot_ratio=log_tpot,
        updated_s=now_s,
        evidence=evidence,
        replicas=replicas,
        replicas_since_s=since_s,
    )
    slowdown = updated.slowdown
    factor = capacity_factor(profile, slo, mix, max(replicas, 1), routing, slowdown) if slowdown != 1.0 else 1.0
    return replace(updated, factor=max(policy.min_factor, min(policy.max_factor, factor)))


def _evidence(
    telemetry: ShapeTelemetry | None,
    replicas: int,
    profile: ReplicaProfile,
    mix: TokenMix,
    routing: Routing,
    window_s: float,
    min_requests: float,
) -> Evidence | None:
    if telemetry is None or replicas <= 0:
        return None
    rps = telemetry.request_rps
    if rps is None or not usable_metric(rps) or rps <= 0:
        return None
    requests = rps * window_s
    if requests < min_requests:
        return None
    if telemetry.ttft_p95_s is None and telemetry.tpot_p95_s is None:
        return None
    per_replica = rps / replicas
    predicted = _latency(profile, _round(per_replica), mix, replicas, routing)
    if not predicted.stable:
        return None  # the model says these replicas are overloaded: its latency there is no yardstick
    return Evidence(
        per_replica,
        telemetry.ttft_p95_s,
        predicted.ttft_s if telemetry.ttft_p95_s is not None else None,
        telemetry.tpot_p95_s,
        predicted.tpot_s if telemetry.tpot_p95_s is not None else None,
        requests,
    )
