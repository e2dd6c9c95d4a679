"""Stage 4, placement: where replicas run, which MIG layout each GPU needs, and what must change.

- `heuristic.place`: the fast placement (keeps current replicas, gangs and multi-node groups, MIG layouts, shares;
  cost of nodes in use, then churn, then fragmentation).
- `exact.solve_exact`: the CP-SAT optimum for small fleets, to check the heuristic.
- `bound.gpu_lower_bound`: a HiGHS lower bound on the GPUs any placement needs, to measure the heuristic on large
  fleets.
- `fragmentation.measure`: stranded capacity and saturated GPUs of a placement.
- `targets.fit_targets`: what `decide` calls: place the targets and cut by tier what max_nodes cannot hold.
"""

from autoscaler.placement.heuristic import place
from autoscaler.placement.model import (
    GpuPlan,
    Move,
    NodeState,
    PlacedReplica,
    Placement,
    Repartition,
    ReplicaRequest,
    Unplaced,
)

__all__ = [
    "GpuPlan",
    "Move",
    "NodeState",
    "PlacedReplica",
    "Placement",
    "Repartition",
    "ReplicaRequest",
    "Unplaced",
    "place",
]
