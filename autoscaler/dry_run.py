"""A fleet that exists only in a log: `fleetscale run --actuator log`.

`LogFleet` is the `Actuator` and the `InventorySource` of a dry run: each set-replicas call is written as one line
(to the callback it is given: the CLI prints it) and becomes the spec, and the replicas of that spec are ready at
once (a dry run has no cold starts). So the loop sees the fleet it asked for, tick after tick, and nothing real is
touched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from autoscaler.model import ShapeReplicas
from autoscaler.ports import Inventory, ScaleRequest, ScaleResult
from autoscaler.shapes import Shape


class LogFleet:
    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.spec: dict[str, dict[Shape, int]] = {}

    def snapshot(self, now: datetime) -> Inventory:
        return Inventory(
            {name: {shape: ShapeReplicas(n, 0, n) for shape, n in shapes.items()} for name, shapes in self.spec.items()}
        )

    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        before = self.spec.get(request.service, {}).get(request.shape, 0)
        where = f" ({request.workload})" if request.workload is not None else ""
        self.write(
            f"set {request.service} {request.shape}{where}: {before} -> {request.replicas} "
            f"(decision {request.decision_id})"
        )
        self.spec.setdefault(request.service, {})[request.shape] = request.replicas
        return ScaleResult(request.replicas)
