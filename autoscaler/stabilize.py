"""Stage 5, stabilization: windows, rate limits and safety holds. State in, state out.

For each service, from the desired replica count of its chosen (primary) shape:

1. Safety holds. Stale, missing, NaN or negative metrics: the service holds (target = what exists), so bad
   metrics never cause a scale-down (DESIGN.md safety rule 1). In apply mode, a spec count that is neither what
   the platform last reported applied nor what fleetscale last asked for (`ServiceState.applied`, `requested`,
   recorded by the loop) means another writer (an HPA, a person): fleetscale backs off and reports it (rule 6). A
   partial apply (a quota granted 4 of 8) is what was applied, not a conflict.
2. Scale-up is immediate but bounded: at most max(current x scale_up_max_ratio, current + scale_up_min_step).
3. Scale-down waits: the target is the highest desired count of the last `scale_down_window_s` (HPA's
   stabilization window), and only once the service has been watched for a whole window; then at most
   `scale_down_max_step` replicas go per `scale_down_period_s`.
4. Bounds: never below min_replicas, never above max_replicas (rule 2).
5. Shape changes make before they break: replicas of a previous shape stay until the new shape's ready replicas
   reach its target, then drain (rule 5 is the actuator's: it stops routing before removing).

`enforce_cap` then makes sure holding replicas (scale-down windows, make-before-break) never takes the fleet over
the budget cap: it gives back what exceeds the budget stage's result, lowest tier first.

Worked example (window 300 s, step 2 per 60 s): desired falls from 10 to 4 at t = 0. Until t = 300 the window
still holds the 10s: target 10. At t = 300 the window's max is 4: target 8 (2 per period), at t = 360 target 6,
at t = 420 target 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from autoscaler.config import Policy, Tier
from autoscaler.model import Reason, ServiceState, ShapeReplicas
from autoscaler.shapes import Shape


@dataclass(frozen=True, slots=True)
class StabilizeInput:
    name: str
    tier: Tier
    min_replicas: int
    max_replicas: int
    primary: Shape | None
    desired_replicas: int  # after budget and placement: what enforce_cap never gives back below
    current: Mapping[Shape, ShapeReplicas]
    unit_price: Mapping[Shape, float]
    hold: Reason | None = None
    hold_message: str = ""


@dataclass(frozen=True, slots=True)
class StabilizeOutcome:
    target: Mapping[Shape, int]
    reason: Reason | None
    message: str
    state: ServiceState

    def cost(self, prices: Mapping[Shape, float]) -> float:
        return sum(n * prices.get(shape, 0.0) for shape, n in self.target.items())


def _hold(item: StabilizeInput, prev: ServiceState | None, now_s: float, reason: Reason, msg: str) -> StabilizeOutcome:
    target = {shape: r.existing for shape, r in item.current.items() if r.existing > 0}
    total = sum(target.values())
    if total > item.max_replicas and item.primary in target:
        # Rule 2 beats the hold: above max_replicas is never right, whatever the metrics say.
        target[item.primary] = max(0, target[item.primary] - (total - item.max_replicas))
    elif total < item.min_replicas and item.primary is not None:
        # Nor is below min_replicas; raising to it is a scale-up, which bad metrics do not forbid.
        target[item.primary] = target.get(item.primary, 0) + item.min_replicas - total
    return StabilizeOutcome(target, reason, msg, prev or ServiceState(first_seen_s=now_s))


def _foreign_write(item: StabilizeInput, prev: ServiceState) -> str | None:
    """Why the platform's spec shows another writer, or None: a spec count (where the platform reports one) that is
    neither what fleetscale last had applied nor what it last asked for."""
    for shape, applied in prev.applied.items():
        spec = item.current[shape].spec if shape in item.current else None
        requested = prev.requested.get(shape, applied)
        if spec is not None and spec not in (applied, requested):
            ours = f"{applied}" if requested == applied else f"{applied} (asked for {requested})"
            return f"spec of {shape} is {spec}, fleetscale last applied {ours}: another writer changed it; backing off"
    return None


def stabilize_service(
    item: StabilizeInput, prev: ServiceState | None, policy: Policy, now_s: float, check_writers: bool
) -> StabilizeOutcome:
    """One service's target after the rules of the module docstring (`check_writers`: apply mode)."""
    if item.hold is not None:
        return _hold(item, prev, now_s, item.hold, item.hold_message)
    if check_writers and prev is not None:
        conflict = _foreign_write(item, prev)
        if conflict is not None:
            return _hold(item, prev, now_s, Reason.HOLD_CONFLICT, conflict)
    state = prev or ServiceState(first_seen_s=now_s)
    window = policy.scale_down_window_s
    history = (*((t, n) for t, n in state.recommendations if now_s - t < window), (now_s, item.desired_replicas))
    state = replace(state, recommendations=history)
    if item.primary is None:
        return StabilizeOutcome({}, Reason.NO_FEASIBLE_SHAPE, "no shape can serve", state)

    existing = item.current[item.primary].existing if item.primary in item.current else 0
    ready = item.current[item.primary].ready if item.primary in item.current else 0
    desired = item.desired_replicas
    reason: Reason | None = None
    message = ""
    target = existing
    if desired > existing:
        limit = max(math.floor(existing * policy.scale_up_max_ratio), existing + policy.scale_up_min_step)
        target = min(desired, limit)
        if target < desired:
            reason = Reason.SCALE_UP_RATE_LIMITED
            message = (
                f"scale-up limited to {target} this tick (desired {desired}; at most "
                f"x{policy.scale_up_max_ratio:g} or +{policy.scale_up_min_step})"
            )
    elif desired < existing:
        watched = now_s - state.first_seen_s
        window_max = max(n for _, n in history)
        if watched < window:
            reason = Reason.SCALE_DOWN_DELAYED
            message = f"scale-down to {desired} waits: watched {watched:.0f} s of the {window:.0f} s window"
        elif window_max >= existing:
            reason = Reason.SCALE_DOWN_DELAYED
            message = f"scale-down to {desired} waits: {window_max} replicas were wanted within {window:.0f} s"
        else:
            allowed_at = (state.last_scale_down_s or -math.inf) + policy.scale_down_period_s
            if now_s < allowed_at:
                reason = Reason.SCALE_DOWN_RATE_LIMITED
                message = f"scale-down to {window_max} waits {allowed_at - now_s:.0f} s for the next period"
            else:
                target = max(window_max, existing - policy.scale_down_max_step)
                if target > window_max:
                    reason = Reason.SCALE_DOWN_RATE_LIMITED
                    message = (
                        f"scale-down limited to {policy.scale_down_max_step} per {policy.scale_down_period_s:g} s "
                        f"(to {target}, then {window_max})"
                    )
    target = min(max(target, item.min_replicas), item.max_replicas)
    targets: dict[Shape, int] = {item.primary: target} if target > 0 or existing > 0 else {}
    old_shapes = {s: r.existing for s, r in item.current.items() if s != item.primary and r.existing > 0}
    if old_shapes:
        if ready >= target:
            targets.update(dict.fromkeys(old_shapes, 0))
            reason = reason or Reason.SHAPE_CHANGE
            message = message or f"{item.primary} ready ({ready}); draining {', '.join(map(str, old_shapes))}"
        else:
            targets.update(old_shapes)
            reason = reason or Reason.SHAPE_CHANGE
            message = message or (
                f"moving to {item.primary}: keeps {', '.join(f'{n} x {s}' for s, n in old_shapes.items())} "
                f"until {target} x {item.primary} are ready ({ready} now)"
            )
    if target < existing:
        state = replace(state, last_scale_down_s=now_s)
    if reason is None:
        message = f"no window or rate limit applies ({existing} -> {target})"
    return StabilizeOutcome(targets, reason, message, state)


def enforce_cap(
    items: list[StabilizeInput], outcomes: dict[str, StabilizeOutcome], cap_usd_per_h: float | None
) -> dict[str, StabilizeOutcome]:
    """Give back replicas held above the budget stage's result until the cap holds (lowest tier first)."""
    if cap_usd_per_h is None:
        return outcomes
    result = dict(outcomes)
    total = sum(result[i.name].cost(i.unit_price) for i in items)
    if total <= cap_usd_per_h + 1e-9:
        return result
    for item in sorted(items, key=lambda i: (-i.tier.rank, i.name)):
        outcome = result[item.name]
        target = dict(outcome.target)
        changed = False
        for shape in [s for s in target if s != item.primary]:
            if target[shape] > 0 and total > cap_usd_per_h + 1e-9:
                total -= target[shape] * item.unit_price.get(shape, 0.0)
                target[shape] = 0
                changed = True
        if item.primary is not None and item.primary in target and total > cap_usd_per_h + 1e-9:
            unit = item.unit_price.get(item.primary, 0.0)
            floor = max(item.desired_replicas, item.min_replicas)
            if unit > 0 and target[item.primary] > floor:
                # As many as needed to fit, never below what the budget stage allowed.
                needed = math.ceil((total - cap_usd_per_h) / unit - 1e-9)
                give = min(needed, target[item.primary] - floor)
                target[item.primary] -= give
                total -= give * unit
                changed = changed or give > 0
        if changed:
            result[item.name] = replace(
                outcome,
                target=target,
                reason=Reason.LIMITED_BY_BUDGET,
                message="held replicas given back: the budget cap outranks scale-down windows and holds",
            )
        if total <= cap_usd_per_h + 1e-9:
            break
    return result
