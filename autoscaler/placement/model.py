"""Value types of placement: the inventory it starts from and the Placement it returns.

A GPU is in one of three modes: whole (no MIG, at most one whole-GPU replica or a gang member), shared (time-sliced
fractions adding up to at most 1), or MIG (a layout of GPU instances, each holding at most one replica of its
profile). A layout change of a GPU is a reconfiguration; it is only planned on a GPU with no occupant (DESIGN.md
safety rule 4: re-partitioning a serving GPU needs its replicas drained first).

Churn is counted against the current placement: a replica that stays where it is costs nothing; one stopped because
its service needs fewer is a scale-down, not churn; one that must run elsewhere (its node is cordoned, unhealthy or
gone) is a move; a GPU whose layout changes is a re-partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.catalog import MigPlacement
from autoscaler.shapes import Shape


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as it is: its pool, GPU type and count, whether it is cordoned, and each GPU's MIG layout (None:
    MIG off). A cordoned node (drained by a person, or unhealthy) takes nothing, and what runs there moves."""

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
    """Where one replica runs: its node, its GPUs, and for MIG the start slot of its GPU instance. A multi-node
    group runs on `node` (its leader) and on each of `workers`, with `gpus` on every one of them."""

    service: str
    shape: Shape
    node: str
    gpus: tuple[int, ...]
    mig_start: int | None = None
    fraction: float = 1.0
    workers: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def members(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(node, GPU indices) of every node the replica runs on, its leader first."""
        return ((self.node, self.gpus), *self.workers)

    def __str__(self) -> str:
        where = " + ".join(f"{node}[{','.join(map(str, gpus))}]" for node, gpus in self.members)
        slot = f" slot {self.mig_start}" if self.mig_start is not None else ""
        return f"{self.service} {self.shape} on {where}{slot}"


@dataclass(frozen=True, slots=True)
class GpuPlan:
    """One GPU after placement: its layout (MIG only) and who runs on it."""

    node: str
    index: int
    layout: tuple[MigPlacement, ...] | None
    occupants: tuple[PlacedReplica, ...]
    reconfigured: bool = False


@dataclass(frozen=True, slots=True)
class Repartition:
    """A GPU whose MIG layout changes (None: MIG off). Planned only on a GPU with no occupant left."""

    node: str
    index: int
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None

    def __str__(self) -> str:
        def show(layout: tuple[str, ...] | None) -> str:
            return "MIG off" if layout is None else "+".join(layout)

        return f"re-partition {self.node} GPU {self.index}: {show(self.before)} -> {show(self.after)}"


@dataclass(frozen=True, slots=True)
class Move:
    """A replica that must run elsewhere, and why; the new one starts before the old one drains."""

    source: PlacedReplica
    target: PlacedReplica
    reason: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    service: str
    shape: Shape
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class Placement:
    """The result: every placed replica, every GPU touched, what did not fit and why, nodes to add per pool (the
    hint for the cluster autoscaler), and the changes against the current placement: replicas to start and to
    stop, moves, and re-partitions."""

    replicas: tuple[PlacedReplica, ...]
    gpus: tuple[GpuPlan, ...]
    unplaced: tuple[Unplaced, ...] = ()
    nodes_to_add: dict[str, int] = field(default_factory=dict)
    started: tuple[PlacedReplica, ...] = ()
    stopped: tuple[PlacedReplica, ...] = ()
    moves: tuple[Move, ...] = ()
    repartitions: tuple[Repartition, ...] = ()
    new_nodes: tuple[NodeState, ...] = ()  # the nodes behind `nodes_to_add`, with the names the replicas refer to

    @property
    def reconfigured(self) -> tuple[GpuPlan, ...]:
        return tuple(g for g in self.gpus if g.reconfigured)

    def nodes_used(self) -> set[str]:
        return {node for r in self.replicas for node, _ in r.members}

    def nodes_after(self, inventory: Sequence[NodeState]) -> tuple[NodeState, ...]:
        """The inventory once this placement is carried out: `inventory` plus the nodes it adds, with each GPU's MIG
        layout as the placement sets it. With `replicas`, what the next tick observes."""
        layouts = {
            (g.node, g.index): None if g.layout is None else tuple(p.profile for p in g.layout) for g in self.gpus
        }
        return tuple(
            NodeState(
                n.name,
                n.pool,
                n.gpu_type,
                n.gpus,
                n.cordoned,
                tuple(layouts.get((n.name, i), n.layout(i)) for i in range(n.gpus)),
            )
            for n in (*inventory, *self.new_nodes)
        )

    def steps(self) -> tuple[str, ...]:
        """The changes in a safe order: nodes to add; replicas to stop (not needed any more), which empties GPUs;
        re-partitions of empty GPUs; replicas to start (a move's new replica among them); then the old replica of
        each move drains, once its successor is ready (make-before-break)."""
        moved_targets = {id(m.target) for m in self.moves}
        lines = [f"add {n} node(s) to pool {pool}" for pool, n in sorted(self.nodes_to_add.items()) if n]
        lines += [f"stop {r}" for r in self.stopped]
        lines += [str(r) for r in self.repartitions]
        lines += [f"start {r}" for r in self.started if id(r) not in moved_targets]
        lines += [
            f"move {m.source} -> {', '.join(f'{n}{list(g)}' for n, g in m.target.members)} ({m.reason})"
            for m in self.moves
        ]
        return tuple(lines)
