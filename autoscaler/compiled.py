"""A scenario compiled against the GPU catalog and the performance profiles, once per configuration.

For every service it lists the candidate shapes with the pool each would run on, the price of one replica and
the replica's performance profile (or why the shape cannot serve the model). Sizing then only looks numbers up,
which keeps `decide` fast for thousands of services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.catalog import Catalog
from autoscaler.config import NodePool, Scenario, Service, WorkloadRef
from autoscaler.perf import ProfileBook, ReplicaProfile, ShapeRejected
from autoscaler.shapes import Shape, ShapeKind, parse_shape

_FREE_CHOICE_GANGS = (1, 2, 4, 8)
_FREE_CHOICE_FRACTIONS = (0.5, 0.25)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One shape a service may use, where it would run and what one replica costs and does."""

    shape: Shape
    pool: str
    price_usd_per_h: float
    gpu_share: float
    profile: ReplicaProfile | None
    rejected: str = ""
    startup_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ServicePlan:
    service: Service
    candidates: tuple[Candidate, ...]
    horizon_s: float
    by_shape: Mapping[Shape, Candidate] = field(default_factory=dict)
    workloads: Mapping[Shape, WorkloadRef] = field(default_factory=dict)  # shape_scale_targets, shapes canonical

    def candidate(self, shape: Shape) -> Candidate | None:
        return self.by_shape.get(shape)

    def workload(self, shape: Shape) -> WorkloadRef | None:
        """The workload that runs this service's replicas of `shape` (None: the scenario binds none)."""
        return self.workloads.get(shape, self.service.scale_target)


@dataclass(frozen=True, eq=False)
class CompiledScenario:
    """The scenario plus everything derived from it that does not change from tick to tick."""

    scenario: Scenario
    catalog: Catalog
    book: ProfileBook
    plans: Mapping[str, ServicePlan]
    pools: Mapping[str, NodePool]
    pool_price_usd_per_gpu_h: Mapping[str, float]

    def __repr__(self) -> str:
        # The whole scenario with every profile runs to tens of kilobytes; tests and logs need its name.
        return f"CompiledScenario({self.scenario.name!r}, {len(self.plans)} services)"

    def price_of(self, shape: Shape, pool: str) -> float:
        return self.pool_price_usd_per_gpu_h[pool] * self.catalog.gpu_share(shape)

    def pool_for(self, shape: Shape) -> str | None:
        """The cheapest pool that can host `shape` (GPU type, MIG or sharing allowed, gang fits a node)."""
        best: tuple[float, str] | None = None
        for pool in self.pools.values():
            if self.catalog.canonical(pool.gpu_type) != shape.gpu_type or pool.hosting_problem(shape):
                continue
            key = (self.pool_price_usd_per_gpu_h[pool.name], pool.name)
            if best is None or key < best:
                best = key
        return None if best is None else best[1]


def compile_scenario(scenario: Scenario, catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    """Compile a scenario that passed `check_scenario`."""
    pools = {pool.name: pool for pool in scenario.fleet.pools}
    prices: dict[str, float] = {}
    for pool in scenario.fleet.pools:
        default = catalog.gpu(pool.gpu_type).price.usd_per_gpu_h
        price = pool.gpu_price_usd_per_h if pool.gpu_price_usd_per_h is not None else default
        if price is None:
            raise ValueError(f"pool {pool.name}: no price (run check_scenario first)")
        prices[pool.name] = price
    compiled = CompiledScenario(scenario, catalog, book, {}, pools, prices)
    plans = {service.name: _plan(service, compiled) for service in scenario.services}
    return CompiledScenario(scenario, catalog, book, plans, pools, prices)


def _candidate_shapes(service: Service, compiled: CompiledScenario) -> list[Shape]:
    if service.allowed_shapes:
        return [compiled.catalog.canonical_shape(shape) for shape in service.shapes()]
    shapes: list[Shape] = []
    for pool in compiled.pools.values():
        gpu = compiled.catalog.gpu(pool.gpu_type)
        shapes.extend(Shape(gpu.name, ShapeKind.GPU, n) for n in _FREE_CHOICE_GANGS if n <= pool.gpus_per_node)
        if pool.mig_allowed and gpu.mig is not None:
            shapes.extend(
                Shape(gpu.name, ShapeKind.MIG, 1, name) for name in gpu.mig.profiles if not name.endswith("+me")
            )
        if pool.fractional_allowed:
            shapes.extend(Shape(gpu.name, ShapeKind.FRACTION, 1, None, f) for f in _FREE_CHOICE_FRACTIONS)
    return list(dict.fromkeys(shapes))


def _plan(service: Service, compiled: CompiledScenario) -> ServicePlan:
    candidates = []
    for shape in _candidate_shapes(service, compiled):
        pool_name = compiled.pool_for(shape)
        if pool_name is None:
            continue
        pool = compiled.pools[pool_name]
        price = compiled.price_of(shape, pool_name)
        share = compiled.catalog.gpu_share(shape)
        try:
            profile = compiled.book.profile(service.model, shape, service.precision, service.max_context_tokens)
        except ShapeRejected as exc:
            candidates.append(Candidate(shape, pool_name, price, share, None, f"cannot hold the model: {exc}"))
            continue
        startup = profile.startup_s.value + pool.node_provisioning_s + service.extra_startup_s
        candidates.append(Candidate(shape, pool_name, price, share, profile, "", startup))
    usable = [c.startup_s for c in candidates if c.profile is not None]
    horizon = compiled.scenario.policy.tick_s + (max(usable) if usable else 0.0)
    # Keys as written ("H100/3g.40gb", an alias) resolve to the catalog's names, which decisions carry.
    tp = service.tensor_parallel_size or 1
    workloads = {
        compiled.catalog.canonical_shape(parse_shape(text, tp)): ref
        for text, ref in service.shape_scale_targets.items()
    }
    return ServicePlan(service, tuple(candidates), horizon, {c.shape: c for c in candidates}, workloads)
