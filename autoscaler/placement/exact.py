"""An exact placement model with OR-Tools CP-SAT, for small fleets and for checking the heuristic.

It minimizes the cost of the nodes in use (node price = GPUs x price per GPU-hour of its pool) subject to:
- every requested replica is placed;
- a gang of N whole GPUs lands on one node;
- each GPU is whole (one replica or gang member), time-shared (shares adding up to at most 1), or partitioned
  with one of the valid MIG layouts of its type (every multiset the catalog's layout rule accepts), whose
  instances hold the MIG replicas;
- cordoned nodes take nothing; MIG and sharing only where the pool allows them.
GPUs within a node are interchangeable, so the model counts GPUs per node and mode rather than naming them (no
symmetric duplicates for the solver to wade through). Shares are fractions 1/2^k, so per-node totals pack exactly.
It starts from empty nodes (no current placement): it measures packing quality, not churn. Multi-node groups are
out of its scope (a ValueError says so); the heuristic's property tests cover them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ortools.sat.python import cp_model

from autoscaler.catalog import Catalog, valid_layouts
from autoscaler.config import NodePool
from autoscaler.placement.model import NodeState, ReplicaRequest
from autoscaler.shapes import ShapeKind

_SHARE_UNITS = 64  # shares are counted in 1/64 of a GPU


@dataclass(frozen=True, slots=True)
class ExactResult:
    status: str
    cost_usd_per_h: float
    nodes_used: tuple[str, ...]


def solve_exact(
    requests: Iterable[ReplicaRequest],
    inventory: Iterable[NodeState],
    pools: Mapping[str, NodePool],
    prices: Mapping[str, float],
    catalog: Catalog,
    time_limit_s: float = 10.0,
) -> ExactResult:
    """The cheapest set of nodes that hosts every request; status 'infeasible' if none does."""
    nodes = [n for n in inventory if not n.cordoned]
    demand: Counter[tuple[str, int, str | None, float]] = Counter()
    for request in requests:
        shape = catalog.canonical_shape(request.shape)
        if shape.nodes > 1:
            raise ValueError(f"{shape}: the exact model covers single-node shapes only")
        demand[
            (shape.gpu_type, shape.gpus, shape.mig_profile, shape.fraction if shape.kind is ShapeKind.FRACTION else 0.0)
        ] += request.count
    model = cp_model.CpModel()
    used = {n.name: model.new_bool_var(f"used_{n.name}") for n in nodes}
    gang_at: dict[tuple[int, str], cp_model.IntVar] = {}
    mig_at: dict[tuple[str, str], cp_model.IntVar] = {}
    share_at: dict[tuple[float, str], cp_model.IntVar] = {}
    for node in nodes:
        pool = pools[node.pool]
        gpu_type = catalog.canonical(node.gpu_type)
        whole = model.new_int_var(0, node.gpus, f"whole_{node.name}")
        shared = model.new_int_var(0, node.gpus, f"shared_{node.name}")
        partitioned = model.new_int_var(0, node.gpus, f"mig_{node.name}")
        model.add(whole + shared + partitioned <= node.gpus * used[node.name])
        gang_gpus = []
        share_units = []
        instances: dict[str, list[cp_model.LinearExpr]] = {}
        for (t, gpus, profile, fraction), count in demand.items():
            if t != gpu_type:
                continue
            if profile is None and fraction == 0.0 and gpus <= node.gpus:
                var = model.new_int_var(0, count, f"gang{gpus}_{node.name}")
                gang_at[(gpus, node.name)] = var
                gang_gpus.append(gpus * var)
            elif profile is not None and pool.mig_allowed:
                mig_at[(profile, node.name)] = model.new_int_var(0, count, f"mig_{profile}_{node.name}")
            elif fraction > 0 and pool.fractional_allowed:
                var = model.new_int_var(0, count, f"share{fraction}_{node.name}")
                share_at[(fraction, node.name)] = var
                share_units.append(round(fraction * _SHARE_UNITS) * var)
        model.add(sum(gang_gpus) <= whole)
        model.add(sum(share_units) <= _SHARE_UNITS * shared)
        if pool.mig_allowed and catalog.gpu(gpu_type).mig is not None:
            layout_vars = []
            for i, layout in enumerate(valid_layouts(catalog, gpu_type)):
                var = model.new_int_var(0, node.gpus, f"layout{i}_{node.name}")
                layout_vars.append(var)
                for profile, count in layout:
                    instances.setdefault(profile, []).append(count * var)
            model.add(sum(layout_vars) == partitioned)
            for (profile, name), var in mig_at.items():
                if name == node.name:
                    model.add(var <= sum(instances.get(profile, [])))
        else:
            model.add(partitioned == 0)
    for (t, gpus, profile, fraction), count in demand.items():
        if profile is not None:
            model.add(sum(v for (p, n), v in mig_at.items() if p == profile and _type(nodes, n, catalog) == t) == count)
        elif fraction > 0:
            model.add(
                sum(v for (f, n), v in share_at.items() if f == fraction and _type(nodes, n, catalog) == t) == count
            )
        else:
            model.add(sum(v for (g, n), v in gang_at.items() if g == gpus and _type(nodes, n, catalog) == t) == count)
    cost = {n.name: n.gpus * prices[n.pool] for n in nodes}
    # Cents, so that CP-SAT's integer objective keeps the prices' precision.
    model.minimize(sum(round(100 * cost[name]) * var for name, var in used.items()))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ExactResult("infeasible" if status == cp_model.INFEASIBLE else "unknown", float("inf"), ())
    chosen = tuple(sorted(name for name, var in used.items() if solver.value(var)))
    return ExactResult("optimal" if status == cp_model.OPTIMAL else "feasible", sum(cost[n] for n in chosen), chosen)


def _type(nodes: list[NodeState], name: str, catalog: Catalog) -> str:
    return next(catalog.canonical(n.gpu_type) for n in nodes if n.name == name)
