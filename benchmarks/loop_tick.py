"""What one tick of the control loop costs for 10, 100 and 1,000 services, on one core, and where the time goes.

The loop (`autoscaler.loop.ControlLoop`, apply mode) runs over the fakes of `autoscaler/testing.py`: a
`FakeMetricsSource`, a `FakeFleet` as inventory and actuator, a `MemoryStateStore(serialize=True)` (every save
encodes the state file's document) and a `MemoryAuditSink` (every event serialized as the file sink would). The
scenario and the starting fleet are decide_scale.py's (`build_scenario`, and `build_tick`'s steady fleet: each
service runs what it was sized for and reports its drifted rate; the same budget rule, 1.5x the spend below 1,000
services, 1.0x from 1,000). The fleet also reports the nodes its replicas occupy per pool, as a platform does.

Before the first tick the loop starts as after a restart: `start()` refills every forecaster with 6 hours of
history (`--history-h`; ForecastSettings.history_s, what a long-running controller keeps and persists), so that
the state it saves is of a steady controller's size, not of a fresh one's. Selection runs as in the controller (at
most one backtest per tick, `ForecastSettings.selections_per_tick`): with that much history every service is due,
so each tick runs one selection while any service still waits for its own, which from 240 services on (a
reselection an hour each, 240 ticks of 15 s an hour) is every tick of the steady state too. The services not yet
selected forecast with the burst envelope, which costs less per tick than a selected model (here about 0.02 ms
against 0.8 ms for Holt-Winters): at 1,000 services, where about 50 are selected by the end, the forecast phase is
below the steady state's by up to about that difference times the services. `--no-selection` runs the burst
envelope alone (the loop's cost without the selector's).

Then every tick: the fake clock advances `tick_s` (15 s), the loop ticks, and a share of the services
(`--changing`, 20 % by default, seeded) get a new request rate for the next tick (a random walk, x0.5 to x2 their
base), so that decisions change, intents are recorded, replicas are set and outcomes audited. The first ticks
(`--warmup`, 10) are not measured; the next `--ticks` (40) are.

Timing: the tick is timed with `time.perf_counter` around `tick()`; the phases are those of `TickReport.phases`,
which the loop measures with its clock's `monotonic()`. The loop runs on a clock whose `now()` is the FakeClock's
(policy time: 15 s between ticks, so that scale-down windows elapse, the counter-derived rates and forecasts are
those of a 15 s tick, and metrics are fresh) and whose `monotonic()` is `time.perf_counter` (real time, so the
phase durations are real). Neither fake nor system clock alone measures truthfully: a FakeClock's monotonic() does
not move, so every phase would read 0 s; a SystemClock would put the ticks milliseconds apart in the loop's own
time, so the loop would decide on millisecond-long ticks (no window ever elapses, rates over milliseconds). The
sum of the phases is the tick less the loop's bookkeeping around them (column "other").

The observe and actuate phases here time in-memory fakes: a real metrics source, inventory or actuator adds its
network latency. The mean and the p99 (nearest rank: of 40 ticks, the slowest) are printed per size, and each
phase's share of the measured ticks' total time. The process pins itself to CPU 0 where it can; the scenario is
frozen for the garbage collector once compiled (`gc.freeze()`, as decide_scale.py and a long-running controller
do); the replay's hot path and the performance model run compiled as `make` builds them (the first line says).

    .venv/bin/python benchmarks/loop_tick.py [--sizes 10 100 1000] [--ticks 40] [--warmup 10] [--changing 0.2]
        [--history-h 6] [--no-selection] [--json FILE]
"""

# ruff: noqa: E402

from __future__ import annotations

import argparse
import gc
import math
import random
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from figures_json import write_figures
from pinning import pin_to_one_core

from autoscaler.native import use_compiled_build

# Both before the imports below, hence the late imports (E402, allowed for this file at its top). The pinning: the
# threads that numpy's BLAS starts when it is imported keep the affinity they were born with, and the forecasters'
# selection runs on them (pinned after the imports, the process used more than one core). The opt-in: decide_scale
# and the core load autoscaler.perf, and it decides whether that loads compiled (autoscaler/native.py).
PINNING = pin_to_one_core()
BUILD_STATUS = use_compiled_build()

from decide_scale import NOW, SEED, budget_ratio, build_scenario, build_tick

from autoscaler.audit import MemoryAuditSink
from autoscaler.catalog import Catalog, load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import Mode, Service, check_scenario
from autoscaler.forecasters import ForecastSettings
from autoscaler.loop import PHASES, ControlLoop, TickReport
from autoscaler.perf import ProfileBook, load_profile_book
from autoscaler.ports import Inventory, RateSample
from autoscaler.testing import FakeClock, FakeFleet, FakeMetricsSource, MemoryStateStore

DEFAULT_SIZES = (10, 100, 1000)
P99 = 0.99
_IDS = re.compile(r"bench-\d+|svc-\d+")  # decision ids and service names, left out to count problem kinds


class BenchClock:
    """The loop's clock here: policy time from a FakeClock, durations from `time.perf_counter` (module docstring)."""

    def __init__(self, fake: FakeClock) -> None:
        self.fake = fake

    def now(self) -> datetime:
        return self.fake.now()

    def monotonic(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float, wakeup: threading.Event | None = None) -> bool:
        return self.fake.sleep(seconds, wakeup)


class HistoryMetrics(FakeMetricsSource):
    """A FakeMetricsSource whose history is generated when asked (6 h x 1,000 services would be 1.4 million stored
    samples): the last `hours` of each service's base rate with a slow wave and seeded noise, one sample a step."""

    def __init__(self, clock: FakeClock, base_rps: Mapping[str, float], hours: float) -> None:
        super().__init__(clock)
        self.base_rps = dict(base_rps)
        self.hours = hours

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        base = self.base_rps.get(service.name)
        if base is None:
            return []
        rng = random.Random(f"{SEED}/{service.name}")
        steps = int(min((end - start).total_seconds(), self.hours * 3600.0) // step_s)
        return [
            RateSample(
                end - timedelta(seconds=k * step_s),
                base * (1.0 + 0.15 * math.sin(k * step_s / 3600.0)) * rng.uniform(0.9, 1.1),
            )
            for k in range(steps, 0, -1)
        ]


class NodeReportingFleet(FakeFleet):
    """A FakeFleet that also reports, per pool, the nodes its replicas occupy (what a platform's inventory says);
    without it the placement stage would see empty pools and add every node anew."""

    def __init__(self, config: CompiledScenario) -> None:
        super().__init__()
        self.config = config

    def snapshot(self, now: datetime) -> Inventory:
        inventory = super().snapshot(now)
        gpus: dict[str, float] = {}
        for service, shapes in inventory.replicas.items():
            plan = self.config.plans[service]
            for shape, replicas in shapes.items():
                candidate = plan.candidate(shape)
                if candidate is not None:
                    gpus[candidate.pool] = gpus.get(candidate.pool, 0.0) + replicas.existing * candidate.gpu_share
        nodes = {
            name: math.ceil(gpus.get(name, 0.0) / pool.gpus_per_node - 1e-9) for name, pool in self.config.pools.items()
        }
        return replace(inventory, pool_nodes=nodes)


@dataclass(frozen=True, slots=True)
class SizeResult:
    services: int
    ticks: tuple[float, ...]  # seconds per measured tick, timed around tick()
    phases: dict[str, float]  # seconds per phase, summed over the measured ticks
    intents: int
    actuations: int
    selections: int
    problems: tuple[str, ...]
    problem_ticks: int

    @property
    def mean_s(self) -> float:
        return sum(self.ticks) / len(self.ticks)

    @property
    def p99_s(self) -> float:
        ordered = sorted(self.ticks)
        return ordered[max(0, math.ceil(P99 * len(ordered)) - 1)]

    def shares(self) -> dict[str, float]:
        """Each phase's share of the measured ticks' time, and "other": the loop's time outside its phases."""
        total = sum(self.ticks)
        shares = {phase: seconds / total for phase, seconds in self.phases.items()}
        shares["other"] = max(0.0, 1.0 - sum(shares.values()))
        return shares


def measure(n: int, args: argparse.Namespace, catalog: Catalog, book: ProfileBook) -> SizeResult:
    # The starting fleet (and so the budget) comes from sizing against a compilation without a budget, as in
    # decide_scale.py.
    draft = compile_scenario(build_scenario(n), catalog, book)
    steady = build_tick(draft, random.Random(SEED), "steady")
    scenario = build_scenario(n, round(budget_ratio(n) * steady.current_cost_usd_per_h, 2))
    issues = check_scenario(scenario, catalog, book)
    if issues:
        raise SystemExit("\n".join(issue.format(scenario.name) for issue in issues[:10]))
    config = compile_scenario(scenario, catalog, book)
    policy = config.scenario.policy

    fake = FakeClock(NOW)
    base = {name: obs.request_rps for name, obs in steady.observation.services.items() if obs.request_rps is not None}
    metrics = HistoryMetrics(fake, base, args.history_h)
    fleet = NodeReportingFleet(config)
    for name, obs in steady.observation.services.items():
        plan = config.plans[name]
        for shape, replicas in obs.replicas.items():
            fleet.seed(name, shape, replicas.spec or replicas.existing)
        metrics.set_rate(name, base[name], plan.service.mean_input_tokens, plan.service.mean_output_tokens)
    settings = ForecastSettings(selection=not args.no_selection)
    loop = ControlLoop(
        config, clock=BenchClock(fake), metrics=metrics, inventory=fleet, actuator=fleet,
        store=MemoryStateStore(serialize=True), audit=MemoryAuditSink(), mode=Mode.APPLY, forecasting=settings,
        run_id="bench",
    )  # fmt: skip
    loop.start()
    # What a long-running controller does once its configuration is loaded (decide_scale.py says why).
    gc.collect()
    gc.freeze()

    rng = random.Random(SEED + n)
    changing = sorted(rng.sample(sorted(base), max(1, round(args.changing * len(base)))))
    level = dict.fromkeys(changing, 1.0)
    ticks: list[float] = []
    phases = dict.fromkeys(PHASES, 0.0)
    intents = actuations = selections = 0
    problems: list[str] = []
    problem_ticks = 0
    for number in range(args.warmup + args.ticks):
        fake.advance(policy.tick_s)
        selected_before = _selected(loop)
        start = time.perf_counter()
        report = loop.tick()
        elapsed = time.perf_counter() - start
        if number >= args.warmup:
            ticks.append(elapsed)
            for phase, seconds in report.phases:
                phases[phase] += seconds
            intents += len(report.audited)
            actuations += len(report.actuations)
            selections += _selected(loop) - selected_before
            problems.extend(report.problems)
            problem_ticks += bool(report.problems)
        _check(report)
        # The next tick's demand: a random walk for the changing share, the rest steady.
        for name in changing:
            level[name] = min(2.0, max(0.5, level[name] * rng.lognormvariate(0.0, 0.2)))
            service = config.plans[name].service
            metrics.set_rate(name, base[name] * level[name], service.mean_input_tokens, service.mean_output_tokens)
    gc.unfreeze()
    return SizeResult(n, tuple(ticks), phases, intents, actuations, selections, tuple(problems), problem_ticks)


def _selected(loop: ControlLoop) -> int:
    """How many forecasters have run a selection (none is due twice within an hour: the count rises by the
    selections of a tick)."""
    return sum(1 for f in loop.forecasters.forecasters.values() if f.selected_at_s is not None)


def _check(report: TickReport) -> None:
    if report.decision is None:
        raise SystemExit(f"tick {report.number} made no decision: {'; '.join(report.problems)}")


def figures(results: Sequence[SizeResult]) -> dict[str, float]:
    """The flat JSON object: tick_mean_s_<n>, tick_p99_s_<n>, <phase>_share_<n>, and what the ticks did."""
    out: dict[str, float] = {}
    for r in results:
        n = r.services
        out[f"tick_mean_s_{n}"] = r.mean_s
        out[f"tick_p99_s_{n}"] = r.p99_s
        for phase, share in r.shares().items():
            out[f"{phase.replace(' ', '_')}_share_{n}"] = share
        out[f"intents_per_tick_{n}"] = r.intents / len(r.ticks)
        out[f"actuations_per_tick_{n}"] = r.actuations / len(r.ticks)
        out[f"selections_per_tick_{n}"] = r.selections / len(r.ticks)
        out[f"problem_ticks_{n}"] = r.problem_ticks
    return out


def _print_table(results: Sequence[SizeResult], title: str) -> None:
    """Two tables: the tick's time and what the ticks did; then each phase's share of that time."""
    phase_names = [*PHASES, "other"]
    tables = [
        (
            title,
            ["services", "mean tick s", "p99 tick s", "intents / tick", "actuations / tick", "selections / tick"],
            [
                [
                    f"{r.services:,}",
                    f"{r.mean_s:.4f}",
                    f"{r.p99_s:.4f}",
                    f"{r.intents / len(r.ticks):.1f}",
                    f"{r.actuations / len(r.ticks):.1f}",
                    f"{r.selections / len(r.ticks):.2f}",
                ]
                for r in results
            ],
        ),
        (
            "share of the measured ticks' time per phase, % (other: the loop outside its phases)",
            ["services", *phase_names],
            [[f"{r.services:,}", *(f"{100 * r.shares()[p]:.1f}" for p in phase_names)] for r in results],
        ),
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        for heading, headers, rows in tables:
            print(heading)
            print(" | ".join(headers))
            for row in rows:
                print(" | ".join(row))
        return
    console = Console(highlight=False, width=max(120, len(title) + 4))
    for heading, headers, rows in tables:
        table = Table(title=heading, title_justify="left")
        for h in headers:
            table.add_column(h, justify="right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="service counts")
    parser.add_argument("--ticks", type=int, default=40, help="measured ticks per size")
    parser.add_argument("--warmup", type=int, default=10, help="ticks run before the measured ones")
    parser.add_argument("--changing", type=float, default=0.2, help="share of services whose demand moves a tick")
    parser.add_argument("--history-h", type=float, default=6.0, help="hours of history refilled at start (0: none)")
    parser.add_argument("--no-selection", action="store_true", help="forecast with the burst envelope alone")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as one flat JSON object")
    args = parser.parse_args(argv)
    if args.ticks < 1 or args.warmup < 0 or not 0 < args.changing <= 1 or args.history_h < 0:
        parser.error("--ticks >= 1, --warmup >= 0, 0 < --changing <= 1 and --history-h >= 0")

    pinning = PINNING
    print(f"loop_tick: {pinning}; Python {sys.version.split()[0]}; seed {SEED}; autoscaler.perf: {BUILD_STATUS}")
    catalog = load_catalog()
    book = load_profile_book(catalog)
    results = [measure(n, args, catalog, book) for n in args.sizes]
    forecasting = "burst envelope only" if args.no_selection else "selection on"
    _print_table(
        results,
        f"ControlLoop.tick(), apply mode, {args.ticks} ticks after {args.warmup}, {args.changing:.0%} of demand "
        f"moving, {args.history_h:g} h of history, {forecasting}; one core: {pinning}",
    )
    for r in results:
        if r.problems:
            # The same problem recurs with each tick's decision id and for many services: count it once per kind.
            kinds = sorted({_IDS.sub("<id>", problem) for problem in r.problems})
            print(
                f"{r.services:>6,} services: {r.problem_ticks} of {len(r.ticks)} measured ticks met problems "
                f"({len(kinds)} kind(s)); " + "; ".join(kinds[:3])
            )
    data = figures(results)
    write_figures(args.json, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
