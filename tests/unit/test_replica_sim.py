"""The single-replica simulator: exact on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from autoscaler.perf import Precision, ProfileBook
from autoscaler.shapes import parse_shape
from autoscaler.sim.replica import poisson_arrivals, simulate_replica


def test_a_lone_request_takes_one_prefill_then_one_step_per_token(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    run = simulate_replica(profile, [0.0], [1000], [11])
    assert run.ttft_s[0] == pytest.approx(profile.prefill_ms(1000) / 1000)
    # 10 decode steps of batch 1; contexts 1001..1010, mean 1005.5 for the first step; each step alone.
    steps = [profile.decode_step_ms(1, 1001 + k) / 1000 for k in range(10)]
    assert run.tpot_s[0] == pytest.approx(sum(steps) / 10)


def test_a_request_arriving_during_a_step_waits_for_it(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    first_prefill = profile.prefill_ms(100) / 1000
    arrive = first_prefill + 0.001  # during the first decode step of request 0
    run = simulate_replica(profile, [0.0, arrive], [100, 100], [5, 5])
    step = profile.decode_step_ms(1, 101) / 1000
    assert run.ttft_s[1] == pytest.approx(first_prefill + step - arrive + profile.prefill_ms(100) / 1000)


def test_single_output_token_has_no_tpot(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.2-1B", parse_shape("H100-80GB"), Precision.BF16)
    run = simulate_replica(profile, [0.0, 0.5], [50, 50], [1, 1])
    assert all(math.isnan(v) for v in run.tpot_s)
    assert run.tpot_quantile(0.95) == 0.0


def test_poisson_arrivals_are_seeded_and_have_the_rate() -> None:
    first = poisson_arrivals(10.0, 5000, seed=7)
    assert first == poisson_arrivals(10.0, 5000, seed=7)
    assert len(first) / first[-1] == pytest.approx(10.0, rel=0.05)


def test_mismatched_inputs_are_refused(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.2-1B", parse_shape("H100-80GB"), Precision.BF16)
    with pytest.raises(ValueError, match="same length"):
        simulate_replica(profile, [0.0], [1, 2], [1])
