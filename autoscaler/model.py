"""Value types of the decision core: what a tick observes, what it decides, and the state it carries.

All frozen. `Observation` is built by the shell once per tick from the adapters (or by the simulator); `Decision`
is what the actuator, the audit log and the CLI read; `PolicyState` is the only memory between ticks, returned by
`decide` and handed back to it on the next tick (no hidden state in the controller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from autoscaler.capacity import Binding
from autoscaler.config import Mode, Tier
from autoscaler.placement.fragmentation import Fragmentation
from autoscaler.placement.model import NodeState, PlacedReplica, Placement
from autoscaler.shapes import Shape
from autoscaler.token_mix import MixEstimate

if TYPE_CHECKING:  # efficiency.py builds on these value types; the decision only carries its results
    from autoscaler.efficiency import Ledger, ObjectiveStatus


@dataclass(frozen=True, slots=True)
class ShapeReplicas:
    """Replicas of one shape of one service: how many serve now, how many are starting, and the spec count the
    platform holds (what some writer last asked for; None if unknown)."""

    ready: int = 0
    starting: int = 0
    spec: int | None = None

    @property
    def existing(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True, slots=True)
class ShapeTelemetry:
    """What the replicas of one shape of one service report, as a metrics source aggregates it over its window:
    completed requests per second, requests in the batch and waiting (sums over the replicas), the mean KV-cache
    usage (0-1), and the observed latency quantiles (from the engine's histograms, seconds). None is not reported;
    `replicas` is how many replicas' series the values come from (None: the source cannot tell)."""

    request_rps: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_p95_s: float | None = None
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class GpuTelemetry:
    """What the DCGM exporter reports of one GPU, or of one MIG instance on a MIG GPU (`mig_profile`, `instance`):
    the share of time its engine was busy (0-1) and its framebuffer memory, in bytes. None is not reported."""

    node: str
    gpu: str
    uuid: str = ""
    model: str = ""
    mig_profile: str | None = None
    instance: str | None = None
    engine_active: float | None = None
    fb_used_bytes: float | None = None
    fb_free_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceObservation:
    """One service's metrics (rates over the last window) and replicas, as of `sampled_at` (aware, UTC).

    `problem` is the shell's word on why there are no metrics ("the metrics source timed out"), for the hold's
    message; empty when the shell has nothing to add. `telemetry` is what the replicas of each shape report
    (latencies, queues), where the source has it.
    """

    request_rps: float | None
    input_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    sampled_at: datetime | None = None
    replicas: Mapping[Shape, ShapeReplicas] = field(default_factory=dict)
    problem: str = ""
    telemetry: Mapping[Shape, ShapeTelemetry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampled_at is not None:
            require_aware(self.sampled_at, "ServiceObservation.sampled_at")

    def current(self) -> dict[Shape, int]:
        return {shape: r.existing for shape, r in self.replicas.items() if r.existing > 0}


@dataclass(frozen=True, slots=True)
class PoolObservation:
    nodes: int


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one tick knows about the world, as of the `now` handed to `decide` (the one time of a tick).
    `nodes` is the node inventory (None: unknown, placement then assumes `pools[...].nodes` empty nodes per pool)
    and `placed` where the current replicas run on it."""

    services: Mapping[str, ServiceObservation]
    pools: Mapping[str, PoolObservation] = field(default_factory=dict)
    month_to_date_spend_usd: float | None = None
    nodes: tuple[NodeState, ...] | None = None
    placed: tuple[PlacedReplica, ...] = ()
    gpus: tuple[GpuTelemetry, ...] | None = None  # what DCGM reports per GPU and MIG instance (None: no DCGM)


def require_aware(value: datetime, what: str) -> datetime:
    """`value` in UTC; a naive datetime is refused, since its meaning would depend on the process's time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} ({value.isoformat()}) is a naive datetime: pass an aware one (UTC)")
    return value.astimezone(UTC)


def usable_metric(value: float | None) -> bool:
    """A metric value fit to decide on: present, finite and not negative."""
    return value is not None and math.isfinite(value) and value >= 0


class Stage(StrEnum):
    FORECAST = "forecast"
    SIZE = "size"
    BUDGET = "budget"
    STABILIZE = "stabilize"
    PLACE = "place"


class Reason(StrEnum):
    """Why a service's target is what it is (the last stage that changed it has the say)."""

    STEADY = "steady"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    SHAPE_CHANGE = "shape_change"
    AT_MIN_REPLICAS = "at_min_replicas"
    LIMITED_BY_MAX_REPLICAS = "limited_by_max_replicas"
    NO_FEASIBLE_SHAPE = "no_feasible_shape"
    LIMITED_BY_BUDGET = "limited_by_budget"
    BUDGET_UNKNOWN = "budget_unknown"
    LIMITED_BY_POOL_CAPACITY = "limited_by_pool_capacity"
    SCALE_UP_RATE_LIMITED = "scale_up_rate_limited"
    SCALE_DOWN_DELAYED = "scale_down_delayed"
    SCALE_DOWN_RATE_LIMITED = "scale_down_rate_limited"
    HOLD_MISSING_METRICS = "hold_missing_metrics"  # no metrics at all (none returned, a source that failed)
    HOLD_BAD_METRICS = "hold_bad_metrics"  # NaN, infinite, negative, or sampled in the future
    HOLD_STALE_METRICS = "hold_stale_metrics"  # older than metrics_max_age_s
    HOLD_CONFLICT = "hold_conflict"

    @property
    def holds(self) -> bool:
        """A reason that freezes the service where it is (DESIGN.md safety rules 1 and 6)."""
        return self in _HOLDS


_HOLDS = frozenset(
    {Reason.HOLD_MISSING_METRICS, Reason.HOLD_BAD_METRICS, Reason.HOLD_STALE_METRICS, Reason.HOLD_CONFLICT}
)


class Constraint(StrEnum):
    """What binds a service's target: a latency or throughput limit of its replicas (from capacity at SLO), a bound
    of its configuration, the money, the pools, a stabilization rule, or a hold. The values are metric labels and
    never change."""

    TTFT = "ttft_p95_s"
    TPOT = "tpot_p95_s"
    CONCURRENCY = "concurrency"
    PREFILL = "prefill_throughput"
    MIN_REPLICAS = "min_replicas"
    MAX_REPLICAS = "max_replicas"
    NO_FEASIBLE_SHAPE = "no_feasible_shape"
    BUDGET = "budget"
    BUDGET_UNKNOWN = "budget_unknown"
    POOL_CAPACITY = "pool_capacity"
    SCALE_UP_RATE = "scale_up_rate"
    SCALE_DOWN_WINDOW = "scale_down_window"
    SCALE_DOWN_RATE = "scale_down_rate"
    MISSING_METRICS = "missing_metrics"
    BAD_METRICS = "bad_metrics"
    STALE_METRICS = "stale_metrics"
    CONFLICT = "conflict"

    @classmethod
    def of_capacity(cls, binding: Binding) -> Constraint:
        """The constraint of a replica's capacity at SLO (`Capacity.binding`)."""
        return cls(binding.value)


@dataclass(frozen=True, slots=True)
class StageTrace:
    """What one stage did to one service, as values (read them: Events, metric labels and tests do) and a sentence.

    `replicas` is the service's replica count after the stage (the sized count, the budget's, the stabilized or
    placed total); `shape` the shape it chose (size); `target` the replicas per shape (stabilize, place);
    `demand_rps` the demand it sized for (forecast); `binding` what limited it, where a limit did.
    """

    stage: Stage
    reason: Reason
    message: str
    replicas: int | None = None
    shape: Shape | None = None
    target: Mapping[Shape, int] | None = None
    demand_rps: float | None = None
    binding: Constraint | None = None

    @property
    def summary(self) -> str:
        """The values in a few words ("12.3 req/s", "4 x H100-80GB", "4 replicas", "hold")."""
        if self.reason.holds and self.stage in (Stage.FORECAST, Stage.SIZE):
            return "hold"
        if self.target is not None:
            return ", ".join(f"{n} x {s}" for s, n in self.target.items()) or "0"
        if self.demand_rps is not None:
            return f"{self.demand_rps:.3g} req/s"
        if self.stage is Stage.SIZE:
            return "none" if self.shape is None else f"{self.replicas} x {self.shape}"
        return f"{self.replicas} replicas"


@dataclass(frozen=True, slots=True)
class Alternative:
    """The cheapest option the sizing stage did not take, and why."""

    shape: str
    replicas: int
    cost_usd_per_h: float
    why_rejected: str


@dataclass(frozen=True, slots=True)
class ServiceDecision:
    """The decision for one service: targets per shape with everything that explains them."""

    service: str
    tier: Tier
    current: Mapping[Shape, int]
    desired: Mapping[Shape, int]
    target: Mapping[Shape, int]
    reason: Reason
    message: str
    binding_constraint: Constraint
    predicted_demand_rps: float
    demand_source: str
    capacity_rps_per_replica: float
    cost_usd_per_h: float
    slo_at_risk: tuple[str, ...]
    rejected_alternative: Alternative | None
    trace: tuple[StageTrace, ...]
    hold: bool = False
    forecast_model: str | None = None  # the model whose forecast set the demand (None: the observed rate did)
    current_cost_usd_per_h: float = 0.0  # what the current replicas cost (cost_usd_per_h is the target's)
    corrections: Mapping[Shape, CapacityCorrection] = field(default_factory=dict)  # capacity factors per shape

    @property
    def current_replicas(self) -> int:
        return sum(self.current.values())

    @property
    def target_replicas(self) -> int:
        return sum(self.target.values())

    @property
    def changes(self) -> bool:
        shapes = set(self.current) | set(self.target)
        return any(self.current.get(s, 0) != self.target.get(s, 0) for s in shapes)


@dataclass(frozen=True, slots=True)
class Decision:
    """One tick's decision for the whole fleet."""

    at: datetime
    mode: Mode
    services: tuple[ServiceDecision, ...]
    cost_usd_per_h: float
    budget_usd_per_h: float | None
    budget_note: str
    pool_gpus_used: Mapping[str, float]
    notes: tuple[str, ...] = ()
    placement: Placement | None = None  # where the targets go: layouts, moves, nodes to add (stage 4)
    fragmentation: Fragmentation | None = None  # of that placement: stranded capacity, saturated GPUs
    efficiency: tuple[ObjectiveStatus, ...] = ()  # the GPU efficiency objectives this tick (autoscaler/efficiency.py)

    def service(self, name: str) -> ServiceDecision:
        for decision in self.services:
            if decision.service == name:
                return decision
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One tick's comparison of observed and predicted latency for a shape, for the explanation."""

    per_replica_rps: float
    ttft_observed_s: float | None
    ttft_predicted_s: float | None
    tpot_observed_s: float | None
    tpot_predicted_s: float | None
    requests: float  # in the window behind the observed quantiles


@dataclass(frozen=True, slots=True)
class CapacityCorrection:
    """The correction of one shape of one service (autoscaler/correction.py): how much slower than the profile its
    replicas are, as smoothed logs of the slowdown seen on TTFT and on TPOT, the capacity factor that implies, and
    the evidence of the last tick that had any."""

    factor: float = 1.0
    log_ttft_ratio: float = 0.0
    log_tpot_ratio: float = 0.0
    updated_s: float | None = None
    evidence: Evidence | None = None
    replicas: int = 0  # the replicas serving when it last looked, and since when (evidence needs a settled fleet)
    replicas_since_s: float | None = None

    @property
    def ttft_ratio(self) -> float:
        return math.exp(self.log_ttft_ratio)

    @property
    def tpot_ratio(self) -> float:
        return math.exp(self.log_tpot_ratio)

    @property
    def slowdown(self) -> float:
        """The slowdown capacity is corrected by: the slower of TTFT's and TPOT's."""
        return math.exp(max(self.log_ttft_ratio, self.log_tpot_ratio))

    def sentence(self, service: str, shape: str) -> str:
        """`chat on H100-80GB: capacity x0.82, observed p95 TTFT 0.61 s at 9.8 req/s per replica where the profile
        predicts 0.47 s`."""
        head = (
            f"{service} on {shape}: capacity x{self.factor:.2f} (replicas {self.slowdown:.2f}x the profile's step "
            "times)"
        )
        e = self.evidence
        if e is None:
            return head + " (no recent evidence: decaying toward the profile)"
        parts = []
        for what, seen, predicted in (
            ("TTFT", e.ttft_observed_s, e.ttft_predicted_s),
            ("TPOT", e.tpot_observed_s, e.tpot_predicted_s),
        ):
            if seen is not None and predicted is not None:
                parts.append(f"p95 {what} {seen:.3g} s where the profile predicts {predicted:.3g} s")
        return f"{head}, observed at {e.per_replica_rps:.3g} req/s per replica: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What `decide` remembers of one service between ticks: stabilization's history and the token mix, and what the
    shell last applied.

    `applied` is the spec count per shape the actuator reported after fleetscale last set it (the loop records it;
    `decide` never does); `requested` what fleetscale last asked for, which after a timeout the platform may hold
    instead. In apply mode a spec count that is neither is another writer's.
    """

    first_seen_s: float
    recommendations: tuple[tuple[float, int], ...] = ()
    last_scale_down_s: float | None = None
    applied: Mapping[Shape, int] = field(default_factory=dict)
    requested: Mapping[Shape, int] = field(default_factory=dict)
    mix: MixEstimate | None = None  # the token mix sizing uses (autoscaler/token_mix.py)
    corrections: Mapping[Shape, CapacityCorrection] = field(default_factory=dict)  # autoscaler/correction.py


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The only memory between ticks; `decide` returns the next one."""

    services: Mapping[str, ServiceState] = field(default_factory=dict)
    efficiency: Mapping[str, Ledger] = field(default_factory=dict)  # per efficiency objective: its tick counts

    def with_requested(self, service: str, shape: Shape, replicas: int, now_s: float) -> PolicyState:
        """The state once fleetscale has asked for `replicas` of `shape` (before the answer)."""
        current = self.services.get(service) or ServiceState(first_seen_s=now_s)
        updated = replace(current, requested={**current.requested, shape: replicas})
        return PolicyState({**self.services, service: updated}, self.efficiency)

    def with_applied(self, service: str, shape: Shape, replicas: int, now_s: float) -> PolicyState:
        """The state once the platform has answered that it holds `replicas` of `shape`."""
        current = self.services.get(service) or ServiceState(first_seen_s=now_s)
        updated = replace(
            current,
            applied={**current.applied, shape: replicas},
            requested={**current.requested, shape: replicas},
        )
        return PolicyState({**self.services, service: updated}, self.efficiency)
