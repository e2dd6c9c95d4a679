"""Stage 4, placement.

`aggregate` checks that the GPUs the targets need fit each pool (what `decide` uses today). `heuristic` places
replicas on nodes and GPUs: gangs on one node, MIG instances in valid layouts, GPU shares; it is the start of the
full placement (an exact CP-SAT model, an LP lower bound and churn against the current placement come next).
"""

from autoscaler.placement.aggregate import PoolDemand, PoolFit, fit_pools
from autoscaler.placement.heuristic import place
from autoscaler.placement.model import GpuPlan, NodeState, PlacedReplica, Placement, ReplicaRequest, Unplaced

__all__ = [
    "GpuPlan",
    "NodeState",
    "PlacedReplica",
    "Placement",
    "PoolDemand",
    "PoolFit",
    "ReplicaRequest",
    "Unplaced",
    "fit_pools",
    "place",
]
