"""Burn-rate alerts for the scenario's SLOs, as a Prometheus Operator `PrometheusRule` (`fleetscale render alerts`).

Two kinds of objective, one alerting scheme (the SRE workbook's multiwindow, multi-burn-rate alerts): an alert
fires when the error budget burns faster than 14.4x over both 1 h and 5 min (severity `page`: 2 % of a 30-day
budget in an hour), or faster than 6x over both 6 h and 30 min (severity `ticket`).

- Latency SLOs, per service whose engine exports latency histograms (vLLM, SGLang): the share of requests whose TTFT,
  or whose time per output token, exceeds the SLO's bound, over the budget `1 - slo.quantile`. The bad share is read
  off the histogram's bucket at the bound; where the bound is not one of the engine's bucket bounds, the largest
  bucket below it stands in (an alert on a tighter bound fires earlier, never later), and the rule's annotation
  says which. vLLM's bounds are those of `vllm/v1/metrics/loggers.py` (TTFT 1 ms to 2560 s; time per output token
  10 ms to 80 s); other engines' are taken to include the bound. The selector is the service's, as the metrics
  source builds it.
- GPU efficiency SLOs: fleetscale exports their burn rates itself (`fleetscale_efficiency_burn_rate`, computed from
  the ticks it measured), so the rule compares those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.config import MetricsEngine, Scenario, Service

BURNS = (("fast", "1h", "5m", 14.4, "page"), ("slow", "6h", "30m", 6.0, "ticket"))

# vLLM's histogram bucket bounds (vllm/v1/metrics/loggers.py), seconds.
VLLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
VLLM_TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Where an engine's latency histogram is: its metric (without `_bucket`) and its bucket bounds (None: unknown,
    the bound itself is used)."""

    metric: str
    buckets: tuple[float, ...] | None


LATENCY_HISTOGRAMS: dict[MetricsEngine, dict[str, LatencyHistogram]] = {
    MetricsEngine.VLLM: {
        "ttft": LatencyHistogram("vllm:time_to_first_token_seconds", VLLM_TTFT_BUCKETS),
        # Per request, as the SLO counts (inter_token_latency_seconds counts tokens).
        "tpot": LatencyHistogram("vllm:request_time_per_output_token_seconds", VLLM_TPOT_BUCKETS),
    },
    MetricsEngine.SGLANG: {
        "ttft": LatencyHistogram("sglang:time_to_first_token_seconds", None),
        "tpot": LatencyHistogram("sglang:inter_token_latency_seconds", None),
    },
}


def bucket_at(bound_s: float, buckets: Sequence[float] | None) -> float:
    """The bucket bound an alert on `bound_s` reads: the largest one not above it (the bound itself when the
    buckets are unknown or all above it)."""
    if not buckets:
        return bound_s
    below = [b for b in buckets if b <= bound_s + 1e-12]
    return max(below) if below else bound_s


def le_matcher(bound_s: float) -> str:
    """A regular expression for the `le` label of `bound_s`, whichever way the exporter writes the number (`0.5`,
    `1`, `1.0`, `10.000`), with its backslashes doubled for a PromQL string in double quotes."""
    text = f"{bound_s:g}"
    if "e" in text:
        text = f"{bound_s:.12f}".rstrip("0").rstrip(".")
    pattern = re.escape(text) + "0*" if "." in text else re.escape(text) + r"(\.0*)?"
    return pattern.replace("\\", "\\\\")


def _bad_ratio(histogram: LatencyHistogram, selector: str, le: float, window: str) -> str:
    inner = f"{selector}," if selector else ""
    return (
        f'(1 - sum(rate({histogram.metric}_bucket{{{inner}le=~"{le_matcher(le)}"}}[{window}])) '
        f"/ sum(rate({histogram.metric}_count{{{selector}}}[{window}])))"
    )


def _latency_rules(service: Service, selector: str) -> list[dict[str, Any]]:
    histograms = LATENCY_HISTOGRAMS.get(service.metrics.engine)
    if histograms is None:
        return []
    budget = 1.0 - service.slo.quantile
    rules = []
    for slo_name, bound in (("ttft", service.slo.ttft_p95_s), ("tpot", service.slo.tpot_p95_s)):
        histogram = histograms[slo_name]
        le = bucket_at(bound, histogram.buckets)
        for speed, long_w, short_w, factor, severity in BURNS:
            long_expr = _bad_ratio(histogram, selector, le, long_w)
            short_expr = _bad_ratio(histogram, selector, le, short_w)
            read = f"the {le:g} s bucket" + ("" if abs(le - bound) < 1e-12 else f" (the largest below {bound:g} s)")
            rules.append(
                {
                    "alert": f"FleetscaleLatencySLOBurn{_camel(slo_name)}{_camel(speed)}",
                    "expr": f"{long_expr} / {budget:g} > {factor:g} and {short_expr} / {budget:g} > {factor:g}",
                    "labels": {"severity": severity, "service": service.name, "slo": f"{slo_name}_p95_s"},
                    "annotations": {
                        "summary": f"{service.name}: {slo_name.upper()} SLO budget burning {speed} ({factor:g}x)",
                        "description": (
                            f"Requests of {service.name} slower than {bound:g} s ({slo_name.upper()}, read at {read}) "
                            f"spend the {budget:.0%} error budget of its {service.slo.quantile:.0%} objective more "
                            f"than {factor:g} times too fast over {long_w} and {short_w}."
                        ),
                    },
                }
            )
    return rules


def _efficiency_rules(scenario: Scenario) -> list[dict[str, Any]]:
    rules = []
    for objective in scenario.efficiency.objectives:
        for speed, long_w, short_w, factor, severity in BURNS:
            metric = f'fleetscale_efficiency_burn_rate{{objective="{objective.name}",window="%s"}}'
            rules.append(
                {
                    "alert": f"FleetscaleEfficiencySLOBurn{_camel(speed)}",
                    "expr": (f"{metric % long_w} > {factor:g} and ignoring(window) {metric % short_w} > {factor:g}"),
                    "labels": {"severity": severity, "objective": objective.name},
                    "annotations": {
                        "summary": f"GPU efficiency objective {objective.name} burning {speed} ({factor:g}x)",
                        "description": (
                            f"{objective.indicator} {'>=' if objective.indicator.higher_is_better else '<='} "
                            f"{objective.threshold:.0%} in {objective.objective:.0%} of ticks over "
                            f"{objective.window_s / 86400:g} days: its budget burns more than {factor:g} times too "
                            f"fast over {long_w} and {short_w}."
                        ),
                    },
                }
            )
    return rules


def _camel(word: str) -> str:
    return word[:1].upper() + word[1:]


def prometheus_rule(
    scenario: Scenario, selectors: dict[str, str], *, name: str | None = None, namespace: str = "monitoring"
) -> dict[str, Any]:
    """The `PrometheusRule` (monitoring.coreos.com/v1) of the scenario's latency and efficiency SLOs; `selectors`
    are the services' label matchers, as the metrics source builds them."""
    groups = []
    latency = [rule for s in scenario.services for rule in _latency_rules(s, selectors[s.name])]
    if latency:
        groups.append({"name": "fleetscale-latency-slos", "rules": latency})
    efficiency = _efficiency_rules(scenario)
    if efficiency:
        groups.append({"name": "fleetscale-efficiency-slos", "rules": efficiency})
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name or f"fleetscale-{scenario.name}-slos",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "fleetscale", "app.kubernetes.io/component": "slo-alerts"},
        },
        "spec": {"groups": groups},
    }
