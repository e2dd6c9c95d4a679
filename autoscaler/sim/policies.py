"""The policies the simulator compares (DESIGN.md section 6), behind `fleet.Policy`.

Reactive baselines scale one shape per service: the one fleetscale's sizing picks for the trace's mean demand among
the shapes the service allows (`baseline_shapes`), so that they get the shapes the user configured. Their knob
(HPA's and KPA's target, and Ray Serve's in `adapters/rayserve`) defaults to the requests in flight that one replica
holds at its capacity at SLO (Little's law: capacity x (TTFT + TPOT x (output - 1))), which is how an operator
would set it from a profile; `--tune-baselines` searches it.

- `static`: a fixed count per service, sized (capacity at SLO) for the trace's peak over `peak_window_s`.
- `hpa`: Kubernetes HPA on requests in flight per replica: desired = ceil(in flight / target) unless within the
  0.1 tolerance; scale-up at most max(4, 2 x current) per sync; scale-down to the highest recommendation of the
  last 300 s (the stabilization window). Replicas that are starting count with a metric of 0, as HPA counts
  unready pods on scale-up.
- `kpa`: Knative KPA: desired = ceil(mean concurrency / (target x 0.7)) over a 60 s stable window; when the 6 s
  panic window asks for 2x the ready replicas, panic: scale to the panic window's figure and never down until 60 s
  without panic; scale-down at most halves the replicas per tick.
- `fleetscale`: `decide()` with the scenario's policy, fed an Observation built from the window (request and token
  rates, replicas per shape) and a forecast of each service's rate (`RateForecaster`: the recent burst envelope and
  trend).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from autoscaler.capacity import TokenMix
from autoscaler.compiled import CompiledScenario
from autoscaler.decide import decide
from autoscaler.model import Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.native import picklable_by_fields
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetView, ServiceRequests, Targets
from autoscaler.sizing import size_service
from forecasting import Forecast

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # the simulated clock's time 0 (a Monday)


@dataclass(frozen=True, slots=True)
class BaselineShape:
    shape: Shape
    capacity_rps: float
    in_flight_at_capacity: float  # requests in flight per replica at its capacity at SLO (Little's law)

    def replicas_for(self, rate_rps: float) -> int:
        """Replicas whose capacity at SLO covers `rate_rps` (how a baseline starts: from the first window)."""
        return math.ceil(rate_rps / self.capacity_rps) if self.capacity_rps else 0


def trace_mix(requests: ServiceRequests) -> TokenMix:
    n = max(1, len(requests.arrival_s))
    return TokenMix(max(1.0, sum(requests.input_tokens) / n), max(1.0, sum(requests.output_tokens) / n))


def mean_rate(requests: ServiceRequests) -> float:
    if len(requests.arrival_s) < 2:
        return float(len(requests.arrival_s))
    span = requests.arrival_s[-1] - requests.arrival_s[0]
    return len(requests.arrival_s) / span if span > 0 else float(len(requests.arrival_s))


def peak_rate(requests: ServiceRequests, window_s: float) -> float:
    """The highest rate over windows of `window_s` (aligned at the first arrival)."""
    if not requests.arrival_s:
        return 0.0
    start = requests.arrival_s[0]
    counts: dict[int, int] = {}
    for t in requests.arrival_s:
        k = int((t - start) // window_s)
        counts[k] = counts.get(k, 0) + 1
    return max(counts.values()) / window_s


def baseline_shapes(config: CompiledScenario, requests: Mapping[str, ServiceRequests]) -> dict[str, BaselineShape]:
    """Per service: the shape sizing picks for the trace's mean demand, its capacity and in-flight figure."""
    shapes = {}
    for name, plan in config.plans.items():
        reqs = requests.get(name)
        mix = trace_mix(reqs) if reqs else TokenMix(plan.service.mean_input_tokens, plan.service.mean_output_tokens)
        rate = mean_rate(reqs) if reqs else 1.0
        sizing = size_service(plan, max(rate, 1e-6), mix, None, 0.0)
        if sizing.chosen is None or sizing.chosen.capacity is None:
            raise ValueError(f"service {name}: no shape it allows can serve it at its SLO ({sizing.message})")
        capacity = sizing.chosen.capacity
        latency = capacity.at_capacity.ttft_s + capacity.at_capacity.tpot_s * max(0.0, mix.mean_output_tokens - 1)
        shapes[name] = BaselineShape(sizing.chosen.shape, capacity.rps, max(1.0, capacity.rps * latency))
    return shapes


def bounded_replicas(config: CompiledScenario, name: str, replicas: int) -> int:
    """`replicas` within the service's [min_replicas, max_replicas]."""
    service = config.plans[name].service
    return max(service.min_replicas, min(service.max_replicas, replicas))


@dataclass
class StaticPolicy:
    """Fixed replicas per service, sized for the trace's peak (x `scale`, the knob)."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    peak_window_s: float = 60.0
    scale: float = 1.0
    name: str = "static"
    fixed: dict[str, dict[Shape, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shapes = baseline_shapes(self.config, self.requests)
        for name, base in shapes.items():
            reqs = self.requests.get(name)
            peak = peak_rate(reqs, self.peak_window_s) if reqs else 0.0
            count = math.ceil(self.scale * peak / base.capacity_rps - 1e-9) if base.capacity_rps > 0 else 0
            self.fixed[name] = {base.shape: bounded_replicas(self.config, name, count)}

    def targets(self, view: FleetView) -> Targets:
        return self.fixed


@dataclass
class HpaPolicy:
    """Kubernetes HPA on requests in flight per replica (see the module docstring); `target` is the knob."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    target: float | None = None  # in flight per replica; None: each service's in-flight at capacity x target_scale
    target_scale: float = 1.0
    tolerance: float = 0.1
    stabilization_s: float = 300.0
    metric_window_s: float = 15.0
    name: str = "hpa"
    _shapes: dict[str, BaselineShape] = field(default_factory=dict)
    _history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shapes = baseline_shapes(self.config, self.requests)

    def targets(self, view: FleetView) -> Targets:
        out: dict[str, dict[Shape, int]] = {}
        for name, window in view.services.items():
            base = self._shapes[name]
            target = self.target or base.in_flight_at_capacity * self.target_scale
            current = window.ready.get(base.shape, 0) + window.starting.get(base.shape, 0)
            in_flight = window.mean_in_flight(self.metric_window_s, view.now_s)
            if current == 0:
                desired = math.ceil(in_flight / target) if in_flight > 0 else 0
                if not window.samples:  # the first tick: size for the first window's rate
                    desired = base.replicas_for(window.rate_rps)
            else:
                ratio = in_flight / (target * current)
                desired = current if abs(ratio - 1.0) <= self.tolerance else math.ceil(in_flight / target)
                desired = min(desired, max(4, 2 * current))
            desired = bounded_replicas(self.config, name, desired)
            history = self._history.setdefault(name, deque())
            history.append((view.now_s, desired))
            while history and history[0][0] < view.now_s - self.stabilization_s:
                history.popleft()
            if desired < current:
                desired = min(current, max(d for _, d in history))
            out[name] = {base.shape: desired}
        return out


@dataclass
class KpaPolicy:
    """Knative's KPA on concurrency (see the module docstring); `target` (concurrency per replica) is the knob."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    target: float | None = None  # concurrency per replica; None: the in-flight at capacity / 0.7 x target_scale
    target_scale: float = 1.0
    utilization: float = 0.7
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0
    name: str = "kpa"
    _shapes: dict[str, BaselineShape] = field(default_factory=dict)
    _panic_since: dict[str, float] = field(default_factory=dict)
    _last_panic: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shapes = baseline_shapes(self.config, self.requests)

    def targets(self, view: FleetView) -> Targets:
        out: dict[str, dict[Shape, int]] = {}
        for name, window in view.services.items():
            base = self._shapes[name]
            target = self.target or base.in_flight_at_capacity / self.utilization * self.target_scale
            per_replica = target * self.utilization
            ready = window.ready.get(base.shape, 0)
            current = ready + window.starting.get(base.shape, 0)
            if not window.samples:
                desired = base.replicas_for(window.rate_rps)
                out[name] = {base.shape: bounded_replicas(self.config, name, desired)}
                continue
            stable = math.ceil(window.mean_in_flight(self.stable_s, view.now_s) / per_replica)
            panic = math.ceil(window.mean_in_flight(self.panic_s, view.now_s) / per_replica)
            if ready and panic / ready >= self.panic_threshold:
                self._panic_since.setdefault(name, view.now_s)
                self._last_panic[name] = view.now_s
            elif name in self._panic_since and view.now_s - self._last_panic[name] >= self.stable_s:
                del self._panic_since[name]
            if name in self._panic_since:
                desired = max(current, panic, stable)
            else:
                desired = max(stable, math.ceil(current / self.max_scale_down_rate))
            out[name] = {base.shape: bounded_replicas(self.config, name, desired)}
        return out


class RateForecaster:
    """The request rate over the coming horizon, from the rates of the last `lookback_s` (one per tick).

    Quantiles are the empirical quantiles of those per-tick rates (the burst envelope of the recent past: on a
    bursty service, what the next cold-start window may bring is what the last half hour's windows brought), and
    the mean is the mean of the last `level_s`; both are scaled by the trend, the ratio of the last `level_s` to
    the `level_s` before it, carried over the horizon (capped at 4x), so that a ramp is met ahead. The
    `forecasting` models are built for minutes-long bins with daily seasons; at a tick of 15 s on bursty traffic
    their relative-error quantiles explode where the mean is near zero, so the simulator's fleetscale policy uses
    this instead until the controller's forecaster wiring lands.
    """

    def __init__(self, tick_s: float, lookback_s: float = 1800.0, level_s: float = 300.0, min_ticks: int = 8) -> None:
        self.tick_s = tick_s
        self.lookback = max(1, round(lookback_s / tick_s))
        self.level = max(1, round(level_s / tick_s))
        self.min_ticks = min_ticks
        self.history: deque[float] = deque(maxlen=self.lookback)

    def observe(self, rate: float) -> None:
        self.history.append(rate)

    def forecast(self, horizon_s: float, quantiles: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)) -> Forecast | None:
        if len(self.history) < self.min_ticks:
            return None
        values = sorted(self.history)
        recent = list(self.history)[-self.level :]
        before = list(self.history)[-2 * self.level : -self.level]
        level = sum(recent) / len(recent)
        trend = 1.0
        if before and sum(before) > 0:
            trend = min(
                4.0, max(1.0, (level / (sum(before) / len(before))) ** (horizon_s / (self.level * self.tick_s)))
            )
        steps = max(1, math.ceil(horizon_s / self.tick_s))
        quantile_values = {}
        for q in quantiles:
            rank = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
            quantile_values[q] = (max(values[rank], level) * trend,) * steps
        return Forecast(self.tick_s, (level * trend,) * steps, quantile_values, model="recent_quantiles")


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
class FleetscalePolicy:
    """fleetscale's own decision (`decide`) with forecasts, as the controller runs it. With `decisions`, every
    decision is also kept there, one row per service and shape."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    forecast: bool = True
    decisions: list[DecisionRow] | None = None
    name: str = "fleetscale"
    observe_s: float = 60.0  # the range of the metrics query the controller reads (see MetricsWindow)
    _state: PolicyState = field(default_factory=PolicyState)
    _forecasters: dict[str, RateForecaster] = field(default_factory=dict)
    _metrics: dict[str, MetricsWindow] = field(default_factory=dict)

    def targets(self, view: FleetView) -> Targets:
        now = EPOCH + timedelta(seconds=view.now_s)
        services = {}
        forecasts: dict[str, Forecast] = {}
        for name, window in view.services.items():
            rate = window.rate_rps
            replicas = {
                shape: ShapeReplicas(ready=window.ready.get(shape, 0), starting=window.starting.get(shape, 0))
                for shape in set(window.ready) | set(window.starting)
            }
            metrics = self._metrics.setdefault(name, MetricsWindow(self.observe_s))
            if window.samples:  # the first tick has no window behind it
                metrics.add(window.window_s, window.arrivals, window.input_tokens, window.output_tokens)
            observed_rps, tokens_in, tokens_out = metrics.rates() or (
                rate,
                window.input_tokens / window.window_s,
                window.output_tokens / window.window_s,
            )
            services[name] = ServiceObservation(observed_rps, tokens_in, tokens_out, now, replicas)
            if self.forecast:
                forecaster = self._forecasters.setdefault(name, RateForecaster(window.window_s))
                if window.samples:  # the first tick has no window behind it
                    forecaster.observe(rate)
                predicted = forecaster.forecast(self.config.plans[name].horizon_s)
                if predicted is not None:
                    forecasts[name] = replace(predicted, issued_at_s=now.timestamp())
        decision, self._state = decide(Observation(services), forecasts, self.config, self._state, now)
        if self.decisions is not None:
            for s in decision.services:
                for shape in sorted(set(s.current) | set(s.target), key=str):
                    self.decisions.append(
                        DecisionRow(
                            view.now_s, s.service, str(shape), s.current.get(shape, 0), s.target.get(shape, 0),
                            s.reason.value, s.predicted_demand_rps, s.cost_usd_per_h,
                        )
                    )  # fmt: skip
        return {s.service: dict(s.target) for s in decision.services}


# Compiled, these would not unpickle (autoscaler/native.py).
picklable_by_fields(BaselineShape, DecisionRow)
