"""The heuristic against the CP-SAT optimum on random small instances (issue 4's quality check)."""

from __future__ import annotations

import random

from autoscaler.catalog import load_catalog, valid_layouts
from autoscaler.config import NodePool
from autoscaler.placement import NodeState, ReplicaRequest, place
from autoscaler.placement.exact import solve_exact
from autoscaler.shapes import parse_shape

CATALOG = load_catalog()
POOLS = {
    "h100": NodePool(name="h100", gpu_type="H100-80GB", gpus_per_node=4, max_nodes=4, mig_allowed=True),
    "l4": NodePool(
        name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=3, gpu_price_usd_per_h=0.8, fractional_allowed=True
    ),
}
PRICES = {"h100": 6.88, "l4": 0.8}
SHAPES = [
    parse_shape(s)
    for s in ("H100-80GB", "2xH100-80GB", "4xH100-80GB", "H100-80GB/1g.10gb", "H100-80GB/2g.20gb",
              "H100-80GB/3g.40gb", "H100-80GB/1g.20gb", "L4", "2xL4", "0.5xL4", "0.25xL4")
]  # fmt: skip


def _inventory() -> list[NodeState]:
    return [NodeState(f"h{j}", "h100", "H100-80GB", 4) for j in range(4)] + [
        NodeState(f"l{j}", "l4", "L4", 4) for j in range(3)
    ]


def _cost(nodes: set[str]) -> float:
    return sum(4 * PRICES["h100" if name.startswith("h") else "l4"] for name in nodes)


def test_valid_layouts_match_the_reference_counts() -> None:
    assert len(valid_layouts(CATALOG, "H100-80GB")) == 77
    assert len(valid_layouts(CATALOG, "A30-24GB")) == 9
    assert valid_layouts(CATALOG, "L4") == ()


def test_heuristic_equals_the_cp_sat_optimum_on_random_small_instances() -> None:
    rng = random.Random(2026)
    feasible = equal = 0
    worst = 1.0
    for _ in range(200):
        requests = [ReplicaRequest(f"s{k}", rng.choice(SHAPES), rng.randint(1, 4)) for k in range(rng.randint(1, 5))]
        heuristic = place(requests, _inventory(), POOLS, CATALOG)
        exact = solve_exact(requests, _inventory(), POOLS, PRICES, CATALOG)
        if heuristic.unplaced:
            # The heuristic gives up only where no placement exists at all.
            assert exact.status == "infeasible", [(r.service, str(r.shape), r.count) for r in requests]
            continue
        assert exact.status == "optimal"
        feasible += 1
        ratio = _cost(heuristic.nodes_used()) / exact.cost_usd_per_h
        worst = max(worst, ratio)
        equal += abs(ratio - 1.0) < 1e-9
    # Issue 4: equal on at least 95 % and never worse than 1.10 x (measured: equal on all of them).
    assert feasible >= 150
    assert equal >= 0.95 * feasible
    assert worst <= 1.10
