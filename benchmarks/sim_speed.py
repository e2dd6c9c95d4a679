"""How fast the fleet simulator replays: requests per second, and a 14-day replay of 50 services.

1. `requests_per_s`: 200,000 requests (Poisson at 100 req/s; prompt and output lengths exponential with means 1,000
   and 200 tokens, seeded) replayed on 10 ready Llama-3.1-8B replicas on H100 (a fixed fleet: the figure is the
   simulator's, not a policy's), divided by the wall time of the replay.
2. `replay_14d_50svc_s`: 50 services (Llama-3.2-1B on an L4 share or a MIG slice, Llama-3.1-8B on H100) whose
   14-day traffic follows the bundled ServeGen m-small series, each rotated by a seeded number of days and scaled to
   a seeded mean of 0.05 to 0.35 req/s (about 12 million requests in all; arrivals generated in each 10-minute
   window, Poisson), replayed under the `hpa` policy at a 60 s tick, timed from the first event to the last.
Both run on one core (the process pins itself to CPU 0 where it can), with the replay's hot path compiled by mypyc
as `make` builds it (the script opts in, autoscaler/native.py; the second line says whether it runs compiled;
FLEETSCALE_PURE_PYTHON=1 measures the plain Python sources, about 3x slower). Goals (issue 5): >= 200,000
requests/s and < 60 s for the 14-day replay; printed as PASS or MISS, the script never fails on them.

    .venv/bin/python benchmarks/sim_speed.py [--requests 200000] [--services 50] [--days 14] [--json FILE]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from figures_json import write_figures
from pinning import pin_to_one_core

from autoscaler.native import use_compiled_build

# Before the imports of the replay's modules below: the opt-in decides whether they load compiled
# (autoscaler/native.py), hence the late imports (E402, allowed for this file at its top).
BUILD_STATUS = use_compiled_build()

from adapters.traces import load_trace
from autoscaler.catalog import load_catalog
from autoscaler.compiled import compile_scenario
from autoscaler.config import Fleet, NodePool, Policy, Scenario, Service, ServiceSlo, check_scenario
from autoscaler.perf import load_profile_book
from autoscaler.series import RateSeries
from autoscaler.shapes import parse_shape
from autoscaler.sim.fleet import FixedTargets, FleetSim, ServiceRequests
from autoscaler.sim.policies import HpaPolicy
from autoscaler.sim.replica import poisson_arrivals
from autoscaler.sim.workload import from_rate_series

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "configs/traces/servegen_m-small_aggregate_rate_10min.csv"
SEED = 7


def _scenario(services: int, tick_s: float) -> Scenario:
    pools = [
        NodePool(name="h100", gpu_type="H100-80GB", gpus_per_node=8, max_nodes=500, mig_allowed=True),
        NodePool(
            name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=500, gpu_price_usd_per_h=0.8, fractional_allowed=True
        ),
    ]
    kinds = [
        ("Llama-3.2-1B", ["0.5xL4"], 500, 150),
        ("Llama-3.2-1B", ["H100-80GB/1g.10gb"], 500, 150),
        ("Llama-3.1-8B", ["H100-80GB"], 1000, 200),
    ]
    items = []
    for i in range(services):
        model, shapes, prompt, output = kinds[i % len(kinds)]
        items.append(
            Service(
                name=f"svc-{i:02d}", model=model, slo=ServiceSlo(ttft_p95_s=2.0, tpot_p95_s=0.1), min_replicas=1,
                max_replicas=64, allowed_shapes=shapes, mean_input_tokens=prompt, mean_output_tokens=output,
            )
        )  # fmt: skip
    return Scenario(name="sim-speed", fleet=Fleet(pools=pools), services=items, policy=Policy(tick_s=tick_s))


def requests_per_second(count: int) -> tuple[float, float]:
    catalog = load_catalog()
    book = load_profile_book(catalog)
    rng = random.Random(SEED)
    arrivals = poisson_arrivals(100.0, count, SEED)
    requests = {
        "svc-00": ServiceRequests(
            "svc-00", arrivals, [max(1, round(rng.expovariate(1 / 1000))) for _ in arrivals],
            [max(1, round(rng.expovariate(1 / 200))) for _ in arrivals],
        )
    }  # fmt: skip
    # svc-00 is a 1B model on half an L4 in the scenario; this figure uses an 8B on a whole H100 instead.
    scenario = _scenario(1, 15.0)
    service = scenario.services[0].model_copy(update={"model": "Llama-3.1-8B", "allowed_shapes": ["H100-80GB"]})
    config = compile_scenario(scenario.model_copy(update={"services": [service]}), catalog, book)
    start = time.perf_counter()
    FleetSim(config, requests).run(FixedTargets({"svc-00": {parse_shape("H100-80GB"): 10}}))
    seconds = time.perf_counter() - start
    return count / seconds, seconds


def replay_days(services: int, days: int, tick_s: float = 60.0) -> tuple[float, int]:
    catalog = load_catalog()
    book = load_profile_book(catalog)
    scenario = _scenario(services, tick_s)
    problems = check_scenario(scenario, catalog, book)
    if problems:
        raise SystemExit("\n".join(p.format(scenario.name) for p in problems))
    config = compile_scenario(scenario, catalog, book)
    series = load_trace(SERIES)
    assert isinstance(series, RateSeries)
    per_day = round(86400 / series.step_s)
    rng = random.Random(SEED)
    requests = {}
    for i, service in enumerate(scenario.services):
        shift = rng.randrange(0, 14) * per_day
        values = (series.values[shift:] + series.values[:shift])[: days * per_day]
        known = [v for v in values if v == v]
        scale = rng.uniform(0.05, 0.35) / (sum(known) / len(known))
        rotated = RateSeries(series.name, 0.0, series.step_s, values)
        workload = from_rate_series(
            service.name, rotated, service.mean_input_tokens, service.mean_output_tokens, scale, 1.0, SEED + i
        )
        requests[service.name] = workload.requests
    total = sum(len(r.arrival_s) for r in requests.values())
    start = time.perf_counter()
    FleetSim(config, requests).run(HpaPolicy(config, requests))
    return time.perf_counter() - start, total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--json", type=Path, default=None, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    print(f"sim_speed: {pin_to_one_core()}; Python {sys.version.split()[0]}; seed {SEED}")
    print(f"replay modules: {BUILD_STATUS}")
    rate, seconds = requests_per_second(args.requests)
    print(f"requests simulated per second: {rate:,.0f} ({args.requests:,} requests in {seconds:.2f} s); "
          f"goal >= 200,000: {'PASS' if rate >= 200_000 else 'MISS'}")  # fmt: skip
    replay_s, total = replay_days(args.services, args.days)
    verdict = "PASS" if replay_s < 60 else "MISS"
    print(f"{args.days}-day replay of {args.services} services (hpa, 60 s tick): {replay_s:.1f} s for {total:,} "
          f"requests ({total / replay_s:,.0f} requests/s); goal < 60 s: {verdict}")  # fmt: skip
    figures = {
        "requests_per_s": round(rate),
        f"replay_{args.days}d_{args.services}svc_s": round(replay_s, 2),
        "replay_requests": total,
        "compiled": BUILD_STATUS.startswith("compiled"),
    }
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
