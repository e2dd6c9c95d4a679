"""The PromQL fleetscale asks, per engine: the default query of every signal, and how a service's selector is built.

Each query is a `string.Template`: `$selector` becomes the service's label matchers (without braces) and `$window`
the rate window (`1m`). Every default aggregates to one series (`sum`, `avg`, `histogram_quantile` over `sum by
(le)`), so that one number answers each signal; a scenario can replace any of them (`metrics.queries`).

Renamed metrics are read under both names in one query, the current one first: `new or old` takes, per series,
the current name where a replica exports it and the old one where it does not (vector matching ignores the metric
name), so a fleet halfway through an upgrade is counted once. Sources: vLLM `vllm/v1/metrics/loggers.py` and its
deprecation policy (a metric deprecated in X.Y is hidden in X.Y+1 and removed in X.Y+2), SGLang's metrics docs, Ray
Serve's monitoring docs, the Gateway API inference extension's endpoint picker (whose `inference_objective_*` and
`inference_pool_*` names are becoming `llm_d_epp_*`, both exported during the change), and the DCGM exporter's
default counters up to 4.8 (see DCGM_LEGACY for the 4.9 rename).

Request rate. vLLM and SGLang count requests when they finish, so under overload the finish rate is the capacity,
not the demand; the requests that queue up instead are added back: request_rps = finishes/s + the growth of the
waiting queue per second (`deriv` over the window, 0 where no queue gauge exists). Without that, a saturated
service would look as busy as it can be and never more.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.config import (
    DcgmField,
    DcgmMetric,
    DcgmSettings,
    MetricsBinding,
    MetricsEngine,
    MetricSignal,
    MetricUnit,
    Service,
)

S = MetricSignal


def _quantile(q: float, *buckets: str) -> str:
    """The q-quantile of a histogram, read under each of its names in turn (`new or old`, module docstring)."""
    rates = " or ".join(f"rate({bucket}{{$selector}}[$window])" for bucket in buckets)
    return f"histogram_quantile({q}, sum by (le) ({rates}))"


def _live(function: str, metric: str) -> str:
    """`function(metric[$window])` of the series still exported: a replica that is gone leaves its samples in the
    window, and its rate would be counted beside the rate of the replicas that took over its load (the
    oscillation of llm-d-autoscaling #368). When a series or its target disappears Prometheus marks it stale, and
    the instant selector no longer returns it, so `and metric` keeps only the live ones."""
    return f"({function}({metric}{{$selector}}[$window]) and {metric}{{$selector}})"


def _finishes_plus_queue_growth(finished_counter: str, waiting_gauge: str) -> str:
    return f"clamp_min(sum{_live('rate', finished_counter)} + (sum{_live('deriv', waiting_gauge)} or vector(0)), 0)"


VLLM: Mapping[MetricSignal, str] = {
    S.REQUEST_RPS: _finishes_plus_queue_growth("vllm:request_success_total", "vllm:num_requests_waiting"),
    S.INPUT_TOKENS_PER_S: "sum" + _live("rate", "vllm:prompt_tokens_total"),
    S.OUTPUT_TOKENS_PER_S: "sum" + _live("rate", "vllm:generation_tokens_total"),
    S.RUNNING: "sum(vllm:num_requests_running{$selector})",
    S.WAITING: "sum(vllm:num_requests_waiting{$selector})",
    # kv_cache_usage_perc is a 0-1 fraction despite its name; gpu_cache_usage_perc was deprecated in 0.9.2.
    S.KV_CACHE_USAGE: "avg(vllm:kv_cache_usage_perc{$selector} or vllm:gpu_cache_usage_perc{$selector})",
    S.TTFT_P50_S: _quantile(0.5, "vllm:time_to_first_token_seconds_bucket"),
    S.TTFT_P95_S: _quantile(0.95, "vllm:time_to_first_token_seconds_bucket"),
    # inter_token_latency_seconds replaced time_per_output_token_seconds (deprecated in 0.11, removed in 0.13).
    S.TPOT_P50_S: _quantile(
        0.5, "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket"
    ),
    S.TPOT_P95_S: _quantile(
        0.95, "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket"
    ),
    S.REPLICAS: "count(vllm:num_requests_running{$selector})",
}

SGLANG: Mapping[MetricSignal, str] = {
    # A request is counted by its end-to-end latency histogram when it finishes.
    S.REQUEST_RPS: _finishes_plus_queue_growth("sglang:e2e_request_latency_seconds_count", "sglang:num_queue_reqs"),
    S.INPUT_TOKENS_PER_S: "sum" + _live("rate", "sglang:prompt_tokens_total"),
    S.OUTPUT_TOKENS_PER_S: "sum" + _live("rate", "sglang:generation_tokens_total"),
    S.RUNNING: "sum(sglang:num_running_reqs{$selector})",
    S.WAITING: "sum(sglang:num_queue_reqs{$selector})",
    S.KV_CACHE_USAGE: "avg(sglang:token_usage{$selector})",
    S.TTFT_P50_S: _quantile(0.5, "sglang:time_to_first_token_seconds_bucket"),
    S.TTFT_P95_S: _quantile(0.95, "sglang:time_to_first_token_seconds_bucket"),
    S.TPOT_P50_S: _quantile(
        0.5, "sglang:inter_token_latency_seconds_bucket", "sglang:time_per_output_token_seconds_bucket"
    ),
    S.TPOT_P95_S: _quantile(
        0.95, "sglang:inter_token_latency_seconds_bucket", "sglang:time_per_output_token_seconds_bucket"
    ),
    S.REPLICAS: "count(sglang:num_running_reqs{$selector})",
}

# Ray Serve counts requests at the replica and knows no tokens, KV cache or first-token time: those signals are
# not reported (a scenario that exports them from the engine inside the replica names its queries).
RAY_SERVE: Mapping[MetricSignal, str] = {
    S.REQUEST_RPS: _finishes_plus_queue_growth(
        "ray_serve_deployment_request_counter_total", "ray_serve_deployment_queued_queries"
    ),
    S.RUNNING: "sum(ray_serve_replica_processing_queries{$selector})",
    S.WAITING: "sum(ray_serve_deployment_queued_queries{$selector})",
    S.REPLICAS: "sum(ray_serve_deployment_replica_healthy{$selector})",
}

# The endpoint picker sees every request on arrival (so no queue growth is added) and, per request, its input and
# output tokens (histograms: their sums' rates are tokens per second) and its normalized time per output token; it
# has no first-token time. Its pool averages are per pod (the KV cache and the queue).
ENDPOINT_PICKER: Mapping[MetricSignal, str] = {
    S.REQUEST_RPS: "sum(rate(llm_d_epp_request_total{$selector}[$window]) "
    "or rate(inference_objective_request_total{$selector}[$window]))",
    S.INPUT_TOKENS_PER_S: "sum(rate(inference_objective_input_tokens_sum{$selector}[$window]))",
    S.OUTPUT_TOKENS_PER_S: "sum(rate(inference_objective_output_tokens_sum{$selector}[$window]))",
    S.RUNNING: "sum(llm_d_epp_inflight_requests{$selector} or inference_objective_running_requests{$selector})",
    S.WAITING: "sum(llm_d_epp_flow_control_queue_size{$selector} or inference_pool_average_queue_size{$selector})",
    S.KV_CACHE_USAGE: "avg(inference_pool_average_kv_cache_utilization{$selector})",
    S.TPOT_P50_S: _quantile(0.5, "inference_objective_normalized_time_per_output_token_seconds_bucket"),
    S.TPOT_P95_S: _quantile(0.95, "inference_objective_normalized_time_per_output_token_seconds_bucket"),
    S.REPLICAS: "max(inference_pool_ready_pods{$selector})",
}

DEFAULT_QUERIES: Mapping[MetricsEngine, Mapping[MetricSignal, str]] = {
    MetricsEngine.VLLM: VLLM,
    MetricsEngine.SGLANG: SGLANG,
    MetricsEngine.RAY_SERVE: RAY_SERVE,
    MetricsEngine.ENDPOINT_PICKER: ENDPOINT_PICKER,
}

# The label that names a service's series when the scenario gives no matchers: the served model's name for the
# engines (`--served-model-name`), the deployment for Ray Serve.
DEFAULT_LABEL: Mapping[MetricsEngine, str] = {
    MetricsEngine.VLLM: "model_name",
    MetricsEngine.SGLANG: "model_name",
    MetricsEngine.RAY_SERVE: "deployment",
    MetricsEngine.ENDPOINT_PICKER: "model_name",
}

# Where each engine counts finished requests, one series per replica (and per finish reason): the counter whose
# increase from tick to tick is the tick's request count (`CounterTotal` in parse.py).
REQUEST_COUNTER: Mapping[MetricsEngine, str] = {
    MetricsEngine.VLLM: "vllm:request_success_total",
    MetricsEngine.SGLANG: "sglang:e2e_request_latency_seconds_count",
    MetricsEngine.RAY_SERVE: "ray_serve_deployment_request_counter_total",
    MetricsEngine.ENDPOINT_PICKER: "inference_objective_request_total",
}

# The gauge whose newest sample says how fresh a service's series are (gauges stay visible for Prometheus's 5-minute
# lookback after a replica stops being scraped; `timestamp()` tells their age).
FRESHNESS_GAUGE: Mapping[MetricsEngine, str] = {
    MetricsEngine.VLLM: "vllm:num_requests_running",
    MetricsEngine.SGLANG: "sglang:num_running_reqs",
    MetricsEngine.RAY_SERVE: "ray_serve_replica_processing_queries",
    MetricsEngine.ENDPOINT_PICKER: "inference_pool_ready_pods",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(labels: Mapping[str, str], patterns: Mapping[str, str] | None = None) -> str:
    """PromQL label matchers, without braces: `a="x",b=~"y.*"` (values escaped as PromQL strings)."""
    parts = [f'{name}="{_escape(value)}"' for name, value in sorted(labels.items())]
    parts += [f'{name}=~"{_escape(value)}"' for name, value in sorted((patterns or {}).items())]
    return ",".join(parts)


def service_selector(service: Service, shape_labels: Mapping[str, str] | None = None) -> str:
    """The matchers of a service's series (of one of its shapes, with `shape_labels`)."""
    binding: MetricsBinding = service.metrics
    labels = dict(binding.labels)
    if not labels and not binding.label_patterns:
        labels[DEFAULT_LABEL[binding.engine]] = service.name
    labels.update(shape_labels or {})
    return selector(labels, binding.label_patterns)


def window(seconds: float) -> str:
    """A PromQL duration for `seconds` (whole seconds: `60s`)."""
    return f"{max(1, round(seconds))}s"


@dataclass(frozen=True, slots=True)
class ServiceQueries:
    """The queries of one service (or one shape of it), filled in."""

    signals: Mapping[MetricSignal, str]
    counter: str  # the raw request counter, one series per replica
    freshness: str  # the newest sample time of the service's series

    @staticmethod
    def of(service: Service, shape_labels: Mapping[str, str] | None = None) -> ServiceQueries:
        binding = service.metrics
        values = {"selector": service_selector(service, shape_labels), "window": window(binding.rate_window_s)}
        templates = {**DEFAULT_QUERIES[binding.engine], **binding.queries}
        signals = {signal: string.Template(t).substitute(values) for signal, t in templates.items()}
        sel = values["selector"]
        counter = f"{REQUEST_COUNTER[binding.engine]}{{{sel}}}"
        freshness = f"max(timestamp({FRESHNESS_GAUGE[binding.engine]}{{{sel}}}))"
        return ServiceQueries(signals, counter, freshness)


# ── DCGM ─────────────────────────────────────────────────────────────────────────────────────────────────────────

# The exporter's names up to 4.8 (its etc/default-counters.csv): the profiling fields are 0-1 ratios, GPU_UTIL a
# percentage (and not reported for MIG instances), the framebuffer in MiB. 4.9 renamed 23 default fields to DCGM 4.7's
# names and changed units (percent to ratio, MiB to bytes); no source read here lists the new names, so a fleet on
# 4.9 names them with their units in `telemetry.dcgm.names`, and they are read before these.
DCGM_LEGACY: Mapping[DcgmField, DcgmMetric] = {
    DcgmField.ENGINE_ACTIVE: DcgmMetric(metric="DCGM_FI_PROF_GR_ENGINE_ACTIVE", unit=MetricUnit.RATIO),
    DcgmField.GPU_UTIL: DcgmMetric(metric="DCGM_FI_DEV_GPU_UTIL", unit=MetricUnit.PERCENT),
    DcgmField.FB_USED: DcgmMetric(metric="DCGM_FI_DEV_FB_USED", unit=MetricUnit.MIB),
    DcgmField.FB_FREE: DcgmMetric(metric="DCGM_FI_DEV_FB_FREE", unit=MetricUnit.MIB),
}


def dcgm_metrics(settings: DcgmSettings, field: DcgmField) -> tuple[DcgmMetric, ...]:
    """The metrics to read `field` from, in order of preference: the site's (4.9) name, then the legacy one."""
    named = settings.names.get(field)
    legacy = DCGM_LEGACY[field]
    return (named, legacy) if named is not None and named != legacy else (legacy,)


def dcgm_query(settings: DcgmSettings, metric: DcgmMetric) -> str:
    """The instant query of one DCGM metric over the fleet, every instance's series kept."""
    return f"{metric.metric}{{{selector(settings.labels)}}}"
