"""The decision agrees with itself: its placement is of its final targets, tick after tick (a property test).

An actuator that follows `Decision.placement.steps()` must start exactly the replicas the targets add and stop only
those they remove: so for every service and shape, the placed replicas equal the target, and nothing the target
keeps is stopped. The fleet is carried from tick to tick as an actuator would leave it (the placement's replicas
on the nodes it set up), with demand, bad metrics and full pools drawn by hypothesis.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.decide import decide
from autoscaler.model import Decision, Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.perf import ProfileBook
from autoscaler.placement import NodeState, PlacedReplica
from autoscaler.shapes import Shape
from tests.unit.conftest import compile_dict, scenario_dict

START = datetime(2000, 1, 1, tzinfo=UTC)
NAMES = ("chat", "classify", "summarize")


@pytest.fixture(scope="module")
def fleet(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict(budget={"hard_usd_per_h": 150.0})
    data["fleet"]["pools"][0]["max_nodes"] = 2  # 16 H100: full at times
    data["fleet"]["pools"][1]["max_nodes"] = 2
    data["services"][0]["allowed_shapes"] = ["H100-80GB", "H100-80GB/3g.40gb"]
    data["services"] += [
        {
            "name": "classify",
            "model": "Llama-3.2-3B",
            "tier": "best_effort",
            "slo": {"ttft_p95_s": 2.0, "tpot_p95_s": 0.1},
            "min_replicas": 1,
            "max_replicas": 20,
            "allowed_shapes": ["L4", "H100-80GB/2g.20gb"],
            "max_context_tokens": 2048,
        },
        {
            "name": "summarize",
            "model": "Llama-3.1-70B",
            "tier": "standard",
            "slo": {"ttft_p95_s": 3.0, "tpot_p95_s": 0.1},
            "min_replicas": 0,
            "max_replicas": 4,
            "allowed_shapes": ["4xH100-80GB"],
        },
    ]
    # Short windows, so that a few ticks see scale-downs as well as scale-ups.
    data["policy"] = {"scale_down_window_s": 30, "scale_down_period_s": 15, "scale_down_max_step": 3}
    return compile_dict(data, catalog, book)


_rate = st.one_of(st.none(), st.floats(min_value=0.0, max_value=150.0, allow_nan=False))
_tick = st.tuples(_rate, _rate, _rate)


def _placed_counts(decision: Decision) -> Counter[tuple[str, Shape]]:
    assert decision.placement is not None
    return Counter((r.service, r.shape) for r in decision.placement.replicas)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=st.lists(_tick, min_size=1, max_size=5))
def test_property_the_placement_is_of_the_final_targets(
    fleet: CompiledScenario, ticks: list[tuple[float | None, float | None, float | None]]
) -> None:
    state = PolicyState()
    nodes: tuple[NodeState, ...] = ()
    placed: tuple[PlacedReplica, ...] = ()
    running: dict[str, dict[Shape, int]] = {}
    for k, rates in enumerate(ticks):
        now = START + timedelta(seconds=15 * k)
        services = {
            name: ServiceObservation(
                rate,
                None if rate is None else rate * 1000,
                None if rate is None else rate * 200,
                now,
                {s: ShapeReplicas(ready=n, spec=n) for s, n in running.get(name, {}).items()},
            )
            for name, rate in zip(NAMES, rates, strict=True)
        }
        decision, state = decide(Observation(services, nodes=nodes, placed=placed), {}, fleet, state, now)
        assert decision.placement is not None
        counts = _placed_counts(decision)
        stopped = Counter((r.service, r.shape) for r in decision.placement.stopped)
        for result in decision.services:
            for shape in set(result.target) | {s for (svc, s) in counts if svc == result.service}:
                want = result.target.get(shape, 0)
                # Placed replicas are the target, shape by shape.
                assert counts[(result.service, shape)] == want, (k, result.service, shape, result.reason)
                # A stop is a replica the target removes, never one it keeps.
                was = running.get(result.service, {}).get(shape, 0)
                assert stopped[(result.service, shape)] <= max(0, was - want), (k, result.service, shape)
        # The platform carries the decision out exactly: the next tick sees this placement.
        nodes, placed = decision.placement.nodes_after(nodes), decision.placement.replicas
        running = {s.service: {shape: n for shape, n in s.target.items() if n} for s in decision.services}
