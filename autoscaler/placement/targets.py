"""The last stage of `decide`: place the final targets on the fleet, and cut what cannot be placed, lowest tier first.

1. Place every target (each service's replicas of its chosen shape, plus the replicas of other shapes it keeps
   running) on the observed inventory, keeping current replicas where they are, with every pool free to grow past
   max_nodes. The nodes each pool would add are the hint for the cluster autoscaler; where a pool would have to
   grow past max_nodes, the note says by how many nodes ("pool p5 is full: needs 2 more H100-80GB nodes ...").
2. Only then is max_nodes enforced. While replicas are left unplaced, services of the short GPU type give way,
   lowest tier first, one replica at a time round-robin within a tier (the service that kept the largest share of
   its target gives next), never below its `floor` (what the caller must keep: the replicas that run, and
   min_replicas), until the GPU share they free covers what is unplaced; then placement runs again. A scale-up
   that cannot be placed is therefore never promised, and the placement returned is of exactly the targets that
   are.
When the observation has no node inventory, each pool is taken to have its observed node count (else min_nodes) of
empty, MIG-off nodes: placement then checks packing (gangs on one node, MIG layouts, shares) but cannot keep
current assignments.

With `consolidate` (a GPU efficiency objective on stranded capacity burns its budget), a placement that fits is
tried once more without the in-use node that holds the fewest GPUs' worth of replicas, as if it were cordoned: if
everything still fits on the other nodes, without adding any, that placement is taken and its replicas on that node
become moves (started elsewhere before they stop there). The fleet then uses one node fewer, and the note says so.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from autoscaler.catalog import Catalog
from autoscaler.config import NodePool, Tier
from autoscaler.placement.fragmentation import Fragmentation, measure
from autoscaler.placement.heuristic import place
from autoscaler.placement.model import NodeState, PlacedReplica, Placement, ReplicaRequest
from autoscaler.shapes import Shape

_ROUNDS = 64  # bound on place-and-cut rounds; each round cuts at least one replica, so this is never reached


@dataclass(frozen=True, slots=True)
class Target:
    """One service's replicas to place: `replicas` of its chosen `shape`, of which the stage may cut down to `floor`,
    and the replicas of other shapes it keeps running for now (a shape change in progress), which it never cuts."""

    service: str
    tier: Tier
    shape: Shape | None  # None: no shape chosen (no feasible shape); only `others` run
    replicas: int
    floor: int
    others: Mapping[Shape, int]


@dataclass(frozen=True, slots=True)
class TargetFit:
    replicas: Mapping[str, int]  # promised replicas of the chosen shape per service
    cut: Mapping[str, str]  # why, for each service that got fewer than it asked for
    notes: tuple[str, ...]
    placement: Placement
    fragmentation: Fragmentation


def synthetic_inventory(pools: Mapping[str, NodePool], nodes: Mapping[str, int], catalog: Catalog) -> list[NodeState]:
    """Empty MIG-off nodes: `nodes[pool]` of them per pool (min_nodes where the count is unknown)."""
    inventory: list[NodeState] = []
    for name, pool in pools.items():
        count = nodes.get(name, pool.min_nodes)
        gpu_type = catalog.canonical(pool.gpu_type)
        inventory.extend(NodeState(f"{name}-{i}", name, gpu_type, pool.gpus_per_node) for i in range(count))
    return inventory


def fit_targets(
    targets: Sequence[Target],
    inventory: Sequence[NodeState],
    current: Sequence[PlacedReplica],
    pools: Mapping[str, NodePool],
    prices: Mapping[str, float],
    catalog: Catalog,
    consolidate: bool = False,
) -> TargetFit:
    """Place `targets`, cutting by tier where the pools' max_nodes cannot hold them (see the module docstring)."""
    have = Counter(node.pool for node in inventory)
    unbounded = {name: pool.model_copy(update={"max_nodes": 1_000_000}) for name, pool in pools.items()}
    wanted = {t.service: t.replicas for t in targets}
    requests = _requests(targets, wanted)
    placement = place(requests, inventory, unbounded, catalog, current, prices)
    consolidation_note = ""
    if consolidate and not placement.unplaced:
        placement, consolidation_note = _consolidated(
            placement, requests, inventory, unbounded, catalog, current, prices
        )
    over = {
        name: n - (pools[name].max_nodes - have[name])
        for name, n in placement.nodes_to_add.items()
        if n > pools[name].max_nodes - have[name]
    }
    notes = [
        f"pool {name}: needs {_nodes(n, 'more ' + catalog.canonical(pools[name].gpu_type))} ({have[name]} now)"
        for name, n in sorted(placement.nodes_to_add.items())
        if n and name not in over
    ]
    if consolidation_note:
        notes.append(consolidation_note)
    if not over and not placement.unplaced:
        return TargetFit(wanted, {}, tuple(notes), placement, _fragmentation(placement, inventory, targets, catalog))
    full: dict[str, str] = {}  # GPU type -> the sentence that says what is missing
    for name, n in sorted(over.items()):
        pool = pools[name]
        gpu_type = catalog.canonical(pool.gpu_type)
        sentence = (
            f"pool {name} is full ({_nodes(pool.max_nodes, 'of ' + str(pool.gpus_per_node) + ' ' + gpu_type)}, its "
            f"max_nodes): needs {_nodes(n, 'more ' + gpu_type)} in pool {name}"
        )
        notes.append(sentence)
        full[gpu_type] = f"{full[gpu_type]}; {sentence}" if gpu_type in full else sentence
    replicas = dict(wanted)
    cut: dict[str, str] = {}
    for _ in range(_ROUNDS):
        placement = place(_requests(targets, replicas), inventory, pools, catalog, current, prices)
        if not placement.unplaced:
            break
        missing: dict[str, float] = {}
        for left in placement.unplaced:
            missing[left.shape.gpu_type] = missing.get(left.shape.gpu_type, 0.0) + left.count * catalog.gpu_share(
                left.shape
            )
            full.setdefault(left.shape.gpu_type, left.reason)
        freed = False
        for gpu_type, share in missing.items():
            for target in _give_way(targets, replicas, gpu_type, share, catalog):
                freed = True
                cut[target.service] = (
                    f"{replicas[target.service]} of {wanted[target.service]} replicas promised: {full[gpu_type]}"
                )
        if not freed:
            break  # everyone is at their floor: what is left is reported unplaced
    for left in placement.unplaced:
        cut.setdefault(left.service, f"{left.count} x {left.shape} cannot be placed: {left.reason}")
    return TargetFit(replicas, cut, tuple(notes), placement, _fragmentation(placement, inventory, targets, catalog))


def _consolidated(
    placement: Placement,
    requests: Sequence[ReplicaRequest],
    inventory: Sequence[NodeState],
    pools: Mapping[str, NodePool],
    catalog: Catalog,
    current: Sequence[PlacedReplica],
    prices: Mapping[str, float],
) -> tuple[Placement, str]:
    """`placement`, or the one without its emptiest in-use node when everything else still fits (module docstring);
    and the note that says which node was emptied."""
    load: dict[str, float] = {}
    for replica in placement.replicas:
        share = catalog.gpu_share(catalog.canonical_shape(replica.shape)) / max(len(replica.members), 1)
        for node, _ in replica.members:
            load[node] = load.get(node, 0.0) + share
    candidates = [n for n in inventory if not n.cordoned and n.name in load]
    if len(candidates) < 2:
        return placement, ""
    emptiest = min(candidates, key=lambda n: (load[n.name], n.name))
    trial_inventory = [replace(n, cordoned=True) if n.name == emptiest.name else n for n in inventory]
    trial = place(requests, trial_inventory, pools, catalog, current, prices)
    if trial.unplaced or sum(trial.nodes_to_add.values()) > sum(placement.nodes_to_add.values()):
        return placement, ""
    moved = sum(1 for r in current if any(node == emptiest.name for node, _ in r.members))
    return trial, (
        f"consolidation (a stranded-capacity objective burns): node {emptiest.name} emptied, its {moved} "
        f"replica{'s' if moved != 1 else ''} moved onto room on the other nodes"
    )


def _fragmentation(
    placement: Placement, inventory: Sequence[NodeState], targets: Sequence[Target], catalog: Catalog
) -> Fragmentation:
    demanded = {t.shape for t in targets if t.shape is not None} | {s for t in targets for s in t.others}
    return measure(placement, [*inventory, *placement.new_nodes], demanded, catalog)


def _nodes(count: int, what: str) -> str:
    """'1 more H100-80GB node', '2 more H100-80GB nodes'; '3 nodes of 8 L4'."""
    if what.startswith("of "):
        return f"{count} node{'s' if count != 1 else ''} {what}"
    return f"{count} {what} node{'s' if count != 1 else ''}"


def _requests(targets: Sequence[Target], replicas: Mapping[str, int]) -> list[ReplicaRequest]:
    requests = []
    for target in targets:
        if target.shape is not None and replicas[target.service] > 0:
            requests.append(ReplicaRequest(target.service, target.shape, replicas[target.service]))
        requests.extend(ReplicaRequest(target.service, s, n) for s, n in target.others.items() if n > 0)
    return requests


def _give_way(
    targets: Sequence[Target], replicas: dict[str, int], gpu_type: str, share: float, catalog: Catalog
) -> list[Target]:
    """Cut replicas of `gpu_type` worth at least `share` GPUs, lowest tier first, round-robin within a tier."""
    victims: list[Target] = []
    mine = [t for t in targets if t.shape is not None and catalog.canonical(t.shape.gpu_type) == gpu_type]
    for tier in sorted({t.tier for t in mine}, key=lambda t: -t.rank):
        heap = [
            (-replicas[t.service] / max(t.replicas, 1), t.service, t)
            for t in mine
            if t.tier is tier and replicas[t.service] > t.floor
        ]
        heapq.heapify(heap)
        while share > 1e-9 and heap:
            _, _, victim = heapq.heappop(heap)
            replicas[victim.service] -= 1
            assert victim.shape is not None
            share -= catalog.gpu_share(catalog.canonical_shape(victim.shape))
            victims.append(victim)
            if replicas[victim.service] > victim.floor:
                heapq.heappush(heap, (-replicas[victim.service] / max(victim.replicas, 1), victim.service, victim))
        if share <= 1e-9:
            break
    return victims
