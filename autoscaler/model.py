"""Value types of the decision core: what a tick observes, what it decides, and the state it carries.

All frozen. `Observation` is built by the shell once per tick from the adapters (or by the simulator); `Decision`
is what the actuator, the audit log and the CLI read; `PolicyState` is the only memory between ticks, returned by
`decide` and handed back to it on the next tick (no hidden state in the controller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from autoscaler.config import Mode, Tier
from autoscaler.placement.fragmentation import Fragmentation
from autoscaler.placement.model import NodeState, PlacedReplica, Placement
from autoscaler.shapes import Shape
from autoscaler.token_mix import MixEstimate


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
class ServiceObservation:
    """One service's metrics (rates over the last window) and replicas, as of `sampled_at`."""

    request_rps: float | None
    input_tokens_per_s: float | None = None
    output_tokens_per_s: float | None = None
    sampled_at: datetime | None = None
    replicas: Mapping[Shape, ShapeReplicas] = field(default_factory=dict)

    def current(self) -> dict[Shape, int]:
        return {shape: r.existing for shape, r in self.replicas.items() if r.existing > 0}


@dataclass(frozen=True, slots=True)
class PoolObservation:
    nodes: int


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one tick knows about the world. `nodes` is the node inventory (None: unknown, placement then
    assumes `pools[...].nodes` empty nodes per pool) and `placed` where the current replicas run on it."""

    at: datetime
    services: Mapping[str, ServiceObservation]
    pools: Mapping[str, PoolObservation] = field(default_factory=dict)
    month_to_date_spend_usd: float | None = None
    nodes: tuple[NodeState, ...] | None = None
    placed: tuple[PlacedReplica, ...] = ()


def usable_metric(value: float | None) -> bool:
    """A metric value fit to decide on: present, finite and not negative."""
    return value is not None and math.isfinite(value) and value >= 0


class Stage(StrEnum):
    FORECAST = "forecast"
    SIZE = "size"
    BUDGET = "budget"
    PLACE = "place"
    STABILIZE = "stabilize"


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
    HOLD_STALE_METRICS = "hold_stale_metrics"
    HOLD_CONFLICT = "hold_conflict"


@dataclass(frozen=True, slots=True)
class StageTrace:
    """What one stage did to one service: a short value summary, the reason and a sentence."""

    stage: Stage
    summary: str
    reason: Reason
    message: str


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
    binding_constraint: str
    predicted_demand_rps: float
    demand_source: str
    capacity_rps_per_replica: float
    cost_usd_per_h: float
    slo_at_risk: tuple[str, ...]
    rejected_alternative: Alternative | None
    trace: tuple[StageTrace, ...]
    hold: bool = False

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

    def service(self, name: str) -> ServiceDecision:
        for decision in self.services:
            if decision.service == name:
                return decision
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What `decide` remembers of one service between ticks: stabilization's history and the token mix."""

    first_seen_s: float
    recommendations: tuple[tuple[float, int], ...] = ()
    last_scale_down_s: float | None = None
    last_target: Mapping[Shape, int] = field(default_factory=dict)
    mix: MixEstimate | None = None  # the token mix sizing uses (autoscaler/token_mix.py)


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The only memory between ticks; `decide` returns the next one."""

    services: Mapping[str, ServiceState] = field(default_factory=dict)
