"""A fast placement heuristic: gangs first, then MIG instances, then GPU shares, each best-fit.

Order and rules, chosen for cost first (few nodes), then churn (no re-partitioning of a serving GPU), then
fragmentation:
1. Whole-GPU replicas, largest gang first: a node with enough free whole GPUs, preferring nodes already in use and
   then the tightest fit; a gang never spans nodes.
2. MIG instances, largest first: a free instance of the profile in an existing layout (no reconfiguration); else a
   GPU with no occupant gets a new layout: the valid layout (from the catalog's enumeration) that holds this
   instance and covers the most of the waiting instances of that GPU type, weighted by the GPU share they take.
3. GPU shares (time-slicing), largest first, onto shared GPUs with room, else a free GPU of a pool that allows it.
4. What does not fit on the existing nodes is placed on nodes the pool may still add (up to max_nodes); the count
   of those is the hint for the cluster autoscaler, and the rest is unplaced with the reason.
Cordoned nodes take nothing new.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from autoscaler.catalog import Catalog, MigPlacement, valid_layouts
from autoscaler.config import NodePool
from autoscaler.placement.model import GpuPlan, NodeState, PlacedReplica, Placement, ReplicaRequest, Unplaced
from autoscaler.shapes import Shape, ShapeKind


@dataclass
class _Gpu:
    node: NodeState
    index: int
    layout: list[MigPlacement] | None = None  # None: MIG off
    instances: dict[int, PlacedReplica] = field(default_factory=dict)  # MIG start slot -> occupant
    whole: PlacedReplica | None = None
    shares: list[PlacedReplica] = field(default_factory=list)
    reconfigured: bool = False

    @property
    def empty(self) -> bool:
        return self.whole is None and not self.shares and not self.instances

    @property
    def shared_fraction(self) -> float:
        return sum(r.fraction for r in self.shares)


@dataclass
class _Node:
    state: NodeState
    gpus: list[_Gpu]
    added: bool = False
    occupied: int = 0  # GPUs with an occupant, kept up to date by _Planner._use

    @property
    def in_use(self) -> bool:
        return self.occupied > 0

    @property
    def empty_count(self) -> int:
        return len(self.gpus) - self.occupied


def _initial_gpus(node: NodeState, catalog: Catalog) -> list[_Gpu]:
    gpus = []
    for index in range(node.gpus):
        profiles = node.layout(index)
        layout = None
        if profiles is not None:
            check = catalog.check_mig_layout(node.gpu_type, profiles)
            if not check.valid:
                raise ValueError(f"node {node.name} GPU {index}: its MIG layout {profiles} is invalid: {check.reason}")
            layout = list(check.placements)
        gpus.append(_Gpu(node, index, layout))
    return gpus


class _Planner:
    """Working state of one placement. Eligible nodes are listed once per (GPU type, kind), and free MIG instances
    are indexed by (GPU type, profile), so that a fleet of thousands of nodes is not rescanned per replica."""

    def __init__(self, nodes: list[_Node], pools: Mapping[str, NodePool], catalog: Catalog) -> None:
        self.nodes: list[_Node] = []
        self.pools = pools
        self.catalog = catalog
        self._eligible: dict[tuple[str, ShapeKind], list[_Node]] = {}
        self._names: dict[str, _Node] = {}
        self._free: dict[tuple[str, str], dict[tuple[str, int, int], tuple[_Gpu, MigPlacement]]] = {}
        for node in nodes:
            self.add_node(node)

    def add_node(self, node: _Node) -> None:
        self.nodes.append(node)
        self._names[node.state.name] = node
        self._eligible.clear()
        for gpu in node.gpus:
            self._index_free(gpu)

    def _mig_ok(self, gpu: _Gpu) -> bool:
        pool = self.pools.get(gpu.node.pool)
        return not gpu.node.cordoned and pool is not None and pool.mig_allowed

    def _index_free(self, gpu: _Gpu) -> None:
        if gpu.layout is None or not self._mig_ok(gpu):
            return
        for instance in gpu.layout:
            if instance.start not in gpu.instances:
                key = (gpu.node.gpu_type, instance.profile)
                self._free.setdefault(key, {})[(gpu.node.name, gpu.index, instance.start)] = (gpu, instance)

    def _unindex(self, gpu: _Gpu) -> None:
        for instance in gpu.layout or ():
            self._free.get((gpu.node.gpu_type, instance.profile), {}).pop(
                (gpu.node.name, gpu.index, instance.start), None
            )

    def _use(self, gpu: _Gpu, node: _Node) -> None:
        """Call before giving `gpu` an occupant: keeps the node's count of occupied GPUs right."""
        if gpu.empty:
            node.occupied += 1

    def node_of(self, gpu: _Gpu) -> _Node:
        return self._names[gpu.node.name]

    def candidates(self, shape: Shape) -> list[_Node]:
        """Nodes that may take a replica of `shape`, in-use first, then tighter (fewer empty GPUs), then name."""
        key = (shape.gpu_type, shape.kind)
        usable = self._eligible.get(key)
        if usable is None:
            usable = []
            for node in self.nodes:
                pool = self.pools.get(node.state.pool)
                if node.state.cordoned or pool is None or node.state.gpu_type != shape.gpu_type:
                    continue
                if shape.kind is ShapeKind.MIG and not pool.mig_allowed:
                    continue
                if shape.kind is ShapeKind.FRACTION and not pool.fractional_allowed:
                    continue
                usable.append(node)
            self._eligible[key] = usable
        return sorted(usable, key=lambda n: (n.occupied == 0, n.empty_count, n.state.name))

    def place_gang(self, service: str, shape: Shape) -> PlacedReplica | None:
        for node in self.candidates(shape):
            if node.empty_count < shape.gpus:
                continue
            # MIG-off GPUs first: taking a MIG GPU (even an empty one) means re-partitioning it.
            free = sorted((g for g in node.gpus if g.empty), key=lambda g: (g.layout is not None, g.index))
            if len(free) < shape.gpus:
                continue
            chosen = free[: shape.gpus]
            replica = PlacedReplica(service, shape, node.state.name, tuple(g.index for g in chosen))
            for gpu in chosen:
                if gpu.layout is not None:
                    self._unindex(gpu)
                    gpu.layout = None
                    gpu.reconfigured = True
                self._use(gpu, node)
                gpu.whole = replica
            return replica
        return None

    def place_mig(self, service: str, shape: Shape, waiting: list[Shape]) -> PlacedReplica | None:
        assert shape.mig_profile is not None
        nodes = self.candidates(shape)
        # 1. A free instance of the profile in a layout that exists: nothing to re-partition. The fullest GPU wins
        #    (ties: node and GPU order), which keeps empty GPUs empty for what needs them.
        free = self._free.get((shape.gpu_type, shape.mig_profile), {})
        if free:
            key = min(free, key=lambda k: (-len(free[k][0].instances), k))
            gpu, instance = free[key]
            return self._occupy(gpu, instance, service, shape)
        # 2. A GPU with no occupant gets a new layout: of the valid layouts that hold this instance, the one that
        #    covers the most of the waiting instances of this GPU type (by the GPU share they take).
        layout = self._best_layout(shape, waiting)
        if layout is None:
            return None
        for node in nodes:
            if node.empty_count == 0:
                continue
            empty = sorted((g for g in node.gpus if g.empty), key=lambda g: (g.layout is None, g.index))
            gpu = empty[0]
            check = self.catalog.check_mig_layout(shape.gpu_type, layout)
            self._unindex(gpu)
            gpu.layout = list(check.placements)
            gpu.reconfigured = True
            self._index_free(gpu)
            instance = next(p for p in gpu.layout if p.profile == shape.mig_profile)
            return self._occupy(gpu, instance, service, shape)
        return None

    def _best_layout(self, shape: Shape, waiting: list[Shape]) -> list[str] | None:
        assert shape.mig_profile is not None
        pending = Counter(s.mig_profile for s in waiting if s.gpu_type == shape.gpu_type and s.mig_profile)
        # Instances that already wait free in existing layouts will take their share of what is pending.
        for profile in list(pending):
            pending[profile] -= len(self._free.get((shape.gpu_type, profile), {}))
        pending[shape.mig_profile] += 1
        pending = +pending  # drop the profiles nothing is left waiting for
        share = {name: self.catalog.gpu_share(Shape(shape.gpu_type, ShapeKind.MIG, 1, name)) for name in pending}
        best: tuple[float, int, list[str]] | None = None
        for layout in valid_layouts(self.catalog, shape.gpu_type):
            counts = dict(layout)
            if counts.get(shape.mig_profile, 0) < 1:
                continue
            covered = sum(min(counts.get(p, 0), n) * share[p] for p, n in pending.items())
            idle = sum(counts.values()) - sum(min(counts.get(p, 0), n) for p, n in pending.items())
            # Most demand covered; then the fewest instances nobody waits for (they would sit empty).
            key = (covered, -idle)
            if best is None or key > best[:2]:
                best = (covered, -idle, [p for p, c in layout for _ in range(c)])
        return None if best is None else best[2]

    def _occupy(self, gpu: _Gpu, instance: MigPlacement, service: str, shape: Shape) -> PlacedReplica:
        replica = PlacedReplica(service, shape, gpu.node.name, (gpu.index,), instance.start)
        self._use(gpu, self.node_of(gpu))
        gpu.instances[instance.start] = replica
        self._free.get((gpu.node.gpu_type, instance.profile), {}).pop((gpu.node.name, gpu.index, instance.start), None)
        return replica

    def place_share(self, service: str, shape: Shape) -> PlacedReplica | None:
        best: tuple[float, _Gpu] | None = None
        for node in self.candidates(shape):
            for gpu in node.gpus:
                if gpu.layout is None and gpu.whole is None and gpu.shares:
                    used = gpu.shared_fraction
                    if used + shape.fraction <= 1.0 + 1e-9 and (best is None or -used < best[0]):
                        best = (-used, gpu)
        if best is None:
            for node in self.candidates(shape):
                free = [g for g in node.gpus if g.empty and g.layout is None]
                if free:
                    best = (0.0, free[0])
                    break
        if best is None:
            return None
        gpu = best[1]
        replica = PlacedReplica(service, shape, gpu.node.name, (gpu.index,), None, shape.fraction)
        self._use(gpu, self.node_of(gpu))
        gpu.shares.append(replica)
        return replica

    def place(self, service: str, shape: Shape, waiting: list[Shape]) -> PlacedReplica | None:
        if shape.kind is ShapeKind.GPU:
            return self.place_gang(service, shape)
        if shape.kind is ShapeKind.MIG:
            return self.place_mig(service, shape, waiting)
        return self.place_share(service, shape)


def _order(shape: Shape, catalog: Catalog) -> tuple[int, float]:
    """Gangs first (largest first), then MIG instances (largest first), then shares (largest first)."""
    if shape.kind is ShapeKind.GPU:
        return (0, -float(shape.gpus))
    if shape.kind is ShapeKind.MIG:
        return (1, -catalog.gpu_share(shape))
    return (2, -shape.fraction)


def place(
    requests: Iterable[ReplicaRequest],
    inventory: Iterable[NodeState],
    pools: Mapping[str, NodePool],
    catalog: Catalog,
) -> Placement:
    """Place every requested replica (see the module docstring for the rules)."""
    units: list[tuple[str, Shape]] = []
    for request in requests:
        shape = catalog.canonical_shape(request.shape)
        units.extend((request.service, shape) for _ in range(request.count))
    units.sort(key=lambda unit: (_order(unit[1], catalog), unit[0]))
    canonical = [dataclasses.replace(node, gpu_type=catalog.canonical(node.gpu_type)) for node in inventory]
    existing = [_Node(node, _initial_gpus(node, catalog)) for node in canonical]
    planner = _Planner(existing, pools, catalog)
    placed: list[PlacedReplica] = []
    left: list[tuple[str, Shape]] = []
    for i, (service, shape) in enumerate(units):
        replica = planner.place(service, shape, [s for _, s in units[i + 1 :]])
        if replica is None:
            left.append((service, shape))
        else:
            placed.append(replica)
    # Nodes the pools may still add, as the cluster autoscaler would: only as many as the leftovers need.
    added: dict[str, int] = {}
    still: list[tuple[str, Shape, str]] = []
    for i, (service, shape) in enumerate(left):
        replica = planner.place(service, shape, [s for _, s in left[i + 1 :]])
        if replica is None:
            replica, why = _place_on_new_node(planner, service, shape, [s for _, s in left[i + 1 :]], added, catalog)
            if replica is None:
                still.append((service, shape, why))
                continue
        placed.append(replica)
    unplaced: dict[tuple[str, Shape, str], int] = {}
    for service, shape, why in still:
        unplaced[(service, shape, why)] = unplaced.get((service, shape, why), 0) + 1
    plans = tuple(
        GpuPlan(
            gpu.node.name,
            gpu.index,
            None if gpu.layout is None else tuple(sorted(gpu.layout, key=lambda p: p.start)),
            (*([gpu.whole] if gpu.whole else []), *gpu.shares, *gpu.instances.values()),
            gpu.reconfigured,
        )
        for node in planner.nodes
        for gpu in node.gpus
        if not gpu.empty or gpu.layout is not None or gpu.reconfigured
    )
    return Placement(
        tuple(placed),
        plans,
        tuple(Unplaced(s, shape, n, why) for (s, shape, why), n in unplaced.items()),
        added,
    )


def _place_on_new_node(
    planner: _Planner,
    service: str,
    shape: Shape,
    waiting: list[Shape],
    added: dict[str, int],
    catalog: Catalog,
) -> tuple[PlacedReplica | None, str]:
    """Add one node to the cheapest-named pool that can take `shape` and still grow, and place there."""
    reasons = []
    for name, pool in sorted(planner.pools.items()):
        if catalog.canonical(pool.gpu_type) != shape.gpu_type:
            continue
        if shape.kind is ShapeKind.GPU and shape.gpus > pool.gpus_per_node:
            reasons.append(f"pool {name}: a gang of {shape.gpus} does not fit nodes of {pool.gpus_per_node} GPUs")
            continue
        if shape.kind is ShapeKind.MIG and not pool.mig_allowed:
            reasons.append(f"pool {name}: MIG not allowed")
            continue
        if shape.kind is ShapeKind.FRACTION and not pool.fractional_allowed:
            reasons.append(f"pool {name}: GPU sharing not allowed")
            continue
        count = sum(1 for n in planner.nodes if n.state.pool == name)
        if count >= pool.max_nodes:
            reasons.append(f"pool {name} is at max_nodes ({pool.max_nodes})")
            continue
        state = NodeState(f"{name}-new-{added.get(name, 0) + 1}", name, shape.gpu_type, pool.gpus_per_node)
        planner.add_node(_Node(state, _initial_gpus(state, catalog), added=True))
        added[name] = added.get(name, 0) + 1
        replica = planner.place(service, shape, waiting)
        if replica is not None:
            return replica, ""
    return None, "; ".join(reasons) or f"no pool has {shape.gpu_type} GPUs"
