"""`fleetscale backtest`: score the forecasting models on a trace (the logic is `autoscaler.backtest_cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from autoscaler.cli.common import err, fail, out
from autoscaler.errors import ConfigError
from autoscaler.series import RequestTrace


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
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
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
