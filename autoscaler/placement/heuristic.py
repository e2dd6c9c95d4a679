"""A fast placement heuristic: keep what runs, then gangs, MIG instances and GPU shares, each best-fit.

The objective, in order, is the cost of the nodes in use, then churn against the current placement, then
fragmentation. The rules that follow from it:
0. Current replicas stay where they are, up to the count now requested. When a service needs fewer, the replicas
   on the least-loaded nodes stop first (so that nodes empty out); replicas on cordoned or vanished nodes are not
   kept, and their successors count as moves.
1. Whole-GPU replicas, largest first (multi-node groups, then gangs): in-use nodes before idle ones, MIG-off GPUs
   before empty partitioned ones (re-partitioning is churn), the tightest fit first; a gang never spans nodes and a
   multi-node group takes its k nodes from one pool.
2. MIG instances, largest first: a free instance of the profile on the fullest partitioned GPU; else an empty GPU of
   an in-use node gets a new layout (churn, but no new node); else a free instance on an idle node; else a new
   layout there. A new layout is the valid one (from the catalog's enumeration) that holds this instance and covers
   the most of the instances still waiting on that GPU type, weighted by the GPU share they take.
3. GPU shares (time-slicing), largest first: the fullest shared GPU with room, else an empty GPU (MIG-off first).
4. What does not fit on the existing nodes goes on nodes the cheapest pool may still add (up to max_nodes); the
   count of those is the hint for the cluster autoscaler, and the rest is unplaced with the reason.
Only GPUs with no occupant are re-partitioned (DESIGN.md safety rule 4). Cordoned nodes take nothing.

Speed: nodes are kept in buckets by (in use, empty GPUs) per pool and free MIG instances by (GPU type, profile,
GPU occupancy), so each replica costs a few dictionary lookups rather than a scan of the fleet.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.catalog import Catalog, MigPlacement, valid_layouts
from autoscaler.config import NodePool
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
from autoscaler.shapes import Shape, ShapeKind

_EPS = 1e-9


@dataclass(eq=False)
class _Gpu:
    node: _Node
    index: int
    layout: list[MigPlacement] | None  # None: MIG off
    initial: tuple[str, ...] | None  # the layout before placement, profiles by start slot
    instances: dict[int, PlacedReplica] = field(default_factory=dict)  # MIG start slot -> occupant
    whole: PlacedReplica | None = None
    shares: list[PlacedReplica] = field(default_factory=list)
    shared_fraction: float = 0.0
    free_key: tuple[str, int, bool] | None = None  # where its free instances are indexed

    @property
    def empty(self) -> bool:
        return self.whole is None and not self.shares and not self.instances


@dataclass(eq=False)
class _Node:
    state: NodeState
    gpus: list[_Gpu] = field(default_factory=list)
    added: bool = False
    occupied: int = 0  # GPUs with an occupant
    plain_empty: int = 0  # GPUs with no occupant and MIG off
    keys: tuple[tuple[bool, int], tuple[bool, int]] | None = None  # its bucket keys (any, plain)

    @property
    def in_use(self) -> bool:
        return self.occupied > 0

    @property
    def empty_count(self) -> int:
        return len(self.gpus) - self.occupied


def _profiles(layout: Iterable[MigPlacement] | None) -> tuple[str, ...] | None:
    return None if layout is None else tuple(p.profile for p in sorted(layout, key=lambda p: p.start))


def _new_node(state: NodeState, catalog: Catalog, added: bool = False) -> _Node:
    node = _Node(state, added=added)
    for index in range(state.gpus):
        profiles = state.layout(index)
        layout = None
        if profiles is not None:
            check = catalog.check_mig_layout(state.gpu_type, profiles)
            if not check.valid:
                raise ValueError(f"node {state.name} GPU {index}: its MIG layout {profiles} is invalid: {check.reason}")
            layout = list(check.placements)
        node.gpus.append(_Gpu(node, index, layout, _profiles(layout)))
    return node


class _Buckets:
    """The eligible nodes of one pool grouped by (in use, count of empty GPUs): in-use and tightest come first."""

    def __init__(self) -> None:
        self.groups: dict[tuple[bool, int], dict[str, _Node]] = {}
        self.most = 0

    def put(self, node: _Node, key: tuple[bool, int]) -> None:
        self.groups.setdefault(key, {})[node.state.name] = node
        self.most = max(self.most, key[1])

    def drop(self, node: _Node, key: tuple[bool, int]) -> None:
        self.groups[key].pop(node.state.name, None)

    def nodes(self, in_use: bool, need: int) -> Iterator[_Node]:
        for count in range(need, self.most + 1):
            group = self.groups.get((in_use, count))
            if group:
                yield from group.values()


class _Planner:
    """Working state of one placement (see the module docstring for the rules and the indexes)."""

    def __init__(
        self, pools: Mapping[str, NodePool], prices: Mapping[str, float], catalog: Catalog, pending: Counter[Shape]
    ) -> None:
        self.pools = pools
        self.catalog = catalog
        self.nodes: dict[str, _Node] = {}
        # Pools by GPU type, cheapest first: the order in which idle nodes are taken and new nodes added.
        self.pool_order = sorted(pools, key=lambda name: (prices.get(name, float("inf")), name))
        self.any_empty: dict[str, _Buckets] = {name: _Buckets() for name in pools}
        self.plain_empty: dict[str, _Buckets] = {name: _Buckets() for name in pools}
        self.free: dict[tuple[str, str, int, bool], dict[tuple[str, int, int], tuple[_Gpu, MigPlacement]]] = {}
        self.partly_shared: dict[str, dict[tuple[str, int], _Gpu]] = {}
        self.pending = pending  # MIG instances (and other replicas) not yet placed, by shape
        self._pools_for: dict[Shape, list[str]] = {}
        self.pool_nodes: Counter[str] = Counter()  # nodes per pool
        self.next_new: Counter[str] = Counter()  # the last k of `<pool>-new-<k>` tried

    # --- bookkeeping -------------------------------------------------------------------------------------------

    def eligible(self, node: _Node) -> bool:
        return not node.state.cordoned and node.state.pool in self.pools

    def add_node(self, node: _Node) -> None:
        self.nodes[node.state.name] = node
        self.pool_nodes[node.state.pool] += 1
        self.refresh(node, reindex=True)

    def remove_node(self, node: _Node) -> None:
        """Take back an added node that stayed empty."""
        assert node.occupied == 0
        if node.keys is not None:
            self.any_empty[node.state.pool].drop(node, node.keys[0])
            self.plain_empty[node.state.pool].drop(node, node.keys[1])
        for gpu in node.gpus:
            self._unindex(gpu)
        del self.nodes[node.state.name]
        self.pool_nodes[node.state.pool] -= 1

    def refresh(self, node: _Node, reindex: bool = False) -> None:
        """Recount a node after its GPUs changed and move it to the right buckets; its free MIG instances are
        indexed anew when the node goes in or out of use (or `reindex`)."""
        was_in_use = node.in_use
        occupied = plain = 0
        for gpu in node.gpus:  # one pass: this runs for every replica placed
            if gpu.whole is not None or gpu.shares or gpu.instances:
                occupied += 1
            elif gpu.layout is None:
                plain += 1
        node.occupied, node.plain_empty = occupied, plain
        if not self.eligible(node):
            return
        pool = node.state.pool
        keys = ((node.in_use, node.empty_count), (node.in_use, node.plain_empty))
        if keys != node.keys:
            if node.keys is not None:
                self.any_empty[pool].drop(node, node.keys[0])
                self.plain_empty[pool].drop(node, node.keys[1])
            self.any_empty[pool].put(node, keys[0])
            self.plain_empty[pool].put(node, keys[1])
            node.keys = keys
        if reindex or was_in_use != node.in_use:
            for gpu in node.gpus:
                self._index(gpu)

    def _index(self, gpu: _Gpu) -> None:
        """(Re)index the free instances of `gpu` under (GPU type, profile, its occupancy, node in use)."""
        if gpu.layout is None:  # MIG off: nothing to index (a layout is unindexed before it is removed)
            return
        self._unindex(gpu)
        pool = self.pools.get(gpu.node.state.pool)
        if gpu.layout is None or pool is None or not pool.mig_allowed or gpu.node.state.cordoned:
            return
        node_in_use = gpu.node.in_use
        for instance in gpu.layout:
            if instance.start not in gpu.instances:
                key = (gpu.node.state.gpu_type, instance.profile, len(gpu.instances), node_in_use)
                self.free.setdefault(key, {})[(gpu.node.state.name, gpu.index, instance.start)] = (gpu, instance)
        gpu.free_key = (gpu.node.state.gpu_type, len(gpu.instances), node_in_use)

    def _unindex(self, gpu: _Gpu) -> None:
        if gpu.free_key is None or gpu.layout is None:
            gpu.free_key = None
            return
        gpu_type, occupancy, in_use = gpu.free_key
        for instance in gpu.layout:
            self.free.get((gpu_type, instance.profile, occupancy, in_use), {}).pop(
                (gpu.node.state.name, gpu.index, instance.start), None
            )
        gpu.free_key = None

    def _set_layout(self, gpu: _Gpu, profiles: Sequence[str] | None) -> None:
        self._unindex(gpu)
        if profiles is None:
            gpu.layout = None
        else:
            gpu.layout = list(self.catalog.check_mig_layout(gpu.node.state.gpu_type, profiles).placements)

    def _track_share(self, gpu: _Gpu) -> None:
        shared = self.partly_shared.setdefault(gpu.node.state.gpu_type, {})
        key = (gpu.node.state.name, gpu.index)
        pool = self.pools.get(gpu.node.state.pool)
        if gpu.shares and gpu.shared_fraction < 1.0 - _EPS and pool is not None and pool.fractional_allowed:
            if not gpu.node.state.cordoned:
                shared[key] = gpu
        else:
            shared.pop(key, None)

    # --- occupying GPUs ---------------------------------------------------------------------------------------

    def occupy_whole(self, replicas: Sequence[PlacedReplica], members: Sequence[tuple[_Node, Sequence[_Gpu]]]) -> None:
        """Give whole GPUs to `replicas`: the GPUs of each member node are theirs, in turn, `gpus` at a time."""
        size = replicas[0].shape.gpus
        for node, gpus in members:
            for i, gpu in enumerate(gpus):
                if gpu.layout is not None:
                    self._set_layout(gpu, None)
                gpu.whole = replicas[i // size]
            self.refresh(node)

    def occupy_instance(self, gpu: _Gpu, instance: MigPlacement, replica: PlacedReplica) -> None:
        self._unindex(gpu)
        gpu.instances[instance.start] = replica
        self.refresh(gpu.node)
        self._index(gpu)

    def occupy_share(self, gpu: _Gpu, replica: PlacedReplica) -> None:
        if gpu.layout is not None:
            self._set_layout(gpu, None)
        gpu.shares.append(replica)
        gpu.shared_fraction += replica.fraction
        self.refresh(gpu.node)
        self._track_share(gpu)

    # --- choosing where -----------------------------------------------------------------------------------------

    def pools_for(self, shape: Shape) -> list[str]:
        """The pools that may run `shape`, cheapest first (the same for every replica of a shape: worked out once)."""
        names = self._pools_for.get(shape)
        if names is None:
            names = [
                name
                for name in self.pool_order
                if self.catalog.canonical(self.pools[name].gpu_type) == shape.gpu_type
                and self.pools[name].hosting_problem(shape) is None
            ]
            self._pools_for[shape] = names
        return names

    def _nodes(self, pools: Sequence[str], need: int, in_use: bool, plain: bool) -> Iterator[_Node]:
        buckets = self.plain_empty if plain else self.any_empty
        for name in pools:
            yield from buckets[name].nodes(in_use, need)

    @staticmethod
    def _take(node: _Node, count: int) -> list[_Gpu]:
        # MIG-off GPUs first: taking a partitioned GPU (even an empty one) means re-partitioning it.
        free = sorted((g for g in node.gpus if g.empty), key=lambda g: (g.layout is not None, g.index))
        return free[:count]

    def place_whole(self, service: str, shape: Shape, count: int = 1) -> list[PlacedReplica]:
        """Up to `count` replicas of a whole-GPU shape, on one node (several, for a single-node shape, when that
        node has room: it stays the tightest in-use node, so placing them one by one would choose it again)."""
        pools = self.pools_for(shape)
        # Cost first (in-use nodes), then churn (MIG-off GPUs), then fragmentation (tightest node).
        order = ((True, True), (True, False), (False, True), (False, False))
        if shape.nodes == 1:
            for in_use, plain in order:
                for node in self._nodes(pools, shape.gpus, in_use, plain):
                    room = (node.plain_empty if plain else node.empty_count) // shape.gpus
                    many = max(1, min(count, room))
                    gpus = self._take(node, many * shape.gpus)
                    replicas = [
                        PlacedReplica(
                            service,
                            shape,
                            node.state.name,
                            tuple(g.index for g in gpus[i * shape.gpus : (i + 1) * shape.gpus]),
                        )
                        for i in range(many)
                    ]
                    self.occupy_whole(replicas, [(node, gpus)])
                    return replicas
            return []
        for pool in pools:
            chosen: list[_Node] = []
            for in_use, plain in order:
                for node in self._nodes([pool], shape.gpus, in_use, plain):
                    if node not in chosen:
                        chosen.append(node)
                    if len(chosen) == shape.nodes:
                        break
                if len(chosen) == shape.nodes:
                    break
            if len(chosen) == shape.nodes:
                members = [(node, self._take(node, shape.gpus)) for node in chosen]
                leader, *workers = [(node.state.name, tuple(g.index for g in gpus)) for node, gpus in members]
                replica = PlacedReplica(service, shape, leader[0], leader[1], workers=tuple(workers))
                self.occupy_whole([replica], members)
                return [replica]
        return []

    def _free_instance(self, shape: Shape, node_in_use: bool, busy_gpu: bool) -> tuple[_Gpu, MigPlacement] | None:
        assert shape.mig_profile is not None
        if busy_gpu:
            for occupancy in range(7, 0, -1):  # the fullest GPU first (at most 7 instances on a GPU)
                free = self.free.get((shape.gpu_type, shape.mig_profile, occupancy, True))
                if free:
                    return next(iter(free.values()))
            return None
        free = self.free.get((shape.gpu_type, shape.mig_profile, 0, node_in_use))
        return next(iter(free.values())) if free else None

    def place_mig(self, service: str, shape: Shape) -> PlacedReplica | None:
        found = self._free_instance(shape, True, True) or self._free_instance(shape, True, False)
        if found is None:
            found = self._new_layout(shape, in_use=True)
        if found is None:
            found = self._free_instance(shape, False, False) or self._new_layout(shape, in_use=False)
        if found is None:
            return None
        gpu, instance = found
        replica = PlacedReplica(service, shape, gpu.node.state.name, (gpu.index,), instance.start)
        self.occupy_instance(gpu, instance, replica)
        return replica

    def _new_layout(self, shape: Shape, in_use: bool) -> tuple[_Gpu, MigPlacement] | None:
        assert shape.mig_profile is not None
        pools = self.pools_for(shape)
        node = next(self._nodes(pools, 1, in_use, plain=False), None)
        if node is None:
            return None
        layout = self._best_layout(shape)
        # An empty partitioned GPU first: the MIG-off ones are what whole-GPU replicas need.
        gpu = min((g for g in node.gpus if g.empty), key=lambda g: (g.layout is None, g.index))
        self._set_layout(gpu, layout)
        assert gpu.layout is not None
        instance = next(p for p in gpu.layout if p.profile == shape.mig_profile)
        return gpu, instance

    def _best_layout(self, shape: Shape) -> list[str]:
        assert shape.mig_profile is not None
        gpu_type = shape.gpu_type
        free: Counter[str] = Counter()  # free instances in existing layouts, by profile (one pass over the index)
        for (free_type, profile, _, _), instances in self.free.items():
            if free_type == gpu_type:
                free[profile] += len(instances)
        pending: Counter[str] = Counter()
        for waiting, count in self.pending.items():
            if waiting.kind is ShapeKind.MIG and waiting.gpu_type == gpu_type and waiting.mig_profile and count > 0:
                # Instances that already wait free in existing layouts will take their share of what is pending.
                pending[waiting.mig_profile] += max(0, count - free[waiting.mig_profile])
        pending[shape.mig_profile] = max(pending[shape.mig_profile], 1)  # `pending` counts this one too
        share = {name: self.catalog.gpu_share(Shape(gpu_type, ShapeKind.MIG, 1, name)) for name in pending}
        best: tuple[float, int, list[str]] | None = None
        for layout in valid_layouts(self.catalog, gpu_type):
            counts = dict(layout)
            if counts.get(shape.mig_profile, 0) < 1:
                continue
            covered = sum(min(counts.get(p, 0), n) * share[p] for p, n in pending.items())
            idle = sum(counts.values()) - sum(min(counts.get(p, 0), n) for p, n in pending.items())
            # Most demand covered; then the fewest instances nobody waits for (they would sit empty).
            key = (covered, -idle)
            if best is None or key > best[:2]:
                best = (covered, -idle, [p for p, c in layout for _ in range(c)])
        assert best is not None, f"no valid {gpu_type} layout holds {shape.mig_profile}"
        return best[2]

    def place_share(self, service: str, shape: Shape) -> PlacedReplica | None:
        pools = set(self.pools_for(shape))
        best: _Gpu | None = None
        for gpu in self.partly_shared.get(shape.gpu_type, {}).values():
            if gpu.node.state.pool not in pools or gpu.shared_fraction + shape.fraction > 1.0 + _EPS:
                continue
            if best is None or gpu.shared_fraction > best.shared_fraction:
                best = gpu
        if best is None:
            ordered = [name for name in self.pool_order if name in pools]
            for in_use, plain in ((True, True), (True, False), (False, True), (False, False)):
                node = next(self._nodes(ordered, 1, in_use, plain), None)
                if node is not None:
                    best = self._take(node, 1)[0]
                    break
        if best is None:
            return None
        replica = PlacedReplica(service, shape, best.node.state.name, (best.index,), None, shape.fraction)
        self.occupy_share(best, replica)
        return replica

    def place(self, service: str, shape: Shape, count: int = 1) -> list[PlacedReplica]:
        """Place at least one and at most `count` replicas (none: no room); `pending` counts what is left."""
        if shape.kind is ShapeKind.GPU:
            placed = self.place_whole(service, shape, count)
        else:
            one = self.place_mig(service, shape) if shape.kind is ShapeKind.MIG else self.place_share(service, shape)
            placed = [] if one is None else [one]
        self.pending[shape] -= len(placed)
        return placed

    # --- current replicas -------------------------------------------------------------------------------------

    def keep(self, replica: PlacedReplica) -> None:
        """Occupy what `replica` occupies now; ValueError if the current placement contradicts the inventory."""
        shape = replica.shape
        members: list[tuple[_Node, list[_Gpu]]] = []
        for name, indices in replica.members:
            node = self.nodes[name]
            try:
                gpus = [node.gpus[i] for i in indices]
            except IndexError:
                raise ValueError(f"current replica {replica}: node {name} has {len(node.gpus)} GPUs") from None
            members.append((node, gpus))
        if shape.kind is ShapeKind.GPU:
            for _, gpus in members:
                for gpu in gpus:
                    if not gpu.empty or gpu.layout is not None:
                        raise ValueError(f"current replica {replica}: GPU {gpu.index} is not free and MIG-off")
            self.occupy_whole([replica], members)
            return
        ((node, (gpu,)),) = members
        if shape.kind is ShapeKind.MIG:
            instance = next(
                (p for p in gpu.layout or () if p.start == replica.mig_start and p.profile == shape.mig_profile), None
            )
            if instance is None or replica.mig_start in gpu.instances:
                raise ValueError(f"current replica {replica}: no free {shape.mig_profile} instance at that slot")
            self.occupy_instance(gpu, instance, replica)
            return
        if gpu.layout is not None or gpu.whole is not None or gpu.shared_fraction + replica.fraction > 1.0 + _EPS:
            raise ValueError(f"current replica {replica}: the GPU has no room for its share")
        self.occupy_share(gpu, replica)


def _order(shape: Shape, catalog: Catalog) -> tuple[int, float]:
    """Whole GPUs first (largest first), then MIG instances (largest first), then shares (largest first)."""
    if shape.kind is ShapeKind.GPU:
        return (0, -shape.total_gpus)
    if shape.kind is ShapeKind.MIG:
        return (1, -catalog.gpu_share(shape))
    return (2, -shape.fraction)


def pool_prices(pools: Mapping[str, NodePool], catalog: Catalog) -> dict[str, float]:
    """Price of one GPU-hour per pool: the pool's own, else the catalog's dated default (missing: unknown)."""
    prices = {}
    for name, pool in pools.items():
        price = pool.gpu_price_usd_per_h or catalog.gpu(pool.gpu_type).price.usd_per_gpu_h
        if price is not None:
            prices[name] = price
    return prices


def place(
    requests: Iterable[ReplicaRequest],
    inventory: Iterable[NodeState],
    pools: Mapping[str, NodePool],
    catalog: Catalog,
    current: Iterable[PlacedReplica] = (),
    prices: Mapping[str, float] | None = None,
) -> Placement:
    """Place every requested replica, keeping `current` replicas where they are as far as the requests allow (see
    the module docstring for the rules). `prices` (USD per GPU-hour per pool) default to `pool_prices`."""
    wanted: Counter[tuple[str, Shape]] = Counter()
    for request in requests:
        wanted[(request.service, catalog.canonical_shape(request.shape))] += request.count
    canonical = [dataclasses.replace(node, gpu_type=catalog.canonical(node.gpu_type)) for node in inventory]
    planner = _Planner(pools, prices if prices is not None else pool_prices(pools, catalog), catalog, Counter())
    for state in canonical:
        planner.add_node(_new_node(state, catalog))

    kept, displaced, stopped = _sort_current(list(current), wanted, planner, catalog)
    for running in kept:
        planner.keep(running)
        wanted[(running.service, running.shape)] -= 1

    order = {shape: _order(shape, catalog) for _, shape in wanted}
    groups = sorted(
        ((service, shape, count) for (service, shape), count in wanted.items() if count > 0),
        key=lambda group: (order[group[1]], group[0]),
    )
    for _, shape, count in groups:
        planner.pending[shape] += count
    started: list[PlacedReplica] = []
    left: list[tuple[str, Shape, int]] = []
    full: set[Shape] = set()  # on the existing nodes, room only shrinks: a shape that did not fit never will
    for service, shape, count in groups:
        while count > 0:
            placed = [] if shape in full else planner.place(service, shape, count)
            if not placed:
                full.add(shape)
                left.append((service, shape, count))
                break
            started.extend(placed)
            count -= len(placed)
    # Nodes the pools may still add, as the cluster autoscaler would: only as many as the leftovers need.
    added: dict[str, int] = {}
    unplaced: Counter[tuple[str, Shape, str]] = Counter()
    for service, shape, count in left:
        while count > 0:
            placed = planner.place(service, shape, count)
            why = ""
            if not placed:
                placed, why = _place_on_new_nodes(planner, service, shape, count, added, catalog)
            if not placed:
                unplaced[(service, shape, why)] += count
                break
            started.extend(placed)
            count -= len(placed)

    # A displaced replica without a successor keeps running where it is (it is reported unplaced): stopping it
    # would lose capacity that nothing replaces.
    moves = _pair_moves(displaced, started)
    gpus = [gpu for node in planner.nodes.values() for gpu in node.gpus]
    repartitions = tuple(
        Repartition(g.node.state.name, g.index, g.initial, after)
        for g in gpus
        if (after := _profiles(g.layout)) != g.initial
        and (after is None or g.initial is None or sorted(after) != sorted(g.initial))
    )
    changed = {(r.node, r.index) for r in repartitions}
    plans = tuple(
        GpuPlan(
            g.node.state.name,
            g.index,
            None if g.layout is None else tuple(sorted(g.layout, key=lambda p: p.start)),
            (*([g.whole] if g.whole else []), *g.shares, *g.instances.values()),
            (g.node.state.name, g.index) in changed,
        )
        for g in gpus
        if not g.empty or g.layout is not None or (g.node.state.name, g.index) in changed
    )
    return Placement(
        tuple(kept) + tuple(started),
        plans,
        tuple(Unplaced(s, shape, n, why) for (s, shape, why), n in unplaced.items()),
        added,
        tuple(started),
        tuple(stopped),
        moves,
        repartitions,
        tuple(node.state for node in planner.nodes.values() if node.added),
    )


def _sort_current(
    current: list[PlacedReplica], wanted: Counter[tuple[str, Shape]], planner: _Planner, catalog: Catalog
) -> tuple[list[PlacedReplica], list[tuple[PlacedReplica, str]], list[PlacedReplica]]:
    """Split the current replicas into kept, displaced (still wanted, but their node is cordoned or gone: they
    move) and stopped (not wanted any more). Where a service needs fewer, replicas on loaded nodes are kept."""
    load: Counter[str] = Counter()
    for replica in current:
        for node, _ in replica.members:
            load[node] += 1
    groups: dict[tuple[str, Shape], list[PlacedReplica]] = {}
    for replica in current:
        replica = dataclasses.replace(replica, shape=catalog.canonical_shape(replica.shape))
        groups.setdefault((replica.service, replica.shape), []).append(replica)
    kept: list[PlacedReplica] = []
    displaced: list[tuple[PlacedReplica, str]] = []
    stopped: list[PlacedReplica] = []
    for key, replicas in groups.items():
        healthy: list[PlacedReplica] = []
        away: list[tuple[PlacedReplica, str]] = []
        for replica in replicas:
            why = _why_displaced(replica, planner)
            if why:
                away.append((replica, why))
            else:
                healthy.append(replica)
        healthy.sort(key=lambda r: (-min(load[n] for n, _ in r.members), r.node, r.gpus, r.mig_start or 0))
        room = wanted.get(key, 0)
        kept.extend(healthy[:room])
        stopped.extend(healthy[room:])
        room -= min(room, len(healthy))
        displaced.extend(away[:room])
        stopped.extend(r for r, _ in away[room:])
    return kept, displaced, stopped


def _why_displaced(replica: PlacedReplica, planner: _Planner) -> str:
    for name, _ in replica.members:
        node = planner.nodes.get(name)
        if node is None:
            return f"node {name} is gone"
        if node.state.cordoned:
            return f"node {name} is cordoned"
        if node.state.pool not in planner.pools:
            return f"node {name} is in no pool fleetscale manages"
    return ""


def _pair_moves(displaced: list[tuple[PlacedReplica, str]], started: list[PlacedReplica]) -> tuple[Move, ...]:
    successors: dict[tuple[str, Shape], list[PlacedReplica]] = {}
    for replica in started:
        successors.setdefault((replica.service, replica.shape), []).append(replica)
    moves = []
    for source, why in displaced:
        free = successors.get((source.service, source.shape))
        if free:
            moves.append(Move(source, free.pop(), why))
    return tuple(moves)


def _place_on_new_nodes(
    planner: _Planner, service: str, shape: Shape, count: int, added: dict[str, int], catalog: Catalog
) -> tuple[list[PlacedReplica], str]:
    """Add nodes to the cheapest pool that can take `shape` and still grow (as many as a multi-node group needs),
    and place there; nodes that did not help are taken back."""
    reasons = []
    for name in planner.pool_order:
        pool = planner.pools[name]
        if catalog.canonical(pool.gpu_type) != shape.gpu_type:
            continue
        problem = pool.hosting_problem(shape)
        if problem is not None:
            reasons.append(f"pool {name}: {problem}")
            continue
        have = planner.pool_nodes[name]
        new: list[_Node] = []
        while have + len(new) < pool.max_nodes and len(new) < shape.nodes:
            state = NodeState(_new_name(planner, name), name, shape.gpu_type, pool.gpus_per_node)
            node = _new_node(state, catalog, added=True)
            planner.add_node(node)
            new.append(node)
            placed = planner.place(service, shape, count)
            if placed:
                added[name] = added.get(name, 0) + len(new)
                return placed, ""
        for node in new:
            planner.remove_node(node)
        reasons.append(f"pool {name} is at max_nodes ({pool.max_nodes})")
    return [], "; ".join(reasons) or f"no pool has {shape.gpu_type} GPUs"


def _new_name(planner: _Planner, pool: str) -> str:
    """`<pool>-new-<k>` for the first k no node of the inventory has (the names are placeholders for the nodes the
    cluster autoscaler will create)."""
    while True:
        planner.next_new[pool] += 1
        name = f"{pool}-new-{planner.next_new[pool]}"
        if name not in planner.nodes:
            return name
