"""`fleetscale whatif` and `fleetscale plan`: traces loaded through the adapters and replayed on the simulator."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from autoscaler.cli.common import compile_file, err, fail, out
from autoscaler.compiled import CompiledScenario
from autoscaler.errors import ConfigError
from autoscaler.sim.workload import Workload

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


def _duration_or_zero(text: str) -> float:
    """A duration in seconds, where "", "0", "0s", "0m" and the like mean 0 (`parse_duration` wants one above 0)."""
    from autoscaler.backtest_cli import parse_duration

    return 0.0 if text.strip().rstrip("smhd").strip("0.") == "" else parse_duration(text)


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """How `--trace` files become requests (shared by whatif and plan)."""

    trace_format: str | None
    rate_scale: float
    cv: float
    seed: int
    window: str | None
    time_compression: float
    skip_bad_lines: bool
    warmup: str = "0s"


def load_workloads(traces: list[str] | None, options: TraceOptions, compiled: CompiledScenario) -> dict[str, Workload]:
    """`--trace [SERVICE=]FILE` items loaded and turned into requests (a bare FILE is the first service's)."""
    if not traces:
        raise fail("--trace: give at least one trace file ([SERVICE=]FILE)")
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
            raise fail(f"--window {options.window}: {exc} (for example 10m:40m)") from None
    rate_scale, cv, seed = options.rate_scale, options.cv, options.seed
    try:
        warmup_s = _duration_or_zero(options.warmup)
    except ValueError as exc:
        raise fail(f"--warmup {options.warmup}: {exc}") from None

    workloads: dict[str, Workload] = {}
    first_service = compiled.scenario.services[0].name
    for item in traces:
        service, sep, path_text = item.partition("=")
        if not sep:
            service, path_text = first_service, item
        if service not in compiled.plans:
            raise fail(f"--trace {item}: no service {service!r} (services: {', '.join(compiled.plans)})")
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
            raise fail(str(exc)) from None
        except ValueError as exc:
            raise fail(f"--trace {item}: {exc}") from None
        except OSError as exc:
            raise fail(f"--trace {item}: {exc.strerror or exc}") from None
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
            raise fail(f"--trace {item}: {exc}") from None
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
    from autoscaler.sim.loop_policy import DecisionRow, LoopPolicy
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
        verdict,
    )

    compiled = compile_file(scenario_file)
    scenario = compiled.scenario
    names = policy or list(POLICIES)
    for name in names:
        if name not in POLICIES:
            raise fail(f"--policy {name}: unknown (known: {', '.join(POLICIES)})")
    options = TraceOptions(trace_format, rate_scale, cv, seed, window, time_compression, skip_bad_lines, warmup)
    workloads = load_workloads(trace, options, compiled)
    requests = {name: w.requests for name, w in workloads.items()}
    if tune_baselines is not None and not 0 < tune_baselines < 1:
        raise fail(f"--tune-baselines {tune_baselines:g}: an attainment between 0 and 1 (0.99 for 99 %)")
    factories: dict[str, PolicyFactory] = {}
    makers: dict[str, Callable[[float], SimPolicy]] = {}
    rows: list[DecisionRow] = []
    for name in names:
        if name == "rayserve":
            from adapters.rayserve.default_policy import RayServeDefaultPolicy, RayUnavailableError
            from autoscaler.sim.rayserve_policy import RayServePolicy

            try:
                serve = RayServeDefaultPolicy()  # Ray's own policy; it keeps no state, so the replays share it
            except RayUnavailableError as exc:
                raise fail(str(exc)) from None
            # The maker is called with the knob, RayServePolicy's next field: target_ongoing_requests.
            makers[name] = functools.partial(RayServePolicy, compiled, requests, serve)
            factories[name] = functools.partial(RayServePolicy, compiled, requests, serve)
        elif name == "fleetscale" and decisions is not None:
            factories[name] = lambda: LoopPolicy(compiled, requests, decisions=rows)
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
            outcome = "reaches" if result.reached else "does not reach; best"
            out.print(
                f"tuned {name}: {knob} = {result.value:.3g} {outcome} {result.summary.slo_attainment:.2%} "
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
    summary_line = verdict(comparison, tune_baselines) if tune_baselines is not None else None
    if summary_line is not None:
        out.print(summary_line, markup=False)
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
        if summary_line is not None:
            header["verdict"] = summary_line
        written = write_report(report, comparison, compiled, table_rows(comparison), COLUMNS, header)
        out.print(f"report: {report / 'summary.md'} ({len(written)} files)", markup=False)
    if json_out is not None:
        info = {
            name: {"source": w.source, "requests": len(w.requests.arrival_s) - w.requests.warmup}
            for name, w in workloads.items()
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(
            json.dumps(comparison_json(comparison, info, rate_scale, tuned, tune_baselines), indent=2) + "\n"
        )
        out.print(f"wrote {json_out}", markup=False)


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
        raise fail(f"--attainment {attainment:g}: a share between 0 and 1 (0.99 for 99 %)")
    compiled = compile_file(scenario_file)
    scenario = compiled.scenario
    for name in gpu_type or []:
        try:
            compiled.catalog.canonical(name)
        except KeyError as exc:
            raise fail(f"--gpu-type {name}: {exc.args[0]}") from None
    options = TraceOptions(trace_format, rate_scale, cv, seed, window, time_compression, skip_bad_lines, warmup)
    workloads = load_workloads(trace, options, compiled)
    requests = {name: w.requests for name, w in workloads.items()}
    for name in requests:
        if not candidate_shapes(compiled, name, gpu_type or []):
            raise fail(f"service {name}: no allowed shape on the GPU types {', '.join(gpu_type or [])}")
    if ray or ray_address:
        from adapters.raycluster.plan_tasks import map_on_ray
        from autoscaler.sim.plan import evaluate_mapped

        evaluate = evaluate_mapped(compiled, attainment, functools.partial(map_on_ray, address=ray_address))
        where = f"Ray tasks on {ray_address or 'a local Ray'}"
    else:
        evaluate = evaluate_locally(compiled, attainment)
        where = "this process"
    try:
        with err.status(f"evaluating shapes and replica counts ({where})"):
            plan = plan_fleet(compiled, requests, evaluate, gpu_type or [])
    except ValueError as exc:
        raise fail(str(exc), code=1) from None
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
