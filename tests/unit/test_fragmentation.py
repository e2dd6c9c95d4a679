"""Fragmentation and saturation, with the arithmetic in comments."""

from __future__ import annotations

import pytest

from autoscaler.catalog import load_catalog
from autoscaler.config import NodePool
from autoscaler.placement import NodeState, ReplicaRequest, place
from autoscaler.placement.fragmentation import measure
from autoscaler.shapes import parse_shape

CATALOG = load_catalog()
POOLS = {
    "h100": NodePool(name="h100", gpu_type="H100-80GB", gpus_per_node=8, max_nodes=2, mig_allowed=True),
    "l4": NodePool(
        name="l4", gpu_type="L4", gpus_per_node=4, max_nodes=2, gpu_price_usd_per_h=0.8, fractional_allowed=True
    ),
}


def test_an_unusable_instance_is_stranded() -> None:
    # A GPU laid out as 4g.40gb + 3g.40gb; one 3g.40gb replica runs, the 4g.40gb instance is free, and nobody
    # demands 4g.40gb: its 4 memory slices (40 GB) and 4 compute slices are stranded.
    inventory = [NodeState("h0", "h100", "H100-80GB", 1, mig_layouts=(("4g.40gb", "3g.40gb"),))]
    shape = parse_shape("H100-80GB/3g.40gb")
    result = place([ReplicaRequest("a", shape, 1)], inventory, POOLS, CATALOG)
    f = measure(result, inventory, [shape], CATALOG)
    assert (f.stranded_memory_slices, f.stranded_compute_slices) == (4, 4)
    assert f.stranded_memory_gb == pytest.approx(40.0)
    # The GPU is busy with a 3g.40gb: max(3/7 compute, 4/8 memory) = 0.5 of it allocated.
    assert f.busy_gpus == 1
    assert f.allocated_gpu_share == pytest.approx(0.5)


def test_free_space_a_demanded_profile_fits_is_not_stranded() -> None:
    # 3g.40gb at start 4 leaves slices 0-3 unlaid; 1g.10gb is demanded and fits there: nothing stranded.
    inventory = [NodeState("h0", "h100", "H100-80GB", 1, mig_layouts=(("3g.40gb",),))]
    shapes = [parse_shape("H100-80GB/3g.40gb"), parse_shape("H100-80GB/1g.10gb")]
    result = place([ReplicaRequest("a", shapes[0], 1)], inventory, POOLS, CATALOG)
    f = measure(result, inventory, shapes, CATALOG)
    assert f.stranded_memory_slices == 0
    # Another 3g.40gb would fit there too; but if only 7g.80gb were demanded from now on, the 4 unlaid memory
    # slices and the 7 - 3 = 4 unlaid compute slices are stranded.
    f = measure(result, inventory, [parse_shape("H100-80GB/7g.80gb")], CATALOG)
    assert (f.stranded_memory_slices, f.stranded_compute_slices) == (4, 4)


def test_shares_strand_what_is_smaller_than_any_demanded_share() -> None:
    inventory = [NodeState("l0", "l4", "L4", 1)]
    half, quarter = parse_shape("0.5xL4"), parse_shape("0.25xL4")
    result = place([ReplicaRequest("a", half, 1), ReplicaRequest("b", quarter, 1)], inventory, POOLS, CATALOG)
    # 0.5 + 0.25 used; 0.25 left fits a 0.25 share: not stranded.
    assert measure(result, inventory, [half, quarter], CATALOG).stranded_share == 0
    # If only 0.5 shares were demanded from now on, the 0.25 left is stranded.
    assert measure(result, inventory, [half], CATALOG).stranded_share == pytest.approx(0.25)


def test_saturation_counts_gpus_above_the_target() -> None:
    inventory = [NodeState("l0", "l4", "L4", 2)]
    result = place([ReplicaRequest("g", parse_shape("2xL4"), 1)], inventory, POOLS, CATALOG)
    f = measure(result, inventory, [parse_shape("2xL4")], CATALOG)
    assert (f.busy_gpus, f.saturated_gpus) == (2, 2)
    assert f.utilization == 1.0
