"""fleetscale's own telemetry: what the loop decided and how it is doing, as Prometheus metrics (prometheus-client),
served on `/metrics` beside `/healthz` and `/readyz`.

Every name starts with `fleetscale_` and, once published, is never renamed (DESIGN.md section 9);
`fleetscale_target_replicas{service,shape}` is the published target an HPA or KEDA may pass through. The gauges of a
decision are one snapshot of the last tick (a custom collector, so a scrape never sees half of one tick and half of
the next, and a shape that is no longer targeted disappears instead of keeping its last value); the counters and the
tick-time histogram accumulate.

| metric | labels | what |
|---|---|---|
| fleetscale_{current,desired,target}_replicas | service, shape | observed / recommended / actuated |
| fleetscale_predicted_demand_rps | service | the demand sized for (the quantile below) |
| fleetscale_demand_quantile | service | the forecast quantile the service's tier is sized at |
| fleetscale_capacity_rps_per_replica | service | capacity at SLO of one replica of the chosen shape |
| fleetscale_capacity_correction | service, shape | the profile's capacity factor from observed latencies |
| fleetscale_slo_at_risk | service, slo | 1 while the decision says that SLO is at risk |
| fleetscale_decision_reason | service, reason, binding | 1 for the reason and binding constraint of the last decision |
| fleetscale_cost_usd_per_hour, fleetscale_current_cost_usd_per_hour | | spend rate of the target, of now |
| fleetscale_budget_usd_per_hour | | the hourly cap in force (absent without a budget) |
| fleetscale_budget_burn_ratio | | target spend rate over the cap (1 = spending the whole cap) |
| fleetscale_gpu_* | | busy GPUs, allocated share, stranded MIG slices and shares, saturated GPUs of the placement |
| fleetscale_efficiency_sli, _good, _attainment, _objective | objective, indicator | the GPU efficiency SLOs |
| fleetscale_efficiency_burn_rate | objective, indicator, window | burn rate over 5m, 30m, 1h, 6h |
| fleetscale_efficiency_burning | objective, indicator, speed | 1 while the budget burns fast or slowly |
| fleetscale_holds_total | service, reason | decisions that held, by reason |
| fleetscale_errors_total | source | ports that failed (metrics, inventory, spend, audit, state, actuator) |
| fleetscale_ticks_total, fleetscale_tick_overruns_total | | ticks run; ticks that ran past their slot |
| fleetscale_tick_phase_seconds | phase | the last tick's time per phase (observe ... persist) |
| fleetscale_tick_duration_seconds | | histogram of whole ticks |
| fleetscale_last_tick_timestamp_seconds | | when the last tick ran (Unix time) |
| fleetscale_ready | | 1 once state is loaded and a tick decided |
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from autoscaler.compiled import CompiledScenario
from autoscaler.loop import StartReport, TickReport
from autoscaler.model import Decision

_SOURCES = ("metrics", "inventory", "spend", "audit", "state")
_TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def problem_source(problem: str) -> str:
    """The port a tick's problem came from ("metrics: TransientError: ..." -> metrics); "other" if none."""
    head = problem.split(":", 1)[0].split(" ", 1)[0]
    return head if head in _SOURCES else "other"


class _DecisionCollector(Collector):
    """The last tick's decision as gauges, all from one report."""

    def __init__(self, telemetry: LoopTelemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        report, ready = self.telemetry.snapshot()
        yield GaugeMetricFamily("fleetscale_ready", "1 once state is loaded and a first tick decided", value=ready)
        if report is None:
            return
        yield from self._ticks(report)
        if report.decision is None:
            return
        yield from self._services(report)
        yield from self._fleet(report)

    def _ticks(self, report: TickReport) -> Iterator[Metric]:
        phases = GaugeMetricFamily("fleetscale_tick_phase_seconds", "The last tick's time per phase", labels=["phase"])
        for phase, seconds in report.phases:
            phases.add_metric([phase], seconds)
        yield phases
        yield GaugeMetricFamily(
            "fleetscale_last_tick_timestamp_seconds", "When the last tick ran (Unix time)", value=report.at.timestamp()
        )

    def _services(self, report: TickReport) -> Iterator[Metric]:
        assert report.decision is not None
        quantiles = self.telemetry.config.scenario.policy.forecast_quantile
        tiers = {name: plan.service.tier for name, plan in self.telemetry.config.plans.items()}
        families = {
            kind: GaugeMetricFamily(
                f"fleetscale_{kind}_replicas", f"Replicas per service and shape: {kind}", labels=["service", "shape"]
            )
            for kind in ("current", "desired", "target")
        }
        demand = GaugeMetricFamily("fleetscale_predicted_demand_rps", "Demand sized for, req/s", labels=["service"])
        quantile = GaugeMetricFamily(
            "fleetscale_demand_quantile", "Forecast quantile the service is sized at", labels=["service"]
        )
        capacity = GaugeMetricFamily(
            "fleetscale_capacity_rps_per_replica", "Capacity at SLO of one replica, req/s", labels=["service"]
        )
        correction = GaugeMetricFamily(
            "fleetscale_capacity_correction",
            "Factor on the profile's capacity from observed latencies (1: as the profile says)",
            labels=["service", "shape"],
        )
        at_risk = GaugeMetricFamily("fleetscale_slo_at_risk", "1 while the SLO is at risk", labels=["service", "slo"])
        reason = GaugeMetricFamily(
            "fleetscale_decision_reason",
            "1 for the reason and binding constraint of the last decision",
            labels=["service", "reason", "binding"],
        )
        for s in report.decision.services:
            for kind, replicas in (("current", s.current), ("desired", s.desired), ("target", s.target)):
                for shape, n in replicas.items():
                    families[kind].add_metric([s.service, str(shape)], n)
            demand.add_metric([s.service], s.predicted_demand_rps)
            quantile.add_metric([s.service], quantiles[tiers[s.service]])
            capacity.add_metric([s.service], s.capacity_rps_per_replica)
            for shape, c in s.corrections.items():
                correction.add_metric([s.service, str(shape)], c.factor)
            for slo in s.slo_at_risk:
                at_risk.add_metric([s.service, slo], 1)
            reason.add_metric([s.service, s.reason.value, s.binding_constraint.value], 1)
        yield from families.values()
        yield from (demand, quantile, capacity, correction, at_risk, reason)

    def _fleet(self, report: TickReport) -> Iterator[Metric]:
        decision = report.decision
        assert decision is not None
        yield GaugeMetricFamily(
            "fleetscale_cost_usd_per_hour", "Spend rate of the target fleet, USD/h", value=decision.cost_usd_per_h
        )
        current = sum(s.current_cost_usd_per_h for s in decision.services)
        yield GaugeMetricFamily(
            "fleetscale_current_cost_usd_per_hour", "Spend rate of the current fleet, USD/h", value=current
        )
        if decision.budget_usd_per_h is not None:
            yield GaugeMetricFamily(
                "fleetscale_budget_usd_per_hour", "Hourly spend cap in force, USD/h", value=decision.budget_usd_per_h
            )
            yield GaugeMetricFamily(
                "fleetscale_budget_burn_ratio",
                "Target spend rate over the hourly cap",
                value=decision.cost_usd_per_h / decision.budget_usd_per_h,
            )
        yield from self._efficiency(decision)
        frag = decision.fragmentation
        if frag is not None:
            for name, help_text, value in (
                ("busy_gpus", "GPUs holding at least one replica", frag.busy_gpus),
                ("allocated_share", "Allocated share of the busy GPUs (1 = fully used)", frag.utilization),
                (
                    "stranded_memory_slices",
                    "MIG memory slices no demanded profile can use",
                    frag.stranded_memory_slices,
                ),
                ("stranded_share", "Shares of time-shared GPUs no demanded replica can use", frag.stranded_share),
                ("saturated_gpus", "Busy GPUs with no room for another replica", frag.saturated_gpus),
                ("stranded_ratio", "Stranded GPU-equivalents over the fleet's GPUs", frag.stranded_ratio),
                ("fleet", "GPUs of the fleet's nodes", frag.fleet_gpus),
            ):
                yield GaugeMetricFamily(f"fleetscale_gpu_{name}", help_text, value=value)

    def _efficiency(self, decision: Decision) -> Iterator[Metric]:
        labels = ["objective", "indicator"]
        sli = GaugeMetricFamily("fleetscale_efficiency_sli", "The efficiency indicator this tick (0-1)", labels=labels)
        good = GaugeMetricFamily(
            "fleetscale_efficiency_good", "1 when this tick met the objective's threshold", labels=labels
        )
        attainment = GaugeMetricFamily(
            "fleetscale_efficiency_attainment", "Share of good ticks over the objective's window", labels=labels
        )
        objective = GaugeMetricFamily(
            "fleetscale_efficiency_objective", "The share of good ticks the objective asks for", labels=labels
        )
        burn = GaugeMetricFamily(
            "fleetscale_efficiency_burn_rate",
            "Bad ticks over the error budget in the lookback (1: the budget spent exactly over the window)",
            labels=[*labels, "window"],
        )
        burning = GaugeMetricFamily(
            "fleetscale_efficiency_burning", "1 while the budget burns (speed fast or slow)", labels=[*labels, "speed"]
        )
        for status in decision.efficiency:
            key = [status.name, status.indicator.value]
            if status.value is not None:
                sli.add_metric(key, status.value)
            if status.good is not None:
                good.add_metric(key, 1.0 if status.good else 0.0)
            if status.attainment is not None:
                attainment.add_metric(key, status.attainment)
            objective.add_metric(key, status.objective)
            for window, rate in status.burn_rates.items():
                burn.add_metric([*key, window], rate)
            if status.burning is not None:
                burning.add_metric([*key, status.burning], 1.0)
        yield from (sli, good, attainment, objective, burn, burning)


class LoopTelemetry:
    """The loop's metrics: feed it each `TickReport` (`record_tick`, the loop's `publish` callback or beside it) and
    the `StartReport`; serve `registry` (`TelemetryServer`)."""

    def __init__(self, config: CompiledScenario, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._report: TickReport | None = None
        self._started = False
        self._decided = False
        self.holds = Counter(
            "fleetscale_holds", "Decisions that held, by reason", ["service", "reason"], registry=self.registry
        )
        self.errors = Counter("fleetscale_errors", "Ports that failed", ["source"], registry=self.registry)
        self.ticks = Counter("fleetscale_ticks", "Ticks run", registry=self.registry)
        self.overruns = Counter("fleetscale_tick_overruns", "Ticks that ran past their slot", registry=self.registry)
        self.duration = Histogram(
            "fleetscale_tick_duration_seconds", "Time of whole ticks", buckets=_TICK_BUCKETS, registry=self.registry
        )
        self.registry.register(_DecisionCollector(self))

    def record_start(self, report: StartReport) -> None:
        with self._lock:
            self._started = True
        if report.problems:  # history queries that failed: the metrics source's
            self.errors.labels("metrics").inc(len(report.problems))

    def record_tick(self, report: TickReport) -> None:
        self.ticks.inc()
        self.duration.observe(report.duration_s)
        if report.overrun_s > 0:
            self.overruns.inc()
        for problem in report.problems:
            self.errors.labels(problem_source(problem)).inc()
        for actuation in report.actuations:
            if actuation.error:
                self.errors.labels("actuator").inc()
        if report.decision is not None:
            for s in report.decision.services:
                if s.hold:
                    self.holds.labels(s.service, s.reason.value).inc()
        with self._lock:
            self._report = report
            self._decided = self._decided or report.decision is not None

    def snapshot(self) -> tuple[TickReport | None, bool]:
        with self._lock:
            return self._report, self._started and self._decided

    @property
    def ready(self) -> bool:
        return self.snapshot()[1]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class Health:
    """What `/healthz` answers: unhealthy once no tick has run for `stale_after_s` (a wedged loop), healthy before
    the first tick (starting is not failing)."""

    healthy: bool
    message: str


class TelemetryServer:
    """`/metrics`, `/healthz` and `/readyz` on `host:port` (loopback by default; port 0 picks a free one), in a
    daemon thread. `health` says whether the loop is alive; `close()` stops the server and joins its thread."""

    def __init__(
        self,
        telemetry: LoopTelemetry,
        health: Callable[[], Health] | None = None,
        host: str = "127.0.0.1",
        port: int = 9464,
    ) -> None:
        self.telemetry = telemetry
        self.health = health
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, outer.telemetry.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    health = outer.health() if outer.health is not None else Health(True, "ok")
                    self._answer(200 if health.healthy else 503, health.message.encode() + b"\n")
                elif path == "/readyz":
                    ready = outer.telemetry.ready
                    text = b"ready\n" if ready else b"not ready: state not loaded or no tick decided yet\n"
                    self._answer(200 if ready else 503, text)
                else:
                    self._answer(404, b"not found: /metrics, /healthz, /readyz\n")

            def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # http.server's signature
                pass  # a scrape every few seconds is not news

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="fleetscale-telemetry", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
