"""`--tune-baselines T`: each baseline's main knob set to the cheapest value that reaches attainment T.

Knobs: HPA's and KPA's target (requests in flight per replica), Ray Serve's `target_ongoing_requests`, and the
static fleet's scale (replicas = scale x what the trace's peak needs at capacity). A lower target or a higher scale
buys attainment with money. Attainment is monotone in the knob in the large but not step by step (a burst may fall
just before or after a scale-up), so the tuner does not bisect on it. It walks a geometric grid of values (factor
sqrt(2), from 1/16 to 4 times the default target, or 1 to 4 times the static scale) from the cheapest end, and
stops at the first value after one that reaches T that costs more than the cheapest reaching value so far: cost
is what grows along the walk, so every value beyond would cost more still. When none reaches T, it has replayed
the whole grid and keeps the one with the highest attainment, and says so. The kept setting's replay is kept too,
so that the comparison does not replay it again.
"""

from __future__ import annotations

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
) -> Tuned:
    best: Tuned | None = None
    fallback: Tuned | None = None
    for tried, value in enumerate(values, start=1):
        result = FleetSim(config, requests).run(make(value))
        summary = summarize(result, config)
        candidate = Tuned(name, knob, value, summary, summary.slo_attainment >= attainment, tried, result)
        if best is not None and summary.cost_usd > best.summary.cost_usd:
            return replace(best, tried=tried)  # costs only grow from here
        if candidate.reached and (best is None or summary.cost_usd < best.summary.cost_usd):
            best = candidate
        if fallback is None or summary.slo_attainment > fallback.summary.slo_attainment:
            fallback = candidate
    assert fallback is not None
    return replace(best if best is not None else fallback, tried=len(values))
