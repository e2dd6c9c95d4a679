"""GPU types, their MIG profiles with legal placements, and default prices.

The data lives in `configs/catalog/gpus.yaml` with a source for every number. This module loads it and answers
the one question placement asks of MIG all the time: is this multiset of profiles a valid layout of this GPU type,
and at which start slots?

The MIG rule (NVIDIA MIG User Guide and NVML `nvmlGpuInstancePlacement_t`): a GPU instance of profile P occupies
memory slices [start, start + size) where `start` is one of P's legal starts; instances on one GPU may not
overlap; at most `max_instances` of each profile; compute slices add up to at most the GPU's.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.datafiles import config_dir, load_yaml
from autoscaler.errors import ConfigError
from autoscaler.shapes import Shape, ShapeKind


@dataclass(frozen=True, slots=True)
class MigProfile:
    """One GPU-instance profile, e.g. `3g.40gb`: 3 of 7 compute slices, 4 of 8 memory slices."""

    name: str
    compute_slices: int
    memory_slices: int
    memory_gb: float
    starts: tuple[int, ...]
    max_instances: int


@dataclass(frozen=True, slots=True)
class MigGeometry:
    memory_slices: int
    compute_slices: int
    profiles: Mapping[str, MigProfile]
    presets: Mapping[str, Mapping[str, int]]
    geometry_confidence: str


@dataclass(frozen=True, slots=True)
class Price:
    usd_per_gpu_h: float | None
    source: str
    date: str | None


@dataclass(frozen=True, slots=True)
class GpuType:
    """One GPU model with the figures the performance model and the cost model need."""

    name: str
    aliases: tuple[str, ...]
    memory_gb: float
    memory_bandwidth_tb_per_s: float
    bf16_dense_tflops: float
    fp8_dense_tflops: float | None
    interconnect: str
    allreduce_step_ms: float
    spec_source: str
    spec_confidence: str
    price: Price
    mig: MigGeometry | None = None

    def mig_profile(self, name: str) -> MigProfile:
        if self.mig is None:
            raise KeyError(f"{self.name} has no MIG")
        try:
            return self.mig.profiles[name]
        except KeyError:
            known = ", ".join(self.mig.profiles)
            raise KeyError(f"{self.name} has no MIG profile {name!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class MigPlacement:
    profile: str
    start: int
    memory_slices: int


@dataclass(frozen=True, slots=True)
class MigLayoutCheck:
    """The answer to "is this a valid layout?": the placements if it is, the reason if not."""

    gpu_type: str
    valid: bool
    placements: tuple[MigPlacement, ...] = ()
    reason: str = ""
    free_memory_slices: tuple[int, ...] = field(default=())


@dataclass(frozen=True, eq=False)  # identity hash: loaded once, used as a cache key
class Catalog:
    """All known GPU types, looked up by canonical name or alias."""

    gpus: Mapping[str, GpuType]
    source: str = ""

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for gpu in self.gpus.values():
            for name in (gpu.name, *gpu.aliases):
                index[name.lower()] = gpu.name
        object.__setattr__(self, "_index", index)
        # Canonical shapes are interned: equal shapes come back as one object, so that the many dictionaries keyed
        # by shape (placement, sizing) match them by identity instead of comparing fields.
        object.__setattr__(self, "_shapes", {})

    def canonical(self, name: str) -> str:
        """The catalog's name for a GPU type or alias; KeyError listing the known names otherwise."""
        index: dict[str, str] = self._index  # type: ignore[attr-defined]
        try:
            return index[name.lower()]
        except KeyError:
            raise KeyError(f"unknown GPU type {name!r} (known: {', '.join(self.gpus)})") from None

    def gpu(self, name: str) -> GpuType:
        return self.gpus[self.canonical(name)]

    def canonical_shape(self, shape: Shape) -> Shape:
        """The shape with its GPU type's canonical name; KeyError if the GPU or MIG profile is unknown."""
        shapes: dict[Shape, Shape] = self._shapes  # type: ignore[attr-defined]
        known = shapes.get(shape)
        if known is None:
            canonical = self._canonical_shape(shape)
            known = shapes.setdefault(canonical, canonical)
            shapes[shape] = known
        return known

    def _canonical_shape(self, shape: Shape) -> Shape:
        gpu = self.gpu(shape.gpu_type)
        if shape.kind is ShapeKind.MIG:
            assert shape.mig_profile is not None  # parse_shape guarantees it for MIG shapes
            gpu.mig_profile(shape.mig_profile)
        return shape.with_gpu_type(gpu.name)

    def gpu_share(self, shape: Shape) -> float:
        """How much of a GPU (in whole GPUs) one replica of `shape` takes away from others.

        A MIG instance blocks the larger of its compute and memory share: 3g.40gb takes 4 of 8 memory slices,
        so half a GPU, although it has only 3 of 7 compute slices.
        """
        if shape.kind is not ShapeKind.MIG:
            return shape.total_gpus
        gpu = self.gpu(shape.gpu_type)
        assert gpu.mig is not None and shape.mig_profile is not None
        profile = gpu.mig_profile(shape.mig_profile)
        return max(profile.compute_slices / gpu.mig.compute_slices, profile.memory_slices / gpu.mig.memory_slices)

    def check_mig_layout(self, gpu_name: str, profiles: Iterable[str]) -> MigLayoutCheck:
        """Say whether `profiles` (a multiset of names) can coexist on one GPU, and at which start slots.

        Worked example (H100-80GB): ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"] is valid as
        1g@0, 1g@1, 2g@2, 3g@4; ["7g.80gb", "1g.10gb"] is not: 9 memory slices on a GPU of 8.
        """
        gpu = self.gpu(gpu_name)
        wanted = list(profiles)
        if gpu.mig is None:
            return MigLayoutCheck(gpu.name, False, reason=f"{gpu.name} does not support MIG")
        geometry = gpu.mig
        try:
            resolved = [gpu.mig_profile(name) for name in wanted]
        except KeyError as exc:
            return MigLayoutCheck(gpu.name, False, reason=str(exc.args[0]))
        if not resolved:
            return MigLayoutCheck(gpu.name, True, free_memory_slices=tuple(range(geometry.memory_slices)))
        counts = Counter(p.name for p in resolved)
        for name, count in counts.items():
            limit = geometry.profiles[name].max_instances
            if count > limit:
                return MigLayoutCheck(gpu.name, False, reason=f"{count} x {name}: at most {limit} per {gpu.name}")
        memory = sum(p.memory_slices for p in resolved)
        if memory > geometry.memory_slices:
            return MigLayoutCheck(
                gpu.name,
                False,
                reason=f"needs {memory} memory slices; one {gpu.name} has {geometry.memory_slices}",
            )
        compute = sum(p.compute_slices for p in resolved)
        if compute > geometry.compute_slices:
            return MigLayoutCheck(
                gpu.name,
                False,
                reason=f"needs {compute} compute slices; one {gpu.name} has {geometry.compute_slices}",
            )
        placements = _place(resolved, geometry.memory_slices)
        if placements is None:
            return MigLayoutCheck(
                gpu.name,
                False,
                reason="no assignment of legal start slots keeps the memory slices from overlapping",
            )
        used = {slot for p in placements for slot in range(p.start, p.start + p.memory_slices)}
        free = tuple(s for s in range(geometry.memory_slices) if s not in used)
        return MigLayoutCheck(gpu.name, True, tuple(sorted(placements, key=lambda p: p.start)), "", free)


@functools.lru_cache(maxsize=64)
def valid_layouts(catalog: Catalog, gpu_type: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Every valid non-empty MIG layout of a GPU type as (profile, count) pairs, +me profiles left out.

    77 for the 7-compute / 8-memory-slice GPUs, 9 for the A30 (the reference's enumeration); () without MIG.
    """
    gpu = catalog.gpu(gpu_type)
    if gpu.mig is None:
        return ()
    profiles = [p for p in gpu.mig.profiles.values() if not p.name.endswith("+me")]
    layouts = []
    for counts in itertools.product(*(range(p.max_instances + 1) for p in profiles)):
        if not any(counts):
            continue
        multiset = [p.name for p, c in zip(profiles, counts, strict=True) for _ in range(c)]
        if catalog.check_mig_layout(gpu.name, multiset).valid:
            layouts.append(tuple((p.name, c) for p, c in zip(profiles, counts, strict=True) if c))
    return tuple(layouts)


def _place(profiles: list[MigProfile], slots: int) -> list[MigPlacement] | None:
    """Backtracking over legal starts, largest instances first (8 slots: at most a few hundred nodes).

    Among the legal starts of an instance the highest is tried first: a 3g at 4 leaves 0..3 to the small
    profiles that cannot reach slot 7, the rule NVIDIA's -lgipp tables imply.
    """
    order = sorted(profiles, key=lambda p: (-p.memory_slices, len(p.starts), p.name))
    occupied = [False] * slots
    chosen: list[MigPlacement] = []

    def search(index: int) -> bool:
        if index == len(order):
            return True
        profile = order[index]
        for start in sorted(profile.starts, reverse=True):
            end = start + profile.memory_slices
            if end > slots or any(occupied[start:end]):
                continue
            for s in range(start, end):
                occupied[s] = True
            chosen.append(MigPlacement(profile.name, start, profile.memory_slices))
            if search(index + 1):
                return True
            chosen.pop()
            for s in range(start, end):
                occupied[s] = False
        return False

    return chosen if search(0) else None


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where}: missing field {key!r}")
    return mapping[key]


def parse_catalog(data: Any, source: str) -> Catalog:
    """Build a Catalog from the parsed YAML; errors name the GPU and the field."""
    if not isinstance(data, Mapping) or not isinstance(data.get("gpus"), Mapping):
        raise ConfigError(f"{source}: expected a mapping with a 'gpus' mapping")
    gpus: dict[str, GpuType] = {}
    for name, raw in data["gpus"].items():
        where = f"{source}: gpus.{name}"
        try:
            mig = None
            if raw.get("mig") is not None:
                raw_mig = raw["mig"]
                profiles = {
                    p["name"]: MigProfile(
                        p["name"],
                        int(p["compute_slices"]),
                        int(p["memory_slices"]),
                        float(p["memory_gb"]),
                        tuple(int(s) for s in p["starts"]),
                        int(p["max_instances"]),
                    )
                    for p in raw_mig["profiles"]
                }
                presets = {k: dict(v) for k, v in raw_mig.get("presets", {}).items()}
                mig = MigGeometry(
                    int(raw_mig["memory_slices"]),
                    int(raw_mig["compute_slices"]),
                    profiles,
                    presets,
                    str(raw_mig.get("geometry_confidence", "")),
                )
            price_raw = _require(raw, "price", where)
            price_value = price_raw.get("usd_per_gpu_h")
            gpus[name] = GpuType(
                name=name,
                aliases=tuple(raw.get("aliases", ())),
                memory_gb=float(_require(raw, "memory_gb", where)),
                memory_bandwidth_tb_per_s=float(_require(raw, "memory_bandwidth_tb_per_s", where)),
                bf16_dense_tflops=float(_require(raw, "bf16_dense_tflops", where)),
                fp8_dense_tflops=None if raw.get("fp8_dense_tflops") is None else float(raw["fp8_dense_tflops"]),
                interconnect=str(_require(raw, "interconnect", where)),
                allreduce_step_ms=float(_require(raw, "allreduce_step_ms", where)),
                spec_source=str(raw.get("spec_source", "")),
                spec_confidence=str(raw.get("spec_confidence", "")),
                price=Price(
                    None if price_value is None else float(price_value),
                    str(price_raw.get("source", "")),
                    None if price_raw.get("date") is None else str(price_raw["date"]),
                ),
                mig=mig,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{where}: malformed entry: {exc}") from exc
    return Catalog(gpus, source)


@functools.cache
def _load_catalog_cached(path: Path) -> Catalog:
    return parse_catalog(load_yaml(path), str(path))


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog from `path`, or the bundled `configs/catalog/gpus.yaml` (loaded once per process)."""
    return _load_catalog_cached((path or config_dir() / "catalog" / "gpus.yaml").resolve())
