"""The fleet once a decision is carried out, as a simulated actuator reports it back for the next tick.

The nodes are the inventory plus the nodes the placement added, with each GPU's layout as the placement set it;
the replicas are, per service and shape, the first `target` of those the placement keeps or starts, then of those
it would stop (a target above what was placed is a scale-down that stabilization delayed: those replicas still
run where they ran).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autoscaler.placement.model import NodeState, PlacedReplica, Placement
from autoscaler.shapes import Shape


def applied(
    placement: Placement, inventory: Sequence[NodeState], targets: Mapping[str, Mapping[Shape, int]]
) -> tuple[tuple[NodeState, ...], tuple[PlacedReplica, ...]]:
    layouts = {
        (g.node, g.index): None if g.layout is None else tuple(p.profile for p in g.layout) for g in placement.gpus
    }
    nodes = tuple(
        NodeState(
            n.name,
            n.pool,
            n.gpu_type,
            n.gpus,
            n.cordoned,
            tuple(layouts.get((n.name, i), n.layout(i)) for i in range(n.gpus)),
        )
        for n in (*inventory, *placement.new_nodes)
    )
    left = {service: dict(shapes) for service, shapes in targets.items()}
    running = []
    for replica in (*placement.replicas, *placement.stopped):
        wanted = left.get(replica.service, {})
        if wanted.get(replica.shape, 0) > 0:
            wanted[replica.shape] -= 1
            running.append(replica)
    return nodes, tuple(running)
