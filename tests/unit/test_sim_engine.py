"""The event-jumping engine of the fleet simulator gives the results of the step-by-step engine."""

from __future__ import annotations

import math
import random

import pytest

from autoscaler.capacity import LatencySlo, TokenMix, capacity_at_slo
from autoscaler.catalog import load_catalog
from autoscaler.perf import Precision, load_profile_book
from autoscaler.shapes import parse_shape
from autoscaler.sim.engine import ReplicaEngine
from autoscaler.sim.replica import poisson_arrivals, simulate_replica

CATALOG = load_catalog()
BOOK = load_profile_book(CATALOG)


def drive(engine_args: tuple, arrivals: list[float]) -> dict[int, tuple[float, float]]:
    """Feed `arrivals` to one ReplicaEngine; (TTFT, TPOT) per request."""
    results: dict[int, tuple[float, float]] = {}

    def done(request: int, first: float, last: float, tpot: float) -> None:
        results[request] = (first - arrivals[request], tpot)

    profile, inputs, outputs = engine_args
    engine = ReplicaEngine(profile, arrivals, inputs, outputs, done)
    i = 0
    while i < len(arrivals) or not engine.idle:
        if i < len(arrivals) and arrivals[i] < engine.busy_until:
            engine.submit(i, arrivals[i])
            i += 1
        else:
            engine.advance()
    return results


@pytest.mark.parametrize(
    ("model", "shape", "load", "mix"),
    [
        ("Llama-3.1-8B", "H100-80GB", 0.8, (1000, 200)),
        ("Llama-3.1-8B", "H100-80GB/3g.40gb", 1.1, (2000, 30)),
        ("Llama-3.2-1B", "0.5xL4", 0.6, (300, 400)),
    ],
)
def test_the_event_engine_matches_stepping(model: str, shape: str, load: float, mix: tuple[int, int]) -> None:
    profile = BOOK.profile(model, parse_shape(shape), Precision.BF16)
    capacity = capacity_at_slo(profile, LatencySlo(1.0, 0.1), TokenMix(*mix)).rps
    rng = random.Random(5)
    arrivals = poisson_arrivals(load * capacity, 3000, seed=11)
    inputs = [max(1, int(rng.expovariate(1 / mix[0]))) for _ in arrivals]
    outputs = [max(1, int(rng.expovariate(1 / mix[1]))) for _ in arrivals]
    stepped = simulate_replica(profile, arrivals, inputs, outputs)
    jumped = drive((profile, inputs, outputs), arrivals)
    assert len(jumped) == len(arrivals)
    for i in range(len(arrivals)):
        ttft, tpot = jumped[i]
        assert ttft == pytest.approx(stepped.ttft_s[i], rel=1e-6, abs=1e-9)
        if math.isnan(stepped.tpot_s[i]):
            assert math.isnan(tpot)
        else:
            assert tpot == pytest.approx(stepped.tpot_s[i], rel=1e-6, abs=1e-9)


def test_a_solo_run_cut_in_its_prefill_or_in_its_decoding_gives_the_stepped_results() -> None:
    profile = BOOK.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    prefill = profile.prefill_ms(2000) / 1000.0
    # A alone, and B arrives during A's prefill; C while A decodes (after B); E alone, and F arrives while E decodes
    # alone (its solo run is cut in its decode phase).
    arrivals = [0.0, prefill / 2, 1.0, 100.0, 100.0 + prefill + 0.5]
    inputs = [2000, 500, 800, 2000, 100]
    outputs = [300, 5, 40, 300, 20]
    stepped = simulate_replica(profile, arrivals, inputs, outputs)
    jumped = drive((profile, inputs, outputs), arrivals)
    for i in range(len(arrivals)):
        assert jumped[i][0] == pytest.approx(stepped.ttft_s[i], rel=1e-9)
        assert jumped[i][1] == pytest.approx(stepped.tpot_s[i], rel=1e-9)
