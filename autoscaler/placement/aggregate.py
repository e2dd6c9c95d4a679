"""Aggregate pool capacity: do the desired replicas fit the pools, counted in GPUs?

A replica of a shape uses `gpu_share` GPUs of its pool (whole GPUs for a gang, the larger of the compute and
memory share for a MIG instance, the fraction for a GPU share). A pool offers max_nodes x gpus_per_node GPUs.
This ignores fragmentation (a gang needs its GPUs on one node; MIG layouts strand slices), which the placement
issue adds; it is the upper bound the full placement can only lower.

When a pool is short, services give way lowest tier first, one replica at a time (round-robin within a tier), and
the decision says how many GPUs (and nodes) the pool lacks. When the targets fit but need more nodes than the pool
has now, the decision carries that as a hint for the cluster autoscaler.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.config import NodePool, Tier


@dataclass(frozen=True, slots=True)
class PoolDemand:
    """One service's replicas in one pool: how many, each taking `gpu_share` GPUs."""

    service: str
    tier: Tier
    pool: str
    replicas: int
    min_replicas: int
    gpu_share: float


@dataclass(frozen=True, slots=True)
class PoolFit:
    """Replicas per service after fitting, GPUs used per pool, and sentences for the decision."""

    replicas: Mapping[str, int]
    cut: Mapping[str, str]
    gpus_used: Mapping[str, float]
    notes: tuple[str, ...]


def fit_pools(demands: list[PoolDemand], pools: Mapping[str, NodePool], current_nodes: Mapping[str, int]) -> PoolFit:
    """Cut replicas, lowest tier first, until every pool's GPUs suffice; report shortfalls and node hints."""
    replicas = {d.service: d.replicas for d in demands}
    cut: dict[str, str] = {}
    notes: list[str] = []
    by_pool: dict[str, list[PoolDemand]] = {}
    for demand in demands:
        by_pool.setdefault(demand.pool, []).append(demand)
    used: dict[str, float] = {}
    for name, group in sorted(by_pool.items()):
        pool = pools[name]
        capacity = pool.max_nodes * pool.gpus_per_node
        gpus = sum(d.replicas * d.gpu_share for d in group)
        if gpus > capacity + 1e-9:
            missing = gpus - capacity
            nodes = math.ceil(missing / pool.gpus_per_node - 1e-9)
            notes.append(
                f"pool {name} needs {missing:g} more {pool.gpu_type} GPUs ({nodes} more nodes of "
                f"{pool.gpus_per_node}) than max_nodes ({pool.max_nodes}) allows"
            )
            for tier in sorted({d.tier for d in group}, key=lambda t: -t.rank):
                # Round-robin within the tier: the service that kept the largest share of its replicas gives one.
                heap = [
                    (-replicas[d.service] / max(d.replicas, 1), d.service, d)
                    for d in group
                    if d.tier is tier and replicas[d.service] > d.min_replicas
                ]
                heapq.heapify(heap)
                while gpus > capacity + 1e-9 and heap:
                    _, _, victim = heapq.heappop(heap)
                    replicas[victim.service] -= 1
                    gpus -= victim.gpu_share
                    cut[victim.service] = (
                        f"pool {name} is full ({capacity} {pool.gpu_type} GPUs at max_nodes {pool.max_nodes}): "
                        f"{replicas[victim.service]} of {victim.replicas} replicas promised; needs {nodes} more "
                        f"nodes in pool {name}"
                    )
                    if replicas[victim.service] > victim.min_replicas:
                        share = -replicas[victim.service] / max(victim.replicas, 1)
                        heapq.heappush(heap, (share, victim.service, victim))
                if gpus <= capacity + 1e-9:
                    break
        used[name] = gpus
        have = current_nodes.get(name)
        need_nodes = math.ceil(used[name] / pool.gpus_per_node - 1e-9)
        if have is not None and need_nodes > have:
            notes.append(f"pool {name}: needs {need_nodes - have} more {pool.gpu_type} nodes ({have} now)")
    return PoolFit(replicas, cut, used, tuple(notes))
