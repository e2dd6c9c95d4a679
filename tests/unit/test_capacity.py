"""capacity_at_slo against a brute-force simulation of the same engine, and the latency model's shape."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from autoscaler.capacity import Binding, LatencySlo, TokenMix, capacity_at_slo, predict_latency
from autoscaler.perf import Precision, ProfileBook, ReplicaProfile
from autoscaler.shapes import parse_shape
from autoscaler.sim.replica import ReplicaRun, simulate_replica


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    shape: str
    mix: TokenMix
    slo: LatencySlo


# Chosen to make each condition bind somewhere: TPOT with long and short outputs, TTFT, slots (concurrency), a MoE,
# MIG slices and a multi-GPU gang.
CASES = [
    Case("8b-h100-chat", "Llama-3.1-8B", "H100-80GB", TokenMix(1000, 200), LatencySlo(1.0, 0.05)),
    Case("8b-h100-3g-chat", "Llama-3.1-8B", "H100-80GB/3g.40gb", TokenMix(1000, 200), LatencySlo(1.0, 0.05)),
    Case("70b-tp4-prefill-heavy", "Llama-3.1-70B", "4xH100-80GB", TokenMix(2048, 28), LatencySlo(2.0, 0.1)),
    Case("8b-l4-slots", "Llama-3.1-8B", "L4", TokenMix(500, 200), LatencySlo(2.0, 0.1)),
    Case("8b-h100-code-tpot", "Llama-3.1-8B", "H100-80GB", TokenMix(2048, 28), LatencySlo(0.5, 0.05)),
    Case("8b-h100-code-ttft", "Llama-3.1-8B", "H100-80GB", TokenMix(2048, 28), LatencySlo(0.3, 0.2)),
    Case("8b-h100-decode-heavy", "Llama-3.1-8B", "H100-80GB", TokenMix(200, 400), LatencySlo(0.5, 0.03)),
    Case("mixtral-tp2", "Mixtral-8x7B", "2xH100-80GB", TokenMix(1000, 300), LatencySlo(1.0, 0.06)),
    Case("3b-1g-slots", "Llama-3.2-3B", "H100-80GB/1g.10gb", TokenMix(500, 100), LatencySlo(1.0, 0.08)),
]


def _simulated_capacity(profile: ReplicaProfile, case: Case, requests: int = 20000, seed: int = 1) -> float:
    """Bisection on the arrival rate with common random numbers: the same unit-rate arrivals, rescaled."""
    rng = random.Random(seed)
    unit = []
    t = 0.0
    for _ in range(requests):
        t += rng.expovariate(1.0)
        unit.append(t)
    inputs = [int(case.mix.mean_input_tokens)] * requests
    outputs = [int(case.mix.mean_output_tokens)] * requests
    warmup = requests // 10

    def meets_slo(rate: float) -> bool:
        run = simulate_replica(profile, [u / rate for u in unit], inputs, outputs)
        steady = ReplicaRun(run.ttft_s[warmup:], run.tpot_s[warmup:], run.busy_s, run.end_s)
        return steady.ttft_quantile(0.95) <= case.slo.ttft_s and steady.tpot_quantile(0.95) <= case.slo.tpot_s

    low, high = 0.0, 1000.0 / profile.prefill_ms(case.mix.mean_input_tokens)
    for _ in range(14):
        middle = (low + high) / 2
        if meets_slo(middle):
            low = middle
        else:
            high = middle
    return low


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_capacity_at_slo_agrees_with_brute_force_simulation_within_5_percent(case: Case, book: ProfileBook) -> None:
    profile = book.profile(case.model, parse_shape(case.shape), Precision.BF16)
    analytic = capacity_at_slo(profile, case.slo, case.mix).rps
    simulated = _simulated_capacity(profile, case)
    assert analytic == pytest.approx(simulated, rel=0.05), f"analytic {analytic:.3f} vs simulated {simulated:.3f}"


def test_latency_grows_with_load(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    mix = TokenMix(1000, 200)
    estimates = [predict_latency(profile, rate, mix) for rate in (1.0, 5.0, 10.0, 15.0)]
    ttfts = [e.ttft_s for e in estimates]
    tpots = [e.tpot_s for e in estimates]
    assert ttfts == sorted(ttfts)
    assert tpots == sorted(tpots)
    assert all(e.stable for e in estimates)
    # Past prefill saturation (rate x prefill time >= 1) the replica is unstable.
    prefill_s = profile.prefill_ms(1000) / 1000
    assert not predict_latency(profile, 1.01 / prefill_s, mix).stable


def test_capacity_is_zero_with_the_reason_when_a_lone_request_misses_the_slo(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-70B", parse_shape("4xH100-80GB"), Precision.BF16)
    # Prefill of 8,000 tokens at ~12.6k tokens/s takes ~0.64 s: a 0.3 s TTFT bound cannot be met at any load.
    result = capacity_at_slo(profile, LatencySlo(0.3, 0.1), TokenMix(8000, 100))
    assert result.rps == 0
    assert result.binding is Binding.TTFT
    assert "prefill of 8,000 tokens" in result.reason
    # A decode step of ~21 ms cannot meet a 10 ms TPOT bound.
    result = capacity_at_slo(profile, LatencySlo(5.0, 0.01), TokenMix(100, 100))
    assert result.rps == 0
    assert result.binding is Binding.TPOT


def test_capacity_is_monotone_in_the_slo(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    mix = TokenMix(1000, 200)
    strict = capacity_at_slo(profile, LatencySlo(0.5, 0.03), mix).rps
    loose = capacity_at_slo(profile, LatencySlo(1.0, 0.06), mix).rps
    assert 0 < strict < loose


def test_token_mix_buckets_to_two_significant_digits() -> None:
    assert TokenMix(1234.5, 87.6).bucketed() == TokenMix(1200, 88)
