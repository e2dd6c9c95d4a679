"""Fragmentation and saturation of a placement: the GPU efficiency the placement stage is judged by.

Definitions (per GPU, summed over the placement):
- stranded MIG capacity: on a partitioned GPU, the memory slices (and compute slices) of free space that no
  demanded MIG profile of that GPU type can use: neither an unoccupied instance of a demanded profile, nor free
  slices where a demanded profile could be added to the layout. It is counted in slices and in GB
  (slices x GPU memory / memory slices).
- stranded share: on a time-shared GPU, the unused fraction when it is smaller than the smallest demanded share of
  that GPU type (no demanded replica can use it).
- busy GPUs: GPUs holding at least one replica; their allocated share is the whole GPU for a gang member, the
  fraction for shares, and the larger of the compute and memory share of the occupied instances for MIG.
- saturated GPUs: busy GPUs whose allocated share is above `utilization_target` (default 0.9), i.e. no room
  left for the next replica: the signal that the pool needs capacity rather than packing.
Free whole GPUs (no layout, no occupant) are capacity, not fragmentation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autoscaler.catalog import Catalog
from autoscaler.placement.model import GpuPlan, NodeState, Placement
from autoscaler.shapes import Shape, ShapeKind


@dataclass(frozen=True, slots=True)
class Fragmentation:
    busy_gpus: int
    allocated_gpu_share: float
    stranded_memory_slices: int
    stranded_compute_slices: int
    stranded_memory_gb: float
    stranded_share: float
    saturated_gpus: int
    stranded_gpus: float = 0.0  # GPU-equivalents stranded: per GPU, its stranded memory slices' share + stranded share
    fleet_gpus: int = 0  # GPUs of the nodes measured (the inventory and the nodes the placement adds)

    @property
    def stranded_ratio(self) -> float:
        """Stranded GPU-equivalents over the fleet's GPUs (0 for an empty fleet)."""
        return self.stranded_gpus / self.fleet_gpus if self.fleet_gpus else 0.0

    @property
    def saturated_ratio(self) -> float:
        """Saturated GPUs over busy GPUs (0 when none is busy)."""
        return self.saturated_gpus / self.busy_gpus if self.busy_gpus else 0.0

    @property
    def utilization(self) -> float:
        """Allocated share over busy GPUs (1.0 = every busy GPU fully used)."""
        return self.allocated_gpu_share / self.busy_gpus if self.busy_gpus else 0.0


def measure(
    placement: Placement,
    inventory: Iterable[NodeState],
    demanded: Iterable[Shape],
    catalog: Catalog,
    utilization_target: float = 0.9,
) -> Fragmentation:
    """Fragmentation and saturation of `placement` for the shapes the fleet demands (see the module docstring)."""
    nodes = list(inventory)
    gpu_type = {n.name: catalog.canonical(n.gpu_type) for n in nodes}
    shapes = [catalog.canonical_shape(s) for s in demanded]
    mig_profiles: dict[str, set[str]] = {}
    smallest_share: dict[str, float] = {}
    for shape in shapes:
        if shape.kind is ShapeKind.MIG and shape.mig_profile is not None:
            mig_profiles.setdefault(shape.gpu_type, set()).add(shape.mig_profile)
        elif shape.kind is ShapeKind.FRACTION:
            smallest_share[shape.gpu_type] = min(smallest_share.get(shape.gpu_type, 1.0), shape.fraction)
    busy = saturated = stranded_memory = stranded_compute = 0
    allocated = stranded_gb = stranded_share = stranded_gpus = 0.0
    for plan in placement.gpus:
        kind = gpu_type.get(plan.node) or _type_of(plan)
        if kind is None:
            continue
        share = _allocated(plan, kind, catalog)
        if plan.occupants:
            busy += 1
            allocated += share
            if share > utilization_target:
                saturated += 1
        if plan.layout is not None:
            memory, compute = _stranded_mig(plan, kind, mig_profiles.get(kind, set()), catalog)
            gpu = catalog.gpu(kind)
            assert gpu.mig is not None
            stranded_memory += memory
            stranded_compute += compute
            stranded_gb += memory * gpu.memory_gb / gpu.mig.memory_slices
            stranded_gpus += memory / gpu.mig.memory_slices
        elif plan.occupants and all(r.shape.kind is ShapeKind.FRACTION for r in plan.occupants):
            left = 1.0 - share
            if 1e-9 < left < smallest_share.get(kind, 1.0) - 1e-9:
                stranded_share += left
                stranded_gpus += left
    fleet = sum(n.gpus for n in nodes)
    return Fragmentation(
        busy, allocated, stranded_memory, stranded_compute, stranded_gb, stranded_share, saturated, stranded_gpus, fleet
    )


def _type_of(plan: GpuPlan) -> str | None:
    return plan.occupants[0].shape.gpu_type if plan.occupants else None


def _allocated(plan: GpuPlan, gpu_type: str, catalog: Catalog) -> float:
    if not plan.occupants:
        return 0.0
    if plan.layout is None:
        if any(r.shape.kind is ShapeKind.GPU for r in plan.occupants):
            return 1.0
        return min(1.0, sum(r.fraction for r in plan.occupants))
    return min(1.0, sum(catalog.gpu_share(r.shape) for r in plan.occupants))


def _stranded_mig(plan: GpuPlan, gpu_type: str, demanded: set[str], catalog: Catalog) -> tuple[int, int]:
    """(memory slices, compute slices) of the free space on a partitioned GPU that no demanded profile can use."""
    assert plan.layout is not None
    gpu = catalog.gpu(gpu_type)
    assert gpu.mig is not None
    occupied_starts = {r.mig_start for r in plan.occupants}
    free_instances = [p for p in plan.layout if p.start not in occupied_starts]
    used_slices = {s for p in plan.layout for s in range(p.start, p.start + p.memory_slices)}
    unlaid = [s for s in range(gpu.mig.memory_slices) if s not in used_slices]
    memory = compute = 0
    for instance in free_instances:
        if instance.profile not in demanded:
            profile = gpu.mig_profile(instance.profile)
            memory += profile.memory_slices
            compute += profile.compute_slices
    if unlaid:
        current = [p.profile for p in plan.layout]
        usable = any(catalog.check_mig_layout(gpu_type, [*current, name]).valid for name in demanded)
        if not usable:
            memory += len(unlaid)
            laid_compute = sum(gpu.mig_profile(p.profile).compute_slices for p in plan.layout)
            compute += max(0, gpu.mig.compute_slices - laid_compute)
    return memory, compute
