"""Stage 2, sizing: demand x performance -> replicas per candidate shape, and the cheapest shape that meets the SLO.

For demand lambda (req/s, already the quantile the service's tier is sized for) and a candidate shape whose
replicas each sustain C(n) req/s at the SLO when there are n of them behind one router (`pooled_capacity`; behind
a least-loaded router, more replicas smooth each one's arrivals, so C grows with n; behind the service's
`routing: round_robin` or `random`, C(n) = C(1)), the shape needs the fewest n with n x C(n) >= lambda,
bounded by min_replicas and max_replicas. Its cost is n x the price of one replica. The cheapest shape whose n
fits max_replicas wins; a service stays on its current shape unless the cheaper one saves at least
`shape_switch_min_savings_ratio` (moving costs a cold start). Mixing shapes within a service would need
capacity-weighted routing, which neither Kubernetes Services nor Ray Serve do, so a service is sized on one shape
at a time.

Worked example: 130 req/s, H100-80GB replicas sustaining 14.8 req/s each at the SLO when there are 9 (and
less than 130 / 8 = 16.25 req/s each when there are 8) -> 9 replicas, 9 x $6.88 = $61.92/h.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from autoscaler.capacity import Capacity, LatencySlo, TokenMix, pooled_capacity
from autoscaler.compiled import Candidate, ServicePlan
from autoscaler.model import Alternative, Constraint, Reason
from autoscaler.shapes import Shape


@dataclass(frozen=True, slots=True)
class Option:
    """One candidate shape evaluated at a demand."""

    candidate: Candidate
    capacity: Capacity | None
    replicas: int
    cost_usd_per_h: float
    feasible: bool
    why: str = ""
    needed: int = 0  # replicas the demand needs, before min_replicas

    @property
    def shape(self) -> Shape:
        return self.candidate.shape

    @property
    def capacity_rps(self) -> float:
        return 0.0 if self.capacity is None else self.capacity.rps


@dataclass(frozen=True, slots=True)
class Sizing:
    """The outcome of sizing one service: the chosen option and the rest, for the explanation."""

    demand_rps: float
    mix: TokenMix
    chosen: Option | None
    options: tuple[Option, ...]
    reason: Reason
    binding: Constraint
    message: str
    rejected: Alternative | None


def evaluate(candidate: Candidate, plan: ServicePlan, demand_rps: float, mix: TokenMix, factor: float = 1.0) -> Option:
    """How many replicas of `candidate` the demand needs, and whether that is feasible. `factor` corrects each
    replica's capacity by what its latencies showed (`autoscaler/correction.py`): n replicas of capacity C(n)
    serve n x C(n) x factor."""
    service = plan.service
    if candidate.profile is None:
        return Option(candidate, None, 0, math.inf, False, candidate.rejected)
    slo = LatencySlo(service.slo.ttft_p95_s, service.slo.tpot_p95_s, service.slo.quantile)
    pool = pooled_capacity(candidate.profile, slo, mix, service.routing)
    single = pool.at(1)
    if single.rps <= 0:
        return Option(candidate, single, 0, math.inf, False, f"cannot meet the SLO at any load: {single.reason}")
    needed = pool.replicas_for(demand_rps / factor)
    replicas = max(service.min_replicas, needed)
    capacity = pool.at(replicas)
    if factor != 1.0:
        capacity = replace(capacity, rps=capacity.rps * factor)
    if replicas > service.max_replicas:
        return Option(
            candidate,
            capacity,
            replicas,
            replicas * candidate.price_usd_per_h,
            False,
            f"needs {replicas} replicas of {capacity.rps:.3g} req/s; max_replicas is {service.max_replicas}",
        )
    return Option(candidate, capacity, replicas, replicas * candidate.price_usd_per_h, True, needed=needed)


def size_service(
    plan: ServicePlan,
    demand_rps: float,
    mix: TokenMix,
    current_shape: Shape | None,
    switch_savings_ratio: float,
    only_shape: Shape | None = None,
    factors: Mapping[Shape, float] | None = None,
) -> Sizing:
    """Pick the shape and replica count for `demand_rps` (see the module docstring); `factors` are the capacity
    corrections per shape (1 where none)."""
    service = plan.service
    candidates = plan.candidates
    if only_shape is not None:
        candidates = tuple(c for c in candidates if c.shape == only_shape) or candidates
    factors = factors or {}
    options = tuple(evaluate(c, plan, demand_rps, mix, factors.get(c.shape, 1.0)) for c in candidates)
    feasible = sorted(
        (o for o in options if o.feasible),
        key=lambda o: (o.cost_usd_per_h, o.shape != current_shape, o.candidate.gpu_share, str(o.shape)),
    )
    if not feasible:
        return _best_effort(options, demand_rps, mix, plan)
    best = feasible[0]
    chosen = best
    keep_note = ""
    if current_shape is not None and best.shape != current_shape:
        current = next((o for o in feasible if o.shape == current_shape), None)
        if current is not None and current.cost_usd_per_h > 0:
            savings = (current.cost_usd_per_h - best.cost_usd_per_h) / current.cost_usd_per_h
            if savings < switch_savings_ratio:
                chosen = current
                keep_note = (
                    f"; stays on {current.shape}: {best.shape} would save only {savings:.0%} "
                    f"(< {switch_savings_ratio:.0%})"
                )
    assert chosen.capacity is not None
    rejected = _cheapest_other(options, chosen)
    if chosen.replicas == service.min_replicas and chosen.needed < chosen.replicas:
        reason, binding = Reason.AT_MIN_REPLICAS, Constraint.MIN_REPLICAS
    else:
        reason, binding = Reason.STEADY, Constraint.of_capacity(chosen.capacity.binding)
    routing = "" if service.routing.pools else f", {service.routing} routing: no pooling credit"
    message = (
        f"{chosen.replicas} x {chosen.shape} for {demand_rps:.3g} req/s of {mix.mean_input_tokens:,.0f}/"
        f"{mix.mean_output_tokens:,.0f} tokens: {chosen.capacity.rps:.3g} req/s per replica at the SLO (bound by "
        f"{chosen.capacity.binding}{routing}), ${chosen.cost_usd_per_h:.2f}/h{keep_note}"
    )
    return Sizing(demand_rps, mix, chosen, options, reason, binding, message, rejected)


def _best_effort(options: tuple[Option, ...], demand_rps: float, mix: TokenMix, plan: ServicePlan) -> Sizing:
    """No shape meets the SLO within max_replicas: take the one that serves the most at max_replicas."""
    service = plan.service
    serving = [o for o in options if o.capacity is not None and o.capacity.rps > 0]
    if not serving:
        reasons = "; ".join(f"{o.shape}: {o.why}" for o in options) or "no candidate shape on this fleet"
        return Sizing(
            demand_rps, mix, None, options, Reason.NO_FEASIBLE_SHAPE, Constraint.NO_FEASIBLE_SHAPE,
            f"no shape can serve {service.model} within the SLO: {reasons}", None,
        )  # fmt: skip
    best = max(serving, key=lambda o: (o.capacity_rps * service.max_replicas, -o.candidate.price_usd_per_h))
    replicas = service.max_replicas
    chosen = Option(best.candidate, best.capacity, replicas, replicas * best.candidate.price_usd_per_h, True)
    served = best.capacity_rps * replicas
    message = (
        f"{replicas} x {best.shape} (max_replicas) serve {served:.3g} req/s at the SLO; demand is "
        f"{demand_rps:.3g} req/s"
    )
    return Sizing(
        demand_rps, mix, chosen, options, Reason.LIMITED_BY_MAX_REPLICAS, Constraint.MAX_REPLICAS, message,
        _cheapest_other(options, chosen),
    )  # fmt: skip


def _cheapest_other(options: tuple[Option, ...], chosen: Option) -> Alternative | None:
    others = [o for o in options if o.shape != chosen.shape]
    if not others:
        return None
    feasible = [o for o in others if o.feasible]
    if feasible:
        other = min(feasible, key=lambda o: o.cost_usd_per_h)
        delta = other.cost_usd_per_h - chosen.cost_usd_per_h
        if delta > 0.005:
            why = f"costs ${delta:.2f}/h more"
        elif delta >= 0:
            why = "costs the same; ties go to the current shape, then to the smaller replica"
        else:
            why = f"saves ${-delta:.2f}/h but a shape change must save at least the switch threshold"
        return Alternative(str(other.shape), other.replicas, other.cost_usd_per_h, why)
    other = others[0]
    return Alternative(str(other.shape), other.replicas, other.cost_usd_per_h, other.why)
