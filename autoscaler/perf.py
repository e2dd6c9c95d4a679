"""The replica performance model: what one replica of a (model, shape) can do.

One model serves sizing and the simulator, so that the two cannot disagree (DESIGN.md section 5). A replica is a
continuous-batching engine (vLLM-like) described by a handful of numbers, each carried as a `Figure` that says
whether it was measured (with the source) or derived (with the formula):

    decode step   t(b, L) = a(b) + b * (c_seq + c_kv * L / 1000) + c_lin * max(0, b - b*)     [ms]
    prefill       p(I)    = overhead + max(w, I / prefill_tokens_per_s)                     [ms]

`b` is the number of sequences decoding, `L` their mean context in tokens, `a` the step time at batch 1 (for a
mixture of experts it rises with the batch from the active to the total weights, all experts being read from
b = 16 on), `w` the time to stream the weights once, `b* = w / c_lin` the batch above which a step is
compute-bound, and `I` the prompt length. The concurrency limit is `min(max_num_seqs, KV tokens / tokens per
request)`.

Derivation (PERFORMANCE_DATA.md section 6 of the project reference, numbers in `DerivationConstants`), for TP
GPUs of bandwidth BW and dense FLOPS F:

    w      = weights per GPU / (eta_bw * BW)
    a      = overhead + 2 * layers * allreduce_step (TP > 1 only) + w
    c_kv   = KV bytes per token / (TP * eta_attn * BW)        per sequence per 1k tokens of context
    c_lin  = 2 * active params / (TP * eta_c_decode * F)
    prefill_tokens_per_s = eta_c_prefill * F * TP / (2 * active params)
    KV tokens = (TP * (memory * util - reserve) - weights) / KV bytes per token

Worked example (Llama-3.1-8B, BF16, one H100-80GB): w = 16.06 GB / (0.75 * 3.35 TB/s) = 6.39 ms, a = 7.4 ms
(derived; the measured 8.0 ms inter-token latency at low load replaces it), c_kv = 131,072 B * 1000 /
(0.75 * 3.35 TB/s) = 0.052 ms, KV tokens = (72 - 2 - 16.06) GB / 131,072 B = 411,526.

A measured anchor for the same (model, GPU type, GPU count, precision) replaces the derived number. MIG and
fractional shapes are derived from the one-GPU profile by their share of bandwidth, compute and memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from autoscaler.catalog import Catalog, GpuType
from autoscaler.datafiles import config_dir, load_yaml
from autoscaler.errors import ConfigError
from autoscaler.pickling import picklable_by_fields
from autoscaler.shapes import Shape, ShapeKind


class Precision(StrEnum):
    BF16 = "bf16"
    FP8 = "fp8"

    @property
    def bytes_per_param(self) -> float:
        return 2.0 if self is Precision.BF16 else 1.0


Provenance = Literal["measured", "derived"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One number of a profile with where it comes from."""

    value: float
    kind: Provenance
    source: str

    def scaled(self, factor: float, why: str) -> Figure:
        """The figure times `factor`, now derived, its source saying why."""
        return Figure(self.value * factor, "derived", f"{why}; from {self.kind} {self.value:.4g}")


@dataclass(frozen=True, slots=True)
class DerivationConstants:
    """Calibration constants of the derivation, with the evidence for each value.

    eta_bw: fraction of memory bandwidth reached streaming weights; Vidur GEMMs 71-72 %, vLLM on A100-40GB 77 %.
    eta_bw_l4: vLLM on L4 reached 263 of 300 GB/s (88 %), so L4 gets its own value.
    eta_attn: fraction of bandwidth reached reading the KV cache; Vidur A100 decode attention 60-75 %.
    eta_c_decode: fraction of dense FLOPS in large GEMMs; Vidur 68 % (A100) and 67 % (H100) at 4,096 tokens.
    eta_c_prefill_hopper: measured TTFT on H100 reached about 70 % of the 0.65 estimate, so 0.45 for H100,
        H200 and B200 prefill (PERFORMANCE_DATA.md 6.3).
    overhead_ms: fixed per-step engine cost; vLLM 8B forward 6.5 ms vs TRT-LLM ITL 8 ms at low load.
    c_seq_ms: per-sequence engine work per step (sampling, bookkeeping); 0.02-0.05 ms, SGLang bs1 -> bs128.
    memory_util: vLLM's default gpu_memory_utilization.
    reserve_gb: activations, CUDA graphs and NCCL buffers per GPU; about 1.5 GB measured on a 24 GB card.
    max_num_seqs: vLLM's default cap on sequences per step.
    weight_load_gb_per_s: reading weights from local NVMe with a concurrent loader (about 2 GB/s; vLLM's
        default safetensors loader reached only 0.3 GB/s in 2024).
    warmup_s: first-request JIT and graph warm-up after the engine reports ready (1-25 s measured; 5 s).
    moe_full_batch: batch from which a mixture of experts reads (nearly) every expert each step.
    """

    eta_bw: float = 0.75
    eta_bw_l4: float = 0.88
    eta_attn: float = 0.75
    eta_c_decode: float = 0.65
    eta_c_prefill: float = 0.65
    eta_c_prefill_hopper: float = 0.45
    overhead_ms: float = 1.0
    c_seq_ms: float = 0.03
    memory_util: float = 0.90
    reserve_gb: float = 2.0
    max_num_seqs: int = 256
    weight_load_gb_per_s: float = 2.0
    warmup_s: float = 5.0
    moe_full_batch: int = 16


DEFAULT_CONSTANTS = DerivationConstants()
_HOPPER_OR_LATER = ("H100", "H200", "B200")
_REFERENCE = "PERFORMANCE_DATA.md section 6.1"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Measured numbers for one (GPU type, GPU count, precision) of a model."""

    gpu_type: str
    gpus: int
    precision: Precision
    decode_base_ms: Figure | None = None
    prefill_tokens_per_s: Figure | None = None


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """A model's architecture (from config.json) and its measured anchors."""

    name: str
    aliases: tuple[str, ...]
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim: int
    params_total_b: float
    params_active_b: float
    max_context_tokens: int
    source: str
    engine_init_s: Figure
    anchors: tuple[Anchor, ...] = ()

    @property
    def is_mixture_of_experts(self) -> bool:
        return self.params_active_b < self.params_total_b

    def kv_bytes_per_token(self) -> float:
        """K and V, every layer, every KV head, 2 bytes each (BF16 KV cache)."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * 2.0

    def weights_gb(self, precision: Precision) -> float:
        return self.params_total_b * precision.bytes_per_param

    def anchor(self, gpu_type: str, gpus: int, precision: Precision) -> Anchor | None:
        for anchor in self.anchors:
            if (anchor.gpu_type, anchor.gpus, anchor.precision) == (gpu_type, gpus, precision):
                return anchor
        return None


class ShapeRejected(ValueError):  # noqa: N818 - a verdict, not a failure of the program
    """A (model, shape) that cannot serve at all; the message says why."""


@dataclass(frozen=True, slots=True, eq=False)
class ReplicaProfile:
    """Performance of one replica of `model` on `shape` (see the module docstring for the formulas).

    Compared and hashed by identity: a ProfileBook derives each (model, shape, precision) once, and capacity
    caches key on the profile, so hashing its dozen figures on every lookup would be wasted work.
    """

    model: str
    shape: Shape
    precision: Precision
    weights_gb_per_gpu: Figure
    usable_memory_gb: Figure
    kv_capacity_tokens: Figure
    overhead_ms: Figure
    weight_read_ms: Figure
    decode_base_ms: Figure
    decode_base_all_experts_ms: Figure
    decode_ms_per_seq: Figure
    decode_ms_per_seq_per_1k_context: Figure
    decode_ms_per_token_compute: Figure
    prefill_tokens_per_s: Figure
    startup_s: Figure
    max_num_seqs: int
    moe_full_batch: int = 16

    def figures(self) -> dict[str, Figure]:
        """Every figure by name, for display and audit."""
        return {name: value for name in self.__dataclass_fields__ if isinstance(value := getattr(self, name), Figure)}

    @property
    def knee_batch(self) -> float:
        """b*: above this batch a decode step is bound by compute rather than by reading the weights."""
        return self.weight_read_ms.value / self.decode_ms_per_token_compute.value

    def decode_base_at(self, batch: float) -> float:
        """a(b) in ms: rises linearly from batch 1 to `moe_full_batch` for a mixture of experts."""
        return _moe_base(self.decode_base_ms.value, self.decode_base_all_experts_ms.value, self.moe_full_batch, batch)

    def decode_step_ms(self, batch: float, mean_context_tokens: float) -> float:
        """Time of one decode step with `batch` sequences of mean context `mean_context_tokens`, in ms.

        Example (8B on H100, anchored a = 8.0 ms): 64 sequences at 1,000 tokens of context take
        8.0 + 64 * (0.03 + 0.052) = 13.3 ms.
        """
        return _step_function(self)(batch, mean_context_tokens)

    def prefill_ms(self, prompt_tokens: float) -> float:
        """Time of the prefill iteration of one prompt, in ms: at least one pass over the weights."""
        compute_ms = 1000.0 * prompt_tokens / self.prefill_tokens_per_s.value
        return self.overhead_ms.value + max(self.weight_read_ms.value, compute_ms)

    def max_concurrency(self, tokens_per_request: float) -> int:
        """Sequences that fit at once: the engine's cap or the KV cache, whichever is smaller."""
        by_kv = int(self.kv_capacity_tokens.value // max(tokens_per_request, 1.0))
        return max(0, min(self.max_num_seqs, by_kv))


def _moe_base(low: float, high: float, full_batch: int, batch: float) -> float:
    if high <= low or batch <= 1:
        return low
    return low + (high - low) * min(1.0, (batch - 1) / max(1, full_batch - 1))


@functools.lru_cache(maxsize=4096)
def _step_function(profile: ReplicaProfile) -> Callable[[float, float], float]:
    """`ReplicaProfile.decode_step_ms` with the profile's numbers bound once (profiles hash by identity): the
    simulator calls it millions of times."""
    per_seq_ms = profile.decode_ms_per_seq.value
    per_1k_ms = profile.decode_ms_per_seq_per_1k_context.value
    compute_ms = profile.decode_ms_per_token_compute.value
    knee = profile.knee_batch
    low, high, full_batch = (
        profile.decode_base_ms.value,
        profile.decode_base_all_experts_ms.value,
        profile.moe_full_batch,
    )

    def step_ms(batch: float, mean_context_tokens: float) -> float:
        if batch <= 0:
            return 0.0
        per_seq = per_seq_ms + per_1k_ms * (mean_context_tokens / 1000.0)
        return _moe_base(low, high, full_batch, batch) + batch * per_seq + compute_ms * max(0.0, batch - knee)

    return step_ms


def _derived(value: float, formula: str) -> Figure:
    return Figure(value, "derived", f"{formula} ({_REFERENCE})")


def derive_whole_gpu_profile(
    facts: ModelFacts,
    gpu: GpuType,
    gpus: int,
    precision: Precision,
    constants: DerivationConstants = DEFAULT_CONSTANTS,
) -> ReplicaProfile:
    """The profile of a replica on `gpus` whole GPUs of type `gpu` (tensor parallel), anchors applied."""
    k = constants
    bandwidth = gpu.memory_bandwidth_tb_per_s * 1e12
    eta_bw = k.eta_bw_l4 if gpu.name == "L4" else k.eta_bw
    flops_tflops = gpu.bf16_dense_tflops
    if precision is Precision.FP8 and gpu.fp8_dense_tflops is not None:
        flops_tflops = gpu.fp8_dense_tflops
    flops = flops_tflops * 1e12
    eta_prefill = k.eta_c_prefill_hopper if gpu.name.startswith(_HOPPER_OR_LATER) else k.eta_c_prefill
    bpp = precision.bytes_per_param
    weights_gb = facts.weights_gb(precision)
    weights_per_gpu = weights_gb / gpus
    active_per_gpu = facts.params_active_b * bpp / gpus
    kv_bytes = facts.kv_bytes_per_token()

    allreduce_ms = 2 * facts.layers * gpu.allreduce_step_ms if gpus > 1 else 0.0
    overhead_ms = k.overhead_ms + allreduce_ms
    weight_read_ms = 1000.0 * weights_per_gpu * 1e9 / (eta_bw * bandwidth)
    active_read_ms = 1000.0 * active_per_gpu * 1e9 / (eta_bw * bandwidth)
    usable_gb = gpus * (gpu.memory_gb * k.memory_util - k.reserve_gb)
    kv_tokens = max(0.0, (usable_gb - weights_gb) * 1e9 / kv_bytes)
    label = f"{facts.name} {precision} on {gpus}x{gpu.name}"

    anchor = facts.anchor(gpu.name, gpus, precision)
    if facts.is_mixture_of_experts:
        base = _derived(overhead_ms + active_read_ms, f"overhead + all-reduce + active weights / (eta_bw*BW), {label}")
        base_all = _derived(overhead_ms + weight_read_ms, f"overhead + all-reduce + all weights / (eta_bw*BW), {label}")
    else:
        base = _derived(overhead_ms + weight_read_ms, f"overhead + all-reduce + weights / (eta_bw*BW), {label}")
        base_all = base
    prefill = _derived(
        eta_prefill * flops * gpus / (2 * facts.params_active_b * 1e9),
        f"eta_c={eta_prefill} * FLOPS * TP / (2 * active params), {label}",
    )
    if anchor is not None and anchor.decode_base_ms is not None:
        if facts.is_mixture_of_experts:
            base_all = base_all.scaled(anchor.decode_base_ms.value / base.value, "scaled by the measured batch-1 step")
        base = anchor.decode_base_ms
        if not facts.is_mixture_of_experts:
            base_all = base
    if anchor is not None and anchor.prefill_tokens_per_s is not None:
        prefill = anchor.prefill_tokens_per_s

    startup = _derived(
        facts.engine_init_s.value + weights_gb / k.weight_load_gb_per_s + k.warmup_s,
        f"engine init {facts.engine_init_s.value:g} s ({facts.engine_init_s.kind}) + {weights_gb:.1f} GB at "
        f"{k.weight_load_gb_per_s:g} GB/s + {k.warmup_s:g} s warm-up; image pull and node provisioning excluded",
    )
    return ReplicaProfile(
        model=facts.name,
        shape=Shape(gpu.name, ShapeKind.GPU, gpus),
        precision=precision,
        weights_gb_per_gpu=_derived(weights_per_gpu, "params * bytes per param / TP"),
        usable_memory_gb=_derived(usable_gb, f"TP * (memory * {k.memory_util} - {k.reserve_gb} GB reserve)"),
        kv_capacity_tokens=_derived(kv_tokens, "(usable memory - weights) / KV bytes per token"),
        overhead_ms=_derived(overhead_ms, f"{k.overhead_ms} ms per step + 2 * layers * all-reduce (TP > 1)"),
        weight_read_ms=_derived(weight_read_ms, f"weights per GPU / (eta_bw={eta_bw} * BW)"),
        decode_base_ms=base,
        decode_base_all_experts_ms=base_all,
        decode_ms_per_seq=_derived(k.c_seq_ms, "per-sequence engine work per step"),
        decode_ms_per_seq_per_1k_context=_derived(
            1000.0 * 1000.0 * kv_bytes / (gpus * k.eta_attn * bandwidth),
            f"KV bytes per token * 1000 / (TP * eta_attn={k.eta_attn} * BW)",
        ),
        decode_ms_per_token_compute=_derived(
            1000.0 * 2 * facts.params_active_b * 1e9 / (gpus * k.eta_c_decode * flops),
            f"2 * active params / (TP * eta_c={k.eta_c_decode} * FLOPS)",
        ),
        prefill_tokens_per_s=prefill,
        startup_s=startup,
        max_num_seqs=k.max_num_seqs,
        moe_full_batch=k.moe_full_batch,
    )


def derive_partial_gpu_profile(
    whole: ReplicaProfile,
    shape: Shape,
    bandwidth_share: float,
    compute_share: float,
    memory_gb: float,
    kv_bytes_per_token: float,
    why: str,
    constants: DerivationConstants = DEFAULT_CONSTANTS,
) -> ReplicaProfile:
    """A MIG instance or GPU share derived from the one-GPU profile: a smaller GPU.

    Weight and KV reads slow down by the bandwidth share, GEMMs by the compute share, the KV cache gets what is
    left of the shape's memory. Example: H100 3g.40gb has 4/8 of the bandwidth and 3/7 of the compute, so an 8B
    replica's weight read takes 6.39 / 0.5 = 12.8 ms per step.
    """
    overhead = whole.overhead_ms.value
    usable = memory_gb * constants.memory_util - constants.reserve_gb
    weights = whole.weights_gb_per_gpu.value
    kv_tokens = max(0.0, usable - weights) * 1e9 / kv_bytes_per_token
    bw_note = f"{why}: bandwidth share {bandwidth_share:.3g}"
    compute_note = f"{why}: compute share {compute_share:.3g}"

    def slower(figure: Figure, share: float, note: str) -> Figure:
        return figure.scaled(1.0 / share, note)

    base = Figure(
        overhead + (whole.decode_base_ms.value - overhead) / bandwidth_share,
        "derived",
        f"{bw_note}: overhead + (a - overhead) / share; from {whole.decode_base_ms.kind} "
        f"{whole.decode_base_ms.value:.4g} ms",
    )
    base_all = Figure(
        overhead + (whole.decode_base_all_experts_ms.value - overhead) / bandwidth_share,
        "derived",
        f"{bw_note}: overhead + (a_all - overhead) / share",
    )
    return replace(
        whole,
        shape=shape,
        usable_memory_gb=_derived(usable, f"{why}: {memory_gb:g} GB * {constants.memory_util} - reserve"),
        kv_capacity_tokens=_derived(kv_tokens, f"{why}: (usable memory - weights) / KV bytes per token"),
        weight_read_ms=slower(whole.weight_read_ms, bandwidth_share, bw_note),
        decode_base_ms=base,
        decode_base_all_experts_ms=base_all,
        decode_ms_per_seq_per_1k_context=slower(whole.decode_ms_per_seq_per_1k_context, bandwidth_share, bw_note),
        decode_ms_per_token_compute=slower(whole.decode_ms_per_token_compute, compute_share, compute_note),
        prefill_tokens_per_s=whole.prefill_tokens_per_s.scaled(compute_share, compute_note),
    )


@dataclass(frozen=True, eq=False)  # identity hash: one book per loaded configuration, used as a cache key
class ProfileBook:
    """All model facts known to fleetscale, and the derivation of a profile for any (model, shape)."""

    models: Mapping[str, ModelFacts]
    catalog: Catalog
    constants: DerivationConstants = DEFAULT_CONSTANTS

    def canonical_model(self, name: str) -> str:
        lowered = name.lower()
        for facts in self.models.values():
            if lowered == facts.name.lower() or lowered in (a.lower() for a in facts.aliases):
                return facts.name
        raise KeyError(f"no performance profile for model {name!r} (known: {', '.join(self.models)})")

    def facts(self, model: str) -> ModelFacts:
        return self.models[self.canonical_model(model)]

    def profile(self, model: str, shape: Shape, precision: Precision, min_kv_tokens: int = 0) -> ReplicaProfile:
        """The profile of `model` on `shape`; ShapeRejected says why the shape cannot serve the model."""
        if shape.nodes > 1:
            # Pipeline parallelism across nodes has its own step times (inter-node transfers, bubbles) that the
            # derivation does not model; a multi-node replica is placed, but not sized from a derived profile.
            raise ShapeRejected(f"{shape}: multi-node replicas have no derived performance profile")
        result = _profile_cached(self, self.canonical_model(model), self.catalog.canonical_shape(shape), precision)
        kv = result.kv_capacity_tokens.value
        if kv < max(min_kv_tokens, 1):
            need_gb = min_kv_tokens * self.facts(model).kv_bytes_per_token() / 1e9
            raise ShapeRejected(
                f"{shape}: weights {result.weights_gb_per_gpu.value * _gpus_of(result.shape):.1f} GB + KV cache for "
                f"{min_kv_tokens:,} tokens ({need_gb:.1f} GB) exceed the usable "
                f"{result.usable_memory_gb.value:.1f} GB"
            )
        return result


def _gpus_of(shape: Shape) -> int:
    return shape.gpus if shape.kind is ShapeKind.GPU else 1


@functools.lru_cache(maxsize=4096)
def _profile_cached(book: ProfileBook, model: str, shape: Shape, precision: Precision) -> ReplicaProfile:
    facts = book.models[model]
    gpu = book.catalog.gpu(shape.gpu_type)
    if shape.kind is ShapeKind.GPU:
        return derive_whole_gpu_profile(facts, gpu, shape.gpus, precision, book.constants)
    whole = derive_whole_gpu_profile(facts, gpu, 1, precision, book.constants)
    if shape.kind is ShapeKind.MIG:
        assert gpu.mig is not None and shape.mig_profile is not None
        mig = gpu.mig_profile(shape.mig_profile)
        return derive_partial_gpu_profile(
            whole,
            shape,
            mig.memory_slices / gpu.mig.memory_slices,
            mig.compute_slices / gpu.mig.compute_slices,
            mig.memory_gb,
            facts.kv_bytes_per_token(),
            f"MIG {mig.name}",
            book.constants,
        )
    return derive_partial_gpu_profile(
        whole,
        shape,
        shape.fraction,
        shape.fraction,
        gpu.memory_gb * shape.fraction,
        facts.kv_bytes_per_token(),
        f"{shape.fraction:g} GPU share (time-sliced, co-tenants assumed busy)",
        book.constants,
    )


def _figure(raw: Any, where: str) -> Figure:
    if not isinstance(raw, Mapping) or "value" not in raw or "source" not in raw:
        raise ConfigError(f"{where}: expected {{value: NUMBER, source: TEXT}}, got {raw!r}")
    value = float(raw["value"])
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}.value ({raw['value']!r}) must be a positive number")
    return Figure(value, "measured", str(raw["source"]))


def parse_model_facts(data: Any, source: str) -> ModelFacts:
    """Build ModelFacts from one profile file; errors name the file and the field."""
    try:
        arch = data["architecture"]
        anchors = []
        for i, raw in enumerate(data.get("anchors") or ()):
            where = f"{source}: anchors[{i}]"
            anchors.append(
                Anchor(
                    gpu_type=str(raw["gpu"]),
                    gpus=int(raw["gpus"]),
                    precision=Precision(raw["precision"]),
                    decode_base_ms=_figure(raw["decode_base_ms"], f"{where}.decode_base_ms")
                    if "decode_base_ms" in raw
                    else None,
                    prefill_tokens_per_s=_figure(raw["prefill_tokens_per_s"], f"{where}.prefill_tokens_per_s")
                    if "prefill_tokens_per_s" in raw
                    else None,
                )
            )
        return ModelFacts(
            name=str(data["model"]),
            aliases=tuple(str(a) for a in data.get("aliases", ())),
            layers=int(arch["layers"]),
            hidden_size=int(arch["hidden_size"]),
            kv_heads=int(arch["kv_heads"]),
            head_dim=int(arch["head_dim"]),
            params_total_b=float(arch["params_total_b"]),
            params_active_b=float(arch["params_active_b"]),
            max_context_tokens=int(arch["max_context_tokens"]),
            source=str(arch["source"]),
            engine_init_s=_figure(data["startup"]["engine_init_s"], f"{source}: startup.engine_init_s"),
            anchors=tuple(anchors),
        )
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: malformed profile: missing or invalid {exc}") from exc


def load_profile_book(catalog: Catalog, directory: Path | None = None) -> ProfileBook:
    """Every `*.yaml` profile in `directory` (default: the bundled `configs/profiles/`)."""
    directory = directory or config_dir() / "profiles"
    models: dict[str, ModelFacts] = {}
    for path in sorted(directory.glob("*.yaml")):
        facts = parse_model_facts(load_yaml(path), str(path))
        models[facts.name] = facts
    for facts in models.values():
        for anchor in facts.anchors:
            try:
                catalog.canonical(anchor.gpu_type)
            except KeyError as exc:
                raise ConfigError(f"profile {facts.name}: anchor names {exc.args[0]}") from None
    return ProfileBook(models, catalog)


# Compiled, these would not unpickle (autoscaler/native.py); plans send profiles to Ray tasks.
picklable_by_fields(Figure, DerivationConstants, Anchor, ModelFacts, ReplicaProfile, ProfileBook)
