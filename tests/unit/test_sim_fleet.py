"""The fleet simulator against queueing theory and the capacity model, and its replicas' life cycle."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from autoscaler.capacity import LatencySlo, TokenMix, capacity_at_slo
from autoscaler.catalog import load_catalog
from autoscaler.compiled import Candidate, CompiledScenario, ServicePlan
from autoscaler.perf import Precision, ReplicaProfile, load_profile_book
from autoscaler.shapes import Shape, parse_shape
from autoscaler.sim.fleet import FixedTargets, FleetSim, FleetView, ServiceRequests, Targets
from autoscaler.sim.replica import poisson_arrivals
from autoscaler.sim.summary import percentile, summarize
from tests.unit.conftest import compile_dict, scenario_dict

CATALOG = load_catalog()
BOOK = load_profile_book(CATALOG)
H100 = parse_shape("H100-80GB")


def with_profile(config: CompiledScenario, service: str, shape: Shape, profile: ReplicaProfile) -> CompiledScenario:
    """`config` with `service`'s candidate `shape` running `profile` (and starting in `startup_s`)."""
    plan = config.plans[service]
    candidate = replace(plan.by_shape[shape], profile=profile)
    by_shape = dict(plan.by_shape)
    by_shape[shape] = candidate
    candidates = tuple(candidate if c.shape == shape else c for c in plan.candidates)
    plans = dict(config.plans)
    plans[service] = ServicePlan(plan.service, candidates, plan.horizon_s, by_shape)
    return replace(config, plans=plans)


def _erlang_c(servers: int, arrival: float, service_rate: float) -> tuple[float, float]:
    """M/M/c: (mean wait in queue, probability of waiting)."""
    a = arrival / service_rate
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / (math.factorial(servers) * (1 - rho))
    p_wait = tail / (head + tail)
    return p_wait / (servers * service_rate - arrival), p_wait


@pytest.fixture(scope="module")
def chat() -> CompiledScenario:
    return compile_dict(scenario_dict(), CATALOG, BOOK)


def test_without_batching_and_with_exponential_service_it_is_the_m_m_c_queue(chat: CompiledScenario) -> None:
    # One slot per replica, a 10 ms decode step independent of batch and context, a negligible prefill, and
    # geometric output lengths of mean 100 tokens: exponential service of mean ~1 s. Requests beyond the free
    # slots wait in the gateway's FIFO queue: M/M/4 at 80 % load.
    base = BOOK.profile("Llama-3.1-8B", H100, Precision.BF16)
    profile = replace(
        base,
        max_num_seqs=1,
        decode_base_ms=replace(base.decode_base_ms, value=10.0),
        decode_base_all_experts_ms=replace(base.decode_base_all_experts_ms, value=10.0),
        decode_ms_per_seq=replace(base.decode_ms_per_seq, value=0.0),
        decode_ms_per_seq_per_1k_context=replace(base.decode_ms_per_seq_per_1k_context, value=0.0),
        overhead_ms=replace(base.overhead_ms, value=0.0),
        weight_read_ms=replace(base.weight_read_ms, value=1e-6),
    )
    config = with_profile(chat, "chat", H100, profile)
    prefill_s = profile.prefill_ms(1) / 1000.0
    step_s = profile.decode_step_ms(1, 0.0) / 1000.0
    # Mean waits at 80 % load are noisy (long busy periods): three seeded runs of 100,000 requests, pooled.
    waits: list[float] = []
    services: list[float] = []
    for seed in range(3):
        rng = random.Random(seed)
        arrivals = poisson_arrivals(3.2, 100_000, seed=10 + seed)
        outputs = [1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / 100.0)) for _ in arrivals]
        requests = {"chat": ServiceRequests("chat", arrivals, [1] * len(arrivals), outputs)}
        result = FleetSim(config, requests).run(FixedTargets({"chat": {H100: 4}}))
        waits.extend(t - prefill_s for t in result.ttft_s["chat"])
        services.extend(step_s * (out - 1) + prefill_s for out in outputs)
    mean_service_s = sum(services) / len(services)
    expected_wait, expected_p_wait = _erlang_c(4, 3.2, 1.0 / mean_service_s)
    assert sum(waits) / len(waits) == pytest.approx(expected_wait, rel=0.05)
    assert sum(w > 1e-9 for w in waits) / len(waits) == pytest.approx(expected_p_wait, rel=0.05)


@pytest.mark.parametrize(("load", "meets"), [(1.0, True), (1.2, False)])
def test_a_replica_at_its_capacity_at_slo_meets_the_slo_and_above_it_does_not(
    chat: CompiledScenario, load: float, meets: bool
) -> None:
    profile = BOOK.profile("Llama-3.1-8B", H100, Precision.BF16)
    slo = LatencySlo(0.5, 0.05)
    capacity = capacity_at_slo(profile, slo, TokenMix(1000, 200)).rps
    arrivals = poisson_arrivals(load * capacity, 30_000, seed=1)
    requests = {"chat": ServiceRequests("chat", arrivals, [1000] * len(arrivals), [200] * len(arrivals))}
    result = FleetSim(chat, requests).run(FixedTargets({"chat": {H100: 1}}))
    ttft95 = percentile(result.ttft_s["chat"], 0.95)
    tpot95 = percentile(result.tpot_s["chat"], 0.95)
    within = ttft95 <= slo.ttft_s * 1.05 and tpot95 <= slo.tpot_s * 1.05
    assert within is meets, (ttft95, tpot95)


def test_new_replicas_start_cold_and_removed_ones_drain(chat: CompiledScenario) -> None:
    arrivals = [i * 0.5 for i in range(1200)]  # 2 req/s for 10 minutes
    requests = {"chat": ServiceRequests("chat", arrivals, [500] * 1200, [50] * 1200)}

    class StepUpThenDown:
        name = "steps"

        def targets(self, view: FleetView) -> Targets:
            return {"chat": {H100: 10 if 60 <= view.now_s < 600 else 1}}

    result = FleetSim(chat, requests).run(StepUpThenDown())
    candidate: Candidate = chat.plans["chat"].by_shape[H100]
    provisioning = chat.pools[candidate.pool].node_provisioning_s
    new = sorted((s for s in result.replica_spans if s.created_s > 0), key=lambda s: s.ready_s)
    assert len(new) == 9
    # Seven fit the warm node's free GPUs and only start; two need a second node first.
    assert [round(s.ready_s - s.created_s, 6) for s in new] == [round(candidate.startup_s, 6)] * 7 + [
        round(provisioning + candidate.startup_s, 6)
    ] * 2
    assert all(s.end_s >= 600.0 for s in new)  # drained after the scale-down at 600 s, not before
    # Nothing is lost: every request was served.
    assert not any(math.isnan(f) for f in result.finish_s["chat"])
    summary = summarize(result, chat)
    assert summary.unserved == 0 and summary.requests == 1200
    assert summary.scale_events == 2


def _ttfts_on_four_replicas(routing: str) -> list[float]:
    """TTFTs of the same 4,000 requests on four H100 replicas behind `routing`, at four lone capacities."""
    data = scenario_dict()
    data["services"][0]["routing"] = routing
    config = compile_dict(data, CATALOG, BOOK)
    mix = TokenMix(1000, 200)
    rate = 4 * capacity_at_slo(BOOK.profile("Llama-3.1-8B", H100, Precision.BF16), LatencySlo(0.5, 0.05), mix).rps
    requests = {"chat": ServiceRequests("chat", poisson_arrivals(rate, 4000, 3), [1000] * 4000, [200] * 4000)}
    return list(FleetSim(config, requests).run(FixedTargets({"chat": {H100: 4}}, routing)).ttft_s["chat"])


def test_the_gateway_routes_as_the_service_says() -> None:
    """With equal lengths, round robin spaces each replica's arrivals evenly and queues least; a random pick (a
    plain Kubernetes Service) does not, and draws the same replicas on every replay (seeded by the service's
    name). tests/unit/test_capacity.py checks what each routing does to the SLO with lengths that vary."""
    randomly = _ttfts_on_four_replicas("random")
    assert randomly == _ttfts_on_four_replicas("random")
    in_turn = _ttfts_on_four_replicas("round_robin")
    assert percentile(in_turn, 0.99) < 0.6 * percentile(randomly, 0.99)
