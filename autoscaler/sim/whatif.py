"""The what-if comparison's policies by name, its table and its JSON contract (DESIGN.md section 9).

`rayserve` is built by the CLI (`rayserve_policy.py` over Ray's own policy function, which the core never imports:
`adapters/rayserve`); the others are built here. `fleetscale` is the control loop (`loop_policy.py`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.sim.compare import Comparison, PolicyFactory
from autoscaler.sim.fleet import Policy, ServiceRequests
from autoscaler.sim.loop_policy import LoopPolicy
from autoscaler.sim.policies import HpaPolicy, KpaPolicy, StaticPolicy
from autoscaler.sim.tune import Tuned, grid

POLICIES = ("fleetscale", "fleetscale_free", "hpa", "kpa", "rayserve", "static")
BOUNDS = ("oracle", "instant_start")
COLUMNS = (
    "policy", "requests", "SLO attainment", "minutes in SLO", "p95 TTFT s", "p95 TPOT s", "GPU-hours", "cost $",
    "scale events", "unserved", "cost / oracle",
)  # fmt: skip


@functools.lru_cache(maxsize=8)
def free_choice(config: CompiledScenario) -> CompiledScenario:
    """The scenario with every service free to take any shape its pools offer (no `allowed_shapes`): what
    `fleetscale_free` runs on, so that the gain from shapes shows apart from the gain from forecasting. Compiled
    once per scenario (the policy and the replay both ask for it)."""
    services = [s.model_copy(update={"allowed_shapes": []}) for s in config.scenario.services]
    return compile_scenario(config.scenario.model_copy(update={"services": services}), config.catalog, config.book)


def core_factory(name: str, config: CompiledScenario, requests: Mapping[str, ServiceRequests]) -> PolicyFactory:
    if name == "fleetscale":
        return lambda: LoopPolicy(config, requests)
    if name == "fleetscale_free":
        free = free_choice(config)
        return lambda: LoopPolicy(free, requests, name="fleetscale_free")
    if name in KNOBS:
        make = knob_maker(name, config, requests)
        default = KNOBS[name][1]
        return lambda: make(default)
    raise ValueError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")


# The knob `--tune-baselines` searches per baseline: (name, default, low and high as multiples of the default,
# whether a higher value is cheaper).
KNOBS: dict[str, tuple[str, float, float, float, bool]] = {
    "hpa": ("target_scale", 1.0, 1 / 16, 4.0, True),
    "kpa": ("target_scale", 1.0, 1 / 16, 4.0, True),
    "rayserve": ("target_ongoing_requests", 2.0, 1 / 16, 4.0, True),
    "static": ("scale", 1.0, 1.0, 4.0, False),
}


def knob_values(name: str) -> list[float]:
    """The settings `--tune-baselines` may replay for baseline `name`, the cheapest first."""
    _, default, low, high, higher_is_cheaper = KNOBS[name]
    values = grid(default, low, high)
    return values[::-1] if higher_is_cheaper else values


def knob_maker(
    name: str, config: CompiledScenario, requests: Mapping[str, ServiceRequests]
) -> Callable[[float], Policy]:
    """The baseline `name` as a function of its knob (`rayserve` is the CLI's: see `rayserve_policy.py`)."""
    if name == "hpa":
        return lambda value: HpaPolicy(config, requests, target_scale=value)
    if name == "kpa":
        return lambda value: KpaPolicy(config, requests, target_scale=value)
    if name == "static":
        return lambda value: StaticPolicy(config, requests, scale=value)
    raise ValueError(f"{name} has no knob here")


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def table_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for name, s in comparison.summaries.items():
        rows.append(
            [
                name, f"{s.requests:,}", f"{s.slo_attainment:.2%}", f"{s.window_attainment:.2%}",
                _number(s.ttft_p95_s, 3),
                _number(s.tpot_p95_s, 4), f"{s.gpu_hours:.2f}", f"{s.cost_usd:.2f}", str(s.scale_events),
                str(s.unserved), _number(comparison.cost_vs_oracle(name), 2),
            ]
        )  # fmt: skip
    return rows


def cheapest_reaching(comparison: Comparison, attainment: float) -> str | None:
    """The cheapest policy whose SLO attainment reaches `attainment` (the bounds, clairvoyant, left out)."""
    reaching = [
        (summary.cost_usd, name)
        for name, summary in comparison.summaries.items()
        if name not in BOUNDS and summary.slo_attainment >= attainment
    ]
    return min(reaching)[1] if reaching else None


def verdict(comparison: Comparison, attainment: float) -> str:
    """One line for a capacity planner: which policy is cheapest at the target, and where fleetscale stands."""
    best = cheapest_reaching(comparison, attainment)
    line = f"cheapest at >= {attainment:.2%} attainment: "
    if best is None:
        line += "no policy reaches it"
    else:
        line += f"{best} (${comparison.summaries[best].cost_usd:,.2f})"
    fleetscale = comparison.summaries.get("fleetscale")
    if fleetscale is not None and best != "fleetscale":
        if fleetscale.slo_attainment < attainment:
            line += f"; fleetscale ${fleetscale.cost_usd:,.2f} at {fleetscale.slo_attainment:.2%}, below it"
        elif best is not None:
            ratio = fleetscale.cost_usd / comparison.summaries[best].cost_usd
            line += f"; fleetscale ${fleetscale.cost_usd:,.2f} ({ratio:.2f}x)"
    return line


def comparison_json(
    comparison: Comparison,
    trace: Mapping[str, Any],
    rate_scale: float,
    tuned: Mapping[str, Tuned] | None = None,
    target: float | None = None,
) -> dict[str, Any]:
    """`{"trace": {...}, "rate_scale": k, "policies": {name: {requests, slo_attainment, ttft_p95_s, tpot_p95_s,
    gpu_hours, cost_usd, scale_events, unserved, cost_vs_oracle}}}`; NaN (no served request) is written as null.
    With a `target` attainment (`--tune-baselines`), also `"target_attainment"` and `"cheapest_reaching_target"`
    (a policy name, or null)."""

    def clean(value: float | int) -> float | int | None:
        return None if isinstance(value, float) and math.isnan(value) else value

    policies = {}
    for name, summary in comparison.summaries.items():
        data: dict[str, Any] = {key: clean(value) for key, value in summary.as_json().items()}
        data["cost_vs_oracle"] = clean(comparison.cost_vs_oracle(name))
        if tuned and name in tuned:
            data["tuned"] = {"knob": tuned[name].knob, "value": tuned[name].value, "reached": tuned[name].reached}
        policies[name] = data
    whole: dict[str, Any] = {"trace": dict(trace), "rate_scale": rate_scale, "policies": policies}
    if target is not None:
        whole["target_attainment"] = target
        whole["cheapest_reaching_target"] = cheapest_reaching(comparison, target)
    return whole
