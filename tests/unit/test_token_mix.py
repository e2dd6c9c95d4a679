from __future__ import annotations

import random

import pytest

from autoscaler.capacity import TokenMix
from autoscaler.token_mix import MixEstimate, update_mix

HALF_LIFE = 600.0
TICK = 15.0


def _run(minutes: list[tuple[float, float]], rate: float) -> MixEstimate:
    """The estimate after one tick per entry of (mean prompt, mean answer) at `rate`."""
    estimate: MixEstimate | None = None
    for k, (prompt, answer) in enumerate(minutes):
        estimate = update_mix(estimate, TokenMix(prompt, answer), rate, k * TICK, HALF_LIFE, TICK)
    assert estimate is not None
    return estimate


def test_the_first_tick_is_the_estimate() -> None:
    estimate = update_mix(None, TokenMix(2000, 30), 10.0, 0.0, HALF_LIFE, TICK)
    assert estimate.mix == TokenMix(2000, 30)
    assert estimate.requests == pytest.approx(150.0)


def test_sampling_noise_is_averaged_away() -> None:
    # Each tick's means of 150 exponential lengths around 2,048 / 28: one tick's mean strays by up to ~25 %, the
    # estimate after half an hour by a few percent.
    rng = random.Random(7)
    ticks = []
    for _ in range(120):
        prompts = [rng.expovariate(1 / 2048) for _ in range(150)]
        answers = [rng.expovariate(1 / 28) for _ in range(150)]
        ticks.append((sum(prompts) / 150, sum(answers) / 150))
    assert max(abs(p / 2048 - 1) for p, _ in ticks) > 0.15
    estimate = _run(ticks, 10.0)
    assert estimate.mix.mean_input_tokens == pytest.approx(2048, rel=0.05)
    assert estimate.mix.mean_output_tokens == pytest.approx(28, rel=0.05)


def test_older_ticks_fade_with_the_half_life() -> None:
    # 10 minutes at 1,000 tokens, then 10 minutes at 1,100 (a drift within sampling noise of each tick at 1 req/s):
    # the last half-life weighs twice the one before it, so the estimate is 2/3 of the way to 1,100.
    estimate = _run([(1000.0, 100.0)] * 40 + [(1100.0, 100.0)] * 40, 1.0)
    assert estimate.mix.mean_input_tokens == pytest.approx(1000 + 100 * 2 / 3, abs=2.0)


def test_a_real_change_of_workload_restarts_the_estimate() -> None:
    # After half an hour of 1,000-token prompts, prompts double: a tick of 150 requests at 2,000 is 12 standard
    # errors away, not noise, and sizing must see it at once, not ten minutes later.
    estimate = _run([(1000.0, 200.0)] * 120 + [(2000.0, 200.0)], 10.0)
    assert estimate.mix.mean_input_tokens == 2000.0
    assert estimate.requests == pytest.approx(150.0)


def test_a_few_requests_far_off_are_noise() -> None:
    # One tick of 3 requests averaging 2,000 tokens against an estimate of 1,000: 1.7 standard errors.
    estimate = _run([(1000.0, 200.0)] * 120, 10.0)
    after = update_mix(estimate, TokenMix(2000.0, 200.0), 0.2, estimate.at_s + TICK, HALF_LIFE, TICK)
    assert 1000 < after.mix.mean_input_tokens < 1010


def test_a_zero_half_life_keeps_only_the_last_tick() -> None:
    estimate = update_mix(None, TokenMix(1000, 200), 10.0, 0.0, 0.0, TICK)
    after = update_mix(estimate, TokenMix(1100, 210), 10.0, TICK, 0.0, TICK)
    assert after.mix == TokenMix(1100, 210)


def test_a_long_gap_weighs_one_half_life_at_most() -> None:
    estimate = _run([(1000.0, 200.0)] * 40, 10.0)
    # Three hours without metrics, then a tick 3 % off (no shift): the old estimate has faded to nearly nothing,
    # and the new tick counts as one half-life of requests, not three hours of them.
    after = update_mix(estimate, TokenMix(1030.0, 200.0), 10.0, estimate.at_s + 3 * 3600, HALF_LIFE, TICK)
    assert after.requests == pytest.approx(10.0 * HALF_LIFE, rel=0.01)
    assert after.mix.mean_input_tokens == pytest.approx(1030.0, abs=1.0)


def test_a_decision_computed_again_at_the_same_time_changes_nothing() -> None:
    estimate = _run([(1000.0, 200.0)] * 40, 10.0)
    assert update_mix(estimate, TokenMix(3000.0, 50.0), 10.0, estimate.at_s, HALF_LIFE, TICK) == estimate
