"""The decision: one tick's observation and forecasts in, explained replica targets out.

`decide` is pure: a function of (observation, forecasts, compiled configuration, policy state, now) with no I/O,
no clock reads and no globals. The controller, the Ray Serve policy, the what-if simulator and the load tests all
call this one function (through the loop, `autoscaler/loop.py`).

One time: `now`, aware (a naive datetime is refused: its meaning would depend on the process's time zone). Samples
are judged against it (too old: stale; further ahead than `metrics_max_future_skew_s`: refused), and so are
forecasts (`Forecast.issued_at_s`, Unix seconds: older than `forecast_max_age_s`, or from the future, and the
observed rate stands).

The placement in the decision is of the final targets (it runs last): an actuator that follows
`Decision.placement.steps()` starts exactly the replicas the targets add and stops only those they remove.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from autoscaler.budget import BudgetCap, BudgetInput, BudgetOutcome, apply_budget, effective_cap
from autoscaler.capacity import LatencySlo, TokenMix
from autoscaler.compiled import CompiledScenario, ServicePlan
from autoscaler.config import Mode, Policy, Service
from autoscaler.correction import update_correction
from autoscaler.efficiency import indicators, stranding_burns
from autoscaler.efficiency import update as update_efficiency
from autoscaler.model import (
    CapacityCorrection,
    Constraint,
    Decision,
    Observation,
    PolicyState,
    Reason,
    ServiceDecision,
    ServiceObservation,
    ServiceState,
    ShapeReplicas,
    Stage,
    StageTrace,
    require_aware,
    usable_metric,
)
from autoscaler.placement.targets import Target, TargetFit, fit_targets, synthetic_inventory
from autoscaler.shapes import Shape
from autoscaler.sizing import Option, Sizing, evaluate, size_service
from autoscaler.stabilize import StabilizeInput, StabilizeOutcome, enforce_cap, stabilize_service
from autoscaler.token_mix import MixEstimate, update_mix
from forecasting import Forecast

STAGE_ORDER = (Stage.FORECAST, Stage.SIZE, Stage.BUDGET, Stage.STABILIZE, Stage.PLACE)


@dataclass(frozen=True, slots=True)
class Demand:
    """Stage 1's result for one service."""

    rps: float
    fallback_rps: float
    mix: TokenMix
    source: str
    hold: Reason | None = None
    hold_message: str = ""
    mix_estimate: MixEstimate | None = None  # carried to the next tick in the service's state
    model: str | None = None  # the forecast's model, when a forecast set the demand


@dataclass(slots=True)
class _Work:
    """One service's values as they pass the stages (local to one `decide` call)."""

    plan: ServicePlan
    observed: ServiceObservation
    demand: Demand
    current: dict[Shape, int] = field(default_factory=dict)  # observed.current(), read by every stage
    sizing: Sizing | None = None
    budget: BudgetOutcome | None = None
    replicas: int = 0  # the budget stage's count of the chosen shape (what enforce_cap never gives back below)
    trace: list[StageTrace] = field(default_factory=list)
    corrections: dict[Shape, CapacityCorrection] = field(default_factory=dict)  # this tick's, per shape

    @property
    def factors(self) -> dict[Shape, float]:
        return {shape: c.factor for shape, c in self.corrections.items()}

    @property
    def service(self) -> Service:
        return self.plan.service


def decide(
    observation: Observation,
    forecasts: Mapping[str, Forecast],
    config: CompiledScenario,
    state: PolicyState,
    now: datetime,
) -> tuple[Decision, PolicyState]:
    """Decide every service's replica targets for this tick.

    Stages, in this order (asserted by a test; changing the order is an API change):

    1. forecast: demand = the tier's forecast quantile, at its peak over the horizon (the slowest candidate
       shape's cold start plus a tick), never below the observed rate; stale, missing, NaN, negative or future
       metrics mark the service for a hold; a stale forecast is ignored (the observed rate stands).
    2. size: per candidate shape, the fewest replicas whose capacity at SLO behind the service's router covers the
       demand, within [min, max]; the cheapest wins (the current shape unless the cheaper one saves enough to pay
       a cold start).
    3. budget: over the cap, lower tiers fall back to a lower quantile, then lose replicas toward min_replicas; an
       unevaluable budget allows no scale-up beyond current spend.
    4. stabilize: bounded scale-up, scale-down after a window and at a limited rate, safety holds (bad metrics,
       another writer in apply mode); held replicas never take the fleet over the budget cap.
    5. place: the stabilized targets are placed on the fleet's nodes (gangs on one node, valid MIG layouts,
       shares; current replicas stay put); a scale-up that max_nodes cannot hold is not promised: lower tiers give
       way first, never below what runs, and the decision says what is missing ("needs 2 more H100-80GB nodes in
       pool p5"). The targets are what was placed, and the placement is the decision's.

    Raises ValueError for a naive `now`.
    """
    now = require_aware(now, "decide(now)")
    now_s = now.timestamp()
    policy = config.scenario.policy
    works = [
        _forecast(plan, observation, forecasts.get(name), now_s, config, state.services.get(name))
        for name, plan in config.plans.items()
    ]
    for work in works:
        _correct(work, config, state.services.get(work.service.name), now_s)
        _size(work, config)
    cap = _budget(works, observation, now, config)
    outcomes, inputs = _stabilize(works, state, config, now_s, cap)
    efficiency = config.scenario.efficiency
    consolidate = efficiency.consolidate_when_burning and stranding_burns(
        efficiency.objectives, state.efficiency, now_s
    )
    notes, fit = _place(works, outcomes, inputs, observation, config, consolidate)
    decision, new_state = _assemble(works, outcomes, inputs, cap, notes, fit, now, policy.mode)
    values = indicators(fit.fragmentation, observation.gpus, efficiency)
    statuses, ledgers = update_efficiency(efficiency.objectives, values, state.efficiency, now_s)
    burning = tuple(status.sentence() for status in statuses if status.burning)
    decision = replace(decision, efficiency=statuses, notes=decision.notes + burning)
    return decision, replace(new_state, efficiency=ledgers)


# ── 1. forecast ──────────────────────────────────────────────────────────────────────────────────────────────────


def _forecast(
    plan: ServicePlan,
    observation: Observation,
    forecast: Forecast | None,
    now_s: float,
    config: CompiledScenario,
    previous: ServiceState | None,
) -> _Work:
    service = plan.service
    observed = observation.services.get(service.name) or ServiceObservation(request_rps=None)
    estimate = previous.mix if previous is not None else None
    demand = _demand(service, observed, forecast, now_s, plan.horizon_s, estimate, config)
    work = _Work(plan, observed, demand, observed.current())
    work.trace.append(
        StageTrace(
            Stage.FORECAST,
            demand.hold or Reason.STEADY,
            demand.hold_message or demand.source,
            demand_rps=None if demand.hold else demand.rps,
            binding=_BINDING_OF.get(demand.hold) if demand.hold else None,
        )
    )
    return work


def _demand(
    service: Service,
    observed: ServiceObservation,
    forecast: Forecast | None,
    now_s: float,
    horizon_s: float,
    estimate: MixEstimate | None,
    config: CompiledScenario,
) -> Demand:
    policy = config.scenario.policy
    default_mix = (
        estimate.mix.bucketed() if estimate else TokenMix(service.mean_input_tokens, service.mean_output_tokens)
    )
    rps = observed.request_rps
    why = _unusable(observed, now_s, policy)
    if why is not None:
        reason, sentence = why
        return Demand(0.0, 0.0, default_mix, "", reason, f"{sentence}: holding, never scaling down", estimate)
    assert rps is not None and observed.sampled_at is not None
    mix = default_mix
    tokens_in, tokens_out = observed.input_tokens_per_s, observed.output_tokens_per_s
    if rps > 0 and usable_metric(tokens_in) and usable_metric(tokens_out) and tokens_in and tokens_out:
        seen = TokenMix(tokens_in / rps, max(tokens_out / rps, 1.0))
        estimate = update_mix(estimate, seen, rps, now_s, policy.token_mix_half_life_s, policy.tick_s)
        mix = estimate.mix.bucketed()
    quantile = policy.forecast_quantile[service.tier]
    fallback_q = min(policy.budget_fallback_quantile, quantile)
    if forecast is None:
        return Demand(rps, rps, mix, f"observed {rps:.3g} req/s (no forecast)", mix_estimate=estimate)
    forecast_age = now_s - forecast.issued_at_s
    if forecast_age > policy.forecast_max_age_s or -forecast_age > policy.metrics_max_future_skew_s:
        when = f"{forecast_age:.0f} s ago" if forecast_age >= 0 else f"{-forecast_age:.0f} s in the future"
        return Demand(
            rps, rps, mix,
            f"observed {rps:.3g} req/s: the {forecast.model} forecast was issued {when} (forecast_max_age_s "
            f"{policy.forecast_max_age_s:g}) and is ignored", mix_estimate=estimate,
        )  # fmt: skip
    peak, used = forecast.peak_over(quantile, horizon_s)
    low, _ = forecast.peak_over(fallback_q, horizon_s)
    if not math.isfinite(peak):
        return Demand(rps, rps, mix, f"observed {rps:.3g} req/s (forecast has no usable step)", mix_estimate=estimate)
    peak, low = max(0.0, peak), max(0.0, min(low, peak))
    source = f"p{used * 100:g} of {forecast.model} forecast over {horizon_s / 60:.1f} min: {peak:.3g} req/s"
    if rps > peak:
        source += f"; observed {rps:.3g} req/s is higher and wins"
    return Demand(max(peak, rps), low, mix, source, mix_estimate=estimate, model=forecast.model)


def _unusable(observed: ServiceObservation, now_s: float, policy: Policy) -> tuple[Reason, str] | None:
    """Why a service's metrics cannot be decided on (the hold's reason and a sentence), or None when they can."""
    rps = observed.request_rps
    problem = f" ({observed.problem})" if observed.problem else ""
    if observed.sampled_at is None or rps is None:
        return Reason.HOLD_MISSING_METRICS, f"no metrics{problem}"
    if not usable_metric(rps):
        return Reason.HOLD_BAD_METRICS, f"unusable request rate {rps!r}{problem}"
    age = now_s - observed.sampled_at.timestamp()
    if age > policy.metrics_max_age_s:
        return (
            Reason.HOLD_STALE_METRICS,
            f"metrics are {age:.0f} s old (metrics_max_age_s {policy.metrics_max_age_s:g})",
        )
    if -age > policy.metrics_max_future_skew_s:
        return Reason.HOLD_BAD_METRICS, (
            f"metrics sampled {-age:.0f} s in the future (metrics_max_future_skew_s "
            f"{policy.metrics_max_future_skew_s:g}): a clock is wrong"
        )
    return None


# ── 2. size ──────────────────────────────────────────────────────────────────────────────────────────────────────


def _correct(work: _Work, config: CompiledScenario, previous: ServiceState | None, now_s: float) -> None:
    """Each shape's capacity correction after this tick's latencies (`autoscaler/correction.py`): shapes that
    report learn, the others decay toward their profile. A service that holds learns nothing from its metrics."""
    policy = config.scenario.policy
    settings = policy.capacity_correction
    if not settings.enabled:
        return
    telemetry = {} if work.demand.hold is not None else work.observed.telemetry
    known = previous.corrections if previous is not None else {}
    if not known and not telemetry:  # nothing reported, nothing learned: the common case of a fleet without telemetry
        return
    service = work.service
    slo = LatencySlo(service.slo.ttft_p95_s, service.slo.tpot_p95_s, service.slo.quantile)
    for shape in {*known, *telemetry}:
        candidate = work.plan.candidate(shape)
        if candidate is None or candidate.profile is None:
            continue
        replicas = work.observed.replicas.get(shape)
        seen = telemetry.get(shape)
        ready = replicas.ready if replicas is not None else 0
        if seen is not None and seen.replicas is not None and seen.replicas > 0:
            ready = seen.replicas
        work.corrections[shape] = update_correction(
            known.get(shape),
            seen,
            replicas=ready,
            profile=candidate.profile,
            slo=slo,
            mix=work.demand.mix,
            routing=service.routing,
            window_s=service.metrics.rate_window_s,
            tick_s=policy.tick_s,
            now_s=now_s,
            policy=settings,
        )


def _primary_shape(current: Mapping[Shape, int]) -> Shape | None:
    if not current:
        return None
    return max(current, key=lambda s: (current[s], str(s)))


def _size(work: _Work, config: CompiledScenario) -> None:
    policy = config.scenario.policy
    current_shape = _primary_shape(work.current)
    if work.demand.hold is not None:
        work.sizing = _held_sizing(work, current_shape)
        work.trace.append(StageTrace(Stage.SIZE, work.demand.hold, "not sized: holding"))
        return
    sizing = size_service(
        work.plan,
        work.demand.rps,
        work.demand.mix,
        current_shape,
        policy.shape_switch_min_savings_ratio,
        factors=work.factors,
    )
    work.sizing = sizing
    chosen = sizing.chosen
    message = sizing.message
    correction = work.corrections.get(chosen.shape) if chosen is not None else None
    if chosen is not None and correction is not None and (correction.factor != 1.0 or correction.evidence is not None):
        message += f" ({correction.sentence(work.service.name, str(chosen.shape))})"
    work.trace.append(
        StageTrace(
            Stage.SIZE,
            sizing.reason,
            message,
            replicas=chosen.replicas if chosen is not None else 0,
            shape=chosen.shape if chosen is not None else None,
            binding=sizing.binding,
        )
    )


def _held_sizing(work: _Work, shape: Shape | None) -> Sizing:
    """A sizing that keeps what exists, so that the budget stage counts a held service's cost."""
    existing = work.current
    if shape is None:  # nothing exists yet: the cheapest shape that holds the model, at min_replicas
        usable = [c for c in work.plan.candidates if c.profile is not None]
        candidate = min(usable, key=lambda c: (c.price_usd_per_h, str(c.shape)), default=None)
        count = work.service.min_replicas
    else:
        candidate = work.plan.candidate(shape)
        count = existing[shape]
    chosen = None
    if candidate is not None:
        base = evaluate(candidate, work.plan, 0.0, work.demand.mix, work.factors.get(candidate.shape, 1.0))
        chosen = Option(candidate, base.capacity, count, count * candidate.price_usd_per_h, True)
    hold = work.demand.hold or Reason.STEADY
    return Sizing(0.0, work.demand.mix, chosen, (), hold, _BINDING_OF.get(hold, Constraint.MIN_REPLICAS), "held", None)


# ── 3. budget ────────────────────────────────────────────────────────────────────────────────────────────────────


def _unit_price(plan: ServicePlan, shape: Shape, config: CompiledScenario) -> float:
    candidate = plan.candidate(shape)
    if candidate is not None:
        return candidate.price_usd_per_h
    pool = config.pool_for(shape)
    return config.price_of(shape, pool) if pool is not None else 0.0


def _budget(works: list[_Work], observation: Observation, now: datetime, config: CompiledScenario) -> BudgetCap:
    current_cost = sum(n * _unit_price(w.plan, shape, config) for w in works for shape, n in w.current.items())
    cap = effective_cap(config.scenario.budget, now, observation.month_to_date_spend_usd, current_cost)
    items = []
    for work in works:
        assert work.sizing is not None
        plan, demand = work.plan, work.demand

        def fallback(
            option: Option,
            plan: ServicePlan = plan,
            demand: Demand = demand,
            factors: dict[Shape, float] = work.factors,
        ) -> Option | None:
            if demand.hold is not None or demand.fallback_rps >= demand.rps:
                return None
            return evaluate(option.candidate, plan, demand.fallback_rps, demand.mix, factors.get(option.shape, 1.0))

        items.append(
            BudgetInput(work.service.name, work.service.tier, work.service.min_replicas, work.sizing, fallback)
        )
    outcomes = apply_budget(items, cap)
    for work in works:
        outcome = outcomes[work.service.name]
        work.budget = outcome
        work.replicas = outcome.replicas
        reason = outcome.reason or (Reason.BUDGET_UNKNOWN if not cap.evaluable else Reason.STEADY)
        work.trace.append(
            StageTrace(
                Stage.BUDGET, reason, outcome.message, replicas=outcome.replicas, binding=_BINDING_OF.get(reason)
            )
        )
    return cap


# ── 4. stabilize ─────────────────────────────────────────────────────────────────────────────────────────────────


def _stabilize(
    works: list[_Work], state: PolicyState, config: CompiledScenario, now_s: float, cap: BudgetCap
) -> tuple[dict[str, StabilizeOutcome], list[StabilizeInput]]:
    policy = config.scenario.policy
    check_writers = policy.mode is Mode.APPLY  # in observe and recommend modes nobody applies: no writer to fight
    inputs: list[StabilizeInput] = []
    outcomes: dict[str, StabilizeOutcome] = {}
    for work in works:
        service = work.service
        chosen = work.sizing.chosen if work.sizing else None
        primary = chosen.shape if chosen is not None else None
        shapes = set(work.observed.replicas) | ({primary} if primary is not None else set())
        prices = {shape: _unit_price(work.plan, shape, config) for shape in shapes}
        current: dict[Shape, ShapeReplicas] = dict(work.observed.replicas)
        item = StabilizeInput(
            service.name, service.tier, service.min_replicas, service.max_replicas, primary, work.replicas,
            current, prices, work.demand.hold, work.demand.hold_message,
        )  # fmt: skip
        inputs.append(item)
        previous = state.services.get(service.name)
        outcomes[service.name] = stabilize_service(item, previous, policy, now_s, check_writers)
    outcomes = enforce_cap(inputs, outcomes, cap.usd_per_h)
    for work, item in zip(works, inputs, strict=True):
        outcome = outcomes[item.name]
        reason = outcome.reason or Reason.STEADY
        work.trace.append(
            StageTrace(
                Stage.STABILIZE,
                reason,
                outcome.message,
                replicas=sum(outcome.target.values()),
                target=dict(outcome.target),
                binding=_BINDING_OF.get(reason),
            )
        )
    return outcomes, inputs


# ── 5. place ─────────────────────────────────────────────────────────────────────────────────────────────────────


def _place(
    works: list[_Work],
    outcomes: dict[str, StabilizeOutcome],
    inputs: list[StabilizeInput],
    observation: Observation,
    config: CompiledScenario,
    consolidate: bool = False,
) -> tuple[tuple[str, ...], TargetFit]:
    """Place the stabilized targets; where the pools cannot hold them, cut them to what was placed (in `outcomes`).
    With `consolidate`, placement may empty a node by moving its replicas (autoscaler/placement/targets.py)."""
    targets = []
    for work, item in zip(works, inputs, strict=True):
        target = outcomes[item.name].target
        primary = item.primary
        wanted = target.get(primary, 0) if primary is not None else 0
        others = {s: n for s, n in target.items() if s != primary and n > 0}
        running = item.current[primary].existing if primary is not None and primary in item.current else 0
        # Placement may only hold back new replicas: those that run stay (a scale-down is stabilization's to make,
        # through its window), min_replicas stays, and a held service keeps what it holds (safety rule 1).
        held = work.demand.hold is not None or outcomes[item.name].reason is Reason.HOLD_CONFLICT
        floor = wanted if held else min(wanted, max(running, work.service.min_replicas))
        targets.append(Target(item.name, item.tier, primary, wanted, floor, others))
    if observation.nodes is not None:
        inventory = list(observation.nodes)
    else:
        counts = {name: pool.nodes for name, pool in observation.pools.items()}
        inventory = synthetic_inventory(config.pools, counts, config.catalog)
    fit = fit_targets(
        targets,
        inventory,
        observation.placed,
        config.pools,
        config.pool_price_usd_per_gpu_h,
        config.catalog,
        consolidate=consolidate and observation.nodes is not None,  # moves need a real inventory to move from
    )
    placed: dict[str, dict[Shape, int]] = {}
    for replica in fit.placement.replicas:
        shapes = placed.setdefault(replica.service, {})
        shapes[replica.shape] = shapes.get(replica.shape, 0) + 1
    for work, item in zip(works, inputs, strict=True):
        outcome = outcomes[item.name]
        name = item.name
        # The targets are what was placed (shapes as the catalog names them: placement canonicalizes).
        got = {s: placed.get(name, {}).get(config.catalog.canonical_shape(s), 0) for s in outcome.target}
        if got != dict(outcome.target):
            reason = Reason.LIMITED_BY_POOL_CAPACITY
            message = fit.cut.get(name) or "; ".join(
                f"{n - got[s]} x {s} cannot be placed" for s, n in outcome.target.items() if got[s] < n
            )
            outcomes[name] = replace(outcome, target=got, reason=reason, message=message)
        else:
            reason, message = Reason.STEADY, "placed"
        work.trace.append(
            StageTrace(
                Stage.PLACE,
                reason,
                message,
                replicas=sum(got.values()),
                target=got,
                binding=Constraint.POOL_CAPACITY if reason is Reason.LIMITED_BY_POOL_CAPACITY else None,
            )
        )
    return fit.notes, fit


# ── the decision ─────────────────────────────────────────────────────────────────────────────────────────────────

_BINDING_OF = {
    Reason.LIMITED_BY_BUDGET: Constraint.BUDGET,
    Reason.BUDGET_UNKNOWN: Constraint.BUDGET_UNKNOWN,
    Reason.LIMITED_BY_POOL_CAPACITY: Constraint.POOL_CAPACITY,
    Reason.SCALE_UP_RATE_LIMITED: Constraint.SCALE_UP_RATE,
    Reason.SCALE_DOWN_DELAYED: Constraint.SCALE_DOWN_WINDOW,
    Reason.SCALE_DOWN_RATE_LIMITED: Constraint.SCALE_DOWN_RATE,
    Reason.HOLD_MISSING_METRICS: Constraint.MISSING_METRICS,
    Reason.HOLD_BAD_METRICS: Constraint.BAD_METRICS,
    Reason.HOLD_STALE_METRICS: Constraint.STALE_METRICS,
    Reason.HOLD_CONFLICT: Constraint.CONFLICT,
}


def _assemble(
    works: list[_Work],
    outcomes: Mapping[str, StabilizeOutcome],
    inputs: list[StabilizeInput],
    cap: BudgetCap,
    notes: tuple[str, ...],
    fit: TargetFit,
    now: datetime,
    mode: Mode,
) -> tuple[Decision, PolicyState]:
    decisions = []
    total = 0.0
    for work, item in zip(works, inputs, strict=True):
        outcome = outcomes[item.name]
        sizing = work.sizing
        assert sizing is not None and work.budget is not None
        current = work.current
        target = {s: n for s, n in outcome.target.items() if n > 0 or current.get(s, 0) > 0}
        desired = {item.primary: work.replicas} if item.primary is not None else {}
        cost = sum(n * item.unit_price.get(s, 0.0) for s, n in target.items())
        current_cost = sum(n * item.unit_price.get(s, 0.0) for s, n in current.items())
        total += cost
        reason, message = _final_reason(work, outcome, current, target)
        chosen = sizing.chosen
        binding = _BINDING_OF.get(reason, sizing.binding)
        risk = tuple(work.budget.slo_at_risk)
        if reason is Reason.LIMITED_BY_POOL_CAPACITY and chosen is not None and chosen.capacity is not None:
            served = chosen.capacity.rps * target.get(chosen.shape, 0)
            if served < work.demand.rps:
                risk += (f"{chosen.capacity.binding}: pool capacity caps serving at {served:.3g} req/s",)
        if sizing.reason is Reason.LIMITED_BY_MAX_REPLICAS and chosen is not None and chosen.capacity is not None:
            served = chosen.capacity_rps * chosen.replicas
            risk += (f"{chosen.capacity.binding}: max_replicas caps serving at {served:.3g} req/s",)
        decisions.append(
            ServiceDecision(
                service=item.name,
                tier=item.tier,
                current=current,
                desired=desired,
                target=target,
                reason=reason,
                message=message,
                binding_constraint=binding,
                predicted_demand_rps=work.demand.rps,
                demand_source=work.demand.source or work.demand.hold_message,
                capacity_rps_per_replica=chosen.capacity_rps if chosen is not None else 0.0,
                cost_usd_per_h=cost,
                slo_at_risk=risk,
                rejected_alternative=sizing.rejected,
                trace=tuple(work.trace),
                hold=reason.holds,
                forecast_model=work.demand.model,
                current_cost_usd_per_h=current_cost,
                corrections=dict(work.corrections),
            )
        )
    estimates = {work.service.name: work.demand.mix_estimate for work in works}
    corrections = {work.service.name: work.corrections for work in works}
    new_state = PolicyState(
        {
            name: replace(outcome.state, mix=estimates.get(name), corrections=corrections.get(name, {}))
            for name, outcome in outcomes.items()
        }
    )
    decision = Decision(
        at=now,
        mode=mode,
        services=tuple(decisions),
        cost_usd_per_h=total,
        budget_usd_per_h=cap.usd_per_h,
        budget_note=cap.note,
        pool_gpus_used=_gpus_used(works, inputs, outcomes),
        notes=notes,
        placement=fit.placement,
        fragmentation=fit.fragmentation,
    )
    return decision, new_state


def _final_reason(
    work: _Work, outcome: StabilizeOutcome, current: Mapping[Shape, int], target: Mapping[Shape, int]
) -> tuple[Reason, str]:
    """The reason of the last stage that changed the number, else the direction of the change."""
    if outcome.reason is not None:  # stabilization's, or placement's (it ran last)
        return outcome.reason, outcome.message
    assert work.budget is not None and work.sizing is not None
    if work.budget.reason is not None:
        return work.budget.reason, work.budget.message
    if work.sizing.reason in (Reason.NO_FEASIBLE_SHAPE, Reason.LIMITED_BY_MAX_REPLICAS):
        return work.sizing.reason, work.sizing.message
    before, after = sum(current.values()), sum(target.values())
    if after > before:
        return Reason.SCALE_UP, work.sizing.message
    if after < before:
        return Reason.SCALE_DOWN, work.sizing.message
    if work.sizing.reason is Reason.AT_MIN_REPLICAS:
        return Reason.AT_MIN_REPLICAS, work.sizing.message
    return Reason.STEADY, work.sizing.message


def _gpus_used(
    works: list[_Work], inputs: list[StabilizeInput], outcomes: Mapping[str, StabilizeOutcome]
) -> dict[str, float]:
    used: dict[str, float] = {}
    for work, item in zip(works, inputs, strict=True):
        for shape, n in outcomes[item.name].target.items():
            candidate = work.plan.candidate(shape)
            if candidate is not None and n > 0:
                used[candidate.pool] = used.get(candidate.pool, 0.0) + n * candidate.gpu_share
    return used


__all__ = ["STAGE_ORDER", "Demand", "ServiceState", "decide"]
