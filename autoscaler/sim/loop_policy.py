"""The `fleetscale` policy of the replay is the control loop itself: the simulated fleet behind the loop's ports.

`FleetSimPorts` is the simulator seen through `autoscaler/ports.py`: the `MetricsSource` (each service's request and
token rates over the last `observe_s` of simulated time, as a PromQL `rate(...[1m])` reads them, and a request
counter), the `InventorySource` (replicas per shape, ready or starting, with the spec the loop last set) and the
`Actuator` (the spec the loop sets is what the simulator scales to at the end of the tick). `LoopPolicy` runs one
`ControlLoop.tick()` per simulated tick on a `FakeClock` set to the simulated time, in apply mode (a what-if asks
what the controller would do if it acted), so what `whatif` predicts is what the controller does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from autoscaler.compiled import CompiledScenario
from autoscaler.config import Mode, Service
from autoscaler.forecasters import ForecastSettings
from autoscaler.loop import ControlLoop
from autoscaler.model import ShapeReplicas
from autoscaler.ports import AuditSink, Inventory, RateSample, ScaleRequest, ScaleResult, ServiceMetrics
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetView, ServiceRequests, Targets
from autoscaler.testing import FakeClock

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # the simulated clock's time 0 (a Monday)


class MetricsWindow:
    """Request and token rates over the last `span_s` seconds of ticks, as a metrics query over a range returns
    them (`rate(...[1m])` in PromQL, the shortest usual range at a 15 s scrape). The observed rate is a floor of
    the demand fleetscale sizes for; one 15 s tick catches a burst's peak, and the replicas that peak would
    start are ready minutes after it has passed (the forecaster still sees every tick, for the burst envelope).
    At a tick of `span_s` or longer it is the last tick's window."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.windows: deque[tuple[float, int, int, int]] = deque()  # (seconds, arrivals, input, output tokens)
        self.covered_s = 0.0

    def add(self, window_s: float, arrivals: int, input_tokens: int, output_tokens: int) -> None:
        self.windows.append((window_s, arrivals, input_tokens, output_tokens))
        self.covered_s += window_s
        # Drop the oldest tick while the newer ones still cover the span.
        while self.windows and self.covered_s - self.windows[0][0] >= self.span_s - 1e-9:
            self.covered_s -= self.windows.popleft()[0]

    def rates(self) -> tuple[float, float, float] | None:
        """(requests/s, input tokens/s, output tokens/s), or None before the first tick."""
        if not self.windows or self.covered_s <= 0:
            return None
        span = self.covered_s
        return (
            sum(w[1] for w in self.windows) / span,
            sum(w[2] for w in self.windows) / span,
            sum(w[3] for w in self.windows) / span,
        )


class FleetSimPorts:
    """The simulated fleet as a MetricsSource, an InventorySource and an Actuator (see the module docstring)."""

    def __init__(self, observe_s: float = 60.0) -> None:
        self.observe_s = observe_s
        self.view: FleetView | None = None
        self.at: datetime = EPOCH
        self.spec: dict[str, dict[Shape, int]] = {}
        self._windows: dict[str, MetricsWindow] = {}
        self._totals: dict[str, int] = {}

    def see(self, view: FleetView, at: datetime) -> None:
        """The simulator's view at this tick: the last window's arrivals and tokens, and the replicas."""
        self.view, self.at = view, at
        for name, window in view.services.items():
            if window.samples:  # the first tick has no window behind it
                self._windows.setdefault(name, MetricsWindow(self.observe_s)).add(
                    window.window_s, window.arrivals, window.input_tokens, window.output_tokens
                )
            self._totals[name] = self._totals.get(name, 0) + window.arrivals

    # MetricsSource

    def observe(self, services: Sequence[Service], now: datetime) -> Mapping[str, ServiceMetrics]:
        assert self.view is not None
        result = {}
        for name, window in self.view.services.items():
            metrics = self._windows.get(name)
            rates = metrics.rates() if metrics is not None else None
            if rates is None:  # before a whole window: the tick's own
                rates = (window.rate_rps, window.input_tokens / window.window_s, window.output_tokens / window.window_s)
            result[name] = ServiceMetrics(self.at, rates[0], rates[1], rates[2], float(self._totals.get(name, 0)))
        return result

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        return ()  # a replay starts with no history

    # InventorySource

    def snapshot(self, now: datetime) -> Inventory:
        assert self.view is not None
        replicas: dict[str, dict[Shape, ShapeReplicas]] = {}
        for name, window in self.view.services.items():
            spec = self.spec.get(name, {})
            shapes = set(window.ready) | set(window.starting) | set(spec)
            replicas[name] = {
                shape: ShapeReplicas(window.ready.get(shape, 0), window.starting.get(shape, 0), spec.get(shape))
                for shape in shapes
            }
        return Inventory(replicas)

    # Actuator

    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        self.spec.setdefault(request.service, {})[request.shape] = request.replicas
        return ScaleResult(request.replicas)

    def targets(self) -> Targets:
        """What the simulator scales to: the spec the loop set, for every service (one it never set keeps none)."""
        return {name: dict(shapes) for name, shapes in self.spec.items()}


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One service and shape of one decision: what `--decisions FILE` writes."""

    time_s: float
    service: str
    shape: str
    current: int
    target: int
    reason: str
    predicted_demand_rps: float
    cost_usd_per_h: float


@dataclass
class LoopPolicy:
    """fleetscale's control loop as the simulator's policy (see the module docstring). With `decisions`, every
    decision is also kept there, one row per service and shape; with `audit`, the loop's audit trail goes there."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    decisions: list[DecisionRow] | None = None
    name: str = "fleetscale"
    observe_s: float = 60.0  # the range of the metrics query the controller reads (see MetricsWindow)
    audit: AuditSink | None = None
    forecasting: ForecastSettings | None = None
    ports: FleetSimPorts = field(init=False)
    clock: FakeClock = field(init=False)
    loop: ControlLoop = field(init=False)

    def __post_init__(self) -> None:
        self.ports = FleetSimPorts(self.observe_s)
        self.clock = FakeClock(EPOCH)
        self.loop = ControlLoop(
            self.config,
            clock=self.clock,
            metrics=self.ports,
            inventory=self.ports,
            actuator=self.ports,
            audit=self.audit,
            mode=Mode.APPLY,
            forecasting=self.forecasting,
            run_id="sim",
        )

    def targets(self, view: FleetView) -> Targets:
        now = EPOCH + timedelta(seconds=view.now_s)
        self.clock.set(now)
        self.ports.see(view, now)
        report = self.loop.tick()
        if self.decisions is not None and report.decision is not None:
            for s in report.decision.services:
                for shape in sorted(set(s.current) | set(s.target), key=str):
                    self.decisions.append(
                        DecisionRow(
                            view.now_s, s.service, str(shape), s.current.get(shape, 0), s.target.get(shape, 0),
                            s.reason.value, s.predicted_demand_rps, s.cost_usd_per_h,
                        )
                    )  # fmt: skip
        return self.ports.targets()
