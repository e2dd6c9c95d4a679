"""The online correction of the performance model (autoscaler/correction.py): it converges to replicas' true speed,
moves only on enough requests, resists one wild quantile, stays in its bounds, decays without evidence, and the
decision sizes with it and says so."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.capacity import LatencySlo, Routing, TokenMix, predict_latency
from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.config import CapacityCorrectionPolicy
from autoscaler.correction import capacity_factor, update_correction
from autoscaler.decide import decide
from autoscaler.model import (
    CapacityCorrection,
    Observation,
    PolicyState,
    ServiceObservation,
    ShapeReplicas,
    ShapeTelemetry,
)
from autoscaler.perf import ProfileBook, ReplicaProfile
from autoscaler.ports import StoredState
from autoscaler.shapes import parse_shape
from autoscaler.state_store import FileStateStore
from tests.unit.conftest import compile_dict, scenario_dict

H100 = parse_shape("H100-80GB")
SLO = LatencySlo(0.5, 0.05)
MIX = TokenMix(1000.0, 200.0)
POLICY = CapacityCorrectionPolicy()
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict()
    data["policy"] = {"mode": "apply", "tick_s": 15}
    return compile_dict(data, catalog, book)


@pytest.fixture(scope="module")
def profile(config: CompiledScenario) -> ReplicaProfile:
    candidate = config.plans["chat"].candidate(H100)
    assert candidate is not None and candidate.profile is not None
    return candidate.profile


def slower(profile: ReplicaProfile, slowdown: float, rps: float, replicas: int) -> ShapeTelemetry:
    """What replicas whose every step takes `slowdown` x the profile's report at `rps` over `replicas`: the model's
    latencies at `slowdown` x the load, `slowdown` x longer."""
    predicted = predict_latency(profile, rps / replicas * slowdown, MIX, 0.95, replicas, Routing.LEAST_LOADED)
    return ShapeTelemetry(
        request_rps=rps, ttft_p95_s=predicted.ttft_s * slowdown, tpot_p95_s=predicted.tpot_s * slowdown
    )


def run(
    profile: ReplicaProfile,
    telemetry: ShapeTelemetry | None,
    ticks: int,
    start: CapacityCorrection | None = None,
    replicas: int = 4,
    policy: CapacityCorrectionPolicy = POLICY,
) -> CapacityCorrection:
    correction = start
    t0 = 0.0 if start is None or start.updated_s is None else start.updated_s + 15.0  # time goes on from `start`
    for i in range(ticks):
        correction = update_correction(
            correction, telemetry, replicas=replicas, profile=profile, slo=SLO, mix=MIX,
            routing=Routing.LEAST_LOADED, window_s=60.0, tick_s=15.0, now_s=t0 + i * 15.0, policy=policy,
        )  # fmt: skip
    assert correction is not None
    return correction


def test_converges_to_the_true_factor_of_replicas_30_percent_slower(profile: ReplicaProfile) -> None:
    truth = capacity_factor(profile, SLO, MIX, 4, Routing.LEAST_LOADED, 1.3)
    assert 0.5 < truth < 0.95
    correction = run(profile, slower(profile, 1.3, 20.0, 4), ticks=200)
    assert correction.ttft_ratio == pytest.approx(1.3, rel=0.01)
    assert correction.tpot_ratio == pytest.approx(1.3, rel=0.01)
    assert correction.factor == pytest.approx(truth, rel=0.02)
    sentence = correction.sentence("chat", "H100-80GB")
    assert sentence.startswith(
        f"chat on H100-80GB: capacity x{truth:.2f} (replicas 1.30x the profile's step times), observed at 5 req/s"
    )
    assert "where the profile predicts" in sentence


def test_faster_replicas_raise_capacity_within_the_bound(profile: ReplicaProfile) -> None:
    assert run(profile, slower(profile, 0.8, 20.0, 4), ticks=200).factor > 1.0
    assert run(profile, slower(profile, 0.2, 20.0, 4), ticks=200).factor == POLICY.max_factor


def test_much_slower_replicas_are_bounded(profile: ReplicaProfile) -> None:
    assert run(profile, slower(profile, 3.0, 8.0, 4), ticks=200).factor == POLICY.min_factor


def test_too_few_requests_move_nothing(profile: ReplicaProfile) -> None:
    few = slower(profile, 2.0, 3.0, 4)  # 3 req/s x 60 s = 180 requests < 200
    still = run(profile, few, ticks=50)
    assert (still.factor, still.log_ttft_ratio, still.log_tpot_ratio, still.evidence) == (1.0, 0.0, 0.0, None)


def test_evidence_waits_for_the_fleet_to_settle_for_a_window(profile: ReplicaProfile) -> None:
    # Evidence counts once the replicas serving have stayed the same for the 60 s window behind the quantiles.
    first = run(profile, slower(profile, 1.3, 20.0, 4), ticks=4)  # 0, 15, 30, 45 s: not yet a window
    assert first.evidence is None and first.factor == 1.0
    moved = run(profile, slower(profile, 1.3, 20.0, 4), ticks=6)
    assert moved.evidence is not None and moved.factor < 1.0
    grown = run(profile, slower(profile, 1.3, 20.0, 5), ticks=1, start=moved, replicas=5)
    # The fleet changed: the window mixes two fleets, so nothing is learned (nor forgotten) until it settles.
    assert grown.replicas == 5 and grown.evidence == moved.evidence
    assert grown.log_ttft_ratio == moved.log_ttft_ratio


def test_one_wild_quantile_moves_the_estimate_one_step_at_most(profile: ReplicaProfile) -> None:
    steady = run(profile, slower(profile, 1.0, 20.0, 4), ticks=20)
    wild = run(profile, slower(profile, 50.0, 20.0, 4), ticks=1, start=steady)
    assert wild.log_ttft_ratio - steady.log_ttft_ratio <= math.log(POLICY.max_step_ratio) + 1e-9
    assert wild.factor > 0.75


def test_without_evidence_the_correction_decays_toward_the_profile(profile: ReplicaProfile) -> None:
    learned = run(profile, slower(profile, 1.3, 20.0, 4), ticks=200)
    hour = run(profile, None, ticks=240, start=learned)  # an hour at 15 s: one decay half-life
    assert hour.log_ttft_ratio == pytest.approx(learned.log_ttft_ratio / 2, rel=0.01)
    assert learned.factor < hour.factor < 1.0
    assert hour.evidence is None
    assert "decaying toward the profile" in hour.sentence("chat", "H100-80GB")


def test_an_overloaded_model_is_no_yardstick(profile: ReplicaProfile) -> None:
    # At 200 req/s per replica the model predicts an unstable replica: no evidence, nothing learned.
    overloaded = ShapeTelemetry(request_rps=800.0, ttft_p95_s=5.0, tpot_p95_s=0.2)
    assert run(profile, overloaded, ticks=10).factor == 1.0


def observation(
    config: CompiledScenario, telemetry: ShapeTelemetry | None, rps: float, ready: int, at: datetime = NOW
) -> Observation:
    return Observation(
        {
            "chat": ServiceObservation(
                rps,
                sampled_at=at,
                replicas={H100: ShapeReplicas(ready, 0, ready)},
                telemetry={} if telemetry is None else {H100: telemetry},
            )
        }
    )


def test_the_decision_sizes_with_the_correction_and_says_so(
    config: CompiledScenario, profile: ReplicaProfile, tmp_path: object
) -> None:
    state = PolicyState()
    at = NOW
    plain_state = PolicyState()
    for i in range(120):  # 30 minutes of replicas 30 % slower than their profile
        at = NOW + timedelta(seconds=15 * i)
        seen = observation(config, slower(profile, 1.3, 50.0, 6), 50.0, 6, at)
        decision, state = decide(seen, {}, config, state, at)
        plain, plain_state = decide(observation(config, None, 50.0, 6, at), {}, config, plain_state, at)
    chat = decision.service("chat")
    correction = chat.corrections[H100]
    assert correction.factor == pytest.approx(
        capacity_factor(profile, SLO, MIX, 6, Routing.LEAST_LOADED, 1.3), rel=0.03
    )
    assert state.services["chat"].corrections[H100].factor == correction.factor
    assert chat.desired[H100] > plain.service("chat").desired[H100]
    assert chat.capacity_rps_per_replica == pytest.approx(
        plain.service("chat").capacity_rps_per_replica * correction.factor, rel=0.05
    )
    size = next(t for t in chat.trace if t.stage.value == "size")
    assert f"chat on H100-80GB: capacity x{correction.factor:.2f}" in size.message
    # The correction survives a restart.
    from pathlib import Path

    store = FileStateStore(Path(str(tmp_path)) / "state.json")
    store.save(StoredState(state, {}, at))
    loaded = store.load()
    assert loaded is not None
    restored = loaded.policy.services["chat"].corrections[H100]
    assert (restored.factor, restored.log_ttft_ratio) == (correction.factor, correction.log_ttft_ratio)


def test_a_held_service_learns_nothing(config: CompiledScenario, profile: ReplicaProfile) -> None:
    stale = Observation(
        {
            "chat": ServiceObservation(
                60.0,
                sampled_at=NOW - timedelta(seconds=600),
                replicas={H100: ShapeReplicas(8, 0, 8)},
                telemetry={H100: slower(profile, 3.0, 60.0, 8)},
            )
        }
    )
    decision, state = decide(stale, {}, config, PolicyState(), NOW)
    assert decision.service("chat").hold
    assert state.services["chat"].corrections == {}


def test_correction_off(catalog: Catalog, book: ProfileBook, profile: ReplicaProfile) -> None:
    data = scenario_dict()
    data["policy"] = {"capacity_correction": {"enabled": False}}
    off = compile_dict(data, catalog, book)
    _, state = decide(observation(off, slower(profile, 1.3, 60.0, 8), 60.0, 8), {}, off, PolicyState(), NOW)
    assert state.services["chat"].corrections == {}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("min_factor", 1.2, "less than or equal to 1"), ("max_factor", 0.9, "greater than or equal to 1")],
)
def test_policy_bounds_are_validated(field: str, value: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CapacityCorrectionPolicy.model_validate({field: value})
