"""What a policy could reach on the bundled traces if it knew more than a controller can: the bounds behind
issue 5's cost goals.

1. Hindsight sizing on a rate series (ServeGen): at every tick, the fleet that fleetscale's own sizing (pooled
   capacity at the SLO, the service's shape) picks for the highest 10-minute-bin rate of the coming cold start
   plus one bin, divided by `factor`. It knows every bin's rate in advance, so it has no forecast error and never
   starts late; a factor above 1 loads replicas past the capacity model's figure. It bounds what a forecasting
   policy that trusts the capacity model can reach. Keys `<series>_hindsight_<factor in %>pct_attainment` and
   `..._cost_usd`.
2. The Azure code trace's first scored minute: replicas fixed at `first` H100 until the end of that minute, then
   at `then`. A policy that has seen only the warm-up holds 7 there (fleetscale does: the warm-up's bursts reach
   half of that minute's); the rows show what the rest of the hour must then hold to reach 99 %, against the tuned
   static fleet (8 from the start, sized with hindsight on the trace's own peak): `code_switch_<first>_<then>_...`.

Both replay the same workloads as `fleetscale whatif` (rate x0.1 for m-large and x0.02 for m-small, x4 for code,
seed 0, Poisson inside bins, the traces' last 10 minutes as an unscored warm-up). A 14-day series takes 2 to 4
minutes per row and about 6 GB; `--quick` runs the code rows only.

    .venv/bin/python benchmarks/replay_bounds.py [--quick] [--series m-large m-small] [--factors 1.0 1.1 1.2]
        [--json FILE]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from figures_json import write_figures

from autoscaler.native import use_compiled_build

# Before the imports of the replay's modules below: the opt-in decides whether they load compiled
# (autoscaler/native.py), hence the late imports (E402, allowed for this file at its top).
BUILD_STATUS = use_compiled_build()

from adapters.traces import load_trace
from autoscaler.catalog import load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import load_scenario
from autoscaler.perf import load_profile_book
from autoscaler.series import RateSeries, RequestTrace
from autoscaler.shapes import parse_shape
from autoscaler.sim.fleet import FleetSim, FleetView, Policy, ServiceRequests, Targets
from autoscaler.sim.policies import trace_mix
from autoscaler.sim.summary import summarize
from autoscaler.sim.workload import from_rate_series, from_request_trace, with_warmup
from autoscaler.sizing import size_service

ROOT = Path(__file__).resolve().parents[1]
SERIES = {"m-large": 0.1, "m-small": 0.02}  # name -> the rate scale whatif replays it at
WARMUP_S = 600.0
BIN_S = 600.0


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    attainment: float
    cost_usd: float


def _config(name: str) -> CompiledScenario:
    catalog = load_catalog()
    book = load_profile_book(catalog)
    return compile_scenario(load_scenario(ROOT / "configs/examples" / name, catalog, book), catalog, book)


class Hindsight:
    """Sized at each tick for the highest bin rate from now to a cold start and one bin ahead, over `factor`."""

    def __init__(self, config: CompiledScenario, requests: ServiceRequests, factor: float) -> None:
        self.config, self.factor, self.name = config, factor, f"hindsight x{factor:g}"
        self.service = requests.service
        plan = config.plans[self.service]
        self.plan, self.mix = plan, trace_mix(requests)
        bins: dict[int, int] = {}
        for t in requests.arrival_s:
            bins[int(t // BIN_S)] = bins.get(int(t // BIN_S), 0) + 1
        self.rates = [bins.get(k, 0) / BIN_S for k in range(max(bins, default=0) + 1)]
        self.ahead_s = plan.horizon_s + BIN_S
        self.sized: dict[float, Targets] = {}

    def targets(self, view: FleetView) -> Targets:
        first = int(view.now_s // BIN_S)
        last = min(len(self.rates) - 1, int((view.now_s + self.ahead_s) // BIN_S))
        demand = max(self.rates[first : last + 1], default=0.0) / self.factor
        if demand not in self.sized:
            chosen = size_service(self.plan, max(demand, 1e-6), self.mix, None, 0.0).chosen
            assert chosen is not None
            self.sized[demand] = {self.service: {chosen.shape: chosen.replicas}}
        return self.sized[demand]


class Switch:
    """`first` replicas of `shape` until `at_s`, then `then`."""

    def __init__(self, service: str, shape_text: str, first: int, then: int, at_s: float) -> None:
        self.service, self.shape = service, parse_shape(shape_text)
        self.first, self.then, self.at_s = first, then, at_s
        self.name = f"{first} then {then}"

    def targets(self, view: FleetView) -> Targets:
        return {self.service: {self.shape: self.first if view.now_s < self.at_s else self.then}}


def _replay(config: CompiledScenario, requests: Mapping[str, ServiceRequests], policy: Policy) -> tuple[float, float]:
    summary = summarize(FleetSim(config, requests).run(policy), config)
    return summary.slo_attainment, summary.cost_usd


def code_rows() -> list[Row]:
    config = _config("code-assistant.yaml")
    trace = load_trace(ROOT / "configs/traces/AzureLLMInferenceTrace_code.csv")
    assert isinstance(trace, RequestTrace)
    requests = {"code": with_warmup(from_request_trace("code", trace, 4.0, 0).requests, WARMUP_S)}
    end_of_first_minute = WARMUP_S + 60.0
    rows = []
    for first, then in ((8, 8), (7, 8), (7, 9)):
        attainment, cost = _replay(config, requests, Switch("code", "H100-80GB", first, then, end_of_first_minute))
        label = f"code x4: {first} H100 in the first scored minute, then {then}"
        rows.append(Row(f"code_switch_{first}_{then}", label, attainment, cost))
    return rows


def series_rows(name: str, factors: Sequence[float]) -> list[Row]:
    config = _config("llm-70b-daily.yaml")
    series = load_trace(ROOT / f"configs/traces/servegen_{name}_aggregate_rate_10min.csv")
    assert isinstance(series, RateSeries)
    spec = config.plans["big"].service
    workload = from_rate_series("big", series, spec.mean_input_tokens, spec.mean_output_tokens, SERIES[name], 1.0, 0)
    requests = {"big": with_warmup(workload.requests, WARMUP_S)}
    rows = []
    for factor in factors:
        attainment, cost = _replay(config, requests, Hindsight(config, requests["big"], factor))
        label = f"{name} x{SERIES[name]:g}, 14 days: hindsight sizing at {factor:g}x capacity"
        key = f"{name.replace('-', '_')}_hindsight_{round(factor * 100)}pct"
        rows.append(Row(key, label, attainment, cost))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the code rows (seconds, not minutes)")
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=sorted(SERIES))
    parser.add_argument("--factors", nargs="+", type=float, default=[1.0, 1.1, 1.2])
    parser.add_argument("--json", type=Path, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    print(f"replay modules: {BUILD_STATUS}")
    rows = code_rows()
    if not args.quick:
        for name in args.series:
            rows.extend(series_rows(name, args.factors))
    width = max(len(r.label) for r in rows)
    print(f"{'bound':<{width}}  {'attainment':>10}  {'cost $':>12}")
    for row in rows:
        print(f"{row.label:<{width}}  {row.attainment:>10.2%}  {row.cost_usd:>12,.2f}")
    figures: dict[str, float] = {}
    for row in rows:
        figures[f"{row.key}_attainment"] = row.attainment
        figures[f"{row.key}_cost_usd"] = round(row.cost_usd, 2)
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
