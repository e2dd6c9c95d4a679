"""The ports of the control loop: the Protocols the shell depends on, and the values that cross them.

Every live use of fleetscale (the in-cluster controller, the Ray Serve integration, the load tests, the simulator)
is the same loop (`autoscaler/loop.py`) over these ports; adapters implement them and import only the core's types,
these ports and `autoscaler.errors`. Fakes of every port are in `autoscaler/testing.py`.

Error contract, shared by every port (STYLE.md convention 9): a method raises only errors of `autoscaler.errors`.
`TransientError` (a timeout, a 429, a 5xx, a full disk) means "try again later": the loop holds what the call
concerned and tries again on a later tick, after `retry_after_s`. `PermanentError` and its subclasses
(`ConfigError`, `NotFound`, `DataQualityError`) mean that retrying the same call will not help: the loop reports it,
holds what it concerned, and goes on with everything else. No port call ever stops the loop or the other services.

All times crossing a port are aware `datetime`s (UTC); a naive one is a programming error and is refused where it
enters the core (`ServiceObservation`, `decide`).

Stability: alpha. Methods may gain keyword arguments with defaults; nothing is renamed without a deprecation.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from autoscaler.config import Service, WorkloadRef
from autoscaler.events import CloudEvent
from autoscaler.model import GpuTelemetry, PolicyState, ShapeReplicas, ShapeTelemetry, require_aware
from autoscaler.placement.model import NodeState, PlacedReplica
from autoscaler.shapes import Shape


@runtime_checkable
class Clock(Protocol):
    """Time for the shell. The core never reads a clock: it is handed `now`."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and schedules, not for timestamps)."""
        ...

    def sleep(self, seconds: float, wakeup: threading.Event | None = None) -> bool:
        """Wait `seconds` (0 or less: return at once). Returns True if `wakeup` was set before the time was up
        (a stop request), False otherwise. Never raises."""
        ...


# ── metrics ──────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class ServiceMetrics:
    """What a MetricsSource read for one service: rates over the source's range (PromQL `rate(...[1m])`, say) as
    of `sampled_at`, the time of the newest sample behind them. None is missing data, never zero load.

    `requests_total` is a counter of requests since an origin the source chooses (vLLM's
    `request_success_total`, the simulator's arrivals): the loop turns the increase between two ticks into the
    per-tick rate its forecaster learns from. A counter that goes down was reset; that tick's rate is missing.

    `telemetry` is what the service's replicas report together (queues, KV cache, latency quantiles); `shapes` the
    same per shape, where the source can tell the shapes apart (`metrics.shape_labels`). The loop attributes
    `telemetry` to the one shape that runs when only one does.
    """

    sampled_at: datetime
    request_rps: float | None
    input_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    requests_total: float | None = None
    telemetry: ShapeTelemetry | None = None
    shapes: Mapping[Shape, ShapeTelemetry] = field(default_factory=dict)
    problem: str = ""  # why request_rps is None ("the rate query returned no series"), for the hold's message

    def __post_init__(self) -> None:
        require_aware(self.sampled_at, "ServiceMetrics.sampled_at")


@dataclass(frozen=True, slots=True)
class RateSample:
    """One point of a service's request-rate history: the rate over the step that ends at `at`."""

    at: datetime
    request_rps: float | None

    def __post_init__(self) -> None:
        require_aware(self.at, "RateSample.at")


@runtime_checkable
class MetricsSource(Protocol):
    """Where service metrics come from (Prometheus, Ray Serve's own metrics, a trace replay, the simulator)."""

    def observe(self, services: Sequence[Service], now: datetime) -> Mapping[str, ServiceMetrics]:
        """The latest metrics of each service (found by its `metrics` binding), by service name.

        A service missing from the result has no data this tick (the loop holds it; it never scales down on missing
        data). Per-service problems (one empty or NaN series) are reported that way, not raised. Raises
        `TransientError` when the source cannot answer at all (down, timing out), `ConfigError` when a query is
        invalid; the loop then holds every service this tick.
        """
        ...

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        """The request rate of `service` at every `step_s` in [start, end] (a range query), oldest first, for
        refilling the forecaster after a restart. Steps without data are left out or carry None. Raises as
        `observe` does; the loop then starts with the history it saved."""
        ...


@runtime_checkable
class GpuTelemetrySource(Protocol):
    """A metrics source that also reads the GPUs themselves (DCGM through Prometheus): the loop asks it when a GPU
    efficiency objective needs engine activity."""

    def gpus(self, now: datetime) -> Sequence[GpuTelemetry]:
        """Every GPU and MIG instance reported, in fleetscale's units. Raises as `observe` does; the loop then
        counts the tick as unknown for the objectives that need it."""
        ...


# ── inventory ────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Inventory:
    """What runs where, as the platform says now.

    `replicas`: per service and shape, the replicas that serve, that are starting, and the spec count the platform
    holds (what some writer last asked for). `nodes`: the node inventory with each GPU's MIG layout (None when the
    platform does not expose nodes: placement then assumes `pool_nodes` empty nodes per pool); `placed`: where the
    replicas run on those nodes.
    """

    replicas: Mapping[str, Mapping[Shape, ShapeReplicas]]
    nodes: tuple[NodeState, ...] | None = None
    placed: tuple[PlacedReplica, ...] = ()
    pool_nodes: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class InventorySource(Protocol):
    def snapshot(self, now: datetime) -> Inventory:
        """One consistent view of nodes, layouts, replicas and spec counts. Raises `TransientError` when the
        platform cannot be read; the loop then makes no decision this tick (it never decides on half a view)."""
        ...


# ── actuation ────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    """Set the replicas of one service's workload for one shape.

    `workload` is the service's binding for that shape in the scenario (`scale_target` or `shape_scale_targets`);
    None when the scenario binds none (the simulator and the log actuator need none). `decision_id` identifies the
    decision it carries out (audit records and the platform's annotations name it).
    """

    service: str
    shape: Shape
    replicas: int
    workload: WorkloadRef | None
    decision_id: str


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What the platform holds after the call: `applied` is its spec count for the workload now (less than asked
    when a quota or a limit cut it; the loop records it and does not take it for another writer), and a note on
    anything the caller should know ("quota allows 4 of 8")."""

    applied: int
    note: str = ""


@runtime_checkable
class Actuator(Protocol):
    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        """Make the workload's spec count `request.replicas`. Idempotent: asking twice for the same count changes
        nothing the second time. A scale-down drains (DESIGN.md safety rule 5) as the platform does it.

        Raises `TransientError` (429, 5xx, a timeout: the loop retries on a later tick, after `retry_after_s`),
        `NotFound` (the workload does not exist), `PermanentError` (refused: a 400, a 403, an invalid object).
        After a timeout the platform may or may not hold the new count; the loop accepts either on the next tick.
        """
        ...


# ── state, audit, spend ──────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class StoredState:
    """What survives a restart: the policy state `decide` threads from tick to tick and each service's forecaster
    state (a JSON-able mapping the loop's forecasters export and restore), as of `saved_at`."""

    policy: PolicyState
    forecasters: Mapping[str, Mapping[str, Any]]
    saved_at: datetime
    ticks: int = 0

    def __post_init__(self) -> None:
        require_aware(self.saved_at, "StoredState.saved_at")


@runtime_checkable
class StateStore(Protocol):
    def load(self) -> StoredState | None:
        """The last saved state, or None if nothing was ever saved. A stored state of an unknown format version,
        or one that cannot be parsed, raises `DataQualityError` naming the store and the version: the loop never
        silently starts over, which would reset every scale-down window."""
        ...

    def save(self, state: StoredState) -> None:
        """Replace the stored state, atomically: after a crash at any point, `load` returns the old state or the
        new one, never a mix. Raises `TransientError` when it cannot be written (the loop reports it and keeps the
        state in memory)."""
        ...


@runtime_checkable
class AuditSink(Protocol):
    def emit(self, events: Sequence[CloudEvent]) -> None:
        """Record `events` in order. When it returns they are durable (a file sink has fsynced them): the loop
        writes a decision's intent before it actuates (DESIGN.md safety rule 7). Raises `TransientError` when the
        events could not be recorded (a full disk); the loop then does not actuate what they describe. A sink that
        forwards elsewhere (HTTP) queues and returns at once, and never blocks the tick."""
        ...

    def close(self) -> None:
        """Flush and release; idempotent."""
        ...


@runtime_checkable
class SpendSource(Protocol):
    def month_to_date_spend_usd(self, now: datetime) -> float:
        """USD spent since the start of `now`'s calendar month (UTC), for monthly budgets. Raises `TransientError`
        when unknown; the budget then fails closed (no scale-up beyond the current spend)."""
        ...
