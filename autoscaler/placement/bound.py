"""A lower bound on the GPUs any placement needs, from an aggregate relaxation solved with HiGHS (through scipy).

The relaxation forgets which node each GPU is on and keeps only what every placement must satisfy. Per pool p
(G_p GPUs per node, at most max_nodes_p nodes) it has n_p nodes in use and splits their GPUs into:
- w_{p,g}: gangs of g whole GPUs (g <= G_p; a single GPU is g = 1; a multi-node group of k nodes x g GPUs counts as
  k gangs of g), with sum_g g * w_{p,g} GPUs; and since two gangs larger than half a node never share one,
  sum_{g > G_p/2} w_{p,g} <= n_p;
- s_p: time-shared GPUs (pools that allow sharing), whose sum over the pools of a GPU type covers the sum of the
  demanded shares;
- x_{p,L}: GPUs partitioned with valid layout L (pools that allow MIG; every layout of the catalog's enumeration),
  whose instances cover the demanded instances of each profile;
with sum_g g * w_{p,g} + s_p + sum_L x_{p,L} <= G_p * n_p. The objective is the GPUs of the nodes in use,
sum_p G_p * n_p. Every valid placement gives a feasible point, so the optimum is a lower bound.

`lp` is the bound with all variables continuous (the LP relaxation); `integer` makes them integral (nodes, gangs
and GPUs are whole), which is still a relaxation of placement but a much tighter bound on small fleets where one
node is several per cent of the fleet. HiGHS proves the integral bound within its time limit; if it stops early,
`integer` is its proven dual bound, so it stays a lower bound.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from autoscaler.catalog import Catalog, valid_layouts
from autoscaler.config import NodePool
from autoscaler.placement.model import ReplicaRequest
from autoscaler.shapes import ShapeKind


@dataclass(frozen=True, slots=True)
class GpuBound:
    lp: float
    integer: float
    proven_optimal: bool


class _Columns:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.cost: list[float] = []
        self.upper: list[float] = []

    def add(self, name: str, cost: float = 0.0, upper: float = math.inf) -> int:
        self.names.append(name)
        self.cost.append(cost)
        self.upper.append(upper)
        return len(self.names) - 1


def gpu_lower_bound(
    requests: Iterable[ReplicaRequest],
    pools: Mapping[str, NodePool],
    catalog: Catalog,
    time_limit_s: float = 20.0,
) -> GpuBound:
    """The LP and integral lower bounds on GPUs of nodes in use (see the module docstring); infinite if the
    requests cannot fit the pools at all."""
    gangs: Counter[tuple[str, int]] = Counter()
    shares: dict[str, float] = {}
    instances: Counter[tuple[str, str]] = Counter()
    for request in requests:
        shape = catalog.canonical_shape(request.shape)
        if shape.kind is ShapeKind.GPU:
            gangs[(shape.gpu_type, shape.gpus)] += request.count * shape.nodes
        elif shape.kind is ShapeKind.FRACTION:
            shares[shape.gpu_type] = shares.get(shape.gpu_type, 0.0) + request.count * shape.fraction
        else:
            assert shape.mig_profile is not None
            instances[(shape.gpu_type, shape.mig_profile)] += request.count
    columns = _Columns()
    rows: list[tuple[dict[int, float], float, float]] = []  # (coefficients, lower, upper)
    cover_gangs: dict[tuple[str, int], dict[int, float]] = {key: {} for key in gangs}
    cover_shares: dict[str, dict[int, float]] = {key: {} for key in shares}
    cover_instances: dict[tuple[str, str], dict[int, float]] = {key: {} for key in instances}
    for name, pool in sorted(pools.items()):
        gpu_type = catalog.canonical(pool.gpu_type)
        size = pool.gpus_per_node
        nodes = columns.add(f"nodes[{name}]", float(size), float(pool.max_nodes))
        capacity: dict[int, float] = {nodes: -float(size)}
        big: dict[int, float] = {nodes: -1.0}
        for t, g in gangs:
            if t == gpu_type and g <= size:
                column = columns.add(f"gangs{g}[{name}]")
                capacity[column] = float(g)
                cover_gangs[(t, g)][column] = 1.0
                if 2 * g > size:
                    big[column] = 1.0
        if pool.fractional_allowed and gpu_type in shares:
            column = columns.add(f"shared[{name}]")
            capacity[column] = 1.0
            cover_shares[gpu_type][column] = 1.0
        if pool.mig_allowed and any(t == gpu_type for t, _ in instances):
            for i, layout in enumerate(valid_layouts(catalog, gpu_type)):
                column = columns.add(f"layout{i}[{name}]")
                capacity[column] = 1.0
                for profile, count in layout:
                    if (gpu_type, profile) in cover_instances:
                        cover_instances[(gpu_type, profile)][column] = float(count)
        rows.append((capacity, -math.inf, 0.0))
        if len(big) > 1:
            rows.append((big, -math.inf, 0.0))
    for gang_key, coefficients in cover_gangs.items():
        rows.append((coefficients, float(gangs[gang_key]), math.inf))
    for share_key, coefficients in cover_shares.items():
        rows.append((coefficients, float(shares[share_key]), math.inf))
    for instance_key, coefficients in cover_instances.items():
        rows.append((coefficients, float(instances[instance_key]), math.inf))
    if any(not coefficients for coefficients, lower, _ in rows if lower > 0):
        return GpuBound(math.inf, math.inf, True)  # some demand has no pool that can hold it
    if not rows:
        return GpuBound(0.0, 0.0, True)
    matrix = np.zeros((len(rows), len(columns.names)))
    for r, (coefficients, _, _) in enumerate(rows):
        for column, value in coefficients.items():
            matrix[r, column] = value
    constraint = LinearConstraint(matrix, [lower for _, lower, _ in rows], [upper for _, _, upper in rows])
    bounds = Bounds(np.zeros(len(columns.names)), np.array(columns.upper))
    cost = np.array(columns.cost)
    relaxed = milp(cost, constraints=constraint, bounds=bounds, integrality=np.zeros(len(cost)))
    if relaxed.status == 2:  # infeasible: max_nodes cannot hold the demand
        return GpuBound(math.inf, math.inf, True)
    if relaxed.status != 0:
        raise RuntimeError(f"HiGHS could not solve the LP relaxation: {relaxed.message}")
    whole = milp(
        cost,
        constraints=constraint,
        bounds=bounds,
        integrality=np.ones(len(cost)),
        options={"time_limit": time_limit_s},
    )
    proven = whole.status == 0
    integer = float(whole.fun) if proven else float(getattr(whole, "mip_dual_bound", relaxed.fun) or relaxed.fun)
    return GpuBound(float(relaxed.fun), max(integer, float(relaxed.fun)), proven)
