"""The GPU catalog: the MIG layout validator against the project's reference, GPU shares, aliases.

The reference (tests/fixtures/mig_feasible_layouts.yaml, copied from the project's compiled MIG reference) lists
every multiset of non-`+me` profiles that fits one GPU under NVIDIA's placement rule: 77 on the 8-memory-slice
GPUs, 9 on the A30. `check_mig_layout` must accept exactly those, with placements that are themselves legal.
`catalog` is the session fixture of tests/unit/conftest.py.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.catalog import Catalog, GpuType, MigLayoutCheck, load_catalog
from autoscaler.shapes import parse_shape

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "mig_feasible_layouts.yaml"
REFERENCE_GPUS = ("H100-80GB", "A100-40GB", "A100-80GB", "A30-24GB")
WANT_FEASIBLE = {"H100-80GB": 77, "A100-40GB": 77, "A100-80GB": 77, "A30-24GB": 9}

Layout = frozenset[tuple[str, int]]  # a multiset of profiles: {(profile, count)}


def _parse_compact(entry: str) -> Layout:
    """`3g.40gb:1 + 1g.10gb:2` -> {("3g.40gb", 1), ("1g.10gb", 2)}."""
    pairs = []
    for part in entry.split("+ "):
        name, _, count = part.strip().rpartition(":")
        pairs.append((name, int(count)))
    return frozenset(pairs)


def _reference() -> dict[str, list[Layout]]:
    data = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))
    return {gpu: [_parse_compact(entry) for entry in data["gpus"][gpu]] for gpu in REFERENCE_GPUS}


REFERENCE = _reference()


def _profiles(layout: Layout) -> list[str]:
    return [name for name, count in sorted(layout) for _ in range(count)]


def _layout_id(layout: Layout) -> str:
    return " + ".join(f"{count}x{name}" for name, count in sorted(layout))


def _assert_placements_legal(gpu: GpuType, wanted: list[str], result: MigLayoutCheck) -> None:
    """Every instance placed once, at one of its legal starts, inside the GPU, with no shared memory slice."""
    assert gpu.mig is not None
    assert result.valid, result.reason
    assert result.reason == ""
    assert Counter(p.profile for p in result.placements) == Counter(wanted)
    used: set[int] = set()
    for placement in result.placements:
        profile = gpu.mig.profiles[placement.profile]
        assert placement.start in profile.starts, placement
        assert placement.memory_slices == profile.memory_slices, placement
        assert placement.start >= 0 and placement.start + placement.memory_slices <= gpu.mig.memory_slices, placement
        slices = set(range(placement.start, placement.start + placement.memory_slices))
        assert not used & slices, f"{placement} overlaps slices {sorted(used & slices)}"
        used |= slices
    for name, count in Counter(wanted).items():
        assert count <= gpu.mig.profiles[name].max_instances
    assert sum(gpu.mig.profiles[p.profile].compute_slices for p in result.placements) <= gpu.mig.compute_slices
    assert result.free_memory_slices == tuple(s for s in range(gpu.mig.memory_slices) if s not in used)
    assert [p.start for p in result.placements] == sorted(p.start for p in result.placements)


# ---------------------------------------------------------------------------------------------------------------
# (a) Every reference layout is accepted, with legal placements.


def test_fixture_has_the_reference_counts() -> None:
    assert {gpu: len(set(layouts)) for gpu, layouts in REFERENCE.items()} == WANT_FEASIBLE
    assert {gpu: len(layouts) for gpu, layouts in REFERENCE.items()} == WANT_FEASIBLE  # no duplicates


@pytest.mark.parametrize(
    ("gpu_name", "layout"),
    [
        pytest.param(gpu, layout, id=f"{gpu}: {_layout_id(layout)}")
        for gpu in REFERENCE_GPUS
        for layout in REFERENCE[gpu]
    ],
)
def test_reference_layout_is_accepted_with_legal_placements(catalog: Catalog, gpu_name: str, layout: Layout) -> None:
    wanted = _profiles(layout)
    result = catalog.check_mig_layout(gpu_name, wanted)
    assert result.gpu_type == gpu_name
    _assert_placements_legal(catalog.gpu(gpu_name), wanted, result)


@pytest.mark.parametrize(
    ("gpu_name", "preset"),
    [
        pytest.param(gpu.name, name, id=f"{gpu.name}: {name}")
        for gpu in load_catalog().gpus.values()
        if gpu.mig is not None
        for name in gpu.mig.presets
    ],
)
def test_every_mig_parted_preset_is_accepted(catalog: Catalog, gpu_name: str, preset: str) -> None:
    gpu = catalog.gpu(gpu_name)
    assert gpu.mig is not None
    wanted = [name for name, count in gpu.mig.presets[preset].items() for _ in range(count)]
    _assert_placements_legal(gpu, wanted, catalog.check_mig_layout(gpu_name, wanted))


def test_all_balanced_fills_the_gpu_with_the_3g_at_slot_4(catalog: Catalog) -> None:
    # all-balanced on H100-80GB: 4 + 2 + 1 + 1 = 8 memory slices, all used. The 3g.40gb takes its highest legal
    # start (4), leaving slots 0-3 to the 2g and the two 1g, which cannot reach slot 7 together.
    # (The docstring of check_mig_layout says "2g@0, 1g@2, 1g@3, 3g@4"; the validator answers 1g@0, 1g@1, 2g@2,
    # 3g@4, equally legal; only the legality and the 3g's slot are pinned here.)
    wanted = ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    result = catalog.check_mig_layout("H100-80GB", wanted)
    _assert_placements_legal(catalog.gpu("H100-80GB"), wanted, result)
    assert [(p.profile, p.start) for p in result.placements if p.profile == "3g.40gb"] == [("3g.40gb", 4)]
    assert result.free_memory_slices == ()


def test_empty_layout_is_valid_and_leaves_every_slice_free(catalog: Catalog) -> None:
    result = catalog.check_mig_layout("H100-80GB", [])
    assert result.valid
    assert result.placements == ()
    assert result.free_memory_slices == tuple(range(8))


# ---------------------------------------------------------------------------------------------------------------
# (b) Exhaustive: the accepted multisets are exactly the reference's.


def _accepted_multisets(catalog: Catalog, gpu_name: str) -> set[Layout]:
    gpu = catalog.gpu(gpu_name)
    assert gpu.mig is not None
    profiles = [p for p in gpu.mig.profiles.values() if not p.name.endswith("+me")]
    accepted: set[Layout] = set()
    # H100: (7+1) * (4+1) * (3+1) * (2+1) * (1+1) * (1+1) = 3,840 count vectors, the empty one skipped.
    for counts in itertools.product(*(range(p.max_instances + 1) for p in profiles)):
        layout = frozenset((p.name, n) for p, n in zip(profiles, counts, strict=True) if n)
        if layout and catalog.check_mig_layout(gpu_name, _profiles(layout)).valid:
            accepted.add(layout)
    return accepted


@pytest.mark.parametrize("gpu_name", REFERENCE_GPUS)
def test_accepted_multisets_equal_the_reference(catalog: Catalog, gpu_name: str) -> None:
    accepted = _accepted_multisets(catalog, gpu_name)
    reference = set(REFERENCE[gpu_name])
    assert sorted(map(_layout_id, accepted - reference)) == [], "accepted but not in the reference"
    assert sorted(map(_layout_id, reference - accepted)) == [], "in the reference but rejected"
    assert len(accepted) == WANT_FEASIBLE[gpu_name]


# ---------------------------------------------------------------------------------------------------------------
# (c) Named rejections, each with its reason.


@dataclass(frozen=True)
class RejectCase:
    name: str
    gpu: str
    profiles: tuple[str, ...]
    want_reason: str


REJECT_CASES = [
    RejectCase("2 x 4g.40gb: one per GPU", "H100-80GB", ("4g.40gb", "4g.40gb"), "2 x 4g.40gb: at most 1 per H100-80GB"),
    RejectCase("3 x 3g.40gb: two per GPU", "H100-80GB", ("3g.40gb",) * 3, "3 x 3g.40gb: at most 2 per H100-80GB"),
    RejectCase("8 x 1g.10gb: seven per GPU", "H100-80GB", ("1g.10gb",) * 8, "8 x 1g.10gb: at most 7 per H100-80GB"),
    RejectCase(
        # 8 + 1 = 9 memory slices on a GPU of 8.
        "7g.80gb + 1g.10gb: memory slices",
        "H100-80GB",
        ("7g.80gb", "1g.10gb"),
        "needs 9 memory slices; one H100-80GB has 8",
    ),
    RejectCase(
        # 4 + 4 + 2 = 10 memory slices.
        "4g.40gb + 3g.40gb + 2g.20gb: memory slices",
        "A100-80GB",
        ("4g.40gb", "3g.40gb", "2g.20gb"),
        "needs 10 memory slices; one A100-80GB has 8",
    ),
    RejectCase(
        # Memory fits (6 + 2 = 8 slices) but compute does not (6 + 2 = 8 of 7).
        "6 x 1g.10gb + 2g.20gb: compute slices",
        "H100-80GB",
        ("1g.10gb",) * 6 + ("2g.20gb",),
        "needs 8 compute slices; one H100-80GB has 7",
    ),
    RejectCase(
        "two +me instances",
        "A30-24GB",
        ("1g.6gb+me", "1g.6gb+me"),
        "2 x 1g.6gb+me: at most 1 per A30-24GB",
    ),
    RejectCase(
        "unknown profile",
        "H100-80GB",
        ("3g.40gb", "5g.50gb"),
        "H100-80GB has no MIG profile '5g.50gb' (known: 1g.10gb, 1g.10gb+me, 1g.20gb",
    ),
    RejectCase("another GPU's profile", "A100-40GB", ("3g.40gb",), "A100-40GB has no MIG profile '3g.40gb'"),
    RejectCase("a GPU without MIG", "L4", ("1g.6gb",), "L4 does not support MIG"),
    RejectCase("a GPU without MIG, no profiles", "L40S", (), "L40S does not support MIG"),
]


@pytest.mark.parametrize("case", REJECT_CASES, ids=lambda case: case.name)
def test_invalid_layout_is_rejected_with_reason(catalog: Catalog, case: RejectCase) -> None:
    result = catalog.check_mig_layout(case.gpu, case.profiles)
    assert not result.valid
    assert case.want_reason in result.reason
    assert result.placements == ()
    assert result.gpu_type == case.gpu


# ---------------------------------------------------------------------------------------------------------------
# (d) GPU share of a shape: the larger of its compute and memory share.


@dataclass(frozen=True)
class ShareCase:
    name: str
    shape: str
    want_share: float


SHARE_CASES = [
    ShareCase("3g.40gb", "H100-80GB/3g.40gb", 0.5),  # max(3/7 compute = 0.43, 4/8 memory = 0.5) = 0.5
    ShareCase("1g.10gb", "H100-80GB/1g.10gb", 1 / 7),  # max(1/7 = 0.143, 1/8 = 0.125) = 1/7
    ShareCase("1g.20gb", "H100-80GB/1g.20gb", 0.25),  # max(1/7 = 0.143, 2/8 = 0.25) = 0.25
    ShareCase("4g.40gb", "H100-80GB/4g.40gb", 4 / 7),  # max(4/7 = 0.571, 4/8 = 0.5) = 4/7
    ShareCase("7g.80gb", "A100-80GB/7g.80gb", 1.0),  # max(7/7, 8/8) = 1
    ShareCase("A30 2g.12gb", "A30/2g.12gb", 0.5),  # max(2/4, 2/4) = 0.5 on the 4-slice A30
    ShareCase("0.25xL4", "0.25xL4", 0.25),  # a time-sliced share is its fraction
    ShareCase("one whole GPU", "L40S", 1.0),
    ShareCase("4xH100-80GB", "4xH100-80GB", 4.0),  # a gang takes its GPUs
]


@pytest.mark.parametrize("case", SHARE_CASES, ids=lambda case: case.name)
def test_gpu_share(catalog: Catalog, case: ShareCase) -> None:
    assert catalog.gpu_share(parse_shape(case.shape)) == pytest.approx(case.want_share)


# ---------------------------------------------------------------------------------------------------------------
# (e) Names and aliases.


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("H100", "H100-80GB"),
        ("h100", "H100-80GB"),
        ("h100-sxm5-80gb", "H100-80GB"),
        ("H100-80GB", "H100-80GB"),
        ("a100", "A100-80GB"),
        ("A30", "A30-24GB"),
        ("l4-24gb", "L4"),
        ("H100-NVL", "H100-94GB"),
    ],
)
def test_alias_resolves_case_insensitively(catalog: Catalog, name: str, want: str) -> None:
    assert catalog.canonical(name) == want
    assert catalog.gpu(name).name == want


def test_unknown_gpu_raises_key_error_listing_known_names(catalog: Catalog) -> None:
    with pytest.raises(KeyError) as raised:
        catalog.gpu("H900")
    message = raised.value.args[0]
    assert message.startswith("unknown GPU type 'H900' (known: ")
    for name in catalog.gpus:
        assert name in message


def test_mig_check_accepts_an_alias_and_answers_with_the_canonical_name(catalog: Catalog) -> None:
    result = catalog.check_mig_layout("h100", ["3g.40gb", "3g.40gb"])
    assert result.valid
    assert result.gpu_type == "H100-80GB"
    assert [(p.profile, p.start) for p in result.placements] == [("3g.40gb", 0), ("3g.40gb", 4)]


def test_mig_check_of_an_unknown_gpu_raises_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="unknown GPU type 'H900'"):
        catalog.check_mig_layout("H900", ["1g.10gb"])


def test_shape_with_an_alias_is_made_canonical(catalog: Catalog) -> None:
    assert str(catalog.canonical_shape(parse_shape("h100/3g.40gb"))) == "H100-80GB/3g.40gb"
    assert str(catalog.canonical_shape(parse_shape("2xa30"))) == "2xA30-24GB"


# ---------------------------------------------------------------------------------------------------------------
# (f) Property: on random multisets of H100 profiles, a "valid" answer is a legal layout and an "invalid" one
# says why.

_H100 = load_catalog().gpu("H100-80GB")
assert _H100.mig is not None
_H100_PROFILES = sorted(_H100.mig.profiles)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_H100_PROFILES), max_size=9))
def test_random_h100_multisets_get_a_legal_layout_or_a_reason(wanted: list[str]) -> None:
    catalog = load_catalog()  # cached: the same object as the session fixture
    result = catalog.check_mig_layout("H100-80GB", wanted)
    if result.valid:
        _assert_placements_legal(_H100, wanted, result)
    else:
        assert result.reason
        assert result.placements == ()
