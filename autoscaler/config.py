"""The user's configuration of a scenario: fleet, services, budget and policy (strict pydantic v2 models).

Every model forbids unknown fields and is frozen; every field states its unit and why its default is what it
is. Cross-field rules live in `model_validator(mode="after")` and name both fields and values. Rules that need the
GPU catalog or the performance profiles (is this GPU type known, does this MIG profile exist, can any allowed
shape hold the model) are checked by `check_scenario`, which reports in the same form.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoscaler.capacity import Routing
from autoscaler.catalog import Catalog
from autoscaler.datafiles import load_yaml
from autoscaler.errors import ConfigError
from autoscaler.perf import Precision, ProfileBook, ShapeRejected
from autoscaler.shapes import Shape, ShapeKind, parse_shape

Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Quantile = Annotated[float, Field(gt=0, lt=1)]


class Tier(StrEnum):
    """Priority tier of a service: when money or GPUs run out, lower tiers give way first."""

    CRITICAL = "critical"
    STANDARD = "standard"
    BEST_EFFORT = "best_effort"

    @property
    def rank(self) -> int:
        """0 for the most important tier; larger gives way earlier."""
        return list(Tier).index(self)


class Mode(StrEnum):
    OBSERVE = "observe"  # compute and log decisions
    RECOMMEND = "recommend"  # also publish targets
    APPLY = "apply"  # also actuate them


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePool(_Strict):
    """A group of identical GPU nodes that a cluster autoscaler (or a person) adds and removes."""

    name: Name = Field(description="Pool name, unique in the fleet (a DNS label, as Kubernetes node pools use).")
    gpu_type: str = Field(description="GPU type of every node, a catalog name or alias (`H100-80GB`, `L4`).")
    gpus_per_node: int = Field(
        ge=1, le=16, description="GPUs per node; a gang (tensor-parallel replica) must fit on one node."
    )
    min_nodes: int = Field(default=0, ge=0, description="Nodes the pool always keeps (nodes).")
    max_nodes: int = Field(ge=1, description="Nodes the pool may grow to (nodes); bounds aggregate capacity.")
    gpu_price_usd_per_h: float | None = Field(
        default=None,
        gt=0,
        description="Price of one GPU-hour in USD; empty takes the catalog's dated default for the GPU type.",
    )
    mig_allowed: bool = Field(
        default=False, description="Whether fleetscale may run MIG instances (and so re-partition GPUs) here."
    )
    fractional_allowed: bool = Field(
        default=False,
        description="Whether replicas may share a GPU by time-slicing (Ray `num_gpus` < 1); no memory isolation.",
    )
    node_provisioning_s: float = Field(
        default=120.0,
        ge=0,
        description="Seconds from asking for a node to its GPUs being schedulable; 80-120 s for a cloud GPU VM.",
    )

    def hosting_problem(self, shape: Shape) -> str | None:
        """Why a replica of `shape` (of this pool's GPU type) cannot run here, or None if it can."""
        if shape.kind is ShapeKind.GPU and shape.gpus > self.gpus_per_node:
            return f"a gang of {shape.gpus} does not fit nodes of {self.gpus_per_node} GPUs"
        if shape.kind is ShapeKind.MIG and not self.mig_allowed:
            return "MIG not allowed"
        if shape.kind is ShapeKind.FRACTION and not self.fractional_allowed:
            return "GPU sharing not allowed"
        return None

    @model_validator(mode="after")
    def _nodes_ordered(self) -> Self:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) must be <= max_nodes ({self.max_nodes})")
        return self


class Fleet(_Strict):
    pools: list[NodePool] = Field(min_length=1, description="The node pools fleetscale may place replicas on.")

    @model_validator(mode="after")
    def _unique_pools(self) -> Self:
        seen: set[str] = set()
        for pool in self.pools:
            if pool.name in seen:
                raise ValueError(f"pool name {pool.name!r} is used twice")
            seen.add(pool.name)
        return self


class ServiceSlo(_Strict):
    """Latency objectives: the share `quantile` of requests (95 % by default, hence the field names) must have a
    time to first token within `ttft_p95_s` and a time per output token within `tpot_p95_s`."""

    ttft_p95_s: float = Field(gt=0, description="Time to first token at the SLO's quantile (p95 by default), in s.")
    tpot_p95_s: float = Field(
        gt=0, description="Time per output token after the first, at the SLO's quantile (p95 by default), in s."
    )
    quantile: float = Field(
        default=0.95,
        ge=0.5,
        lt=1.0,
        description="Share of requests the two targets hold for; replicas are sized for this latency quantile "
        "(0.99 for an SLO attained by 99 % of requests).",
    )


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a DNS subdomain, as Kubernetes object names are
_K8S_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class WorkloadKind(StrEnum):
    """The workloads fleetscale knows how to scale; any other Kubernetes kind with a scale subresource is named with
    its `api_version`."""

    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    LEADER_WORKER_SET = "LeaderWorkerSet"
    RAY_SERVICE = "RayService"
    RAY_SERVE_DEPLOYMENT = "RayServeDeployment"

    @property
    def api_version(self) -> str | None:
        return _KNOWN_API_VERSIONS[self]


_KNOWN_API_VERSIONS: dict[WorkloadKind, str | None] = {
    WorkloadKind.DEPLOYMENT: "apps/v1",
    WorkloadKind.STATEFUL_SET: "apps/v1",
    WorkloadKind.LEADER_WORKER_SET: "leaderworkerset.x-k8s.io/v1",
    WorkloadKind.RAY_SERVICE: "ray.io/v1",
    WorkloadKind.RAY_SERVE_DEPLOYMENT: None,  # not a Kubernetes object: a deployment of a Ray Serve application
}


class WorkloadRef(_Strict):
    """The workload whose replica count fleetscale sets: a Kubernetes object with a scale subresource
    (`namespace` and `name`), or a Ray Serve deployment (`app` and `name`)."""

    kind: str = Field(
        description="Deployment, StatefulSet, LeaderWorkerSet, RayService, RayServeDeployment, or any Kubernetes kind "
        "with a scale subresource (then with its api_version)."
    )
    name: str = Field(min_length=1, max_length=253, description="The object's name (the Serve deployment's name).")
    namespace: str | None = Field(default=None, description="Kubernetes namespace; required for Kubernetes kinds.")
    app: str | None = Field(default=None, description="Ray Serve application; required for RayServeDeployment.")
    api_version: str | None = Field(
        default=None, description="group/version of a kind fleetscale does not know (`example.com/v1`)."
    )

    @property
    def is_ray_serve(self) -> bool:
        return self.kind == WorkloadKind.RAY_SERVE_DEPLOYMENT

    def resolved_api_version(self) -> str | None:
        """The api_version given, else the known kind's (None for a Ray Serve deployment)."""
        if self.api_version is not None:
            return self.api_version
        return WorkloadKind(self.kind).api_version if self.kind in _KNOWN_API_VERSIONS else None

    def __str__(self) -> str:
        where = self.app if self.is_ray_serve else self.namespace
        return f"{self.kind} {where}/{self.name}"

    @model_validator(mode="after")
    def _complete(self) -> Self:
        known = self.kind in _KNOWN_API_VERSIONS
        if not known and not _K8S_KIND.match(self.kind):
            raise ValueError(f"kind ({self.kind!r}) must be a Kubernetes kind (CamelCase) or RayServeDeployment")
        if not known and self.api_version is None:
            raise ValueError(
                f"kind ({self.kind!r}) is not one fleetscale knows ({', '.join(WorkloadKind)}): give its api_version"
            )
        if self.api_version is not None and not _API_VERSION.match(self.api_version):
            raise ValueError(f"api_version ({self.api_version!r}) must be group/version, e.g. example.com/v1")
        if self.is_ray_serve:
            if self.app is None:
                raise ValueError(f"kind ({self.kind}) needs app (the Serve application of deployment {self.name!r})")
            if self.namespace is not None or self.api_version is not None:
                raise ValueError(f"kind ({self.kind}) takes app and name, not namespace or api_version")
            return self
        if self.namespace is None:
            raise ValueError(f"kind ({self.kind}) needs namespace (the namespace of {self.name!r})")
        if self.app is not None:
            raise ValueError(f"app ({self.app!r}) is for RayServeDeployment; kind is {self.kind}")
        for field_name, value in (("name", self.name), ("namespace", self.namespace)):
            if not _K8S_NAME.match(value):
                raise ValueError(f"{field_name} ({value!r}) must be a lowercase DNS name, as Kubernetes requires")
        return self


class MetricsEngine(StrEnum):
    """The server whose metric names a service's default queries use (adapters/prometheus/queries.py)."""

    VLLM = "vllm"
    SGLANG = "sglang"
    RAY_SERVE = "rayserve"
    ENDPOINT_PICKER = "endpoint_picker"  # the Gateway API inference extension's endpoint picker (llm-d router)


class MetricSignal(StrEnum):
    """What a service's metrics queries measure; the keys of `metrics.queries`."""

    REQUEST_RPS = "request_rps"
    INPUT_TOKENS_PER_S = "input_tokens_per_s"
    OUTPUT_TOKENS_PER_S = "output_tokens_per_s"
    RUNNING = "running"
    WAITING = "waiting"
    KV_CACHE_USAGE = "kv_cache_usage"
    TTFT_P50_S = "ttft_p50_s"
    TTFT_P95_S = "ttft_p95_s"
    TPOT_P50_S = "tpot_p50_s"
    TPOT_P95_S = "tpot_p95_s"
    REPLICAS = "replicas"


QUERY_PLACEHOLDERS = frozenset({"selector", "window"})


def _check_label_matchers(value: dict[str, str], *, regex: bool) -> dict[str, str]:
    for name, pattern in value.items():
        if not _LABEL_NAME.match(name):
            raise ValueError(f"label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]* (a Prometheus label)")
        if regex:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"label pattern {name}={pattern!r} is not a regular expression: {exc}") from None
    return value


class MetricsBinding(_Strict):
    """How a service's series are found in the metrics source, and which queries read them."""

    engine: MetricsEngine = Field(
        default=MetricsEngine.VLLM,
        description="The server that exports the service's metrics (vllm, sglang, rayserve, endpoint_picker): it "
        "picks the default queries.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label matchers (equality) that select this service's series (`{model_name: "
        "meta-llama/Llama-3.1-8B, namespace: inference}`); with neither labels nor label_patterns, the engine's "
        "label for the model or deployment equals the service's name.",
    )
    label_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Label matchers by regular expression (PromQL `=~`, anchored), such as `{pod: chat-.*}`.",
    )
    shape_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Per shape (as allowed_shapes writes it), the label matchers that select that shape's "
        "replicas among the service's (`{H100-80GB: {deployment: chat-h100}}`), so that latency is compared with "
        "the right shape's profile; without them the service's figures stand for a shape only while one runs.",
    )
    queries: dict[MetricSignal, str] = Field(
        default_factory=dict,
        description="PromQL per signal, replacing the engine's default; `$selector` stands for the label matchers "
        "(without braces) and `$window` for the rate window (`1m`).",
    )
    rate_window_s: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="Range of rates and histogram quantiles, seconds; at least 4 scrape intervals, as Prometheus's "
        "rate() needs two samples and a missed scrape must not empty it.",
    )

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_label_matchers(value, regex=False)

    @field_validator("label_patterns")
    @classmethod
    def _label_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_label_matchers(value, regex=True)

    @field_validator("shape_labels")
    @classmethod
    def _shape_label_names(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for text, matchers in value.items():
            parse_shape(text)  # ValueError names the text
            if not matchers:
                raise ValueError(f"shape_labels ({text!r}) needs at least one label matcher")
            _check_label_matchers(matchers, regex=False)
        return value

    @field_validator("queries")
    @classmethod
    def _query_templates(cls, value: dict[MetricSignal, str]) -> dict[MetricSignal, str]:
        for signal, query in value.items():
            template = string.Template(query)
            if not template.is_valid():
                raise ValueError(
                    f"queries.{signal} ({query!r}) has a `$` that is not $selector or $window "
                    "(write $$ for a literal $)"
                )
            unknown = set(template.get_identifiers()) - QUERY_PLACEHOLDERS
            if unknown:
                raise ValueError(
                    f"queries.{signal} ({query!r}) uses ${', $'.join(sorted(unknown))}; only $selector and $window "
                    "are filled in"
                )
            if not query.strip():
                raise ValueError(f"queries.{signal} is empty")
        return value


class DcgmField(StrEnum):
    """What fleetscale reads of the DCGM exporter, per GPU or MIG instance."""

    ENGINE_ACTIVE = "engine_active"  # share of time the graphics engine was busy (whole GPUs and MIG instances)
    GPU_UTIL = "gpu_util"  # the older utilization (whole GPUs only)
    FB_USED = "fb_used"  # framebuffer memory in use
    FB_FREE = "fb_free"


class MetricUnit(StrEnum):
    RATIO = "ratio"  # 0-1
    PERCENT = "percent"  # 0-100
    BYTES = "bytes"
    MIB = "mib"

    @property
    def to_base(self) -> float:
        """The factor to fleetscale's units (ratios and bytes)."""
        return {"ratio": 1.0, "percent": 0.01, "bytes": 1.0, "mib": 1024.0 * 1024.0}[self.value]


class DcgmMetric(_Strict):
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", description="The exporter's metric name.")
    unit: MetricUnit = Field(description="Its unit: ratio, percent, bytes or mib.")


class DcgmSettings(_Strict):
    """How the fleet's DCGM exporter series are found."""

    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Label matchers that select the fleet's DCGM series (`{job: dcgm-exporter}`); empty: all.",
    )
    names: dict[DcgmField, DcgmMetric] = Field(
        default_factory=dict,
        description="The exporter's metric per field with its unit, read before the names of exporters up to 4.8 "
        "(4.9 renamed its default fields and changed percent to ratio and MiB to bytes).",
    )

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_label_matchers(value, regex=False)


class Telemetry(_Strict):
    """Fleet-wide telemetry settings."""

    dcgm: DcgmSettings = Field(default_factory=DcgmSettings)


class Service(_Strict):
    """One model endpoint with its SLOs, priority, bounds and allowed accelerator shapes."""

    name: Name = Field(description="Service name, unique in the scenario.")
    model: str = Field(description="Model served; must have a performance profile in configs/profiles/.")
    precision: Precision = Field(default=Precision.BF16, description="Weight precision (bf16 or fp8).")
    slo: ServiceSlo
    tier: Tier = Field(default=Tier.STANDARD, description="Priority tier; lower tiers give way first.")
    min_replicas: int = Field(default=1, ge=0, description="Replicas always kept (0 lets the service scale to zero).")
    max_replicas: int = Field(default=100, ge=1, description="Replicas never exceeded.")
    allowed_shapes: list[str] = Field(
        default_factory=list,
        description="Shapes a replica may take (`H100-80GB`, `4xH100-80GB`, `H100-80GB/3g.40gb`, `0.5xL4`); "
        "empty allows every shape the fleet offers that holds the model.",
    )
    tensor_parallel_size: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="GPUs per replica for whole-GPU shapes written without a count; empty means 1.",
    )
    mean_input_tokens: float = Field(
        default=1000.0, gt=0, description="Prompt tokens per request, used until metrics say otherwise."
    )
    mean_output_tokens: float = Field(
        default=200.0, gt=0, description="Output tokens per request, used until metrics say otherwise."
    )
    max_context_tokens: int = Field(
        default=8192,
        ge=1,
        description="Longest request (prompt + output, tokens); a shape must hold its KV cache next to the weights.",
    )
    extra_startup_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds a new replica needs beyond the profile's engine start (image pull, sidecars).",
    )
    routing: Routing = Field(
        default=Routing.LEAST_LOADED,
        description="How the router in front of the replicas spreads requests: behind least_loaded (Ray Serve, LLM "
        "gateways, Envoy least-request) n replicas each sustain more than a lone one; round_robin (kube-proxy in IPVS "
        "mode) and random (a plain Kubernetes Service, kube-proxy in iptables mode) get no such credit.",
    )

    scale_target: WorkloadRef | None = Field(
        default=None,
        description="The workload fleetscale scales for this service (for every shape shape_scale_targets does not "
        "name); the what-if ignores it.",
    )
    shape_scale_targets: dict[str, WorkloadRef] = Field(
        default_factory=dict,
        description="The workload per shape, where a service's shapes run as different workloads (a workload's "
        "pods have one accelerator shape); keys are shapes as allowed_shapes writes them.",
    )
    metrics: MetricsBinding = Field(
        default_factory=MetricsBinding, description="How this service's metrics are found in the metrics source."
    )

    @model_validator(mode="after")
    def _bounds_and_shapes(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        for text in self.allowed_shapes:
            shape = parse_shape(text)  # ValueError names the text
            if self.tensor_parallel_size not in (None, 1) and shape.kind is not ShapeKind.GPU:
                raise ValueError(
                    f"allowed_shapes ({text!r}) is a {shape.kind} shape, but tensor_parallel_size "
                    f"({self.tensor_parallel_size}) needs whole GPUs"
                )
        self._check_scale_targets()
        return self

    def _check_scale_targets(self) -> None:
        allowed = self.shapes()
        bound: dict[WorkloadRef, str] = {}
        for text, workload in self.shape_scale_targets.items():
            shape = parse_shape(text, self.tensor_parallel_size or 1)  # ValueError names the text
            if allowed and shape not in allowed:
                raise ValueError(
                    f"shape_scale_targets ({text!r}) is not one of allowed_shapes ({', '.join(self.allowed_shapes)})"
                )
            if workload in bound:
                raise ValueError(
                    f"shape_scale_targets: {text!r} and {bound[workload]!r} name the same workload ({workload}); "
                    "a workload runs one shape"
                )
            bound[workload] = text
        if self.scale_target is not None and self.scale_target in bound:
            raise ValueError(
                f"scale_target ({self.scale_target}) is also shape_scale_targets[{bound[self.scale_target]!r}]"
            )
        for text in self.metrics.shape_labels:
            shape = parse_shape(text, self.tensor_parallel_size or 1)
            if allowed and shape not in allowed:
                raise ValueError(
                    f"metrics.shape_labels ({text!r}) is not one of allowed_shapes ({', '.join(self.allowed_shapes)})"
                )
        bound_shapes = {parse_shape(t, self.tensor_parallel_size or 1) for t in self.shape_scale_targets}
        unbound = [text for text, shape in zip(self.allowed_shapes, allowed, strict=True) if shape not in bound_shapes]
        if self.scale_target is not None and len(unbound) > 1:
            raise ValueError(
                f"scale_target ({self.scale_target}) would run {len(unbound)} shapes ({', '.join(unbound)}), but a "
                "workload's pods have one accelerator shape: name a workload per shape in shape_scale_targets"
            )

    def shapes(self) -> list[Shape]:
        """The allowed shapes, parsed, with `tensor_parallel_size` applied to bare whole-GPU shapes."""
        return [parse_shape(text, self.tensor_parallel_size or 1) for text in self.allowed_shapes]


class Budget(_Strict):
    """Cost caps. With neither set the fleet is unbounded in money (still bounded by pools and max_replicas)."""

    hard_usd_per_h: float | None = Field(
        default=None, gt=0, description="Spend rate never exceeded except to keep min_replicas, USD per hour."
    )
    monthly_usd: float | None = Field(
        default=None,
        gt=0,
        description="Spend per calendar month, USD; the hourly cap becomes what is left divided by hours left.",
    )


def _default_quantiles() -> dict[Tier, float]:
    return {Tier.CRITICAL: 0.99, Tier.STANDARD: 0.9, Tier.BEST_EFFORT: 0.5}


class CapacityCorrectionPolicy(_Strict):
    """How the loop corrects a profile by the latencies it observes (autoscaler/correction.py)."""

    enabled: bool = Field(default=True, description="Whether observed latencies correct the replicas' capacity.")
    min_factor: float = Field(
        default=0.5, gt=0, le=1, description="The lowest capacity factor: replicas at most this much slower."
    )
    max_factor: float = Field(
        default=1.5, ge=1, description="The highest capacity factor: replicas at most this much faster."
    )
    min_requests: float = Field(
        default=200.0,
        ge=1,
        description="Requests the window behind the observed quantiles must hold before they count (a p95 of a "
        "few requests is noise).",
    )
    half_life_s: float = Field(
        default=300.0, gt=0, description="Half-life of the evidence in the estimate: how fast it follows."
    )
    decay_half_life_s: float = Field(
        default=3600.0,
        gt=0,
        description="Without evidence the correction returns toward 1 with this half-life (the profile regains its "
        "say).",
    )
    max_step_ratio: float = Field(
        default=1.25,
        gt=1,
        description="The most one tick may move a latency ratio (a factor): one wild quantile cannot throw it.",
    )


class Policy(_Strict):
    """How the control loop behaves: timing, forecast quantiles, stabilization and rate limits."""

    mode: Mode = Field(default=Mode.RECOMMEND, description="observe, recommend (publish targets) or apply.")
    tick_s: float = Field(default=15.0, gt=0, le=3600, description="Seconds between decisions (HPA syncs every 15).")
    forecast_quantile: dict[Tier, Quantile] = Field(
        default_factory=_default_quantiles,
        description="Demand quantile each tier is sized for; higher buys headroom for bursts.",
    )
    budget_fallback_quantile: Quantile = Field(
        default=0.5, description="Quantile a tier falls back to when the budget binds, before losing replicas."
    )
    scale_up_max_ratio: float = Field(
        default=2.0, ge=1, description="A tick may at most multiply a service's replicas by this (HPA: 2)."
    )
    scale_up_min_step: int = Field(
        default=4, ge=1, description="A tick may always add this many replicas, even from 0 or 1 (HPA: 4)."
    )
    scale_down_window_s: float = Field(
        default=300.0,
        ge=0,
        description="Seconds demand must stay low before replicas go: the highest recommendation of the window "
        "wins (HPA's 300 s stabilization window).",
    )
    scale_down_max_step: int = Field(default=2, ge=1, description="Replicas removed at most per scale-down period.")
    scale_down_period_s: float = Field(default=60.0, gt=0, description="Seconds of one scale-down period.")
    metrics_max_age_s: float = Field(
        default=60.0, gt=0, description="Metrics older than this are stale: the service holds."
    )
    metrics_max_future_skew_s: float = Field(
        default=10.0,
        ge=0,
        description="Metrics sampled further than this in the future are refused and the service holds: a clock "
        "that far apart is a broken clock, not NTP's millisecond drift.",
    )
    forecast_max_age_s: float = Field(
        default=60.0,
        gt=0,
        description="A forecast issued longer ago than this is stale and ignored: the observed rate stands, and the "
        "decision says so (the loop issues a fresh one every tick).",
    )
    forecast_selection: bool = Field(
        default=False,
        description="Whether each service's forecaster backtests the burst envelope against the package's models once "
        "it has 2 hours of history, and takes one that forecasts the peak clearly better. Off by default: on the "
        "14-day ServeGen replays none of the ways of selecting tried beat the envelope alone "
        "(autoscaler/forecasters.py).",
    )
    token_mix_half_life_s: float = Field(
        default=600.0,
        ge=0,
        description="Half-life of the observed prompt and answer lengths that sizing uses: one minute's mean is a "
        "noisy sample, and capacity is sensitive to it (0: the last tick's means alone).",
    )
    capacity_correction: CapacityCorrectionPolicy = Field(
        default_factory=CapacityCorrectionPolicy,
        description="Correction of the profiles' capacity by the latencies the replicas report.",
    )
    shape_switch_min_savings_ratio: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="A service moves to a cheaper shape only if it saves at least this share of its cost "
        "(a move costs a cold start).",
    )

    @field_validator("forecast_quantile")
    @classmethod
    def _every_tier(cls, value: dict[Tier, float]) -> dict[Tier, float]:
        missing = [tier.value for tier in Tier if tier not in value]
        if missing:
            raise ValueError(f"needs a quantile for every tier; missing: {', '.join(missing)}")
        return value


class EfficiencyIndicator(StrEnum):
    """What a GPU efficiency objective measures, each tick (autoscaler/efficiency.py)."""

    BUSY = "busy"  # mean engine activity of the GPUs and MIG instances that hold a model (DCGM); good when >= threshold
    STRANDED = (
        "stranded"  # stranded MIG slices and GPU shares over the fleet's GPUs (placement); good when <= threshold
    )
    SATURATED = "saturated"  # busy GPUs with no room for another replica, over busy GPUs (placement); good when <=

    @property
    def higher_is_better(self) -> bool:
        return self is EfficiencyIndicator.BUSY


class EfficiencyObjective(_Strict):
    """One GPU efficiency SLO: the share of ticks whose indicator meets the threshold, over a window."""

    name: Name = Field(description="Objective name (a metric label and the alert's name).")
    indicator: EfficiencyIndicator = Field(description="busy, stranded or saturated.")
    threshold: float = Field(ge=0, le=1, description="The indicator's bound: busy >= it, stranded and saturated <= it.")
    objective: float = Field(
        default=0.9, gt=0, lt=1, description="Share of ticks (over window_s) that must meet the threshold."
    )
    window_s: float = Field(
        default=7 * 86400.0, ge=3600, le=30 * 86400.0, description="The SLO's window, seconds (default 7 days)."
    )


class Efficiency(_Strict):
    """GPU efficiency as a reliability concern: objectives, measured every tick, exported with burn rates."""

    objectives: list[EfficiencyObjective] = Field(default_factory=list)
    busy_min_fb_bytes: float = Field(
        default=1024.0**3,
        ge=0,
        description="A GPU or MIG instance holds a model (counts for `busy`) when its framebuffer in use exceeds this.",
    )
    consolidate_when_burning: bool = Field(
        default=True,
        description="While a stranded objective burns its budget, placement may move the replicas off the "
        "emptiest node onto room elsewhere, to empty it (churn it otherwise avoids).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [o.name for o in self.objectives]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"efficiency objective name {name!r} is used twice")
        return self


class Scenario(_Strict):
    """A whole configuration: what fleetscale manages and how."""

    name: Name = Field(description="Scenario name.")
    description: str = Field(default="", description="Free text for people.")
    fleet: Fleet
    services: list[Service] = Field(min_length=1)
    budget: Budget = Field(default_factory=Budget)
    policy: Policy = Field(default_factory=Policy)
    telemetry: Telemetry = Field(default_factory=Telemetry)
    efficiency: Efficiency = Field(default_factory=Efficiency)

    @model_validator(mode="after")
    def _unique_services(self) -> Self:
        seen: set[str] = set()
        for service in self.services:
            if service.name in seen:
                raise ValueError(f"service name {service.name!r} is used twice")
            seen.add(service.name)
        return self

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where, the offending value, and what is wrong."""

    path: str
    value: Any
    message: str

    def format(self, source: str) -> str:
        value = "" if self.value is _NO_VALUE else f" = {self.value!r}"
        where = f"{self.path}{value}" if self.path else "(top level)"
        return f"{source}: {where}: {self.message}"


_NO_VALUE: Any = object()


def _path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    """One ConfigIssue per pydantic error, with the field path and the input value."""
    issues = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input", _NO_VALUE)
        if isinstance(value, dict | list):  # a whole sub-object: the message names the fields
            value = _NO_VALUE
        issues.append(ConfigIssue(_path(error["loc"]), value, message))
    return issues


def check_scenario(scenario: Scenario, catalog: Catalog, book: ProfileBook) -> list[ConfigIssue]:
    """Rules that need the catalog and the profiles; every problem found, not only the first."""
    issues: list[ConfigIssue] = []
    pools_by_gpu: dict[str, list[NodePool]] = {}
    for i, pool in enumerate(scenario.fleet.pools):
        try:
            gpu = catalog.gpu(pool.gpu_type)
        except KeyError as exc:
            issues.append(ConfigIssue(f"fleet.pools[{i}].gpu_type", pool.gpu_type, str(exc.args[0])))
            continue
        pools_by_gpu.setdefault(gpu.name, []).append(pool)
        if pool.gpu_price_usd_per_h is None and gpu.price.usd_per_gpu_h is None:
            issues.append(
                ConfigIssue(
                    f"fleet.pools[{i}].gpu_price_usd_per_h",
                    None,
                    f"the catalog has no default price for {gpu.name}; set one",
                )
            )
        if pool.mig_allowed and gpu.mig is None:
            issues.append(ConfigIssue(f"fleet.pools[{i}].mig_allowed", True, f"{gpu.name} does not support MIG"))
    for i, service in enumerate(scenario.services):
        where = f"services[{i}]"
        try:
            book.canonical_model(service.model)
        except KeyError as exc:
            issues.append(ConfigIssue(f"{where}.model", service.model, str(exc.args[0])))
            continue
        usable = 0
        for j, (text, shape) in enumerate(zip(service.allowed_shapes, service.shapes(), strict=True)):
            problem = _shape_problem(shape, catalog, pools_by_gpu)
            if problem is not None:
                issues.append(ConfigIssue(f"{where}.allowed_shapes[{j}]", text, problem))
                continue
            try:
                book.profile(service.model, shape, service.precision, service.max_context_tokens)
                usable += 1
            except ShapeRejected as exc:
                issues.append(ConfigIssue(f"{where}.allowed_shapes[{j}]", text, f"cannot hold {service.model}: {exc}"))
        if service.allowed_shapes and usable == 0 and not any(i.path.startswith(where) for i in issues):
            issues.append(ConfigIssue(f"{where}.allowed_shapes", _NO_VALUE, "no allowed shape can serve the model"))
    return issues


def _shape_problem(shape: Shape, catalog: Catalog, pools_by_gpu: dict[str, list[NodePool]]) -> str | None:
    try:
        canonical = catalog.canonical_shape(shape)
    except KeyError as exc:
        return str(exc.args[0])
    pools = pools_by_gpu.get(canonical.gpu_type, [])
    if not pools:
        return f"no pool of the fleet has {canonical.gpu_type} GPUs"
    if canonical.kind is ShapeKind.MIG and not any(p.mig_allowed for p in pools):
        return f"no {canonical.gpu_type} pool has mig_allowed: true"
    if canonical.kind is ShapeKind.FRACTION and not any(p.fractional_allowed for p in pools):
        return f"no {canonical.gpu_type} pool has fractional_allowed: true"
    if canonical.is_gang and not any(p.gpus_per_node >= canonical.gpus for p in pools):
        most = max(p.gpus_per_node for p in pools)
        return f"a gang of {canonical.gpus} GPUs must fit on one node; {canonical.gpu_type} nodes have at most {most}"
    return None


def parse_scenario(data: Any) -> Scenario:
    """Validate parsed YAML; raises pydantic's ValidationError (use issues_from_validation_error to report)."""
    return Scenario.model_validate(data)


def load_scenario(path: Path, catalog: Catalog, book: ProfileBook) -> Scenario:
    """Load and fully check one scenario file; ConfigError lists every problem, one per line."""
    data = load_yaml(path)
    try:
        scenario = parse_scenario(data)
    except ValidationError as exc:
        lines = [issue.format(str(path)) for issue in issues_from_validation_error(exc)]
        raise ConfigError("\n".join(lines)) from None
    problems = check_scenario(scenario, catalog, book)
    if problems:
        raise ConfigError("\n".join(issue.format(str(path)) for issue in problems))
    return scenario
