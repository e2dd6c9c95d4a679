"""`fleetscale`, the command line: the composition root that loads files and wires the core to the outside.

Commands: validate, schema, catalog (show, mig-check), profile (show, capacity), decide.
Exit codes: 0 success, 1 a negative answer (an invalid MIG layout), 2 bad input (a config error, an unknown name).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from autoscaler.capacity import LatencySlo, LengthSpread, Routing, TokenMix, capacity_at_slo
from autoscaler.catalog import Catalog, load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import ConfigIssue, Scenario, check_scenario, issues_from_validation_error, load_scenario
from autoscaler.datafiles import load_yaml
from autoscaler.decide import decide
from autoscaler.errors import ConfigError
from autoscaler.model import Decision, Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.perf import Precision, ProfileBook, load_profile_book
from autoscaler.placement import NodeState, PlacedReplica
from autoscaler.placement.applied import applied
from autoscaler.series import RequestTrace
from autoscaler.shapes import Shape, parse_shape
from autoscaler.sim.workload import Workload
from autoscaler.sizing import evaluate

app = typer.Typer(no_args_is_help=True, add_completion=False, help="fleetscale: autoscaler for GPU inference fleets.")
catalog_app = typer.Typer(no_args_is_help=True, help="The GPU catalog: types, MIG profiles, prices.")
profile_app = typer.Typer(no_args_is_help=True, help="Replica performance profiles.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(profile_app, name="profile")

# soft_wrap: a message is one line however narrow the terminal (or pipe) is, so that "one line per error" holds.
# Piped output (CI logs, `make demo | tee`) gets a wide page instead of Rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message, markup=False)
    return typer.Exit(code)


def _book() -> tuple[Catalog, ProfileBook]:
    catalog = load_catalog()
    return catalog, load_profile_book(catalog)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Scenario files (YAML).")]) -> None:
    """Check scenario files; print one line per problem (file, field path, value, what is wrong); exit 2 if any."""
    catalog, book = _book()
    problems = 0
    for path in files:
        try:
            data = load_yaml(path)
        except ConfigError as exc:
            err.print(str(exc), markup=False)
            problems += 1
            continue
        issues: list[ConfigIssue]
        try:
            scenario = Scenario.model_validate(data)
            issues = check_scenario(scenario, catalog, book)
        except ValidationError as exc:
            issues = issues_from_validation_error(exc)
        for issue in issues:
            err.print(issue.format(str(path)), markup=False)
        problems += len(issues)
        if not issues:
            out.print(f"{path}: ok")
    if problems:
        raise _fail(f"{problems} problem(s) found")


@app.command()
def schema() -> None:
    """Print the JSON schema of a scenario file."""
    out.print_json(json.dumps(Scenario.model_json_schema()))


@catalog_app.command("show")
def catalog_show(gpu: Annotated[str | None, typer.Argument(help="One GPU type (or alias) to detail.")] = None) -> None:
    """Print the catalog, or one GPU type with its MIG profiles and presets."""
    catalog = load_catalog()
    if gpu is None:
        table = Table(title="GPU catalog")
        for column in ("GPU", "memory GB", "TB/s", "BF16 TFLOPS", "FP8 TFLOPS", "MIG", "$/GPU-h", "price date"):
            table.add_column(column)
        for g in catalog.gpus.values():
            price = "-" if g.price.usd_per_gpu_h is None else f"{g.price.usd_per_gpu_h:.2f}"
            fp8 = "-" if g.fp8_dense_tflops is None else f"{g.fp8_dense_tflops:g}"
            mig = "-" if g.mig is None else f"{len(g.mig.profiles)} profiles"
            table.add_row(
                g.name, f"{g.memory_gb:g}", f"{g.memory_bandwidth_tb_per_s:g}", f"{g.bf16_dense_tflops:g}", fp8, mig,
                price, g.price.date or "-",
            )  # fmt: skip
        out.print(table)
        return
    try:
        g = catalog.gpu(gpu)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    out.print(
        f"[bold]{g.name}[/] (aliases: {', '.join(g.aliases) or '-'}): {g.memory_gb:g} GB, "
        f"{g.memory_bandwidth_tb_per_s:g} TB/s, {g.bf16_dense_tflops:g} BF16 TFLOPS, {g.interconnect}"
    )
    out.print(f"  spec: {g.spec_source} [{g.spec_confidence}]", markup=False)
    price = "none" if g.price.usd_per_gpu_h is None else f"${g.price.usd_per_gpu_h:.4g}/GPU-h"
    out.print(f"  price: {price}; {g.price.source} ({g.price.date or 'no date'})", markup=False)
    if g.mig is None:
        out.print("  no MIG")
        return
    table = Table(title=f"{g.name} MIG profiles ({g.mig.geometry_confidence})")
    for column in ("profile", "compute slices", "memory slices", "memory GB", "legal starts", "max per GPU"):
        table.add_column(column)
    for p in g.mig.profiles.values():
        table.add_row(
            p.name, str(p.compute_slices), str(p.memory_slices), f"{p.memory_gb:g}",
            ",".join(map(str, p.starts)), str(p.max_instances),
        )  # fmt: skip
    out.print(table)
    presets = Table(title="NVIDIA mig-parted presets")
    presets.add_column("preset")
    presets.add_column("layout")
    for name, layout in g.mig.presets.items():
        presets.add_row(name, " + ".join(f"{n} x {p}" for p, n in layout.items()))
    out.print(presets)


def _expand_profiles(items: list[str]) -> list[str]:
    """`3g.40gb`, `2x3g.40gb` and `2*3g.40gb` all work; the count repeats the profile. Bad counts: ValueError."""
    profiles: list[str] = []
    for item in items:
        for sep in ("x", "*"):
            head, found, tail = item.partition(sep)
            if found and head.isdigit():
                if int(head) < 1 or not tail:
                    raise ValueError(f"{item!r}: write COUNTxPROFILE with a count of at least 1, e.g. 2x1g.10gb")
                profiles.extend([tail] * int(head))
                break
        else:
            profiles.append(item)
    return profiles


@catalog_app.command("mig-check")
def catalog_mig_check(
    gpu: Annotated[str, typer.Argument(help="GPU type, e.g. H100-80GB.")],
    profiles: Annotated[list[str], typer.Argument(help="Profiles, e.g. 3g.40gb 2x1g.10gb.")],
) -> None:
    """Say whether the profiles form a valid MIG layout of one GPU; print the start slots (exit 0) or why not (1)."""
    catalog = load_catalog()
    try:
        catalog.gpu(gpu)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    try:
        wanted = _expand_profiles(profiles)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    result = catalog.check_mig_layout(gpu, wanted)
    layout = " + ".join(f"{n} x {p}" for p, n in Counter(wanted).items())
    if not result.valid:
        out.print(f"invalid: {layout} on {result.gpu_type}: {result.reason}", markup=False)
        raise typer.Exit(1)
    gpu_type = catalog.gpu(gpu)
    assert gpu_type.mig is not None
    slots = ["."] * gpu_type.mig.memory_slices
    for index, placement in enumerate(result.placements):
        for s in range(placement.start, placement.start + placement.memory_slices):
            slots[s] = "ABCDEFGH"[index]
    out.print(f"valid: {layout} on {result.gpu_type}")
    for index, placement in enumerate(result.placements):
        end = placement.start + placement.memory_slices - 1
        label = "ABCDEFGH"[index]
        out.print(f"  {label}  {placement.profile:<12} start {placement.start}  memory slices {placement.start}-{end}")
    out.print(f"  memory slices: [{''.join(slots)}]  free: {list(result.free_memory_slices) or 'none'}")


@profile_app.command("show")
def profile_show(
    model: Annotated[str, typer.Argument(help="Model name or alias.")],
    shape: Annotated[str, typer.Option(help="Shape, e.g. H100-80GB, 4xH100-80GB, H100-80GB/3g.40gb.")] = "H100-80GB",
    precision: Annotated[Precision, typer.Option(help="Weight precision.")] = Precision.BF16,
) -> None:
    """Print every number of a replica profile with `measured` or `derived` and its source."""
    _catalog, book = _book()
    try:
        profile = book.profile(model, parse_shape(shape), precision)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0] if exc.args else exc)) from None
    table = Table(title=f"{profile.model} {precision} on {profile.shape}")
    for column in ("figure", "value", "kind", "source"):
        table.add_column(column, overflow="fold")
    for name, figure in profile.figures().items():
        table.add_row(name, f"{figure.value:,.4g}", figure.kind, figure.source)
    out.print(table)


@profile_app.command("capacity")
def profile_capacity(
    model: Annotated[str, typer.Argument(help="Model name or alias.")],
    shape: Annotated[str, typer.Argument(help="Shape, e.g. H100-80GB.")],
    ttft_p95_s: Annotated[float, typer.Option(help="TTFT bound, s.", min=1e-6)] = 1.0,
    tpot_p95_s: Annotated[float, typer.Option(help="TPOT bound, s.", min=1e-6)] = 0.05,
    input_tokens: Annotated[float, typer.Option(help="Mean prompt tokens.", min=1)] = 1000,
    output_tokens: Annotated[float, typer.Option(help="Mean output tokens.", min=1)] = 200,
    lengths: Annotated[
        LengthSpread, typer.Option(help="How lengths spread around their means (fixed: all at the mean).")
    ] = LengthSpread.EXPONENTIAL,
    quantile: Annotated[float, typer.Option(help="Share of requests within both bounds.", min=0.5, max=0.9999)] = 0.95,
    replicas: Annotated[int, typer.Option(help="Replicas behind one router (each sustains more).", min=1)] = 1,
    routing: Annotated[
        Routing, typer.Option(help="How the router spreads requests (only least_loaded credits more replicas).")
    ] = Routing.LEAST_LOADED,
    precision: Annotated[Precision, typer.Option(help="Weight precision.")] = Precision.BF16,
) -> None:
    """Print the capacity at SLO of one replica, what binds it, and the latency there."""
    _catalog, book = _book()
    try:
        profile = book.profile(model, parse_shape(shape), precision, int(input_tokens + output_tokens))
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc.args[0] if exc.args else exc)) from None
    slo = LatencySlo(ttft_p95_s, tpot_p95_s, quantile)
    result = capacity_at_slo(profile, slo, TokenMix(input_tokens, output_tokens, lengths), replicas, routing)
    at = result.at_capacity
    each = f" each of {replicas} replicas behind {routing} routing" if replicas > 1 else ""
    out.print(f"{profile.model} on {profile.shape}: {result.rps:.4g} req/s{each} at the SLO, bound by {result.binding}")
    if result.reason:
        out.print(f"  {result.reason}", markup=False)
    share = f"p{quantile * 100:g}"
    out.print(
        f"  at capacity: {share} TTFT {at.ttft_s:.3f} s, {share} TPOT {at.tpot_s:.4f} s, batch {at.mean_batch:.1f}, "
        f"prefill busy {at.prefill_utilization:.0%}, slots {at.slots}"
    )


def _shapes_text(mapping: Mapping[Shape, int]) -> str:
    return ", ".join(f"{n} x {s}" for s, n in mapping.items() if n) or "0"


def _render(decision: Decision, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("service", "tier", "demand req/s", "current", "target", "reason", "binding", "$/h"):
        table.add_column(column)
    for s in decision.services:
        table.add_row(
            s.service, s.tier.value, f"{s.predicted_demand_rps:.3g}", _shapes_text(s.current), _shapes_text(s.target),
            s.reason.value, s.binding_constraint, f"{s.cost_usd_per_h:.2f}",
        )  # fmt: skip
    out.print(table)
    for s in decision.services:
        out.print(f"  {s.service}: {s.message}", markup=False)
        for risk in s.slo_at_risk:
            out.print(f"  {s.service}: [bold red]SLO at risk:[/] {risk}")
        if s.rejected_alternative is not None and s.changes:
            alt = s.rejected_alternative
            price = f"${alt.cost_usd_per_h:.2f}/h"
            out.print(
                f"  {s.service}: rejected {alt.replicas} x {alt.shape} ({price}): {alt.why_rejected}",
                markup=False,
            )
    budget = "none" if decision.budget_usd_per_h is None else f"${decision.budget_usd_per_h:.2f}/h"
    out.print(f"  fleet cost ${decision.cost_usd_per_h:.2f}/h, budget {budget} ({decision.budget_note})")
    for note in decision.notes:
        out.print(f"  note: {note}", markup=False)
    placement, frag = decision.placement, decision.fragmentation
    if placement is not None and frag is not None:
        out.print(
            f"  placement: {len(placement.replicas)} replicas on {len(placement.nodes_used())} nodes "
            f"({frag.busy_gpus} GPUs busy, {frag.utilization:.0%} allocated, {frag.saturated_gpus} saturated, "
            f"{frag.stranded_memory_slices} MIG memory slices and {frag.stranded_share:g} GPU shares stranded); "
            f"{len(placement.started)} to start, {len(placement.stopped)} to stop, {len(placement.moves)} to move, "
            f"{len(placement.repartitions)} GPUs to re-partition",
            markup=False,
        )
    out.print()


@app.command("decide")
def decide_command(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario file (YAML).")],
    demand: Annotated[
        list[str] | None, typer.Option(help="SERVICE=RPS base demand; default 80 % of what min_replicas serve.")
    ] = None,
    step: Annotated[
        float, typer.Option(help="The demand step: base demand x this from the second tick on.", min=0.0)
    ] = 3.0,
    ticks: Annotated[int, typer.Option(help="Ticks to run after the step.", min=0, max=1000)] = 4,
    explain: Annotated[str | None, typer.Option(help="Service whose stage trace to print.")] = None,
) -> None:
    """Show the decisions for a demand step: replicas start ready at the base demand, then demand jumps."""
    compiled = _compiled(scenario_file)
    scenario = compiled.scenario
    base = _base_demand(compiled, demand or [])
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    tick = timedelta(seconds=scenario.policy.tick_s)
    replicas: dict[str, dict[Shape, int]] = {}
    nodes: tuple[NodeState, ...] = ()
    placed: tuple[PlacedReplica, ...] = ()
    state = PolicyState()
    # A silent first tick one window earlier sizes the fleet for the base demand, as if it had run for a while.
    now = start - timedelta(seconds=scenario.policy.scale_down_window_s)
    for index in range(-1, ticks + 1):
        factor = 1.0 if index <= 0 else step
        obs = replace(_observation(compiled, base, factor, replicas, now), nodes=nodes, placed=placed)
        decision, state = decide(obs, {}, compiled, state, now)
        if index >= 0:
            label = "base demand" if index == 0 else f"demand x{step:g}, tick {index} of the step"
            _render(decision, f"t = {(now - start).total_seconds():.0f} s: {label}")
            if explain:
                try:
                    trace = decision.service(explain).trace
                except KeyError:
                    raise _fail(f"--explain {explain}: no such service") from None
                for stage in trace:
                    out.print(
                        f"  {stage.stage.value:>9}  {stage.summary:<24} {stage.reason.value}: {stage.message}",
                        markup=False,
                    )
                out.print()
        # The demo assumes actuation succeeds (nodes added, layouts set) and new replicas are ready by the next tick.
        replicas = {s.service: {shape: n for shape, n in s.target.items() if n} for s in decision.services}
        if decision.placement is not None:
            nodes, placed = applied(decision.placement, nodes, replicas)
        now = start if index == -1 else now + tick


def _observation(
    compiled: CompiledScenario,
    base: dict[str, float],
    factor: float,
    replicas: dict[str, dict[Shape, int]],
    now: datetime,
) -> Observation:
    services = {}
    for name, plan in compiled.plans.items():
        rps = base[name] * factor
        services[name] = ServiceObservation(
            rps,
            rps * plan.service.mean_input_tokens,
            rps * plan.service.mean_output_tokens,
            now,
            {shape: ShapeReplicas(ready=n, spec=n) for shape, n in replicas.get(name, {}).items()},
        )
    return Observation(now, services)


def _base_demand(compiled: CompiledScenario, pairs: list[str]) -> dict[str, float]:
    given: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in compiled.plans:
            raise _fail(f"--demand {pair}: no service {name!r} (services: {', '.join(compiled.plans)})")
        try:
            given[name] = float(value)
        except ValueError:
            raise _fail(f"--demand {pair}: {value!r} is not a number") from None
        if not math.isfinite(given[name]) or given[name] < 0:
            raise _fail(f"--demand {pair}: a demand must be a finite number >= 0 (req/s)")
    base = {}
    for name, plan in compiled.plans.items():
        if name in given:
            base[name] = given[name]
            continue
        mix = TokenMix(plan.service.mean_input_tokens, plan.service.mean_output_tokens)
        options = [evaluate(c, plan, 0.0, mix) for c in plan.candidates]
        served = max((o.capacity_rps for o in options), default=0.0)
        base[name] = 0.8 * served * max(plan.service.min_replicas, 1)
    return base


@app.command("backtest")
def backtest_command(
    trace: Annotated[Path, typer.Option(help="Trace file (Azure, ServeGen, Mooncake, BurstGPT, generic or rate CSV).")],
    trace_format: Annotated[str | None, typer.Option(help="Format; detected from the content if not given.")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service's requests (traces with services).")] = None,
    step: Annotated[str, typer.Option(help="Forecast step, e.g. 60s, 10m (a rate trace's window by default).")] = "",
    horizon: Annotated[str, typer.Option(help="Forecast horizon, e.g. 15m, 1h.")] = "15m",
    train_fraction: Annotated[float, typer.Option(help="Share of the series to train on; the rest is tested.")] = 0.7,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """Backtest every forecasting model on a trace (rolling origin) and say which one the controller would use."""
    from adapters.traces import load_trace
    from autoscaler.backtest_cli import parse_duration, resample, run_backtest
    from autoscaler.errors import DataQualityError

    try:
        loaded = load_trace(trace, trace_format)
        step_s = parse_duration(step) if step else None
        horizon_s = parse_duration(horizon)
        if isinstance(loaded, RequestTrace):
            if service is not None:
                loaded = _only_service(loaded, service)
            series = loaded.to_rate_series(step_s or 60.0)
        else:
            if service is not None:
                raise ValueError("--service needs a request trace with a service column")
            series = resample(loaded, step_s) if step_s else loaded
        with Progress(console=err, transient=True) as progress:
            tasks: dict[str, TaskID] = {}

            def advance(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = progress.add_task(f"backtest {name}", total=total)
                progress.update(tasks[name], completed=done)

            report = run_backtest(series, horizon_s, train_fraction, on_progress=advance)
    except (ConfigError, DataQualityError) as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    table = Table(
        title=f"{report.trace}: {report.train_points} windows of {report.step_s:g}s to train, {report.test_points} "
        f"to test, horizon {report.horizon_s:g}s",
        title_justify="left",
    )
    for column in ("model", "MASE", "vs " + report.baseline, "sMAPE", "pinball", "cov p50", "cov p90", "cov p99",
                   "fit s", "predict ms"):  # fmt: skip
        table.add_column(column, justify="right" if column != "model" else "left")
    base = report.scores[report.baseline].mase
    for name, score in report.scores.items():
        label = f"{name} -> {report.chosen}" if name == "auto" else name
        table.add_row(
            label, f"{score.mase:.3f}", f"{score.mase / base:.2f}", f"{score.smape:.3f}", f"{score.pinball:.3g}",
            f"{score.coverage[0.5]:.3f}", f"{score.coverage[0.9]:.3f}", f"{score.coverage[0.99]:.3f}",
            f"{score.fit_s:.2f}", f"{1000 * score.predict_s:.1f}",
        )  # fmt: skip
    out.print(table)
    out.print(f"chosen: {report.chosen} (what the controller would use for this series)")
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {json_out}")


def _only_service(trace: RequestTrace, service: str) -> RequestTrace:
    if trace.service is None:
        raise ValueError("--service needs a request trace with a service column")
    keep = [i for i, name in enumerate(trace.service) if name == service]
    if not keep:
        raise ValueError(
            f"--service {service}: no request of that service (have: {', '.join(sorted(set(trace.service)))})"
        )
    return RequestTrace(
        trace.name + f"[{service}]",
        tuple(trace.arrival_s[i] for i in keep),
        tuple(trace.input_tokens[i] for i in keep),
        tuple(trace.output_tokens[i] for i in keep),
        tuple(service for _ in keep),
    )


# The options that whatif and plan share: how the traces become requests.
ScenarioOption = Annotated[Path, typer.Option("--scenario", help="Scenario file (YAML).")]
TracesOption = Annotated[
    list[str] | None,
    typer.Option(help="[SERVICE=]FILE; a bare FILE is the trace of the scenario's first service. Repeatable."),
]
TraceFormatOption = Annotated[str | None, typer.Option(help="Trace format; detected from the content if not given.")]
RateScaleOption = Annotated[float, typer.Option(help="Multiply every trace's request rate by this.", min=0.0)]
WindowOption = Annotated[
    str | None, typer.Option(help="Replay only START:END of each trace (offsets from its start, e.g. 10m:40m).")
]
TimeCompressionOption = Annotated[
    float, typer.Option(help="Play the traces this many times faster (same requests, higher rate).", min=0.0)
]
SkipBadLinesOption = Annotated[
    bool, typer.Option(help="Skip malformed trace lines (their count and line numbers are printed).")
]
WarmupOption = Annotated[
    str, typer.Option(help="Replay each trace's last DURATION first, unscored, so policies start warm (0: off).")
]
CvOption = Annotated[float, typer.Option(help="Inter-arrival CV inside the bins of a rate trace (1: Poisson).")]
SeedOption = Annotated[int, typer.Option(help="Seed of rate scaling and arrival generation.")]


def _compiled(scenario_file: Path) -> CompiledScenario:
    """The scenario file checked and compiled; a configuration error ends the command with its message."""
    catalog, book = _book()
    try:
        scenario = load_scenario(scenario_file, catalog, book)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    return compile_scenario(scenario, catalog, book)


def _duration_or_zero(text: str) -> float:
    """A duration in seconds, where "", "0", "0s", "0m" and the like mean 0 (`parse_duration` wants one above 0)."""
    from autoscaler.backtest_cli import parse_duration

    return 0.0 if text.strip().rstrip("smhd").strip("0.") == "" else parse_duration(text)


@dataclass(frozen=True, slots=True)
class _TraceOptions:
    """How `--trace` files become requests (shared by whatif and plan)."""

    trace_format: str | None
    rate_scale: float
    cv: float
    seed: int
    window: str | None
    time_compression: float
    skip_bad_lines: bool
    warmup: str = "0s"


def _load_workloads(
    traces: list[str] | None, options: _TraceOptions, compiled: CompiledScenario
) -> dict[str, Workload]:
    """`--trace [SERVICE=]FILE` items loaded and turned into requests (a bare FILE is the first service's)."""
    if not traces:
        raise _fail("--trace: give at least one trace file ([SERVICE=]FILE)")
    from adapters.traces import load_trace_with_report
    from autoscaler.backtest_cli import parse_duration
    from autoscaler.errors import DataQualityError
    from autoscaler.series import RateSeries
    from autoscaler.sim.workload import compress_time, from_rate_series, from_request_trace, time_window, with_warmup

    window: tuple[float, float] | None = None
    if options.window is not None:
        start_text, sep, end_text = options.window.partition(":")
        try:
            if not sep:
                raise ValueError("write START:END")
            window = (_duration_or_zero(start_text), parse_duration(end_text))
        except ValueError as exc:
            raise _fail(f"--window {options.window}: {exc} (for example 10m:40m)") from None
    rate_scale, cv, seed = options.rate_scale, options.cv, options.seed
    try:
        warmup_s = _duration_or_zero(options.warmup)
    except ValueError as exc:
        raise _fail(f"--warmup {options.warmup}: {exc}") from None

    workloads: dict[str, Workload] = {}
    first_service = compiled.scenario.services[0].name
    for item in traces:
        service, sep, path_text = item.partition("=")
        if not sep:
            service, path_text = first_service, item
        if service not in compiled.plans:
            raise _fail(f"--trace {item}: no service {service!r} (services: {', '.join(compiled.plans)})")
        try:
            result = load_trace_with_report(
                Path(path_text), options.trace_format, skip_bad_lines=options.skip_bad_lines
            )
            loaded = result.trace
            if window is not None:
                loaded = time_window(loaded, *window)
            if options.time_compression != 1.0:
                loaded = compress_time(loaded, options.time_compression)
        except (DataQualityError, ConfigError) as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(f"--trace {item}: {exc}") from None
        except OSError as exc:
            raise _fail(f"--trace {item}: {exc.strerror or exc}") from None
        if result.report.skipped:
            out.print(result.report.summary(), markup=False)
        spec = compiled.plans[service].service
        try:
            if isinstance(loaded, RateSeries):
                workloads[service] = from_rate_series(
                    service, loaded, spec.mean_input_tokens, spec.mean_output_tokens, rate_scale, cv, seed
                )
            else:
                workloads[service] = from_request_trace(service, loaded, rate_scale, seed)
        except ValueError as exc:
            raise _fail(f"--trace {item}: {exc}") from None
    for name, w in workloads.items():
        gaps = f", {w.missing_bins} bins without data" if w.missing_bins else ""
        out.print(f"{name}: {w.source}: {len(w.requests.arrival_s):,} requests{gaps}", markup=False)
        if warmup_s > 0:
            workloads[name] = replace(w, requests=with_warmup(w.requests, warmup_s))
    if warmup_s > 0:
        out.print(
            f"warm-up: each trace's last {warmup_s / 60:g} min replayed first, not scored (--warmup 0 to skip)",
            markup=False,
        )
    return workloads


@app.command("whatif")
def whatif_command(
    scenario_file: ScenarioOption,
    trace: TracesOption = None,
    trace_format: TraceFormatOption = None,
    rate_scale: RateScaleOption = 1.0,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="fleetscale, fleetscale_free (any shape), hpa, kpa, rayserve, static; repeatable (default: all)."
        ),
    ] = None,
    tune_baselines: Annotated[
        float | None,
        typer.Option(help="Tune hpa, kpa, rayserve and static to the cheapest setting reaching this attainment."),
    ] = None,
    window: WindowOption = None,
    time_compression: TimeCompressionOption = 1.0,
    skip_bad_lines: SkipBadLinesOption = False,
    warmup: WarmupOption = "10m",
    cv: CvOption = 1.0,
    seed: SeedOption = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON here.")] = None,
    decisions: Annotated[
        Path | None, typer.Option(help="Write fleetscale's decisions here (CSV, one row per tick, service, shape).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write PNG plots and a Markdown summary to this directory.")
    ] = None,
) -> None:
    """Replay traces under each policy, the oracle and the instant-start bound; compare cost and SLO attainment."""
    from autoscaler.sim.compare import PolicyFactory, compare
    from autoscaler.sim.fleet import Policy as SimPolicy
    from autoscaler.sim.policies import DecisionRow, FleetscalePolicy
    from autoscaler.sim.tune import Tuned, tune
    from autoscaler.sim.whatif import (
        COLUMNS,
        KNOBS,
        POLICIES,
        comparison_json,
        core_factory,
        free_choice,
        knob_maker,
        knob_values,
        table_rows,
    )

    compiled = _compiled(scenario_file)
    scenario = compiled.scenario
    names = policy or list(POLICIES)
    for name in names:
        if name not in POLICIES:
            raise _fail(f"--policy {name}: unknown (known: {', '.join(POLICIES)})")
    options = _TraceOptions(trace_format, rate_scale, cv, seed, window, time_compression, skip_bad_lines, warmup)
    workloads = _load_workloads(trace, options, compiled)
    requests = {name: w.requests for name, w in workloads.items()}
    if tune_baselines is not None and not 0 < tune_baselines < 1:
        raise _fail(f"--tune-baselines {tune_baselines:g}: an attainment between 0 and 1 (0.99 for 99 %)")
    factories: dict[str, PolicyFactory] = {}
    makers: dict[str, Callable[[float], SimPolicy]] = {}
    rows: list[DecisionRow] = []
    for name in names:
        if name == "rayserve":
            from adapters.rayserve.default_policy import RayServePolicy, RayUnavailableError

            try:
                RayServePolicy(compiled, requests)
            except RayUnavailableError as exc:
                raise _fail(str(exc)) from None
            makers[name] = lambda value: RayServePolicy(compiled, requests, target_ongoing_requests=value)
            factories[name] = lambda: RayServePolicy(compiled, requests)
        elif name == "fleetscale" and decisions is not None:
            factories[name] = lambda: FleetscalePolicy(compiled, requests, decisions=rows)
        else:
            factories[name] = core_factory(name, compiled, requests)
            if name in KNOBS:
                makers[name] = knob_maker(name, compiled, requests)
    tuned: dict[str, Tuned] = {}
    if tune_baselines is not None:
        for name, make in makers.items():
            knob = KNOBS[name][0]
            with err.status(f"tuning {name}'s {knob} to reach {tune_baselines:.2%} attainment"):
                result = tune(name, knob, make, knob_values(name), compiled, requests, tune_baselines)
            tuned[name] = result
            factories[name] = functools.partial(make, result.value)
            verdict = "reaches" if result.reached else "does not reach; best"
            out.print(
                f"tuned {name}: {knob} = {result.value:.3g} {verdict} {result.summary.slo_attainment:.2%} "
                f"at ${result.summary.cost_usd:.2f} ({result.tried} settings replayed)",
                markup=False,
            )
    total = sum(len(r.arrival_s) for r in requests.values())
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("replaying", total=len(factories) + 2)

        finished = [0]

        def step(name: str) -> None:
            bar.update(task, completed=finished[0], description=f"replaying {total:,} requests: {name}")
            finished[0] += 1

        configs = {"fleetscale_free": free_choice(compiled)} if "fleetscale_free" in factories else {}
        replayed = {name: t.result for name, t in tuned.items()}
        comparison = compare(compiled, requests, factories, step, configs, replayed)
    table = Table(title=f"what-if: {scenario.name}, rate x{rate_scale:g}", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "policy" else "right")
    for cells in table_rows(comparison):
        table.add_row(*cells)
    out.print(table)
    out.print(
        "oracle: clairvoyant with cold starts; instant_start: the same without cold starts (the physical limit). "
        "Cost counts each replica's GPU share from creation (cold start included) to its end.",
        markup=False,
    )
    if decisions is not None:
        import csv

        decisions.parent.mkdir(parents=True, exist_ok=True)
        with decisions.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["time_s", "service", "shape", "current", "target", "reason", "predicted_demand_rps", "cost_usd_per_h"]
            )
            for row in rows:
                writer.writerow(
                    [f"{row.time_s:g}", row.service, row.shape, row.current, row.target, row.reason,
                     f"{row.predicted_demand_rps:.4g}", f"{row.cost_usd_per_h:.4f}"]
                )  # fmt: skip
        out.print(f"wrote {decisions} ({len(rows):,} rows)", markup=False)
    if report is not None:
        from autoscaler.sim.report import write_report

        header = {
            "traces": ", ".join(
                f"{n}: {w.source} ({len(w.requests.arrival_s) - w.requests.warmup:,} requests)"
                for n, w in workloads.items()
            ),
            "rate scale": f"x{rate_scale:g}",
            "tick": f"{scenario.policy.tick_s:g} s",
        }
        if tuned:
            header["baselines tuned to"] = f"{tune_baselines:.2%} attainment: " + ", ".join(
                f"{n} {t.knob} {t.value:.3g}" + ("" if t.reached else " (not reached)") for n, t in tuned.items()
            )
        written = write_report(report, comparison, compiled, table_rows(comparison), COLUMNS, header)
        out.print(f"report: {report / 'summary.md'} ({len(written)} files)", markup=False)
    if json_out is not None:
        info = {
            name: {"source": w.source, "requests": len(w.requests.arrival_s) - w.requests.warmup}
            for name, w in workloads.items()
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(comparison_json(comparison, info, rate_scale, tuned), indent=2) + "\n")
        out.print(f"wrote {json_out}", markup=False)


@app.command("plan")
def plan_command(
    scenario_file: ScenarioOption,
    trace: TracesOption = None,
    trace_format: TraceFormatOption = None,
    rate_scale: RateScaleOption = 1.0,
    attainment: Annotated[float, typer.Option(help="SLO attainment the fleet must reach (0.99 for 99 %).")] = 0.99,
    gpu_type: Annotated[
        list[str] | None, typer.Option(help="Only shapes on these GPU types (catalog names). Repeatable.")
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Evaluate the candidates as tasks on a local Ray.")] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Evaluate the candidates as tasks on this Ray cluster (its workers need fleetscale)."),
    ] = None,
    window: WindowOption = None,
    time_compression: TimeCompressionOption = 1.0,
    skip_bad_lines: SkipBadLinesOption = False,
    warmup: WarmupOption = "10m",
    cv: CvOption = 1.0,
    seed: SeedOption = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan as JSON here.")] = None,
) -> None:
    """The cheapest fixed fleet (GPU types, counts, MIG layouts) that serves the traces at the SLO attainment."""
    from autoscaler.sim.plan import candidate_shapes, evaluate_locally, plan_fleet

    if not 0 < attainment < 1:
        raise _fail(f"--attainment {attainment:g}: a share between 0 and 1 (0.99 for 99 %)")
    compiled = _compiled(scenario_file)
    scenario = compiled.scenario
    for name in gpu_type or []:
        try:
            compiled.catalog.canonical(name)
        except KeyError as exc:
            raise _fail(f"--gpu-type {name}: {exc.args[0]}") from None
    options = _TraceOptions(trace_format, rate_scale, cv, seed, window, time_compression, skip_bad_lines, warmup)
    workloads = _load_workloads(trace, options, compiled)
    requests = {name: w.requests for name, w in workloads.items()}
    for name in requests:
        if not candidate_shapes(compiled, name, gpu_type or []):
            raise _fail(f"service {name}: no allowed shape on the GPU types {', '.join(gpu_type or [])}")
    if ray or ray_address:
        from adapters.raycluster.plan_tasks import evaluate_with_ray

        evaluate = evaluate_with_ray(compiled, attainment, ray_address)
        where = f"Ray tasks on {ray_address or 'a local Ray'}"
    else:
        evaluate = evaluate_locally(compiled, attainment)
        where = "this process"
    try:
        with err.status(f"evaluating shapes and replica counts ({where})"):
            plan = plan_fleet(compiled, requests, evaluate, gpu_type or [])
    except ValueError as exc:
        raise _fail(str(exc), code=1) from None
    table = Table(
        title=f"plan: {scenario.name}, attainment {attainment:.2%}, rate x{rate_scale:g}", title_justify="left"
    )
    for column in ("service", "shape", "replicas", "attainment", "$/h", "chosen"):
        table.add_column(column, justify="left" if column in ("service", "shape") else "right")
    for option in sorted(plan.options, key=lambda o: (o.service, o.cost_usd_per_h)):
        chosen = plan.chosen[option.service] is option
        table.add_row(
            option.service, str(option.shape), "-" if option.replicas is None else str(option.replicas),
            f"{option.attainment:.2%}", "-" if option.replicas is None else f"{option.cost_usd_per_h:.2f}",
            "*" if chosen else "",
        )  # fmt: skip
    out.print(table)
    for pool, count in sorted(plan.nodes.items()):
        spec = compiled.pools[pool]
        out.print(f"  pool {pool}: {count} nodes of {spec.gpus_per_node} {spec.gpu_type}", markup=False)
    for layout, count in sorted(plan.layouts().items()):
        out.print(f"  MIG layout {'+'.join(layout)}: {count} GPUs", markup=False)
    out.print(
        f"  replicas ${plan.cost_usd_per_h:.2f}/h; whole nodes ${plan.node_cost_usd_per_h:.2f}/h "
        f"(evaluated in {where}; {sum(o.replays for o in plan.options)} replays)",
        markup=False,
    )
    if json_out is not None:
        data = {
            "attainment": attainment,
            "rate_scale": rate_scale,
            "services": {
                name: {"shape": str(o.shape), "replicas": o.replicas, "attainment": o.attainment,
                       "cost_usd_per_h": o.cost_usd_per_h}
                for name, o in plan.chosen.items()
            },
            "nodes": plan.nodes,
            "mig_layouts": {"+".join(layout): n for layout, n in plan.layouts().items()},
            "cost_usd_per_h": plan.cost_usd_per_h,
            "node_cost_usd_per_h": plan.node_cost_usd_per_h,
        }  # fmt: skip
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2) + "\n")
        out.print(f"wrote {json_out}", markup=False)


def main() -> None:
    """Console entry point: configuration errors end with their message and exit code 2, never a traceback."""
    try:
        app()
    except ConfigError as exc:
        err.print(str(exc), markup=False)
        sys.exit(2)
