"""Shape strings: one syntax for configuration, CLI and decisions."""

from __future__ import annotations

import pytest

from autoscaler.shapes import Shape, ShapeKind, parse_shape


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("H100-80GB", Shape("H100-80GB", ShapeKind.GPU, 1)),
        ("4xH100-80GB", Shape("H100-80GB", ShapeKind.GPU, 4)),
        ("H100-80GB/3g.40gb", Shape("H100-80GB", ShapeKind.MIG, 1, "3g.40gb")),
        ("A100-80GB/1g.10gb+me", Shape("A100-80GB", ShapeKind.MIG, 1, "1g.10gb+me")),
        ("0.25xL4", Shape("L4", ShapeKind.FRACTION, 1, None, 0.25)),
        ("  L40S ", Shape("L40S", ShapeKind.GPU, 1)),
    ],
)
def test_parse_and_print_round_trip(text: str, want: Shape) -> None:
    shape = parse_shape(text)
    assert shape == want
    assert parse_shape(str(shape)) == shape


def test_bare_gpu_takes_the_default_gang_size() -> None:
    assert parse_shape("H100-80GB", default_gpus=4) == Shape("H100-80GB", ShapeKind.GPU, 4)
    assert parse_shape("2xH100-80GB", default_gpus=4).gpus == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a shape"),
        ("2xH100/3g.40gb", "drop the count"),
        ("H100/9z", "not a MIG profile"),
        ("1.5xH100", "whole number"),
        ("0xH100", "above 0"),
        ("H100//3g", "not a shape"),
    ],
)
def test_bad_shapes_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shape(text)
