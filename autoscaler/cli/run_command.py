"""`fleetscale run`: the control loop in a process, over the metrics source and actuator the flags name.

Metrics: `--metrics replay` (a trace replayed as live metrics, `autoscaler/sim/trace_source.py`) or `--metrics
prometheus --prometheus-url URL` (`adapters/prometheus`, on the real clock). Actuator: `--actuator log` (a dry-run
fleet that prints each change, `autoscaler/dry_run.py`) or `--actuator rayserve --ray-dashboard-url URL` (the Ray
dashboard's scale API, `adapters/rayserve/dashboard.py`, also the inventory); Kubernetes plugs in here as it lands.
`--telemetry-address HOST:PORT` serves fleetscale's own `/metrics`, `/healthz` and `/readyz`
(`autoscaler/telemetry.py`): on 127.0.0.1:9464 by default with a live metrics source, off for a replay unless
given; `off` turns it off. `--audit FILE` keeps the audit trail (CloudEvents, JSON Lines), `--state FILE` the state
across restarts. With `--speed K` a replay runs K times faster than real time, sleeping between ticks; it ends with
exit 0 when its trace does. SIGTERM and Ctrl-C end it after the tick in progress, state saved.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from adapters.rayserve.dashboard import RayServeDashboard

from autoscaler.audit import AuditFile, AuditTee
from autoscaler.cli.common import compile_file, err, fail, out
from autoscaler.cli.replay_commands import (
    CvOption,
    RateScaleOption,
    ScenarioOption,
    SeedOption,
    SkipBadLinesOption,
    TimeCompressionOption,
    TraceFormatOption,
    TraceOptions,
    TracesOption,
    WindowOption,
    load_workloads,
)
from autoscaler.clock import ScaledClock, SystemClock
from autoscaler.config import Mode
from autoscaler.dry_run import LogFleet
from autoscaler.errors import AutoscalerError
from autoscaler.loop import ControlLoop, TickReport
from autoscaler.ports import AuditSink, MetricsSource
from autoscaler.sim.trace_source import TraceMetricsSource
from autoscaler.state_store import FileStateStore
from autoscaler.telemetry import Health, LoopTelemetry, TelemetryServer

METRICS_SOURCES = ("replay", "prometheus")
DEFAULT_TELEMETRY_ADDRESS = "127.0.0.1:9464"
ACTUATORS = ("log", "rayserve")


def _shapes(mapping: dict[str, int]) -> str:
    return ", ".join(f"{n} x {s}" for s, n in mapping.items() if n) or "0"


def tick_line(report: TickReport, start: datetime) -> list[str]:
    """The progress lines of one tick: one per service whose target changes, and one per problem."""
    elapsed = (report.at - start).total_seconds()
    stamp = f"{int(elapsed // 3600):02d}:{int(elapsed % 3600 // 60):02d}:{int(elapsed % 60):02d} tick {report.number}"
    lines = []
    for s in report.changes():
        what = "; ".join(
            f"{a.shape} " + (f"failed: {a.error}" if a.error else f"applied {a.applied}")
            for a in report.actuations
            if a.service == s.service
        )
        lines.append(
            f"{stamp}: {s.service} {_shapes({str(k): v for k, v in s.current.items()})} -> "
            f"{_shapes({str(k): v for k, v in s.target.items()})} ({s.reason.value}, {s.binding_constraint.value}; "
            f"demand {s.predicted_demand_rps:.3g} req/s, ${s.cost_usd_per_h:.2f}/h)" + (f" [{what}]" if what else "")
        )
    lines.extend(f"{stamp}: problem: {problem}" for problem in report.problems)
    if report.skipped_ticks:
        lines.append(
            f"{stamp}: the tick overran its slot by {report.overrun_s:.1f} s: {report.skipped_ticks} tick(s) skipped"
        )
    return lines


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets: `[::1]:9464`) as (host, port); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise fail(f"{flag} {text}: expected HOST:PORT (such as 127.0.0.1:9464), or off")
    return host, int(port)


def run_command(
    scenario_file: ScenarioOption,
    metrics: Annotated[str, typer.Option(help=f"Metrics source: {', '.join(METRICS_SOURCES)}.")] = "replay",
    trace: TracesOption = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus to read with --metrics prometheus (http://HOST:9090).")
    ] = None,
    prometheus_timeout: Annotated[
        float, typer.Option(help="Seconds a Prometheus query may take before the tick holds.", min=0.1)
    ] = 5.0,
    telemetry_address: Annotated[
        str | None,
        typer.Option(
            help=f"Serve /metrics, /healthz and /readyz here (HOST:PORT, or off); default {DEFAULT_TELEMETRY_ADDRESS} "
            "with a live metrics source, off for a replay."
        ),
    ] = None,
    actuator: Annotated[
        str, typer.Option(help=f"Actuator: {', '.join(ACTUATORS)} (log: a dry run; rayserve: the Ray dashboard).")
    ] = "log",
    ray_dashboard_url: Annotated[
        str | None, typer.Option(help="The Ray dashboard with --actuator rayserve (http://HOST:8265).")
    ] = None,
    ray_token_file: Annotated[
        Path | None, typer.Option(help="Ray's auth token (~/.ray/auth_token) when the cluster has token auth.")
    ] = None,
    audit: Annotated[Path | None, typer.Option(help="Audit trail (CloudEvents, JSON Lines), appended to.")] = None,
    audit_url: Annotated[
        str | None, typer.Option(help="Also post the audit events to this URL (CloudEvents structured mode).")
    ] = None,
    state: Annotated[Path | None, typer.Option(help="State file: loaded at start, saved every tick.")] = None,
    mode: Annotated[
        str | None, typer.Option(help="observe, recommend or apply; default: the scenario's policy.mode.")
    ] = None,
    speed: Annotated[float, typer.Option(help="Replay this many times faster than real time.", min=0.0)] = 1.0,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks.", min=1)] = None,
    trace_format: TraceFormatOption = None,
    rate_scale: RateScaleOption = 1.0,
    window: WindowOption = None,
    time_compression: TimeCompressionOption = 1.0,
    skip_bad_lines: SkipBadLinesOption = False,
    cv: CvOption = 1.0,
    seed: SeedOption = 0,
) -> None:
    """Run the control loop: observe, forecast, decide, audit, actuate and persist every tick."""
    if metrics not in METRICS_SOURCES:
        raise fail(f"--metrics {metrics}: unknown (known: {', '.join(METRICS_SOURCES)})")
    if actuator not in ACTUATORS:
        raise fail(f"--actuator {actuator}: unknown (known: {', '.join(ACTUATORS)})")
    if actuator == "rayserve" and ray_dashboard_url is None:
        raise fail("--actuator rayserve needs --ray-dashboard-url (such as http://127.0.0.1:8265)")
    if not speed > 0 or not math.isfinite(speed):
        raise fail(f"--speed {speed:g}: must be a number > 0 (1: real time)")
    try:
        chosen_mode = Mode(mode) if mode is not None else None
    except ValueError:
        raise fail(f"--mode {mode}: unknown (known: {', '.join(m.value for m in Mode)})") from None
    live = metrics != "replay"
    if live and prometheus_url is None:
        raise fail("--metrics prometheus needs --prometheus-url (such as http://127.0.0.1:9090)")
    if live and speed != 1.0:
        raise fail(f"--speed {speed:g}: a live metrics source runs in real time (only a replay can be sped up)")
    if telemetry_address is None:
        telemetry_address = DEFAULT_TELEMETRY_ADDRESS if live else "off"
    address = None if telemetry_address == "off" else parse_address(telemetry_address, "--telemetry-address")
    compiled = compile_file(scenario_file)

    start = SystemClock().now().replace(microsecond=0)
    clock = ScaledClock(start, speed) if not live else SystemClock()
    source: MetricsSource
    replay: TraceMetricsSource | None = None
    closers: list[Callable[[], None]] = []
    if live:
        if trace:
            raise fail("--trace is for --metrics replay; --metrics prometheus reads the live series")
        from adapters.prometheus import PrometheusMetricsSource  # the composition root wires the adapter

        prometheus = PrometheusMetricsSource(
            str(prometheus_url), timeout_s=prometheus_timeout, dcgm=compiled.scenario.telemetry.dcgm
        )
        source = prometheus
        closers.append(prometheus.close)
    else:
        options = TraceOptions(trace_format, rate_scale, cv, seed, window, time_compression, skip_bad_lines)
        workloads = load_workloads(trace, options, compiled)
        source = replay = TraceMetricsSource({name: w.requests for name, w in workloads.items()}, start)
    fleet: LogFleet | RayServeDashboard
    if actuator == "rayserve":
        assert ray_dashboard_url is not None  # checked with the other flags
        from adapters.rayserve.dashboard import RayServeDashboard as Dashboard  # the composition root wires it

        try:
            dashboard = Dashboard(compiled, ray_dashboard_url, token_file=ray_token_file)
        except AutoscalerError as exc:
            raise fail(f"--ray-token-file {ray_token_file}: {exc}") from None
        fleet = dashboard
        closers.append(dashboard.close)
    else:
        fleet = LogFleet(lambda line: out.print(f"  {line}", markup=False))
    try:
        trail = AuditFile(audit) if audit is not None else None
    except AutoscalerError as exc:
        raise fail(f"--audit {audit}: {exc}") from None
    if trail is not None and trail.repair_note:
        err.print(f"audit: {trail.repair_note}", markup=False)
    sink: AuditSink | None = trail
    if audit_url is not None:
        from adapters.cloudevents_http import HttpAuditSink  # the composition root wires the adapter

        try:
            forwarder = HttpAuditSink(audit_url)
        except AutoscalerError as exc:
            raise fail(f"--audit-url {audit_url}: {exc}") from None
        sink = AuditTee(trail, [forwarder])
    store = FileStateStore(state) if state is not None else None
    loop = ControlLoop(
        compiled, clock=clock, metrics=source, inventory=fleet, actuator=fleet, store=store, audit=sink,
        mode=chosen_mode,
    )  # fmt: skip
    telemetry = LoopTelemetry(compiled)
    server: TelemetryServer | None = None
    if address is not None:
        stale_after_s = 3 * loop.policy.tick_s + 30

        def health() -> Health:
            report, _ = telemetry.snapshot()
            if report is None:
                return Health(True, "starting")
            age_s = (clock.now() - report.at).total_seconds()
            if age_s > stale_after_s:
                return Health(False, f"no tick for {age_s:.0f} s (more than {stale_after_s:g} s)")
            return Health(True, f"ok: tick {report.number} {age_s:.0f} s ago")

        try:
            server = TelemetryServer(telemetry, health, *address)
        except OSError as exc:
            loop.close()
            raise fail(
                f"--telemetry-address {telemetry_address}: cannot listen there ({exc.strerror or exc})"
            ) from None
        out.print(f"telemetry: {server.url}/metrics, /healthz, /readyz", markup=False)
    try:
        started = loop.start()
    except AutoscalerError as exc:
        loop.close()
        if server is not None:
            server.close()
        for close in closers:
            close()
        raise fail(str(exc)) from None
    telemetry.record_start(started)
    if started.loaded and started.saved_at is not None:
        out.print(f"state: {state} from {started.saved_at:%Y-%m-%d %H:%M:%S} UTC, {loop.ticks} ticks", markup=False)
    for problem in started.problems:
        err.print(f"start: {problem}", markup=False)
    out.print(
        f"run: {compiled.scenario.name}, mode {loop.mode.value}, tick {loop.policy.tick_s:g} s, speed x{speed:g}, "
        f"metrics {metrics}, actuator {actuator}"
        + ("" if loop.mode is Mode.APPLY else f" (mode {loop.mode.value}: nothing is applied; --mode apply acts)"),
        markup=False,
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the tick in progress completes and saves its state; the wait before the next one ends now

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    changes = 0

    def on_tick(report: TickReport) -> None:
        nonlocal changes
        telemetry.record_tick(report)
        changes += len(report.changes())
        for line in tick_line(report, start):
            out.print(line, markup=False)

    try:
        until = None if replay is None else (lambda report: replay.finished(report.at))
        ran = loop.run(stop, on_tick=on_tick, until=until, max_ticks=ticks)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        loop.close()
        if server is not None:
            server.close()
        for close in closers:
            close()
    why = (
        "stopped" if stop.is_set() else ("trace ended" if ticks is None or ran < ticks else f"--ticks {ticks} reached")
    )
    kept = ", ".join(f"{what} {path}" for what, path in (("audit", audit), ("state", state)) if path is not None)
    out.print(f"run: {why} after {ran} ticks, {changes} changes" + (f"; {kept}" if kept else ""), markup=False)
