"""The derived performance model reproduces the reference's worked numbers, and anchors and shares apply."""

from __future__ import annotations

import dataclasses

import pytest

from autoscaler.catalog import Catalog
from autoscaler.perf import Precision, ProfileBook, ShapeRejected, derive_whole_gpu_profile
from autoscaler.shapes import parse_shape


@pytest.mark.parametrize(
    ("model", "gpu", "gpus", "precision", "a_ms", "kv_tokens", "c_kv"),
    [
        # Reference table D2 (eta_bw 0.75, overhead 1 ms, util 0.9, reserve 2 GB):
        # 8B BF16 on H100: a = 1 + 16.06 GB / (0.75 * 3.35 TB/s) = 7.4 ms; KV = (72 - 2 - 16.06) GB / 131,072 B.
        ("Llama-3.1-8B", "H100-80GB", 1, "bf16", 7.4, 411_526, 0.052),
        # 8B BF16 on A100-80GB: a = 1 + 16.06 / (0.75 * 2.039) = 11.5 ms.
        ("Llama-3.1-8B", "A100-80GB", 1, "bf16", 11.5, 411_526, 0.086),
        # 70B BF16 on 4 x H100: a = 1 + 2 * 80 * 0.03 + 35.3 / (0.75 * 3.35) = 1 + 4.8 + 14.0 = 19.8 ms.
        ("Llama-3.1-70B", "H100-80GB", 4, "bf16", 19.8, 423_867, 0.033),
        # 70B FP8 on 2 x H100 (weights 70.6 GB): a = 19.8 ms, KV = 211,933 tokens.
        ("Llama-3.1-70B", "H100-80GB", 2, "fp8", 19.8, 211_933, 0.065),
        # 3B BF16 on L4 with eta_bw 0.88 for L4: a = 1 + 6.42 / (0.88 * 0.300) = 25.3 ms (table's 29.6 x ~0.85).
        ("Llama-3.2-3B", "L4", 1, "bf16", 25.3, 114_873, 0.51),
    ],
)
def test_derivation_matches_reference_table(
    book: ProfileBook,
    catalog: Catalog,
    model: str,
    gpu: str,
    gpus: int,
    precision: str,
    a_ms: float,
    kv_tokens: float,
    c_kv: float,
) -> None:
    facts = dataclasses.replace(book.facts(model), anchors=())
    profile = derive_whole_gpu_profile(facts, catalog.gpu(gpu), gpus, Precision(precision))
    assert profile.decode_base_ms.value == pytest.approx(a_ms, rel=0.02)
    assert profile.decode_base_ms.kind == "derived"
    assert profile.kv_capacity_tokens.value == pytest.approx(kv_tokens, rel=0.01)
    assert profile.decode_ms_per_seq_per_1k_context.value == pytest.approx(c_kv, rel=0.05)


def test_measured_anchor_replaces_the_derived_step(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    assert profile.decode_base_ms.value == 8.0
    assert profile.decode_base_ms.kind == "measured"
    assert "TensorRT-LLM" in profile.decode_base_ms.source
    assert profile.kv_capacity_tokens.kind == "derived"


def test_mig_slice_is_derived_from_the_whole_gpu_by_its_shares(book: ProfileBook) -> None:
    whole = book.profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    half = book.profile("Llama-3.1-8B", parse_shape("H100-80GB/3g.40gb"), Precision.BF16)
    # 3g.40gb: 4/8 of the bandwidth, 3/7 of the compute.
    assert half.decode_base_ms.value == pytest.approx(1.0 + (8.0 - 1.0) / 0.5)
    assert half.prefill_tokens_per_s.value == pytest.approx(whole.prefill_tokens_per_s.value * 3 / 7)
    assert half.decode_ms_per_token_compute.value == pytest.approx(whole.decode_ms_per_token_compute.value * 7 / 3)
    # KV: (40 * 0.9 - 2 - 16.06) GB / 131,072 B per token.
    assert half.kv_capacity_tokens.value == pytest.approx((36 - 2 - 16.06) * 1e9 / 131072, rel=1e-3)
    assert all(f.kind == "derived" for name, f in half.figures().items() if name != "startup_s")


def test_fractional_share_is_derived_and_marked(book: ProfileBook) -> None:
    quarter = book.profile("Llama-3.2-1B", parse_shape("0.25xH100-80GB"), Precision.BF16)
    assert quarter.decode_base_ms.kind == "derived"
    assert "GPU share" in quarter.decode_base_ms.source


@pytest.mark.parametrize(
    ("model", "shape", "precision", "why"),
    [
        ("Llama-3.1-70B", "2xH100-80GB", "bf16", "weights 141.1 GB"),  # 141 GB of weights in 140 GB usable
        ("Llama-3.1-8B", "H100-80GB/1g.10gb", "bf16", "exceed the usable"),  # 16 GB of weights in a 10 GB slice
        ("Llama-3.1-8B", "0.5xL4", "bf16", "exceed the usable"),
    ],
)
def test_shape_that_cannot_hold_weights_and_kv_is_rejected(
    book: ProfileBook, model: str, shape: str, precision: str, why: str
) -> None:
    with pytest.raises(ShapeRejected, match=why):
        book.profile(model, parse_shape(shape), Precision(precision), min_kv_tokens=4096)


def test_decode_step_grows_past_the_knee(book: ProfileBook) -> None:
    profile = book.profile("Llama-3.1-8B", parse_shape("A100-80GB"), Precision.BF16)
    knee = profile.knee_batch  # ~133 on A100 (weights read / GEMM time per token)
    below = profile.decode_step_ms(knee, 1000) - profile.decode_step_ms(knee - 10, 1000)
    above = profile.decode_step_ms(knee + 10, 1000) - profile.decode_step_ms(knee, 1000)
    assert above == pytest.approx(below + 10 * profile.decode_ms_per_token_compute.value)


def test_mixture_of_experts_reads_more_weights_as_the_batch_grows(book: ProfileBook) -> None:
    profile = book.profile("Mixtral-8x7B", parse_shape("2xH100-80GB"), Precision.BF16)
    assert profile.decode_base_at(1) < profile.decode_base_at(8) < profile.decode_base_at(16)
    assert profile.decode_base_at(64) == profile.decode_base_at(16)


def test_every_number_says_where_it_comes_from(book: ProfileBook) -> None:
    for model in book.models:
        for shape in ("H100-80GB", "4xH100-80GB", "A100-80GB", "H100-80GB/3g.40gb"):
            try:
                profile = book.profile(model, parse_shape(shape), Precision.BF16)
            except ShapeRejected:
                continue
            for name, figure in profile.figures().items():
                assert figure.kind in ("measured", "derived"), name
                assert figure.source, f"{model} {shape} {name} has no source"
