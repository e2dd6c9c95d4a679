"""How long one `decide` call takes for 100, 1,000 and 10,000 services, on one core.

The scenario is synthetic but shaped like a real fleet: three node pools (H100-80GB with MIG, A100-80GB, L4 with a
set price) with max_nodes that never bind, services cycling over the five seed models with a handful of SLO tiers
and token mixes (so that services share capacities, as many endpoints of one model do), and one tick of a fleet in
steady state: each service runs the shape and replica count the previous tick chose for its previous demand, its
request rate has since drifted (seeded, -15 % to +25 %), its forecast has a trend, its metrics are fresh, and its
stabilization state has a window of previous recommendations; each pool reports the nodes its replicas occupy.
The hourly budget is 1.5 x the current spend for fewer than 1,000 services (it does not bind) and 1.0 x from 1,000
on (it binds: demand grows).

`--fleet shifted` instead puts every service's replicas on its first allowed shape (a fleet in mid-migration:
make-before-break shape changes, replicas held above the budget that the stabilizer has to give back).

Per size: the scenario is checked and compiled once, timed apart ("compile s"), then frozen for the garbage
collector (`gc.freeze()`, as a long-running controller does once its configuration is loaded); one `decide` warms
what is left of the capacity cache ("warm-up s"); the figure is the median of N calls (N = 5 below 10,000
services, 3 from 10,000). Goal (issue): <= 0.2 s for 1,000 services, printed as PASS/MISS; the script never fails on it.

The performance model's step times (`autoscaler.perf`, which capacity at SLO calls) run compiled by mypyc as
`make` builds it, as in the `fleetscale` command (the script opts in, autoscaler/native.py; the first line says
whether it runs compiled; FLEETSCALE_PURE_PYTHON=1 measures the plain Python sources).

    .venv/bin/python benchmarks/decide_scale.py [--sizes 100 1000 10000] [--fleet steady|shifted] [--json FILE]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from figures_json import write_figures
from pinning import pin_to_one_core

from autoscaler.native import use_compiled_build

# Before the imports below, which load autoscaler.perf: the opt-in decides whether it loads compiled
# (autoscaler/native.py), hence the late imports (E402, allowed for this file at its top). No test loads this
# script as a module (tests/unit/conftest.py `load_benchmark`), so opting in at import time touches no test process.
BUILD_STATUS = use_compiled_build()

from autoscaler.capacity import LatencySlo, TokenMix, capacity_at_slo
from autoscaler.catalog import Catalog, load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import (
    Budget,
    Fleet,
    NodePool,
    Policy,
    Scenario,
    Service,
    ServiceSlo,
    Tier,
    check_scenario,
)
from autoscaler.decide import decide
from autoscaler.model import (
    Decision,
    Observation,
    PolicyState,
    PoolObservation,
    Reason,
    ServiceObservation,
    ServiceState,
    ShapeReplicas,
)
from autoscaler.perf import ProfileBook, load_profile_book
from autoscaler.shapes import parse_shape
from autoscaler.sizing import size_service
from forecasting import Forecast

GOAL_SERVICES = 1000
GOAL_S = 0.2
SEED = 20241127
NOW = datetime(2026, 11, 16, 14, 0, tzinfo=UTC)
DEFAULT_SIZES = (100, 1000, 10000)
BUDGET_BINDS_FROM = 1000  # services; below, the budget is 1.5x the current spend, from here 1.0x


@dataclass(frozen=True, slots=True)
class SloTier:
    tier: Tier
    ttft_s: float
    tpot_s: float


@dataclass(frozen=True, slots=True)
class Mix:
    input_tokens: float
    output_tokens: float
    max_context: int


SLO_TIERS = {
    "interactive": SloTier(Tier.CRITICAL, 0.5, 0.05),
    "standard": SloTier(Tier.STANDARD, 1.0, 0.1),
    "batch": SloTier(Tier.BEST_EFFORT, 3.0, 0.2),
}
MIXES = {
    "chat": Mix(1000, 250, 8192),
    "rag": Mix(3000, 300, 8192),
    "code": Mix(2000, 600, 8192),
    "classify": Mix(400, 20, 2048),
}


@dataclass(frozen=True, slots=True)
class Template:
    """One kind of service; the fleet cycles over these."""

    model: str
    shapes: tuple[str, ...]  # empty: free choice among every shape the fleet offers
    slo: str
    mix: str
    base_rps: float  # median request rate of services of this kind
    tensor_parallel_size: int | None = None
    max_replicas: int = 64


TEMPLATES = (
    Template("Llama-3.1-8B", ("H100-80GB", "H100-80GB/3g.40gb", "A100-80GB", "L4"), "interactive", "chat", 12.0),
    Template("Llama-3.1-8B", (), "standard", "rag", 8.0),
    Template("Llama-3.1-8B", ("H100-80GB", "A100-80GB"), "batch", "code", 6.0),
    Template("Llama-3.1-70B", ("4xH100-80GB", "8xH100-80GB"), "standard", "chat", 6.0),
    Template("Llama-3.1-70B", ("H100-80GB", "A100-80GB"), "interactive", "chat", 3.0, tensor_parallel_size=4),
    Template("Llama-3.1-70B", (), "batch", "rag", 2.0, max_replicas=16),
    Template("Mixtral-8x7B", ("2xH100-80GB", "2xA100-80GB", "4xA100-80GB"), "standard", "code", 5.0),
    Template("Llama-3.2-3B", ("H100-80GB/1g.20gb", "H100-80GB/2g.20gb", "L4"), "batch", "rag", 4.0),
    Template("Llama-3.2-3B", ("H100-80GB/3g.40gb", "L4"), "interactive", "chat", 10.0),
    Template("Llama-3.2-1B", ("H100-80GB/1g.10gb", "L4", "A100-80GB"), "interactive", "classify", 30.0),
    Template("Llama-3.2-1B", ("H100-80GB/1g.10gb", "L4"), "batch", "chat", 15.0),
)


def build_scenario(n: int, budget_usd_per_h: float | None = None) -> Scenario:
    """n services cycling over TEMPLATES, on three pools large enough never to bind."""
    pools = [
        NodePool(
            name="h100", gpu_type="H100-80GB", gpus_per_node=8, max_nodes=50000, mig_allowed=True,
            node_provisioning_s=120,
        ),
        NodePool(name="a100", gpu_type="A100-80GB", gpus_per_node=8, max_nodes=50000, node_provisioning_s=120),
        NodePool(
            name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=100000, gpu_price_usd_per_h=0.80,
            node_provisioning_s=90,
        ),
    ]  # fmt: skip
    services = []
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        slo, mix = SLO_TIERS[t.slo], MIXES[t.mix]
        services.append(
            Service(
                name=f"svc-{i:05d}",
                model=t.model,
                slo=ServiceSlo(ttft_p95_s=slo.ttft_s, tpot_p95_s=slo.tpot_s),
                tier=slo.tier,
                min_replicas=1,
                max_replicas=t.max_replicas,
                allowed_shapes=list(t.shapes),
                tensor_parallel_size=t.tensor_parallel_size,
                mean_input_tokens=mix.input_tokens,
                mean_output_tokens=mix.output_tokens,
                max_context_tokens=mix.max_context,
            )
        )
    return Scenario(
        name=f"bench-{n}",
        fleet=Fleet(pools=pools),
        services=services,
        budget=Budget(hard_usd_per_h=budget_usd_per_h),
        policy=Policy(),
    )


def make_forecast(rps: float, trend: float, issued_at_s: float) -> Forecast:
    """Ten one-minute steps drifting by `trend` over the horizon; p90 and p99 are 1.2x and 1.5x the mean."""
    steps = 10
    mean = tuple(rps * (1 + (trend - 1) * k / steps) for k in range(steps))
    return Forecast(
        step_s=60.0,
        mean=mean,
        quantiles={0.5: mean, 0.9: tuple(m * 1.2 for m in mean), 0.99: tuple(m * 1.5 for m in mean)},
        model="bench",
        issued_at_s=issued_at_s,
    )


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick's inputs to decide, and what the fleet costs now."""

    observation: Observation
    forecasts: dict[str, Forecast]
    state: PolicyState
    current_cost_usd_per_h: float


def build_tick(compiled: CompiledScenario, rng: random.Random, fleet: str) -> Tick:
    """The inputs of one tick for the fleet kind `fleet` ("steady" or "shifted"; see the module docstring)."""
    scenario = compiled.scenario
    policy = scenario.policy
    now_s = NOW.timestamp()
    services: dict[str, ServiceObservation] = {}
    forecasts: dict[str, Forecast] = {}
    states: dict[str, ServiceState] = {}
    cost = 0.0
    gpus: dict[str, float] = {}
    for i, (name, plan) in enumerate(compiled.plans.items()):
        service = plan.service
        t = TEMPLATES[i % len(TEMPLATES)]
        mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)
        previous_rps = t.base_rps * rng.lognormvariate(0.0, 0.8)
        previous = make_forecast(previous_rps, rng.uniform(0.9, 1.3), now_s - policy.tick_s)
        peak, _ = previous.peak_over(policy.forecast_quantile[service.tier], plan.horizon_s)
        sizing = size_service(plan, max(peak, previous_rps), mix, None, policy.shape_switch_min_savings_ratio)
        if sizing.chosen is None:
            continue
        shape, count, price = sizing.chosen.shape, sizing.chosen.replicas, sizing.chosen.candidate.price_usd_per_h
        if fleet == "shifted":
            first = service.shapes()[0] if service.allowed_shapes else parse_shape("H100-80GB")
            shape = compiled.catalog.canonical_shape(first)
            candidate = plan.candidate(shape)
            price = candidate.price_usd_per_h if candidate is not None else price
        starting = 1 if count > 1 and rng.random() < 0.1 else 0
        cost += count * price
        running = plan.candidate(shape) or sizing.chosen.candidate
        gpus[running.pool] = gpus.get(running.pool, 0.0) + count * running.gpu_share
        rps = previous_rps * rng.uniform(0.85, 1.25)
        services[name] = ServiceObservation(
            request_rps=rps,
            input_tokens_per_s=rps * service.mean_input_tokens,
            output_tokens_per_s=rps * service.mean_output_tokens,
            sampled_at=NOW,
            replicas={shape: ShapeReplicas(ready=count - starting, starting=starting, spec=count)},
        )
        forecasts[name] = make_forecast(rps, rng.uniform(0.9, 1.3), now_s)
        window = int(policy.scale_down_window_s // policy.tick_s)
        states[name] = ServiceState(
            first_seen_s=now_s - 3600.0,
            recommendations=tuple((now_s - k * policy.tick_s, count) for k in range(window - 1, 0, -1)),
            last_scale_down_s=now_s - 600.0,
            # What the loop records once the actuator has answered: the spec is fleetscale's own, no conflict.
            applied={shape: count},
            requested={shape: count},
        )
    # A steady fleet has the nodes its replicas run on (the inventory carries no assignments, so placement still
    # places every replica, on those nodes).
    pools = {
        name: PoolObservation(nodes=math.ceil(gpus.get(name, 0.0) / pool.gpus_per_node - 1e-9))
        for name, pool in compiled.pools.items()
    }
    return Tick(Observation(services=services, pools=pools), forecasts, PolicyState(states), cost)


@dataclass(frozen=True, slots=True)
class SizeResult:
    services: int
    compile_s: float
    warmup_s: float
    median_decide_s: float
    runs: tuple[float, ...]
    current_cost_usd_per_h: float
    cost_usd_per_h: float
    budget_usd_per_h: float | None
    reasons: Counter[str]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def budget_ratio(n: int, override: float | None = None) -> float:
    """The hard budget as a multiple of the current spend."""
    if override is not None:
        return override
    return 1.0 if n >= BUDGET_BINDS_FROM else 1.5


def measure(
    n: int, repeats: int, fleet: str, catalog: Catalog, book: ProfileBook, ratio: float | None = None
) -> SizeResult:
    # The current fleet (and so the budget) comes from sizing against a compilation without a budget.
    draft = compile_scenario(build_scenario(n), catalog, book)
    failures = preflight(draft)
    if failures:
        raise SystemExit("capacity_at_slo fails for:\n  " + "\n  ".join(failures))
    tick = build_tick(draft, random.Random(SEED), fleet)
    scenario = build_scenario(n, round(budget_ratio(n, ratio) * tick.current_cost_usd_per_h, 2))
    issues = check_scenario(scenario, catalog, book)
    if issues:
        raise SystemExit("\n".join(issue.format(scenario.name) for issue in issues[:10]))
    compile_s, compiled = _timed(lambda: compile_scenario(scenario, catalog, book))
    assert isinstance(compiled, CompiledScenario)
    # What a long-running controller does once its configuration is loaded: move everything alive to the permanent
    # generation, so that the garbage collector's full passes during a tick do not rescan the compiled scenario
    # (without it, collections take a third of a 1,000-service tick here).
    gc.collect()
    gc.freeze()

    def one() -> tuple[Decision, PolicyState]:
        return decide(tick.observation, tick.forecasts, compiled, tick.state, NOW)

    warmup_s, (decision, _) = _timed(one)
    runs = tuple(_timed(one)[0] for _ in range(repeats))
    reasons = Counter(str(d.reason) for d in decision.services)
    return SizeResult(
        n, compile_s, warmup_s, statistics.median(runs), runs, tick.current_cost_usd_per_h, decision.cost_usd_per_h,
        decision.budget_usd_per_h, reasons,
    )  # fmt: skip


def preflight(compiled: CompiledScenario) -> list[str]:
    """Every (service kind, shape) whose capacity computation raises, with the error (empty when all work).

    One failing capacity makes decide() fail for the whole fleet; this names the culprit instead. (Before the fix
    in `md1_tail_cdf`, autoscaler/capacity/queueing.py, a TTFT bound above about 126 prefill times raised
    OverflowError.)
    """
    failures = []
    for plan in list(compiled.plans.values())[: len(TEMPLATES)]:
        service = plan.service
        slo = LatencySlo(service.slo.ttft_p95_s, service.slo.tpot_p95_s)
        mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)
        for candidate in plan.candidates:
            if candidate.profile is None:
                continue
            try:
                capacity_at_slo(candidate.profile, slo, mix)
            except ArithmeticError as exc:
                failures.append(
                    f"{service.model} on {candidate.shape}, ttft {slo.ttft_s:g} s, {mix.mean_input_tokens:g} "
                    f"prompt tokens: {type(exc).__name__}: {exc}"
                )
    return failures


def figures(results: Sequence[SizeResult]) -> dict[str, float]:
    """The flat JSON object: decide_s_<n> (median seconds), then compile_s_<n> and warmup_s_<n>."""
    out: dict[str, float] = {}
    for r in results:
        out[f"decide_s_{r.services}"] = r.median_decide_s
    for r in results:
        out[f"compile_s_{r.services}"] = r.compile_s
        out[f"warmup_s_{r.services}"] = r.warmup_s
    return out


def _print_table(results: Sequence[SizeResult], pinning: str, fleet: str) -> None:
    headers = ["services", "median decide s", "per-service µs", "min s", "compile s", "warm-up s", "runs"]
    rows = [
        [
            f"{r.services:,}",
            f"{r.median_decide_s:.4f}",
            f"{1e6 * r.median_decide_s / r.services:.1f}",
            f"{min(r.runs):.4f}",
            f"{r.compile_s:.3f}",
            f"{r.warmup_s:.3f}",
            str(len(r.runs)),
        ]
        for r in results
    ]
    title = f"decide() per tick, {fleet} fleet, one core: {pinning}"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        print(title)
        print(" | ".join(headers))
        for row in rows:
            print(" | ".join(row))
    else:
        table = Table(title=title, title_justify="left")
        for h in headers:
            table.add_column(h, justify="right")
        for row in rows:
            table.add_row(*row)
        Console(highlight=False, width=max(100, len(title) + 4)).print(table)
    for r in results:
        budget = "none" if r.budget_usd_per_h is None else f"${r.budget_usd_per_h:,.0f}/h"
        binding = r.reasons.get(str(Reason.LIMITED_BY_BUDGET), 0)
        top = ", ".join(f"{k} {v}" for k, v in r.reasons.most_common())
        print(
            f"{r.services:>6,} services: spend ${r.current_cost_usd_per_h:,.0f}/h -> ${r.cost_usd_per_h:,.0f}/h, "
            f"budget {budget}, {binding} limited by budget; reasons: {top}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="service counts")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per size (default 5; 3 from 10,000)")
    parser.add_argument("--fleet", choices=("steady", "shifted"), default="steady", help="current replicas")
    parser.add_argument(
        "--budget-ratio", type=float, default=None, help="budget as a multiple of the current spend (default 1.5, 1.0)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)

    pinning = pin_to_one_core()
    print(f"decide_scale: {pinning}; Python {sys.version.split()[0]}; seed {SEED}; autoscaler.perf: {BUILD_STATUS}")
    catalog = load_catalog()
    book = load_profile_book(catalog)
    results = []
    for n in args.sizes:
        repeats = args.repeats or (3 if n >= 10000 else 5)
        results.append(measure(n, repeats, args.fleet, catalog, book, args.budget_ratio))
    _print_table(results, pinning, args.fleet)

    goal = next((r for r in results if r.services == GOAL_SERVICES), None)
    if goal is not None:
        verdict = "PASS" if goal.median_decide_s <= GOAL_S else "MISS"
        print(f"goal: decide for {GOAL_SERVICES:,} services <= {GOAL_S} s: {verdict} ({goal.median_decide_s:.3f} s)")
    data = figures(results)
    write_figures(args.json, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
