"""The policies the simulator compares (DESIGN.md section 6), behind `fleet.Policy`.

Reactive baselines scale one shape per service: the one fleetscale's sizing picks for the trace's mean demand among
the shapes the service allows (`baseline_shapes`), so that they get the shapes the user configured. Their knob
(HPA's and KPA's target, and Ray Serve's in `rayserve_policy.py`) defaults to the requests in flight that one replica
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
The `fleetscale` policy is not here: it is the control loop itself (`autoscaler/sim/loop_policy.py`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.capacity import TokenMix
from autoscaler.compiled import CompiledScenario
from autoscaler.pickling import picklable_by_fields
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetView, ServiceRequests, Targets
from autoscaler.sizing import size_service


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


# Compiled, these would not unpickle (autoscaler/native.py).
picklable_by_fields(BaselineShape)
