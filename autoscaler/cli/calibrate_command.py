"""`fleetscale profile calibrate`: the capacity correction the loop would hold, estimated from Prometheus history,
and optionally a measured profile file (`autoscaler/calibrate.py`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
import yaml

from autoscaler.backtest_cli import parse_duration
from autoscaler.calibrate import calibrate, describe, mean_mix, measured_anchor, with_anchor
from autoscaler.capacity import LatencySlo, TokenMix
from autoscaler.cli.common import compile_file, err, fail, out
from autoscaler.cli.replay_commands import ScenarioOption
from autoscaler.clock import SystemClock
from autoscaler.datafiles import config_dir, load_yaml
from autoscaler.errors import AutoscalerError
from autoscaler.shapes import parse_shape


def profile_calibrate(
    scenario_file: ScenarioOption,
    service: Annotated[str, typer.Option(help="The service whose replicas are measured.")],
    prometheus_url: Annotated[str, typer.Option(help="Prometheus with the service's history (http://HOST:9090).")],
    shape: Annotated[
        str | None,
        typer.Option(help="The shape measured (its metrics.shape_labels select it); default: the service's only one."),
    ] = None,
    since: Annotated[str, typer.Option(help="How far back to read (6h, 30m, 90s).")] = "6h",
    write: Annotated[
        Path | None,
        typer.Option(help="Write the model's profile file with a measured anchor for the shape (whole GPUs only)."),
    ] = None,
) -> None:
    """Estimate how much slower (or faster) than its profile the service's replicas are, from Prometheus history."""
    from adapters.prometheus import PrometheusMetricsSource  # the composition root wires the adapter

    compiled = compile_file(scenario_file)
    plan = compiled.plans.get(service)
    if plan is None:
        raise fail(f"--service {service}: not in the scenario (services: {', '.join(compiled.plans)})")
    svc = plan.service
    shapes = svc.shapes() or [c.shape for c in plan.candidates]
    try:
        chosen = parse_shape(shape, svc.tensor_parallel_size or 1) if shape is not None else None
    except ValueError as exc:
        raise fail(f"--shape {shape}: {exc}") from None
    if chosen is None:
        if len(shapes) != 1:
            raise fail(f"--shape: {service} allows {len(shapes)} shapes ({', '.join(map(str, shapes))}): name one")
        chosen = shapes[0]
    candidate = plan.candidate(chosen)
    if candidate is None or candidate.profile is None:
        raise fail(f"--shape {chosen}: {service} has no profile on it")
    shape_key = next(
        (t for t in svc.metrics.shape_labels if parse_shape(t, svc.tensor_parallel_size or 1) == chosen), None
    )
    if len(shapes) > 1 and shape_key is None:
        err.print(
            f"note: metrics.shape_labels does not select {chosen}: the service's figures are taken for it, which is "
            "right while only that shape serves",
            markup=False,
        )
    try:
        seconds = parse_duration(since)
    except ValueError:
        raise fail(f"--since {since}: not a duration (6h, 30m, 90s)") from None
    policy = compiled.scenario.policy
    end = SystemClock().now()
    source = PrometheusMetricsSource(prometheus_url, timeout_s=30.0)
    try:
        history = source.telemetry_history(svc, end - timedelta(seconds=seconds), end, policy.tick_s, shape_key)
    except AutoscalerError as exc:
        raise fail(f"--prometheus-url {prometheus_url}: {exc}") from None
    finally:
        source.close()
    default_mix = TokenMix(svc.mean_input_tokens, svc.mean_output_tokens)
    mix = mean_mix(
        [(t.input_tokens_per_s, t.output_tokens_per_s, s.request_rps or 0.0) for _, s, t in history], default_mix
    )
    result = calibrate(
        [(at, telemetry) for at, telemetry, _ in history],
        profile=candidate.profile,
        slo=LatencySlo(svc.slo.ttft_p95_s, svc.slo.tpot_p95_s, svc.slo.quantile),
        mix=mix,
        routing=svc.routing,
        window_s=svc.metrics.rate_window_s,
        step_s=policy.tick_s,
        policy=policy.capacity_correction,
    )
    out.print(
        f"{service} on {chosen}: {len(history)} steps of {policy.tick_s:g} s from {prometheus_url} over {since}; "
        f"mix {mix.mean_input_tokens:,.0f}/{mix.mean_output_tokens:,.0f} tokens",
        markup=False,
    )
    out.print(describe(result, service, str(chosen)), markup=False)
    if write is None:
        return
    if result.evidence_steps == 0:
        raise fail(f"--write {write}: nothing measured, nothing written", code=1)
    try:
        anchor = measured_anchor(candidate.profile, result, f"Prometheus {prometheus_url}, service {service}")
    except ValueError as exc:
        raise fail(f"--write {write}: {exc}") from None
    source_file = next(
        (p for p in sorted((config_dir() / "profiles").glob("*.yaml")) if load_yaml(p).get("model") == svc.model),
        None,
    )
    if source_file is None:
        raise fail(f"--write {write}: no profile file of {svc.model} in {config_dir() / 'profiles'}")
    document = with_anchor(load_yaml(source_file), anchor)
    try:
        write.write_text(yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")
    except OSError as exc:
        raise fail(f"--write {write}: {exc.strerror or exc}") from None
    out.print(f"wrote {write}: {source_file.name} with the measured anchor for {chosen} {candidate.profile.precision}")
