"""`fleetscale decide`: the decisions for a demand step, rendered with their reasons."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from autoscaler.capacity import TokenMix
from autoscaler.cli.common import compile_file, fail, out
from autoscaler.compiled import CompiledScenario
from autoscaler.decide import decide
from autoscaler.model import Decision, Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.placement import NodeState, PlacedReplica
from autoscaler.shapes import Shape
from autoscaler.sizing import evaluate


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
    compiled = compile_file(scenario_file)
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
                    raise fail(f"--explain {explain}: no such service") from None
                for stage in trace:
                    out.print(
                        f"  {stage.stage.value:>9}  {stage.summary:<24} {stage.reason.value}: {stage.message}",
                        markup=False,
                    )
                out.print()
        # The demo assumes actuation succeeds (nodes added, layouts set) and new replicas are ready by the next tick.
        replicas = {s.service: {shape: n for shape, n in s.target.items() if n} for s in decision.services}
        if decision.placement is not None:  # the placement is of exactly these targets
            nodes, placed = decision.placement.nodes_after(nodes), decision.placement.replicas
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
    return Observation(services)


def _base_demand(compiled: CompiledScenario, pairs: list[str]) -> dict[str, float]:
    given: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in compiled.plans:
            raise fail(f"--demand {pair}: no service {name!r} (services: {', '.join(compiled.plans)})")
        try:
            given[name] = float(value)
        except ValueError:
            raise fail(f"--demand {pair}: {value!r} is not a number") from None
        if not math.isfinite(given[name]) or given[name] < 0:
            raise fail(f"--demand {pair}: a demand must be a finite number >= 0 (req/s)")
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
