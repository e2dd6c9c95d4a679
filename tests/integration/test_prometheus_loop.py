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

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.prometheus import PrometheusMetricsSource
from autoscaler.capacity import TokenMix
from autoscaler.catalog import load_catalog
from autoscaler.clock import SystemClock
from autoscaler.compiled import CompiledScenario
from autoscaler.forecasters import ForecastSettings
from autoscaler.loop import ControlLoop, TickReport
from autoscaler.model import Reason
from autoscaler.perf import load_profile_book
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
PHASE_TIMEOUT_S = 40.0  # a phase's deadline: it bounds a failure; a pass takes a few ticks


class VllmExporter:
    """A service's replicas in vLLM's names: request, prompt and generation counters that grow at the load the test
    sets, split over the ready replicas; requests running by Little's law; a TTFT histogram."""

    def __init__(self, model: str, replicas: Callable[[], int]) -> None:
        self.model = model
        self.replicas = replicas
        self.rate_rps = 0.0
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._last = time.monotonic()

    def render(self) -> str:
        with self._lock:
            now = time.monotonic()
            pods = [f"pod-{i}" for i in range(max(1, self.replicas()))]
            share = self.rate_rps * (now - self._last) / len(pods)
            self._last = now
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
                    f'vllm:time_to_first_token_seconds_bucket{{{labels},le="0.1"}} 0',
                    f'vllm:time_to_first_token_seconds_bucket{{{labels},le="0.25"}} {count:.3f}',
                    f'vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} {count:.3f}',
                    f"vllm:time_to_first_token_seconds_sum{{{labels}}} {count * 0.2:.3f}",
                    f"vllm:time_to_first_token_seconds_count{{{labels}}} {count:.3f}",
                ]
            return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def chat() -> CompiledScenario:
    catalog = load_catalog()
    data = scenario_dict()
    data["services"][0]["metrics"] = {"engine": "vllm", "rate_window_s": 5}
    data["policy"] = {
        "mode": "apply",
        "tick_s": TICK_S,
        "scale_down_window_s": 4,
        "scale_down_period_s": 2,
        "scale_down_max_step": 20,
    }
    return compile_dict(data, catalog, load_profile_book(catalog))


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
        loop = ControlLoop(
            chat, clock=SystemClock(), metrics=source, inventory=fleet, actuator=fleet, run_id="prom",
            forecasting=ForecastSettings(min_points=2, envelope_lookback_s=6.0, envelope_level_s=4.0),
        )  # fmt: skip
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
