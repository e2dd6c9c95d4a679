"""The control loop reading a real Prometheus (the Debian binary, on 127.0.0.1) that scrapes an exporter in vLLM's
metric names, which the test drives with a known load: the targets follow the load up and down, and while
Prometheus is down every service holds with the metrics-unavailable reason and nothing scales down, until it is
back.

The fleet is `FakeFleet` (replicas ready at once); the exporter serves one series per ready replica, so replicas
coming and going are seen as a real fleet's would be (counters of new pods, series of removed ones). Everything runs
on the real clock, with a 2 s tick, a 1 s scrape and a 5 s rate window. Every process is stopped by PID at the end
(the harness's context managers), pass or fail.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.prometheus import PrometheusMetricsSource
from autoscaler.capacity import LatencySlo, TokenMix, predict_latency
from autoscaler.catalog import load_catalog
from autoscaler.clock import SystemClock
from autoscaler.compiled import CompiledScenario
from autoscaler.config import Service
from autoscaler.correction import capacity_factor
from autoscaler.forecasters import ForecastSettings
from autoscaler.loop import ControlLoop, TickReport
from autoscaler.model import Reason
from autoscaler.perf import ReplicaProfile, load_profile_book
from autoscaler.shapes import parse_shape
from autoscaler.sizing import evaluate
from autoscaler.testing import FakeFleet
from tests.integration.prometheus_server import PrometheusServer, StaticExporter
from tests.unit.conftest import compile_dict, scenario_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]

H100 = parse_shape("H100-80GB")
TICK_S = 2.0
LOW_RPS = 5.0
HIGH_RPS = 120.0
SLOWDOWN = 1.3  # the correction test's replicas: every step 1.3 x the profile's
PHASE_TIMEOUT_S = 40.0  # a phase's deadline: it bounds a failure; a pass takes a few ticks


# Histogram buckets 5 % apart from 1 ms to about 30 s: the exporter puts 96 % of each latency's observations in the
# bucket whose upper bound is nearest the p95 it means to report and the rest above the last bound, so that
# histogram_quantile(0.95) interpolates to within 0.3 % of that bound (with exactly 95 % there, the rank would sit on
# the bucket's edge, and the rates' rounding would tip it into +Inf, which reads as the last bound: 30 s).
BUCKETS = tuple(0.001 * 1.05**i for i in range(212))


def _bucket_lines(name: str, labels: str, count: float, p95_s: float, cumulative: dict[float, float]) -> list[str]:
    """`count` new observations of which 96 % at the bound nearest `p95_s` and 4 % above the last bound, added to
    `cumulative` (per bound), as the exposition lines of the whole histogram."""
    nearest = min(BUCKETS, key=lambda b: abs(math.log(b / p95_s)))
    for bound in BUCKETS:
        if bound >= nearest:
            cumulative[bound] = cumulative.get(bound, 0.0) + 0.96 * count
    cumulative[math.inf] = cumulative.get(math.inf, 0.0) + count
    lines = [f'{name}_bucket{{{labels},le="{b:.6g}"}} {cumulative.get(b, 0.0):.3f}' for b in BUCKETS]
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {cumulative[math.inf]:.3f}')
    lines.append(f"{name}_count{{{labels}}} {cumulative[math.inf]:.3f}")
    return lines


class VllmExporter:
    """A service's replicas in vLLM's names: request, prompt and generation counters that grow at the load the test
    sets, split over the ready replicas; requests running by Little's law; TTFT and inter-token latency histograms.

    With `latency` set (a function of the per-replica load and the replica count, giving p95 TTFT and TPOT) the
    histograms report those p95s; else every first token takes 0.2 s and every token 10 ms.
    """

    def __init__(
        self,
        model: str,
        replicas: Callable[[], int],
        latency: Callable[[float, int], tuple[float, float]] | None = None,
    ) -> None:
        self.model = model
        self.replicas = replicas
        self.latency = latency
        self.rate_rps = 0.0
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._ttft: dict[str, dict[float, float]] = {}
        self._itl: dict[str, dict[float, float]] = {}
        self._last = time.monotonic()

    def render(self) -> str:
        with self._lock:
            now = time.monotonic()
            pods = [f"pod-{i}" for i in range(max(1, self.replicas()))]
            share = self.rate_rps * (now - self._last) / len(pods)
            self._last = now
            per_replica = self.rate_rps / len(pods)
            ttft_s, tpot_s = self.latency(per_replica, len(pods)) if self.latency else (0.2, 0.01)
            for pod in pods:
                self._counts[pod] = self._counts.get(pod, 0.0) + share
            lines = [
                "# TYPE vllm:request_success_total counter",
                "# TYPE vllm:prompt_tokens_total counter",
                "# TYPE vllm:generation_tokens_total counter",
                "# TYPE vllm:num_requests_running gauge",
                "# TYPE vllm:num_requests_waiting gauge",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                "# TYPE vllm:time_to_first_token_seconds histogram",
                "# TYPE vllm:inter_token_latency_seconds histogram",
            ]
            for pod in pods:  # series of removed replicas vanish, as they do when their pods go
                count = self._counts[pod]
                labels = f'model_name="{self.model}",engine="0",pod="{pod}"'
                lines += [
                    f'vllm:request_success_total{{{labels},finished_reason="stop"}} {count:.3f}',
                    f"vllm:prompt_tokens_total{{{labels}}} {count * 1000:.3f}",
                    f"vllm:generation_tokens_total{{{labels}}} {count * 200:.3f}",
                    f"vllm:num_requests_running{{{labels}}} {self.rate_rps / len(pods) * 2.0:.3f}",
                    f"vllm:num_requests_waiting{{{labels}}} 0",
                    f"vllm:kv_cache_usage_perc{{{labels}}} 0.3",
                ]
                lines += _bucket_lines(
                    "vllm:time_to_first_token_seconds", labels, share, ttft_s, self._ttft.setdefault(pod, {})
                )
                lines += _bucket_lines(
                    "vllm:inter_token_latency_seconds", labels, share * 199, tpot_s, self._itl.setdefault(pod, {})
                )
            return "\n".join(lines) + "\n"


def scenario(correction: dict[str, Any]) -> CompiledScenario:
    catalog = load_catalog()
    data = scenario_dict()
    data["services"][0]["metrics"] = {"engine": "vllm", "rate_window_s": 5}
    data["policy"] = {
        "mode": "apply",
        "tick_s": TICK_S,
        "scale_down_window_s": 4,
        "scale_down_period_s": 2,
        "scale_down_max_step": 20,
        "capacity_correction": correction,
    }
    return compile_dict(data, catalog, load_profile_book(catalog))


@pytest.fixture(scope="module")
def chat() -> CompiledScenario:
    # The exporter's latencies here are not the profile's: the correction would rightly act on them.
    return scenario({"enabled": False})


@pytest.fixture(scope="module")
def corrected() -> CompiledScenario:
    # The correction at real-time speed: a 5 s window holds 50 requests at 10 req/s; half-lives of seconds.
    return scenario({"min_requests": 50, "half_life_s": 3, "max_step_ratio": 1.25})


def slower_replicas(
    profile: ReplicaProfile, service: Service, slowdown: float = SLOWDOWN
) -> Callable[[float, int], tuple[float, float]]:
    """The exporter's latency of replicas whose every step takes `slowdown` x the profile's: the model's p95 TTFT and
    TPOT at `slowdown` x the load, `slowdown` x longer (as bad as the buckets go where the model is overloaded)."""
    mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)

    def latency(per_replica_rps: float, replicas: int) -> tuple[float, float]:
        p = predict_latency(profile, per_replica_rps * slowdown, mix, 0.95, replicas, service.routing)
        if not p.stable:
            return 60.0, 1.0
        return p.ttft_s * slowdown, p.tpot_s * slowdown

    return latency


def live_loop(config: CompiledScenario, source: PrometheusMetricsSource, fleet: FakeFleet, run_id: str) -> ControlLoop:
    """The loop on the real clock over Prometheus and the fake fleet, its burst envelope shortened to seconds (its
    default memory is 30 minutes) so that a test of a minute sees the load come and go."""
    return ControlLoop(
        config, clock=SystemClock(), metrics=source, inventory=fleet, actuator=fleet, run_id=run_id,
        forecasting=ForecastSettings(min_points=2, envelope_lookback_s=6.0, envelope_level_s=4.0),
    )  # fmt: skip


def replicas_for(config: CompiledScenario, demand_rps: float) -> int:
    plan = config.plans["chat"]
    candidate = plan.candidate(H100)
    assert candidate is not None
    service = plan.service
    return evaluate(
        candidate, plan, demand_rps, TokenMix(service.mean_input_tokens, service.mean_output_tokens)
    ).replicas


def test_the_loop_follows_the_load_and_holds_while_prometheus_is_down(chat: CompiledScenario, tmp_path: Path) -> None:
    fleet = FakeFleet()
    fleet.seed("chat", H100, 1)
    exporter_model = VllmExporter("chat", lambda: fleet.replicas("chat").get(H100, 0))
    exporter_model.rate_rps = LOW_RPS
    with (
        StaticExporter(exporter_model.render) as exporter,
        PrometheusServer([("vllm", [exporter.target])], workdir=tmp_path / "prom") as prom,
    ):
        prom.wait_up("vllm")
        source = PrometheusMetricsSource(prom.url, timeout_s=2.0)
        loop = live_loop(chat, source, fleet, "prom")
        reports: list[TickReport] = []

        def tick_until(done: Callable[[TickReport], bool], what: str) -> TickReport:
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while time.monotonic() < deadline:
                report = loop.tick()
                reports.append(report)
                if report.decision is not None and done(report):
                    return report
                time.sleep(TICK_S)
            lines = [
                f"tick {r.number}: {r.decision.service('chat').reason} {dict(r.decision.service('chat').target)} "
                f"demand {r.decision.service('chat').predicted_demand_rps:.3g}; {r.problems}"
                for r in reports[-8:]
                if r.decision is not None
            ]
            raise AssertionError(f"{what}: not within {PHASE_TIMEOUT_S:g} s; last ticks:\n" + "\n".join(lines))

        def target(report: TickReport) -> int:
            assert report.decision is not None
            return report.decision.service("chat").target_replicas

        try:
            loop.start()
            # Low load: the metrics arrive and the service sits at what 5 req/s needs.
            low = replicas_for(chat, LOW_RPS)
            tick_until(lambda r: r.decision is not None and r.decision.service("chat").reason is Reason.STEADY, "low")
            assert fleet.replicas("chat")[H100] == low

            # High load: the targets rise to what 120 req/s needs (the scale-up rate limit takes a few ticks).
            high = replicas_for(chat, HIGH_RPS)
            assert high >= low + 4
            exporter_model.rate_rps = HIGH_RPS
            report = tick_until(lambda r: target(r) >= high, "scale up to the high load's replicas")
            peak = fleet.replicas("chat")[H100]
            assert peak >= high
            telemetry = report.decision.service("chat") if report.decision is not None else None
            assert telemetry is not None

            # Prometheus goes down while the load falls: every tick holds with the metrics-unavailable reason, and
            # nothing scales down, however low the load is now.
            prom.stop()
            exporter_model.rate_rps = LOW_RPS
            for _ in range(3):
                report = loop.tick()
                assert report.decision is not None
                held = report.decision.service("chat")
                assert held.reason is Reason.HOLD_MISSING_METRICS, held
                assert "unreachable" in held.message, held.message
                assert any(p.startswith("metrics: TransientError") for p in report.problems), report.problems
                assert fleet.replicas("chat")[H100] == peak
                time.sleep(TICK_S / 2)

            # Prometheus is back: the loop reads the low load again and scales down to it.
            prom.start()
            prom.wait_up("vllm")
            tick_until(lambda r: target(r) <= low, "scale down after Prometheus returned")
            assert fleet.replicas("chat")[H100] == low
            assert all(
                r.decision is None or r.decision.service("chat").target_replicas >= peak
                for r in reports
                if any(p.startswith("metrics:") for p in r.problems)
            )
        finally:
            source.close()
            loop.close()


CORRECTION_RPS = 60.0


def test_latencies_30_percent_over_the_profile_correct_capacity_and_raise_the_targets(
    corrected: CompiledScenario, tmp_path: Path
) -> None:
    plan = corrected.plans["chat"]
    service = plan.service
    candidate = plan.candidate(H100)
    assert candidate is not None and candidate.profile is not None
    profile = candidate.profile
    slo = LatencySlo(service.slo.ttft_p95_s, service.slo.tpot_p95_s, service.slo.quantile)
    mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)

    fleet = FakeFleet()
    fleet.seed("chat", H100, replicas_for(corrected, CORRECTION_RPS))
    model = VllmExporter("chat", lambda: fleet.replicas("chat").get(H100, 0), slower_replicas(profile, service))
    model.rate_rps = CORRECTION_RPS
    with (
        StaticExporter(model.render) as exporter,
        PrometheusServer([("vllm", [exporter.target])], workdir=tmp_path / "prom") as prom,
    ):
        prom.wait_up("vllm")
        source = PrometheusMetricsSource(prom.url, timeout_s=2.0)
        loop = live_loop(corrected, source, fleet, "corr")
        history: list[tuple[float, float, int]] = []
        try:
            loop.start()
            deadline = time.monotonic() + 90.0
            converged = learned = 0
            while time.monotonic() < deadline and (converged < 3 or learned < 8):
                report = loop.tick()
                assert report.decision is not None, report.problems
                chat = report.decision.service("chat")
                correction = chat.corrections.get(H100)
                replicas = fleet.replicas("chat")[H100]
                truth = capacity_factor(profile, slo, mix, replicas, service.routing, SLOWDOWN)
                if correction is not None and correction.evidence is not None:
                    learned += 1
                    history.append((round(correction.factor, 3), round(truth, 3), replicas))
                    close = abs(correction.factor - truth) <= 0.1 * truth
                    converged = converged + 1 if close else 0
                time.sleep(TICK_S)
            print(f"correction per tick (factor, true factor, replicas): {history}")  # shown with pytest -s
            assert converged >= 3, f"(factor, true factor, replicas) per tick: {history}"
            factor, truth, _ = history[-1]
            assert factor < 0.95  # the replicas are slower, and the loop knows it
            # The targets rise accordingly: the demand now needs more replicas than the profile alone would say.
            demand = chat.predicted_demand_rps
            uncorrected = evaluate(candidate, plan, demand, mix).replicas
            assert chat.desired[H100] > uncorrected, (chat.desired, uncorrected, demand)
            assert chat.desired[H100] == evaluate(candidate, plan, demand, mix, factor).replicas
            size = next(t for t in chat.trace if t.stage.value == "size")
            assert f"chat on H100-80GB: capacity x{factor:.2f}" in size.message
            assert "where the profile predicts" in size.message
        finally:
            source.close()
            loop.close()
