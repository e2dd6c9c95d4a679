"""decide(): the stages in order, sizing, budget, pools and the safety rules, as tables and properties."""

from __future__ import annotations

import inspect
import math
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.capacity import LatencySlo, TokenMix, capacity_at_slo
from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.decide import STAGE_ORDER, decide
from autoscaler.model import (
    Constraint,
    Decision,
    Observation,
    PolicyState,
    Reason,
    ServiceObservation,
    ShapeReplicas,
    Stage,
)
from autoscaler.perf import Precision, ProfileBook
from autoscaler.placement import NodeState, PlacedReplica
from autoscaler.shapes import Shape, parse_shape
from forecasting import Forecast
from tests.unit.conftest import compile_dict, scenario_dict

NOW = datetime(2000, 1, 1, 12, tzinfo=UTC)
H100 = parse_shape("H100-80GB")
L4 = parse_shape("L4")


def _obs(rates: dict[str, float | None], replicas: dict[str, dict[Shape, int]] | None = None, **kw: Any) -> Observation:
    replicas = replicas or {}
    services = {
        name: ServiceObservation(
            rate,
            None if rate is None else rate * 1000,
            None if rate is None else rate * 200,
            kw.get("sampled_at", NOW),
            {s: ShapeReplicas(ready=n, spec=n) for s, n in replicas.get(name, {}).items()},
        )
        for name, rate in rates.items()
    }
    return Observation(services, month_to_date_spend_usd=kw.get("spend"))


def _chat_capacity(book: ProfileBook, replicas: int = 1) -> float:
    """Each replica's capacity when there are `replicas` of them behind the router."""
    profile = book.profile("Llama-3.1-8B", H100, Precision.BF16)
    return capacity_at_slo(profile, LatencySlo(0.5, 0.05), TokenMix(1000, 200), replicas).rps


@pytest.fixture(scope="module")
def chat(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    return compile_dict(scenario_dict(), catalog, book)


def test_decide_lists_its_stages_in_order() -> None:
    doc = inspect.getdoc(decide) or ""
    listed = re.findall(r"^\d\. (\w+):", doc, flags=re.MULTILINE)
    assert listed == [stage.value for stage in STAGE_ORDER]
    assert STAGE_ORDER == (Stage.FORECAST, Stage.SIZE, Stage.BUDGET, Stage.STABILIZE, Stage.PLACE)


def test_every_target_carries_its_stage_trace_in_order(chat: CompiledScenario) -> None:
    decision, _ = decide(_obs({"chat": 30.0}), {}, chat, PolicyState(), NOW)
    trace = decision.service("chat").trace
    assert tuple(t.stage for t in trace) == STAGE_ORDER
    assert all(t.message for t in trace)


def test_replicas_are_the_fewest_whose_capacity_covers_the_demand(chat: CompiledScenario, book: ProfileBook) -> None:
    capacity = _chat_capacity(book, 5)  # ~13 req/s each for 1000/200 tokens at 0.5 s TTFT / 50 ms TPOT on 5 H100
    assert 4 * _chat_capacity(book, 4) < 4.5 * capacity < 5 * capacity
    demand = 4.5 * capacity  # 4 replicas fall short: 5
    decision, _ = decide(_obs({"chat": demand}, {"chat": {H100: 5}}), {}, chat, PolicyState(), NOW)
    result = decision.service("chat")
    assert result.target == {H100: 5}
    assert result.capacity_rps_per_replica == pytest.approx(capacity)
    assert result.cost_usd_per_h == pytest.approx(5 * 6.88)  # catalog H100-80GB price
    assert result.reason is Reason.STEADY
    assert result.binding_constraint in (Constraint.TPOT, Constraint.TTFT, Constraint.CONCURRENCY)
    size = result.trace[1]
    assert (size.stage, size.replicas, size.shape, size.binding) == (Stage.SIZE, 5, H100, result.binding_constraint)


def test_a_demand_below_min_replicas_says_so(catalog: Catalog, book: ProfileBook) -> None:
    data = scenario_dict()
    data["services"][0]["min_replicas"] = 3
    compiled = compile_dict(data, catalog, book)
    low, _ = decide(_obs({"chat": 0.5 * _chat_capacity(book)}, {"chat": {H100: 3}}), {}, compiled, PolicyState(), NOW)
    assert low.service("chat").target == {H100: 3}
    assert low.service("chat").reason is Reason.AT_MIN_REPLICAS
    assert low.service("chat").binding_constraint is Constraint.MIN_REPLICAS
    # Three replicas' worth of demand is steady at three, not held up by min_replicas.
    full = 2.9 * _chat_capacity(book, 3)
    steady, _ = decide(_obs({"chat": full}, {"chat": {H100: 3}}), {}, compiled, PolicyState(), NOW)
    assert steady.service("chat").target == {H100: 3}
    assert steady.service("chat").reason is Reason.STEADY


def test_forecast_peak_over_the_horizon_drives_the_size(chat: CompiledScenario, book: ProfileBook) -> None:
    capacity = _chat_capacity(book)
    # Observed 1 replica's worth; the p99 forecast (critical tier) peaks at 7.5 replicas' worth within the horizon
    # (cold start 27 s + provisioning 120 s + tick 15 s = 162 s), and higher only after it.
    steps = [capacity] * 4 + [7.5 * capacity] + [capacity] * 5 + [50 * capacity] * 10
    quantiles = {0.99: tuple(steps), 0.5: tuple(s / 2 for s in steps)}
    forecast = Forecast(30.0, tuple(steps), quantiles, "seasonal_naive", NOW.timestamp())
    decision, _ = decide(
        _obs({"chat": capacity * 0.9}, {"chat": {H100: 8}}), {"chat": forecast}, chat, PolicyState(), NOW
    )
    result = decision.service("chat")
    assert result.predicted_demand_rps == pytest.approx(7.5 * capacity)
    assert result.target == {H100: 8}
    assert "p99 of seasonal_naive forecast" in result.demand_source


def test_observed_rate_above_the_forecast_wins(chat: CompiledScenario) -> None:
    forecast = Forecast(30.0, (1.0,) * 10, {0.99: (1.0,) * 10}, "ets", NOW.timestamp())
    decision, _ = decide(_obs({"chat": 40.0}), {"chat": forecast}, chat, PolicyState(), NOW)
    assert decision.service("chat").predicted_demand_rps == 40.0
    assert "observed 40 req/s is higher" in decision.service("chat").demand_source


@pytest.mark.parametrize(
    ("name", "rate", "sampled_at", "reason"),
    [
        ("nan", math.nan, NOW, Reason.HOLD_BAD_METRICS),
        ("negative", -3.0, NOW, Reason.HOLD_BAD_METRICS),
        ("missing", None, NOW, Reason.HOLD_MISSING_METRICS),
        ("infinite", math.inf, NOW, Reason.HOLD_BAD_METRICS),
        ("stale", 1.0, NOW - timedelta(seconds=61), Reason.HOLD_STALE_METRICS),  # metrics_max_age_s is 60
        ("from the future", 1.0, NOW + timedelta(seconds=11), Reason.HOLD_BAD_METRICS),  # future skew 10 s
    ],
)
def test_no_scale_down_when_metrics_are_bad(
    chat: CompiledScenario, name: str, rate: float | None, sampled_at: datetime, reason: Reason
) -> None:
    decision, _ = decide(_obs({"chat": rate}, {"chat": {H100: 9}}, sampled_at=sampled_at), {}, chat, PolicyState(), NOW)
    result = decision.service("chat")
    assert result.target == {H100: 9}, name
    assert result.reason is reason
    assert result.hold
    assert result.trace[0].summary == "hold"


def test_samples_within_the_future_skew_are_taken(chat: CompiledScenario) -> None:
    # A source whose clock runs 10 s ahead (metrics_max_future_skew_s): the sample is used, not refused.
    decision, _ = decide(
        _obs({"chat": 1.0}, {"chat": {H100: 9}}, sampled_at=NOW + timedelta(seconds=10)), {}, chat, PolicyState(), NOW
    )
    assert not decision.service("chat").hold
    future = "metrics sampled 42 s in the future (metrics_max_future_skew_s 10): a clock is wrong"
    held, _ = decide(
        _obs({"chat": 1.0}, {"chat": {H100: 9}}, sampled_at=NOW + timedelta(seconds=42)), {}, chat, PolicyState(), NOW
    )
    assert held.service("chat").message.startswith(future)


def test_naive_datetimes_are_refused_at_the_boundary(chat: CompiledScenario) -> None:
    naive = datetime(2000, 1, 1, 12)
    with pytest.raises(ValueError, match=r"decide\(now\) \(2000-01-01T12:00:00\) is a naive datetime"):
        decide(_obs({"chat": 1.0}), {}, chat, PolicyState(), naive)
    with pytest.raises(ValueError, match=r"ServiceObservation.sampled_at .* is a naive datetime"):
        ServiceObservation(1.0, sampled_at=naive)


def test_the_decision_does_not_depend_on_the_process_time_zone(
    chat: CompiledScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same instant written in another zone, under another process time zone, is the same decision (with naive
    # times it was not: TZ=America/Los_Angeles turned a scale-up into a stale-metrics hold).
    la = timezone(timedelta(hours=-8))
    in_utc, _ = decide(_obs({"chat": 60.0}, {"chat": {H100: 3}}), {}, chat, PolicyState(), NOW)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        in_la, _ = decide(
            _obs({"chat": 60.0}, {"chat": {H100: 3}}, sampled_at=NOW.astimezone(la)), {}, chat, PolicyState(),
            NOW.astimezone(la),
        )  # fmt: skip
    finally:
        monkeypatch.undo()
        time.tzset()
    assert in_la.service("chat").target == in_utc.service("chat").target
    assert in_la.service("chat").reason is in_utc.service("chat").reason is Reason.SCALE_UP
    assert in_la.at == in_utc.at and in_la.at.tzinfo is UTC


def test_a_stale_forecast_is_ignored_and_the_decision_says_so(chat: CompiledScenario, book: ProfileBook) -> None:
    capacity = _chat_capacity(book)
    steps = (8 * capacity,) * 20
    fresh = Forecast(15.0, steps, {0.99: steps}, "burst_envelope", NOW.timestamp() - 15)
    stale = Forecast(15.0, steps, {0.99: steps}, "burst_envelope", NOW.timestamp() - 61)  # forecast_max_age_s 60
    ahead = Forecast(15.0, steps, {0.99: steps}, "burst_envelope", NOW.timestamp() + 30)
    used, _ = decide(_obs({"chat": capacity}, {"chat": {H100: 1}}), {"chat": fresh}, chat, PolicyState(), NOW)
    assert used.service("chat").predicted_demand_rps == pytest.approx(8 * capacity)
    assert used.service("chat").forecast_model == "burst_envelope"
    for forecast, when in ((stale, "61 s ago"), (ahead, "30 s in the future")):
        ignored, _ = decide(_obs({"chat": capacity}, {"chat": {H100: 1}}), {"chat": forecast}, chat, PolicyState(), NOW)
        result = ignored.service("chat")
        assert result.predicted_demand_rps == pytest.approx(capacity)  # the observed rate stands
        assert result.forecast_model is None
        assert result.demand_source == (
            f"observed {capacity:.3g} req/s: the burst_envelope forecast was issued {when} (forecast_max_age_s 60) "
            "and is ignored"
        )


def test_a_service_without_any_observation_holds_at_min_replicas(chat: CompiledScenario) -> None:
    decision, _ = decide(Observation({}), {}, chat, PolicyState(), NOW)
    assert decision.service("chat").target == {H100: 1}
    assert decision.service("chat").reason is Reason.HOLD_MISSING_METRICS


def test_the_cheapest_shape_wins_and_the_rejected_one_is_named(catalog: Catalog, book: ProfileBook) -> None:
    data = scenario_dict()
    data["services"][0].update(
        {
            "model": "Llama-3.2-3B",
            "allowed_shapes": ["H100-80GB", "L4", "H100-80GB/2g.20gb"],
            "max_context_tokens": 2048,
            "mean_input_tokens": 400,
            "mean_output_tokens": 20,
            "slo": {"ttft_p95_s": 2.0, "tpot_p95_s": 0.1},
        }
    )
    compiled = compile_dict(data, catalog, book)
    obs = Observation({"chat": ServiceObservation(20.0, 8000.0, 400.0, NOW)})
    result = decide(obs, {}, compiled, PolicyState(), NOW)[0].service("chat")
    costs = {
        str(c.shape): math.ceil(20.0 / capacity_at_slo(c.profile, LatencySlo(2.0, 0.1), TokenMix(400, 20)).rps - 1e-9)
        * c.price_usd_per_h
        for c in compiled.plans["chat"].candidates
        if c.profile is not None
    }
    cheapest = min(costs, key=lambda k: costs[k])
    assert [str(s) for s in result.target] == [cheapest]
    assert result.rejected_alternative is not None
    assert result.rejected_alternative.shape != cheapest


def test_a_cheaper_shape_must_save_enough_to_pay_for_the_move(catalog: Catalog, book: ProfileBook) -> None:
    data = scenario_dict()
    data["services"][0]["allowed_shapes"] = ["H100-80GB", "H100-80GB/3g.40gb"]
    data["policy"] = {"shape_switch_min_savings_ratio": 0.5}
    compiled = compile_dict(data, catalog, book)
    decision, _ = decide(_obs({"chat": 30.0}, {"chat": {H100: 4}}), {}, compiled, PolicyState(), NOW)
    assert set(decision.service("chat").target) == {H100}


def test_demand_beyond_max_replicas_names_the_slo_at_risk(catalog: Catalog, book: ProfileBook) -> None:
    data = scenario_dict()
    data["services"][0]["max_replicas"] = 3
    compiled = compile_dict(data, catalog, book)
    decision, _ = decide(_obs({"chat": 500.0}, {"chat": {H100: 3}}), {}, compiled, PolicyState(), NOW)
    result = decision.service("chat")
    assert result.target == {H100: 3}
    assert result.reason is Reason.LIMITED_BY_MAX_REPLICAS
    assert any("max_replicas caps serving" in r for r in result.slo_at_risk)


def _two_tier(
    catalog: Catalog, book: ProfileBook, budget: dict[str, float], batch_tier: str = "best_effort"
) -> CompiledScenario:
    data = scenario_dict(budget=budget)
    batch = dict(data["services"][0], name="batch", tier=batch_tier, min_replicas=1)
    data["services"].append(batch)
    return compile_dict(data, catalog, book)


def test_budget_lower_tier_gives_way_first_and_says_what_is_at_risk(catalog: Catalog, book: ProfileBook) -> None:
    capacity = _chat_capacity(book)
    compiled = _two_tier(catalog, book, {"hard_usd_per_h": 60.0})
    # Each wants 5 replicas (5 x 6.88 = 34.40 $/h each, 68.80 together); the cap is 60 $/h.
    current = {"chat": {H100: 5}, "batch": {H100: 5}}
    obs = _obs({"chat": 4.5 * capacity, "batch": 4.5 * capacity}, current)
    decision, _ = decide(obs, {}, compiled, PolicyState(), NOW)
    chat, batch = decision.service("chat"), decision.service("batch")
    assert chat.target == {H100: 5}
    # best_effort keeps floor((60 - 34.40) / 6.88) = 3 replicas.
    assert batch.target == {H100: 3}
    assert batch.reason is Reason.LIMITED_BY_BUDGET
    assert batch.slo_at_risk and "serve" in batch.slo_at_risk[0]
    assert decision.cost_usd_per_h <= 60.0


def test_budget_falls_back_to_a_lower_quantile_before_cutting(catalog: Catalog, book: ProfileBook) -> None:
    capacity = _chat_capacity(book)
    compiled = _two_tier(catalog, book, {"hard_usd_per_h": 56.0}, batch_tier="standard")
    p50 = tuple([2.5 * capacity] * 10)
    p90 = tuple([4.5 * capacity] * 10)
    forecasts = {"batch": Forecast(30.0, p50, {0.5: p50, 0.9: p90, 0.99: p90}, "ets", NOW.timestamp())}
    current = {"chat": {H100: 5}, "batch": {H100: 5}}
    obs = _obs({"chat": 4.5 * capacity, "batch": 2.0 * capacity}, current)
    decision, _ = decide(obs, forecasts, compiled, PolicyState(), NOW)
    batch = decision.service("batch")
    # The standard tier is sized for its p90 (ceil(4.5) = 5 replicas, 34.40 + 34.40 > 56); over the cap it falls
    # back to its p50 (the default fallback quantile): ceil(2.5) = 3 replicas, 34.40 + 20.64 = 55.04 <= 56.
    assert batch.target == {H100: 3}
    budget_stage = next(t for t in batch.trace if t.stage is Stage.BUDGET)
    assert "fallback quantile" in budget_stage.message
    # The scale-down window would hold the 5 existing replicas, but held replicas never break the cap.
    assert batch.reason is Reason.LIMITED_BY_BUDGET


def test_min_replicas_are_kept_even_above_the_cap(catalog: Catalog, book: ProfileBook) -> None:
    compiled = _two_tier(catalog, book, {"hard_usd_per_h": 5.0})
    decision, _ = decide(
        _obs({"chat": 50.0, "batch": 50.0}, {"chat": {H100: 1}, "batch": {H100: 1}}), {}, compiled, PolicyState(), NOW
    )
    assert decision.service("chat").target == {H100: 1}
    assert decision.service("batch").target == {H100: 1}
    assert "min_replicas" in decision.service("chat").message


def test_an_unevaluable_budget_allows_no_scale_up_beyond_current_spend(catalog: Catalog, book: ProfileBook) -> None:
    compiled = _two_tier(catalog, book, {"monthly_usd": 50000.0})
    current = {"chat": {H100: 2}, "batch": {H100: 2}}  # 4 x 6.88 = 27.52 $/h now
    decision, _ = decide(_obs({"chat": 200.0, "batch": 200.0}, current, spend=None), {}, compiled, PolicyState(), NOW)
    assert decision.budget_usd_per_h == pytest.approx(27.52)
    assert "cannot be evaluated" in decision.budget_note
    assert decision.cost_usd_per_h <= 27.52 + 1e-9
    assert decision.service("chat").target == {H100: 3}  # critical takes what best_effort gives up


def test_monthly_budget_spreads_what_is_left_over_the_hours_left(catalog: Catalog, book: ProfileBook) -> None:
    compiled = _two_tier(catalog, book, {"monthly_usd": 10000.0})
    # 2000-01-01 12:00 UTC: 31-day month, 23:59:59 on the 31st is 731.99 h away; 10000 - 2680.8 left.
    obs = _obs({"chat": 1.0, "batch": 1.0}, {"chat": {H100: 1}, "batch": {H100: 1}}, spend=2680.8)
    decision, _ = decide(obs, {}, compiled, PolicyState(), NOW)
    assert decision.budget_usd_per_h == pytest.approx((10000 - 2680.8) / 731.9997, rel=1e-4)


def test_a_full_pool_gives_way_by_tier_and_says_what_is_missing(catalog: Catalog, book: ProfileBook) -> None:
    capacity = _chat_capacity(book)
    data = scenario_dict()
    data["fleet"]["pools"][0]["max_nodes"] = 1  # 8 H100 GPUs in all
    batch = dict(data["services"][0], name="batch", tier="best_effort")
    data["services"].append(batch)
    compiled = compile_dict(data, catalog, book)
    # 4 + 3 of the 8 GPUs are busy; both want 5 (10 GPUs).
    current = {"chat": {H100: 4}, "batch": {H100: 3}}
    decision, _ = decide(
        _obs({"chat": 4.5 * capacity, "batch": 4.5 * capacity}, current), {}, compiled, PolicyState(), NOW
    )
    assert decision.service("chat").target == {H100: 5}
    batch_result = decision.service("batch")
    assert batch_result.target == {H100: 3}
    assert batch_result.reason is Reason.LIMITED_BY_POOL_CAPACITY
    full = "pool h100 is full (1 node of 8 H100-80GB, its max_nodes): needs 1 more H100-80GB node in pool h100"
    assert decision.notes == (full,)
    assert batch_result.message == f"3 of 5 replicas promised: {full}"


def test_a_gang_that_no_node_can_hold_is_not_promised(catalog: Catalog, book: ProfileBook) -> None:
    # Two 8-GPU nodes (max_nodes 2), each with 5 GPUs busy serving chat: 6 GPUs are free, but no node has the 4
    # free GPUs a TP4 gang needs. GPU counting would promise it; placement does not.
    data = scenario_dict()
    data["fleet"]["pools"][0]["max_nodes"] = 2
    big = dict(data["services"][0], name="big", tier="best_effort", min_replicas=0, allowed_shapes=["4xH100-80GB"])
    data["services"].append(big)
    compiled = compile_dict(data, catalog, book)
    tp4 = parse_shape("4xH100-80GB")
    nodes = tuple(NodeState(f"n{i}", "h100", "H100-80GB", 8) for i in range(2))
    placed = tuple(PlacedReplica("chat", H100, f"n{i}", (g,)) for i in range(2) for g in range(5))
    capacity = _chat_capacity(book, 10)
    obs = replace(_obs({"chat": 9.5 * capacity, "big": 1.0}, {"chat": {H100: 10}}), nodes=nodes, placed=placed)
    decision, _ = decide(obs, {}, compiled, PolicyState(), NOW)
    assert decision.service("chat").target == {H100: 10}
    result = decision.service("big")
    assert result.target == {}
    assert result.reason is Reason.LIMITED_BY_POOL_CAPACITY
    full = "pool h100 is full (2 nodes of 8 H100-80GB, its max_nodes): needs 1 more H100-80GB node in pool h100"
    assert decision.notes == (full,)
    assert result.message == f"0 of 1 replicas promised: {full}"
    # Current replicas stay where they are; nothing moves or is re-partitioned.
    assert decision.placement is not None
    assert decision.placement.started == () and decision.placement.moves == ()
    assert decision.fragmentation is not None and decision.fragmentation.busy_gpus == 10
    assert tp4 not in decision.service("big").target


def test_nodes_a_pool_must_add_are_a_hint(chat: CompiledScenario, book: ProfileBook) -> None:
    capacity = _chat_capacity(book, 12)
    nodes = (NodeState("n0", "h100", "H100-80GB", 8),)
    placed = tuple(PlacedReplica("chat", H100, "n0", (g,)) for g in range(8))
    obs = replace(_obs({"chat": 11.5 * capacity}, {"chat": {H100: 8}}), nodes=nodes, placed=placed)
    decision, _ = decide(obs, {}, chat, PolicyState(), NOW)
    assert decision.service("chat").target == {H100: 12}
    assert decision.notes == ("pool h100: needs 1 more H100-80GB node (1 now)",)
    assert decision.placement is not None and decision.placement.nodes_to_add == {"h100": 1}
    assert len(decision.placement.started) == 4 and decision.placement.moves == ()


def test_state_round_trips_between_ticks(chat: CompiledScenario) -> None:
    _, state = decide(_obs({"chat": 30.0}), {}, chat, PolicyState(), NOW)
    assert state.services["chat"].first_seen_s == NOW.timestamp()
    _, state2 = decide(_obs({"chat": 30.0}), {}, chat, state, NOW + timedelta(seconds=15))
    assert state2.services["chat"].first_seen_s == NOW.timestamp()
    assert len(state2.services["chat"].recommendations) == 2


def _mix_obs(rate: float, prompt: float, answer: float, at: datetime) -> Observation:
    return Observation({"chat": ServiceObservation(rate, rate * prompt, rate * answer, at, {H100: ShapeReplicas(4)})})


def test_sizing_uses_the_token_mix_of_the_last_minutes_not_of_one_noisy_tick(chat: CompiledScenario) -> None:
    # Half an hour at 1,000/200 tokens, then one tick whose 450 requests average 1,150-token prompts: 3 standard
    # errors, noise. Sized on that tick alone, each replica would serve less; on the estimate, as before.
    state = PolicyState()
    for k in range(120):
        tick = NOW + timedelta(seconds=15 * k)
        _, state = decide(_mix_obs(30.0, 1000, 200, tick), {}, chat, state, tick)
    at = NOW + timedelta(seconds=15 * 120)
    steady, _ = decide(_mix_obs(30.0, 1000, 200, at), {}, chat, state, at)
    noisy, after = decide(_mix_obs(30.0, 1150, 200, at), {}, chat, state, at)
    alone, _ = decide(_mix_obs(30.0, 1150, 200, at), {}, chat, PolicyState(), at)
    per_replica = noisy.service("chat").capacity_rps_per_replica
    assert per_replica == pytest.approx(steady.service("chat").capacity_rps_per_replica, rel=0.01)
    assert alone.service("chat").capacity_rps_per_replica < 0.95 * per_replica
    estimate = after.services["chat"].mix
    assert estimate is not None and 1000 < estimate.mix.mean_input_tokens < 1010
    # Prompts that double are a new workload, sized for at once.
    shifted, _ = decide(_mix_obs(30.0, 2000, 200, at), {}, chat, state, at)
    fresh, _ = decide(_mix_obs(30.0, 2000, 200, at), {}, chat, PolicyState(), at)
    assert shifted.service("chat").capacity_rps_per_replica == fresh.service("chat").capacity_rps_per_replica


def test_a_random_router_gets_no_pooling_credit(catalog: Catalog, book: ProfileBook) -> None:
    # Demand that 8 balanced replicas serve (each a little above a lone one's capacity) needs 9 behind kube-proxy.
    demand = 7.9 * _chat_capacity(book, 8)
    data = scenario_dict()
    data["services"][0]["routing"] = "random"
    random_routed = compile_dict(data, catalog, book)
    balanced, _ = decide(
        _obs({"chat": demand}, {"chat": {H100: 8}}),
        {},
        compile_dict(scenario_dict(), catalog, book),
        PolicyState(),
        NOW,
    )
    plain, _ = decide(_obs({"chat": demand}, {"chat": {H100: 8}}), {}, random_routed, PolicyState(), NOW)
    assert balanced.service("chat").desired == {H100: 8}
    assert plain.service("chat").desired == {H100: 9}
    assert plain.service("chat").capacity_rps_per_replica == pytest.approx(_chat_capacity(book, 1))
    sized = next(t for t in plain.service("chat").trace if t.stage is Stage.SIZE)
    assert "of 1,000/200 tokens" in sized.message and "random routing: no pooling credit" in sized.message


def test_held_metrics_keep_the_token_mix_estimate(chat: CompiledScenario) -> None:
    _, state = decide(_mix_obs(30.0, 1000, 200, NOW), {}, chat, PolicyState(), NOW)
    later = NOW + timedelta(seconds=15)
    stale = Observation({"chat": ServiceObservation(None, None, None, later, {H100: ShapeReplicas(4)})})
    _, held = decide(stale, {}, chat, state, later)
    assert held.services["chat"].mix == state.services["chat"].mix


# ── properties ──────────────────────────────────────────────────────────────────────────────────────────────────

_rates = st.floats(min_value=0.0, max_value=400.0, allow_nan=False)
_counts = st.integers(min_value=0, max_value=25)


@pytest.fixture(scope="module")
def mixed(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict(budget={"hard_usd_per_h": 120.0})
    data["services"][0]["allowed_shapes"] = ["H100-80GB", "H100-80GB/3g.40gb"]
    data["services"].append(
        {
            "name": "classify",
            "model": "Llama-3.2-3B",
            "tier": "best_effort",
            "slo": {"ttft_p95_s": 2.0, "tpot_p95_s": 0.1},
            "min_replicas": 2,
            "max_replicas": 30,
            "allowed_shapes": ["L4", "H100-80GB/2g.20gb"],
            "max_context_tokens": 2048,
        }
    )
    data["services"].append(
        {
            "name": "summarize",
            "model": "Llama-3.1-70B",
            "tier": "standard",
            "slo": {"ttft_p95_s": 3.0, "tpot_p95_s": 0.1},
            "min_replicas": 1,
            "max_replicas": 6,
            "allowed_shapes": ["4xH100-80GB"],
        }
    )
    return compile_dict(data, catalog, book)


def _targets_within_bounds(decision: Decision, compiled: CompiledScenario) -> None:
    for result in decision.services:
        service = compiled.scenario.service(result.service)
        assert service.min_replicas <= result.target_replicas <= service.max_replicas, result


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(rates=st.tuples(_rates, _rates, _rates), counts=st.tuples(_counts, _counts, _counts))
def test_property_targets_within_bounds_and_budget_kept(
    mixed: CompiledScenario, rates: tuple[float, float, float], counts: tuple[int, int, int]
) -> None:
    names = ("chat", "classify", "summarize")
    shapes = (H100, L4, parse_shape("4xH100-80GB"))
    current = {n: {s: min(c, 6 if n == "summarize" else c)} for n, s, c in zip(names, shapes, counts, strict=True) if c}
    decision, _ = decide(_obs(dict(zip(names, rates, strict=True)), current), {}, mixed, PolicyState(), NOW)
    _targets_within_bounds(decision, mixed)
    # No money is left unused while a service that gave way could take one more replica within the cap (judged
    # on the budget stage's own result: the pools may cut further).
    budget_cost = {}
    unit_price = {}
    for result in decision.services:
        budget_stage = next(t for t in result.trace if t.stage is Stage.BUDGET)
        size_stage = next(t for t in result.trace if t.stage is Stage.SIZE)
        shape = size_stage.shape
        candidate = mixed.plans[result.service].candidate(shape) if shape is not None else None
        unit_price[result.service] = candidate.price_usd_per_h if candidate is not None else 0.0
        assert budget_stage.replicas is not None
        budget_cost[result.service] = budget_stage.replicas * unit_price[result.service]
    for result in decision.services:
        budget_stage = next(t for t in result.trace if t.stage is Stage.BUDGET)
        if budget_stage.reason is Reason.LIMITED_BY_BUDGET:
            assert sum(budget_cost.values()) + unit_price[result.service] > 120.0 - 1e-6, result.service
    # The cap holds unless every service is down to min_replicas on one shape.
    if decision.cost_usd_per_h > 120.0 + 1e-6:
        for result in decision.services:
            service = mixed.scenario.service(result.service)
            assert result.target_replicas == service.min_replicas
            assert len([n for n in result.target.values() if n]) <= 1


@_SETTINGS
@given(low=_rates, extra=st.floats(min_value=0.0, max_value=200.0))
def test_property_desired_size_is_monotone_in_demand(chat: CompiledScenario, low: float, extra: float) -> None:
    first, _ = decide(_obs({"chat": low}), {}, chat, PolicyState(), NOW)
    second, _ = decide(_obs({"chat": low + extra}), {}, chat, PolicyState(), NOW)
    assert sum(second.service("chat").desired.values()) >= sum(first.service("chat").desired.values())


@_SETTINGS
@given(
    rate=st.one_of(st.just(math.nan), st.just(-1.0), st.just(math.inf), st.none(), _rates),
    age_s=st.integers(min_value=61, max_value=100000),
    count=st.integers(min_value=1, max_value=20),
)
def test_property_no_scale_down_on_stale_or_bad_input(
    chat: CompiledScenario, rate: float | None, age_s: int, count: int
) -> None:
    sampled = NOW - timedelta(seconds=age_s)
    decision, _ = decide(
        _obs({"chat": rate}, {"chat": {H100: count}}, sampled_at=sampled), {}, chat, PolicyState(), NOW
    )
    assert decision.service("chat").target.get(H100, 0) >= count


def test_a_higher_slo_quantile_sizes_more_replicas(catalog: Catalog, book: ProfileBook) -> None:
    at_p95 = compile_dict(scenario_dict(), catalog, book)
    data = scenario_dict()
    data["services"][0]["slo"]["quantile"] = 0.99
    at_p99 = compile_dict(data, catalog, book)
    demand = 10 * _chat_capacity(book)  # exactly what 10 replicas serve at p95
    p95, _ = decide(_obs({"chat": demand}, {"chat": {H100: 10}}), {}, at_p95, PolicyState(), NOW)
    p99, _ = decide(_obs({"chat": demand}, {"chat": {H100: 10}}), {}, at_p99, PolicyState(), NOW)
    assert p95.service("chat").desired[H100] == 10
    assert p99.service("chat").desired[H100] == 11
    assert p99.service("chat").capacity_rps_per_replica < p95.service("chat").capacity_rps_per_replica
