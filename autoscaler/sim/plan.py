"""Capacity planning: the cheapest fixed fleet that serves the traces at a stated SLO attainment.

Per service and per shape it may run (optionally only some GPU types), the fewest replicas of that shape whose
replay of the service's trace, on a fleet that stays as it is, reaches the attainment (a binary search: each
probe is a replay on the simulator, every replica ready from the start). The cheapest shape wins per service.
Services do not share replicas, so they are planned independently (and can be evaluated in parallel: with `--ray`
the CLI runs the searches as Ray tasks through `evaluate_mapped`). The winners are then placed on nodes
(`placement.place`: whole nodes per pool, MIG layouts per GPU), which gives the fleet to buy: nodes per pool, the
MIG layouts, and the hourly cost.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoscaler.compiled import CompiledScenario
from autoscaler.placement.heuristic import place
from autoscaler.placement.model import Placement, ReplicaRequest
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FixedTargets, FleetSim, ServiceRequests
from autoscaler.sim.summary import summarize


@dataclass(frozen=True, slots=True)
class PlanOption:
    """A shape for a service, the fewest replicas that reach the attainment (None: even max_replicas do not)."""

    service: str
    shape: Shape
    replicas: int | None
    attainment: float
    cost_usd_per_h: float
    replays: int


@dataclass(frozen=True, slots=True)
class FleetPlan:
    chosen: Mapping[str, PlanOption]
    options: tuple[PlanOption, ...]
    placement: Placement
    nodes: Mapping[str, int]
    cost_usd_per_h: float
    node_cost_usd_per_h: float

    def layouts(self) -> Counter[tuple[str, ...]]:
        """How many GPUs get each MIG layout."""
        return Counter(tuple(p.profile for p in g.layout) for g in self.placement.gpus if g.layout is not None)


def _attainment(config: CompiledScenario, requests: ServiceRequests, shape: Shape, replicas: int) -> float:
    one = {requests.service: requests}
    result = FleetSim(config, one, instant_start=True).run(FixedTargets({requests.service: {shape: replicas}}, "plan"))
    return summarize(result, config).slo_attainment


def search_replicas(config: CompiledScenario, requests: ServiceRequests, shape: Shape, attainment: float) -> PlanOption:
    """The fewest replicas of `shape` that replay `requests` at `attainment` or better."""
    service = config.plans[requests.service].service
    candidate = config.plans[requests.service].by_shape[shape]
    replays = 0
    low, high = 0, max(1, service.min_replicas)
    cache: dict[int, float] = {}

    def reached(n: int) -> bool:
        nonlocal replays
        if n not in cache:
            replays += 1
            cache[n] = _attainment(config, requests, shape, n) if n > 0 else 0.0
        return cache[n] >= attainment

    while high <= service.max_replicas and not reached(high):
        low, high = high, high * 2
    if high > service.max_replicas:
        high = service.max_replicas
        if not reached(high):
            return PlanOption(requests.service, shape, None, cache[high], math.inf, replays)
    while low + 1 < high:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid
    count = max(high, service.min_replicas)
    reached(count)
    return PlanOption(requests.service, shape, count, cache[count], count * candidate.price_usd_per_h, replays)


def candidate_shapes(config: CompiledScenario, service: str, gpu_types: Sequence[str] = ()) -> list[Shape]:
    wanted = {config.catalog.canonical(t) for t in gpu_types}
    return [
        c.shape
        for c in config.plans[service].candidates
        if c.profile is not None and (not wanted or c.shape.gpu_type in wanted)
    ]


Evaluate = Callable[[Iterable[tuple[ServiceRequests, Shape]]], list[PlanOption]]


def evaluate_locally(
    config: CompiledScenario, attainment: float
) -> Callable[[Iterable[tuple[ServiceRequests, Shape]]], list[PlanOption]]:
    def run(jobs: Iterable[tuple[ServiceRequests, Shape]]) -> list[PlanOption]:
        return [search_replicas(config, requests, shape, attainment) for requests, shape in jobs]

    return run


Search = Callable[[CompiledScenario, ServiceRequests, Shape, float], PlanOption]
MapSearches = Callable[[Search, CompiledScenario, list[tuple[ServiceRequests, Shape, float]]], list[PlanOption]]


def evaluate_mapped(config: CompiledScenario, attainment: float, map_searches: MapSearches) -> Evaluate:
    """The planner's `Evaluate`, each search run by `map_searches(search_replicas, config, jobs)`: it must return
    `[search_replicas(config, *job) for job in jobs]`, wherever it runs them (`--ray`: as Ray tasks, with the
    scenario shared once). The planner does not know how the searches are distributed; the CLI wires that in."""

    def run(jobs: Iterable[tuple[ServiceRequests, Shape]]) -> list[PlanOption]:
        return map_searches(search_replicas, config, [(requests, shape, attainment) for requests, shape in jobs])

    return run


def plan_fleet(
    config: CompiledScenario,
    requests: Mapping[str, ServiceRequests],
    evaluate: Evaluate,
    gpu_types: Sequence[str] = (),
) -> FleetPlan:
    """Evaluate every (service, shape) with `evaluate` and assemble the cheapest fleet."""
    jobs: list[tuple[ServiceRequests, Shape]] = []
    for name, reqs in requests.items():
        shapes = candidate_shapes(config, name, gpu_types)
        if not shapes:
            raise ValueError(f"service {name}: no allowed shape on the GPU types {', '.join(gpu_types) or 'given'}")
        jobs.extend((reqs, shape) for shape in shapes)
    options = evaluate(jobs)
    chosen: dict[str, PlanOption] = {}
    for option in options:
        best = chosen.get(option.service)
        if option.replicas is not None and (best is None or option.cost_usd_per_h < best.cost_usd_per_h):
            chosen[option.service] = option
    missing = sorted(set(requests) - set(chosen))
    if missing:
        raise ValueError(f"no shape reaches the attainment within max_replicas for: {', '.join(missing)}")
    demand = [ReplicaRequest(o.service, o.shape, o.replicas or 0) for o in chosen.values()]
    unbounded = {name: pool.model_copy(update={"max_nodes": 1_000_000}) for name, pool in config.pools.items()}
    placement = place(demand, [], unbounded, config.catalog, prices=config.pool_price_usd_per_gpu_h)
    nodes = dict(placement.nodes_to_add)
    node_cost = sum(
        n * config.pools[pool].gpus_per_node * config.pool_price_usd_per_gpu_h[pool] for pool, n in nodes.items()
    )
    cost = sum(o.cost_usd_per_h for o in chosen.values())
    return FleetPlan(chosen, tuple(options), placement, nodes, cost, node_cost)
