"""Value types of placement: the inventory it starts from and the Placement it returns.

A GPU is in one of three modes: whole (no MIG, at most one whole-GPU replica or a gang member), shared (time-sliced
fractions adding up to at most 1), or MIG (a layout of GPU instances, each holding at most one replica of its
profile). A layout change of a GPU is a reconfiguration; it is only planned on a GPU with no occupant (DESIGN.md
safety rule 4: re-partitioning a serving GPU needs its replicas drained first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.catalog import MigPlacement
from autoscaler.shapes import Shape


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as it is: its pool, GPU type and count, whether it takes new replicas, and each GPU's MIG
    layout (None: MIG off)."""

    name: str
    pool: str
    gpu_type: str
    gpus: int
    cordoned: bool = False
    mig_layouts: tuple[tuple[str, ...] | None, ...] = ()

    def layout(self, index: int) -> tuple[str, ...] | None:
        return self.mig_layouts[index] if index < len(self.mig_layouts) else None


@dataclass(frozen=True, slots=True)
class ReplicaRequest:
    """`count` replicas of `shape` for `service`."""

    service: str
    shape: Shape
    count: int


@dataclass(frozen=True, slots=True)
class PlacedReplica:
    """Where one replica runs: its node, its GPUs, and for MIG the start slot of its GPU instance."""

    service: str
    shape: Shape
    node: str
    gpus: tuple[int, ...]
    mig_start: int | None = None
    fraction: float = 1.0


@dataclass(frozen=True, slots=True)
class GpuPlan:
    """One GPU after placement: its layout (MIG only) and who runs on it."""

    node: str
    index: int
    layout: tuple[MigPlacement, ...] | None
    occupants: tuple[PlacedReplica, ...]
    reconfigured: bool = False


@dataclass(frozen=True, slots=True)
class Unplaced:
    service: str
    shape: Shape
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class Placement:
    """The result: every placed replica, every GPU touched, what did not fit and why, and nodes to add per pool."""

    replicas: tuple[PlacedReplica, ...]
    gpus: tuple[GpuPlan, ...]
    unplaced: tuple[Unplaced, ...] = ()
    nodes_to_add: dict[str, int] = field(default_factory=dict)

    @property
    def reconfigured(self) -> tuple[GpuPlan, ...]:
        return tuple(g for g in self.gpus if g.reconfigured)

    def nodes_used(self) -> set[str]:
        return {r.node for r in self.replicas}
