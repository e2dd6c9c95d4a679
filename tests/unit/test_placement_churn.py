"""Churn: a small demand change against an existing placement moves and re-partitions no more than necessary.

What "necessary" means here:
- a move is necessary only for a replica that is still wanted and whose node is cordoned or gone; with no such
  node, nothing moves: every current replica either stays exactly where it is or, where its service needs fewer,
  stops (that is a scale-down, not churn), and exactly `old - new` of them stop;
- a re-partition is necessary only for a GPU that hosts a replica being started (a re-partition that serves nothing
  new is never necessary), never for a GPU that keeps a replica (DESIGN.md safety rule 4), and not at all when every
  started MIG instance could take a free instance of its profile in the current layouts.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.catalog import load_catalog
from autoscaler.config import NodePool
from autoscaler.placement import NodeState, PlacedReplica, Placement, ReplicaRequest, place
from autoscaler.shapes import Shape, ShapeKind, parse_shape
from tests.unit.test_placement_heuristic import check_valid

CATALOG = load_catalog()
POOLS = {
    "h100": NodePool(name="h100", gpu_type="H100-80GB", gpus_per_node=8, max_nodes=6, mig_allowed=True),
    "l4": NodePool(
        name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=4, gpu_price_usd_per_h=0.8, fractional_allowed=True
    ),
}
SHAPES = [
    parse_shape(s)
    for s in ("H100-80GB", "2xH100-80GB", "4xH100-80GB", "2x4xH100-80GB", "H100-80GB/1g.10gb", "H100-80GB/2g.20gb",
              "H100-80GB/3g.40gb", "H100-80GB/7g.80gb", "L4", "0.5xL4", "0.25xL4")
]  # fmt: skip


def _counts(requests: list[ReplicaRequest]) -> Counter[tuple[str, Shape]]:
    counts: Counter[tuple[str, Shape]] = Counter()
    for r in requests:
        counts[(r.service, CATALOG.canonical_shape(r.shape))] += r.count
    return counts


def _free_instances(result: Placement) -> Counter[str]:
    free: Counter[str] = Counter()
    for gpu in result.gpus:
        taken = {r.mig_start for r in gpu.occupants}
        for p in gpu.layout or ():
            if p.start not in taken:
                free[p.profile] += 1
    return free


@st.composite
def _changes(draw: st.DrawFn) -> tuple[list[ReplicaRequest], list[ReplicaRequest]]:
    before = [
        ReplicaRequest(f"s{i}", draw(st.sampled_from(SHAPES)), draw(st.integers(1, 5)))
        for i in range(draw(st.integers(1, 6)))
    ]
    after = list(before)
    k = draw(st.integers(0, len(before)))  # k == len(before): a new service
    delta = draw(st.sampled_from([-2, -1, 1, 2]))
    if k == len(before):
        after.append(ReplicaRequest("new", draw(st.sampled_from(SHAPES)), abs(delta)))
    else:
        old = before[k]
        after[k] = ReplicaRequest(old.service, old.shape, max(0, old.count + delta))
    return before, after


@settings(max_examples=150, deadline=None)
@given(_changes())
def test_property_a_small_change_moves_and_repartitions_no_more_than_necessary(
    change: tuple[list[ReplicaRequest], list[ReplicaRequest]],
) -> None:
    before, after = change
    start = [NodeState(f"h{i}", "h100", "H100-80GB", 8) for i in range(2)] + [NodeState("l0", "l4", "L4", 4)]
    first = place(before, start, POOLS, CATALOG)
    inventory = list(first.nodes_after(start))
    second = place(after, inventory, POOLS, CATALOG, current=first.replicas)

    assert second.moves == ()
    old, new = Counter((r.service, r.shape) for r in first.replicas), _counts(after)  # what runs, what is wanted
    stopped = Counter((r.service, r.shape) for r in second.stopped)
    for key in old:
        assert stopped[key] == max(0, old[key] - new.get(key, 0)), key
    # Multisets: two shares of one service on one GPU are equal values.
    kept = Counter(second.replicas) - Counter(second.started)
    assert kept + Counter(second.stopped) == Counter(first.replicas)  # the rest stayed exactly where it was

    started_on = {(node, i) for r in second.started for node, gpus in r.members for i in gpus}
    kept_on = {(node, i) for r in kept for node, gpus in r.members for i in gpus}
    for change in second.repartitions:
        assert (change.node, change.index) in started_on, f"{change} serves nothing new"
        assert (change.node, change.index) not in kept_on, f"{change} re-partitions a serving GPU"
    # Where the free instances of the current layouts (after the stops) hold every started MIG instance, nothing
    # is re-partitioned for them.
    free_after_stops = _free_instances(first) + Counter(
        r.shape.mig_profile for r in second.stopped if r.shape.kind is ShapeKind.MIG and r.shape.mig_profile
    )
    started_mig = Counter(r.shape.mig_profile for r in second.started if r.shape.kind is ShapeKind.MIG)
    if started_mig and all(free_after_stops[p] >= n for p, n in started_mig.items()):
        mig_gpus = {(r.node, r.gpus[0]) for r in second.started if r.shape.kind is ShapeKind.MIG}
        assert not any((c.node, c.index) in mig_gpus for c in second.repartitions)


@settings(max_examples=100, deadline=None)
@given(_changes(), st.lists(st.booleans(), min_size=6, max_size=6))
def test_property_replacing_against_a_current_placement_with_cordons_stays_valid(
    change: tuple[list[ReplicaRequest], list[ReplicaRequest]], cordons: list[bool]
) -> None:
    before, after = change
    start = [NodeState(f"h{i}", "h100", "H100-80GB", 8) for i in range(2)] + [NodeState("l0", "l4", "L4", 4)]
    first = place(before, start, POOLS, CATALOG)
    inventory = [
        NodeState(n.name, n.pool, n.gpu_type, n.gpus, cordon, n.mig_layouts)
        for n, cordon in zip(first.nodes_after(start), cordons + [False] * 10, strict=False)
    ]
    second = place(after, inventory, POOLS, CATALOG, current=first.replicas)
    check_valid(second, inventory, after, CATALOG)
    cordoned = {n.name for n in inventory if n.cordoned}
    for move in second.moves:
        assert {node for node, _ in move.source.members} & cordoned
        assert not {node for node, _ in move.target.members} & cordoned


def test_replicas_on_a_cordoned_node_move_and_nothing_else_does() -> None:
    start = [NodeState(f"h{i}", "h100", "H100-80GB", 8) for i in range(3)]
    demand = [
        ReplicaRequest("chat", parse_shape("2xH100-80GB"), 6),
        ReplicaRequest("mini", parse_shape("H100-80GB/3g.40gb"), 3),
    ]
    first = place(demand, start, POOLS, CATALOG)
    inventory = list(first.nodes_after(start))
    victim = "h0"
    assert any(r.node == victim for r in first.replicas)
    inventory = [NodeState(n.name, n.pool, n.gpu_type, n.gpus, n.name == victim, n.mig_layouts) for n in inventory]
    second = place(demand, inventory, POOLS, CATALOG, current=first.replicas)
    on_victim = [r for r in first.replicas if r.node == victim]
    assert sorted(str(m.source) for m in second.moves) == sorted(str(r) for r in on_victim)
    assert all("cordoned" in m.reason and m.target.node != victim for m in second.moves)
    assert len(second.started) == len(on_victim)
    assert Counter(second.replicas) - Counter(second.started) == Counter(first.replicas) - Counter(on_victim)
    assert second.steps()[-1].startswith("move ")


def test_a_scale_down_stops_replicas_on_the_least_loaded_node_first() -> None:
    start = [NodeState(f"h{i}", "h100", "H100-80GB", 8) for i in range(2)]
    current = [PlacedReplica("a", parse_shape("H100-80GB"), "h0", (i,)) for i in range(7)] + [
        PlacedReplica("a", parse_shape("H100-80GB"), "h1", (0,))
    ]
    result = place([ReplicaRequest("a", parse_shape("H100-80GB"), 7)], start, POOLS, CATALOG, current=current)
    assert [r.node for r in result.stopped] == ["h1"]
    assert result.nodes_used() == {"h0"}
    assert result.started == () and result.moves == () and result.repartitions == ()


def test_contradictory_current_state_is_an_error_naming_the_replica() -> None:
    start = [NodeState("h0", "h100", "H100-80GB", 8, mig_layouts=(("3g.40gb", "3g.40gb"),))]
    wrong = PlacedReplica("a", parse_shape("H100-80GB/3g.40gb"), "h0", (0,), mig_start=2)
    with pytest.raises(ValueError, match=r"h0\[0\] slot 2: no free 3g.40gb instance"):
        place([ReplicaRequest("a", parse_shape("H100-80GB/3g.40gb"), 1)], start, POOLS, CATALOG, current=[wrong])


def test_steps_come_in_a_safe_order() -> None:
    start = [NodeState("h0", "h100", "H100-80GB", 8, mig_layouts=((("7g.80gb",)),) + (None,) * 7)]
    current = [PlacedReplica("big", parse_shape("H100-80GB/7g.80gb"), "h0", (0,), mig_start=0)]
    demand = [ReplicaRequest("small", parse_shape("H100-80GB/3g.40gb"), 2)]
    result = place(demand, start, POOLS, CATALOG, current=current)
    steps = result.steps()
    # The 7g replica stops, then GPU 0 is re-partitioned for the two 3g instances, then they start.
    assert steps[0].startswith("stop big")
    assert steps[1] == "re-partition h0 GPU 0: 7g.80gb -> 3g.40gb+3g.40gb"
    assert all(s.startswith("start small") for s in steps[2:])


def test_the_applied_fleet_places_the_same_demand_with_no_change() -> None:
    start = [NodeState("h0", "h100", "H100-80GB", 8)]
    demand = [
        ReplicaRequest("chat", parse_shape("2xH100-80GB"), 5),
        ReplicaRequest("mini", parse_shape("H100-80GB/2g.20gb"), 5),
        ReplicaRequest("tiny", parse_shape("0.25xL4"), 3),
    ]
    first = place(demand, start, POOLS, CATALOG)
    nodes, running = first.nodes_after(start), first.replicas
    assert {n.name for n in nodes} == {"h0", "h100-new-1", "l4-new-1"}
    second = place(demand, nodes, POOLS, CATALOG, current=running)
    assert (second.started, second.stopped, second.moves, second.repartitions, second.nodes_to_add) == (
        (),
        (),
        (),
        (),
        {},
    )
    assert Counter(second.replicas) == Counter(first.replicas)
