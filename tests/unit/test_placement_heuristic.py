"""The placement heuristic: validity properties on random inventories, and named cases."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.catalog import Catalog, load_catalog
from autoscaler.config import NodePool
from autoscaler.placement.heuristic import place
from autoscaler.placement.model import NodeState, Placement, ReplicaRequest
from autoscaler.shapes import ShapeKind, parse_shape

CATALOG = load_catalog()
POOLS = {
    "h100": NodePool(name="h100", gpu_type="H100-80GB", gpus_per_node=8, max_nodes=4, mig_allowed=True),
    "l4": NodePool(
        name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=3, gpu_price_usd_per_h=0.8, fractional_allowed=True
    ),
}
SHAPES = [
    parse_shape(s)
    for s in ("H100-80GB", "2xH100-80GB", "4xH100-80GB", "8xH100-80GB", "H100-80GB/1g.10gb", "H100-80GB/2g.20gb",
              "H100-80GB/3g.40gb", "H100-80GB/1g.20gb", "H100-80GB/7g.80gb", "2x4xH100-80GB", "2x8xH100-80GB",
              "L4", "2xL4", "0.5xL4", "0.25xL4")
]  # fmt: skip
H100_LAYOUTS = [None, ("3g.40gb", "3g.40gb"), ("1g.10gb",) * 7, ("4g.40gb", "2g.20gb", "1g.10gb"), ("7g.80gb",)]


def check_valid(
    result: Placement, inventory: list[NodeState], requests: list[ReplicaRequest], catalog: Catalog
) -> None:
    nodes = {n.name: n for n in inventory}
    # Every requested replica is placed or reported unplaced.
    wanted = Counter()
    for r in requests:
        wanted[(r.service, catalog.canonical_shape(r.shape))] += r.count
    got = Counter((r.service, r.shape) for r in result.replicas)
    for u in result.unplaced:
        got[(u.service, u.shape)] += u.count
        assert u.reason
    assert got == wanted
    layouts = {(g.node, g.index): g for g in result.gpus}
    whole_users: Counter[tuple[str, int]] = Counter()
    shares: Counter[tuple[str, int]] = Counter()
    instances: set[tuple[str, int, int]] = set()
    for replica in result.replicas:
        for name, _ in replica.members:
            node = nodes.get(name)
            if node is not None:
                assert not node.cordoned, f"placed on cordoned {name}"
        if replica.shape.kind is ShapeKind.GPU:
            # A gang lands on one node, on distinct GPUs, none of them partitioned or shared; a multi-node group
            # spans exactly its k distinct nodes, of one pool, with that many GPUs on each.
            members = replica.members
            assert len(members) == replica.shape.nodes
            assert len({name for name, _ in members}) == replica.shape.nodes
            assert len({_pool(name, nodes) for name, _ in members}) == 1
            for name, gpus in members:
                assert len(set(gpus)) == replica.shape.gpus
                for index in gpus:
                    whole_users[(name, index)] += 1
                    assert layouts[(name, index)].layout is None
        elif replica.shape.kind is ShapeKind.MIG:
            plan = layouts[(replica.node, replica.gpus[0])]
            assert plan.layout is not None
            assert any(p.start == replica.mig_start and p.profile == replica.shape.mig_profile for p in plan.layout)
            key = (replica.node, replica.gpus[0], replica.mig_start or 0)
            assert key not in instances, "two replicas in one GPU instance"
            instances.add(key)
        else:
            shares[(replica.node, replica.gpus[0])] += replica.fraction
    for key, users in whole_users.items():
        assert users == 1, f"GPU {key} over-committed"
        assert shares[key] == 0
    for key, used in shares.items():
        assert used <= 1.0 + 1e-9, f"GPU {key} shared beyond 1"
    for plan in result.gpus:
        if plan.layout is not None:
            gpu_type = nodes[plan.node].gpu_type if plan.node in nodes else "H100-80GB"
            check = catalog.check_mig_layout(gpu_type, [p.profile for p in plan.layout])
            assert check.valid, check.reason
        if plan.reconfigured and plan.node in nodes:
            # A reconfiguration really changes the GPU's layout (MIG on, off, or other instances).
            before = nodes[plan.node].layout(plan.index)
            after = None if plan.layout is None else tuple(p.profile for p in plan.layout)
            assert before is None or after is None or sorted(before) != sorted(after)


def _pool(name: str, nodes: dict[str, NodeState]) -> str:
    return nodes[name].pool if name in nodes else name.split("-new-")[0]


@st.composite
def _instances(draw: st.DrawFn) -> tuple[list[NodeState], list[ReplicaRequest]]:
    inventory = []
    for i in range(draw(st.integers(0, 3))):
        layouts = tuple(draw(st.sampled_from(H100_LAYOUTS)) for _ in range(8))
        inventory.append(NodeState(f"h{i}", "h100", "H100-80GB", 8, draw(st.booleans()), layouts))
    inventory.extend(NodeState(f"l{i}", "l4", "L4", 4, draw(st.booleans())) for i in range(draw(st.integers(0, 2))))
    requests = [
        ReplicaRequest(f"s{i}", draw(st.sampled_from(SHAPES)), draw(st.integers(1, 6)))
        for i in range(draw(st.integers(1, 6)))
    ]
    return inventory, requests


@settings(max_examples=150, deadline=None)
@given(_instances())
def test_property_every_placement_is_valid(instance: tuple[list[NodeState], list[ReplicaRequest]]) -> None:
    inventory, requests = instance
    result = place(requests, inventory, POOLS, CATALOG)
    check_valid(result, inventory, requests, CATALOG)


def test_a_gang_is_never_split_and_nodes_are_added_for_it() -> None:
    # Two nodes with 3 GPUs each (6 free GPUs in all): a gang of 4 cannot use them and needs a new node.
    inventory = [NodeState(f"h{i}", "h100", "H100-80GB", 3) for i in range(2)]
    result = place([ReplicaRequest("big", parse_shape("4xH100-80GB"), 1)], inventory, POOLS, CATALOG)
    (replica,) = result.replicas
    assert replica.node == "h100-new-1"
    assert len(replica.gpus) == 4
    assert result.nodes_to_add == {"h100": 1}


def test_an_empty_partitioned_gpu_may_be_repartitioned_rather_than_adding_a_node() -> None:
    # Cost comes before churn: empty MIG GPUs (no occupant) are turned back into whole GPUs for a gang.
    inventory = [NodeState("h0", "h100", "H100-80GB", 8, mig_layouts=(("7g.80gb",),) * 5)]
    result = place([ReplicaRequest("big", parse_shape("4xH100-80GB"), 1)], inventory, POOLS, CATALOG)
    (replica,) = result.replicas
    assert replica.node == "h0"
    assert replica.gpus[:3] == (5, 6, 7)  # the MIG-off GPUs first
    assert [g.index for g in result.reconfigured] == [0]
    assert result.nodes_to_add == {}


def test_mig_instances_fill_existing_layouts_before_repartitioning() -> None:
    inventory = [NodeState("h0", "h100", "H100-80GB", 2, mig_layouts=(("3g.40gb", "3g.40gb"), None))]
    result = place([ReplicaRequest("chat", parse_shape("H100-80GB/3g.40gb"), 2)], inventory, POOLS, CATALOG)
    assert {r.gpus for r in result.replicas} == {(0,)}
    assert not result.reconfigured


def test_new_mig_layouts_pack_the_waiting_instances() -> None:
    inventory = [NodeState("h0", "h100", "H100-80GB", 2)]
    requests = [
        ReplicaRequest("a", parse_shape("H100-80GB/3g.40gb"), 1),
        ReplicaRequest("b", parse_shape("H100-80GB/2g.20gb"), 1),
        ReplicaRequest("c", parse_shape("H100-80GB/1g.10gb"), 2),
    ]
    result = place(requests, inventory, POOLS, CATALOG)
    # 3g + 2g + 2 x 1g is the all-balanced layout: one GPU holds them all.
    assert {r.gpus for r in result.replicas} == {(0,)}
    assert len(result.reconfigured) == 1


def test_cordoned_nodes_and_pools_at_max_leave_replicas_unplaced_with_the_reason() -> None:
    inventory = [NodeState(f"l{i}", "l4", "L4", 4, cordoned=(i == 0)) for i in range(3)]
    result = place([ReplicaRequest("x", parse_shape("L4"), 9)], inventory, POOLS, CATALOG)
    assert all(r.node != "l0" for r in result.replicas)
    assert len(result.replicas) == 8
    (left,) = result.unplaced
    assert left.count == 1
    assert "max_nodes" in left.reason


def test_shares_pack_onto_shared_gpus() -> None:
    inventory = [NodeState("l0", "l4", "L4", 4)]
    result = place([ReplicaRequest("tiny", parse_shape("0.25xL4"), 4)], inventory, POOLS, CATALOG)
    assert {r.gpus for r in result.replicas} == {(0,)}
