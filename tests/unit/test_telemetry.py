"""fleetscale's own /metrics, /healthz and /readyz, scraped over HTTP and checked against a decision the test knows
(autoscaler/telemetry.py)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.loop import PHASES, StartReport
from autoscaler.perf import ProfileBook
from autoscaler.shapes import parse_shape
from autoscaler.telemetry import Health, LoopTelemetry, TelemetryServer, problem_source
from tests.unit.conftest import compile_dict, scenario_dict
from tests.unit.test_loop import World

H100 = parse_shape("H100-80GB")


@pytest.fixture(scope="module")
def chat(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict()
    data["policy"] = {"mode": "apply"}
    data["budget"] = {"hard_usd_per_h": 500.0}
    return compile_dict(data, catalog, book)


@pytest.fixture
def served(chat: CompiledScenario) -> Iterator[tuple[LoopTelemetry, TelemetryServer]]:
    telemetry = LoopTelemetry(chat)
    healthy = {"value": Health(True, "ok")}
    server = TelemetryServer(telemetry, lambda: healthy["value"], port=0)
    try:
        yield telemetry, server
    finally:
        server.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def scrape(server: TelemetryServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"{server.url}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_tell_the_decision_the_loop_made(
    chat: CompiledScenario, served: tuple[LoopTelemetry, TelemetryServer]
) -> None:
    telemetry, server = served
    world = World(chat)
    world.fleet.seed("chat", H100, 2)
    world.metrics.set_rate("chat", 150.0)
    telemetry.record_start(StartReport(loaded=False, saved_at=None, refilled={}))
    report = world.tick()
    telemetry.record_tick(report)
    assert report.decision is not None
    decision = report.decision.service("chat")
    assert decision.target[H100] > 2  # a scale-up: current, desired and target differ

    samples = scrape(server)
    labels = (("service", "chat"), ("shape", "H100-80GB"))
    assert samples[("fleetscale_current_replicas", labels)] == 2
    assert samples[("fleetscale_desired_replicas", labels)] == decision.desired[H100]
    assert samples[("fleetscale_target_replicas", labels)] == decision.target[H100]
    assert samples[("fleetscale_predicted_demand_rps", (("service", "chat"),))] == pytest.approx(
        decision.predicted_demand_rps
    )
    assert samples[("fleetscale_demand_quantile", (("service", "chat"),))] == 0.99  # the critical tier's
    assert samples[("fleetscale_capacity_rps_per_replica", (("service", "chat"),))] == pytest.approx(
        decision.capacity_rps_per_replica
    )
    reason = (("binding", decision.binding_constraint.value), ("reason", decision.reason.value), ("service", "chat"))
    assert samples[("fleetscale_decision_reason", reason)] == 1
    assert samples[("fleetscale_cost_usd_per_hour", ())] == pytest.approx(report.decision.cost_usd_per_h)
    assert samples[("fleetscale_budget_usd_per_hour", ())] == 500.0
    assert samples[("fleetscale_budget_burn_ratio", ())] == pytest.approx(report.decision.cost_usd_per_h / 500.0)
    assert samples[("fleetscale_ticks_total", ())] == 1
    assert samples[("fleetscale_tick_duration_seconds_count", ())] == 1
    assert {dict(k[1])["phase"] for k in samples if k[0] == "fleetscale_tick_phase_seconds"} == set(PHASES)
    assert samples[("fleetscale_ready", ())] == 1
    assert samples[("fleetscale_last_tick_timestamp_seconds", ())] == report.at.timestamp()


def test_holds_and_errors_are_counted_by_reason_and_source(
    chat: CompiledScenario, served: tuple[LoopTelemetry, TelemetryServer]
) -> None:
    telemetry, server = served
    world = World(chat)
    world.fleet.seed("chat", H100, 2)
    world.metrics.drop("chat")
    for _ in range(3):
        telemetry.record_tick(world.tick())
    samples = scrape(server)
    assert samples[("fleetscale_holds_total", (("reason", "hold_missing_metrics"), ("service", "chat")))] == 3
    # A held service keeps its target where it is: nothing about it scales down.
    assert samples[("fleetscale_target_replicas", (("service", "chat"), ("shape", "H100-80GB")))] == 2


def test_ready_only_after_start_and_a_decided_tick(
    chat: CompiledScenario, served: tuple[LoopTelemetry, TelemetryServer]
) -> None:
    telemetry, server = served
    assert get(f"{server.url}/readyz")[0] == 503
    telemetry.record_start(StartReport(loaded=True, saved_at=None, refilled={}))
    assert get(f"{server.url}/readyz")[0] == 503  # loaded, but no tick has decided yet
    world = World(chat)
    world.metrics.set_rate("chat", 10.0)
    telemetry.record_tick(world.tick())
    assert get(f"{server.url}/readyz") == (200, "ready\n")
    assert get(f"{server.url}/healthz") == (200, "ok\n")
    assert get(f"{server.url}/nothing")[0] == 404


def test_unhealthy_answers_503(chat: CompiledScenario) -> None:
    server = TelemetryServer(LoopTelemetry(chat), lambda: Health(False, "no tick for 300 s"), port=0)
    try:
        assert get(f"{server.url}/healthz") == (503, "no tick for 300 s\n")
    finally:
        server.close()


@pytest.mark.parametrize(
    ("problem", "source"),
    [
        ("metrics: TransientError: down (every service holds)", "metrics"),
        ("inventory: TransientError: x (no decision this tick)", "inventory"),
        ("audit intent: TransientError: disk full", "audit"),
        ("state: TransientError: x (kept in memory)", "state"),
        ("something new", "other"),
    ],
)
def test_problem_sources(problem: str, source: str) -> None:
    assert problem_source(problem) == source


def test_efficiency_slos_and_capacity_corrections_are_exported(catalog: Catalog, book: ProfileBook) -> None:
    from autoscaler.decide import decide
    from autoscaler.loop import TickReport
    from autoscaler.model import PolicyState
    from tests.unit.test_correction import slower
    from tests.unit.test_efficiency import NOW, h100_scenario, observation

    config = h100_scenario(
        catalog, book, [{"name": "few-saturated", "indicator": "saturated", "threshold": 0.1, "objective": 0.99}]
    )
    profile = config.plans["chat"].candidate(H100)
    assert profile is not None and profile.profile is not None
    state = PolicyState()
    decision = None
    for i in range(8):
        at = NOW + timedelta(seconds=15 * i)
        seen = observation(at)
        seen = replace(
            seen,
            services={"chat": replace(seen.services["chat"], telemetry={H100: slower(profile.profile, 1.3, 60.0, 6)})},
        )
        decision, state = decide(seen, {}, config, state, at)
    assert decision is not None
    telemetry = LoopTelemetry(config)
    telemetry.record_tick(TickReport(8, decision.at, "t-8", decision, (("observe", 0.01),)))
    server = TelemetryServer(telemetry, port=0)
    try:
        samples = scrape(server)
    finally:
        server.close()
    key = (("indicator", "saturated"), ("objective", "few-saturated"))
    assert samples[("fleetscale_efficiency_sli", key)] == 1.0
    assert samples[("fleetscale_efficiency_good", key)] == 0.0
    assert samples[("fleetscale_efficiency_attainment", key)] == 0.0
    assert samples[("fleetscale_efficiency_objective", key)] == 0.99
    assert samples[("fleetscale_efficiency_burn_rate", (*key, ("window", "5m")))] == pytest.approx(100.0)
    assert samples[("fleetscale_efficiency_burning", (*key, ("speed", "fast")))] == 1.0
    correction = decision.service("chat").corrections[H100]
    assert samples[("fleetscale_capacity_correction", (("service", "chat"), ("shape", "H100-80GB")))] == (
        pytest.approx(correction.factor)
    )
    assert correction.factor < 1.0
    assert samples[("fleetscale_gpu_fleet", ())] == 16
