"""`--tune-baselines T`: each baseline's main knob set to the cheapest value that reaches attainment T.

Knobs: HPA's and KPA's target (requests in flight per replica), Ray Serve's `target_ongoing_requests`, and the
static fleet's scale (replicas = scale x what the trace's peak needs at capacity). A lower target or a higher scale
buys attainment with money. Attainment is monotone in the knob in the large but not step by step (a burst may fall
just before or after a scale-up), so the tuner does not search the whole range by bisection. It walks a geometric
grid of values (factor sqrt(2), from 1/16 to 4 times the default target, or 1 to 4 times the static scale) from
the cheapest end, and stops at the first value, after one that reaches T, that costs more than the cheapest
reaching value so far: cost is what grows along the walk, so every value beyond would cost more still. Then two
geometric bisections between the value kept and the cheaper grid value before it, which fell short, narrow the
grid's step of 41 % to 9 %. When none reaches T, it has replayed the whole grid and keeps the one with the highest
attainment, and says so. The kept setting's replay is kept too, so that the comparison does not replay it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from autoscaler.compiled import CompiledScenario
from autoscaler.sim.fleet import FleetSim, Policy, ReplayResult, ServiceRequests
from autoscaler.sim.summary import PolicySummary, summarize


@dataclass(frozen=True, slots=True)
class Tuned:
    policy: str
    knob: str
    value: float
    summary: PolicySummary
    reached: bool
    tried: int
    result: ReplayResult


def grid(default: float, low: float, high: float) -> list[float]:
    values = []
    k = 0
    while default * 2 ** (k / 2) >= low * default - 1e-12:
        values.append(default * 2 ** (k / 2))
        k -= 1
    k = 1
    while default * 2 ** (k / 2) <= high * default + 1e-12:
        values.append(default * 2 ** (k / 2))
        k += 1
    return sorted(values)


def tune(
    name: str,
    knob: str,
    make: Callable[[float], Policy],
    values: list[float],  # from the cheapest setting to the most expensive
    config: CompiledScenario,
    requests: Mapping[str, ServiceRequests],
    attainment: float,
    refine: int = 2,
) -> Tuned:
    """The cheapest setting of `values` that reaches `attainment` (see the module docstring), then `refine`
    bisections (geometric) between it and the cheaper grid value before it that did not reach: the grid's step of
    sqrt(2) would otherwise leave a baseline up to 40 % dearer than it needs to be."""
    tried = 0

    def replay(value: float) -> Tuned:
        nonlocal tried
        tried += 1
        result = FleetSim(config, requests).run(make(value))
        summary = summarize(result, config)
        return Tuned(name, knob, value, summary, summary.slo_attainment >= attainment, tried, result)

    best: Tuned | None = None
    fallback: Tuned | None = None
    short: float | None = None  # the grid value walked just before the first that reached
    for value in values:
        candidate = replay(value)
        if best is not None and candidate.summary.cost_usd > best.summary.cost_usd:
            break  # costs only grow from here
        if candidate.reached and (best is None or candidate.summary.cost_usd < best.summary.cost_usd):
            best = candidate
        elif best is None:
            short = value
        if fallback is None or candidate.summary.slo_attainment > fallback.summary.slo_attainment:
            fallback = candidate
    if best is None:
        assert fallback is not None
        return replace(fallback, tried=tried)
    if short is not None:
        low, high = short, best.value
        for _ in range(refine):
            middle = replay(math.sqrt(low * high))
            if middle.reached and middle.summary.cost_usd <= best.summary.cost_usd:
                best, high = middle, middle.value
            else:
                low = middle.value
    return replace(best, tried=tried)
