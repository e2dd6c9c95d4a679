"""What one replica occupies: a shape.

Three kinds, written the same way in configuration, the CLI and decisions:

    H100-80GB            one whole GPU                      (kind "gpu", gpus=1)
    4xH100-80GB          a gang of 4 whole GPUs on one node (kind "gpu", gpus=4; tensor parallel)
    2x8xH100-80GB        a multi-node group: 8 GPUs on each of 2 nodes (kind "gpu", nodes=2, gpus=8; a
                         LeaderWorkerSet: tensor parallel inside a node, pipeline parallel across them)
    H100-80GB/3g.40gb    one MIG instance of that profile   (kind "mig")
    0.25xH100-80GB       a quarter share of one GPU         (kind "fraction"; Ray `num_gpus: 0.25`, time-slicing)

Parsing checks the syntax only; whether the GPU type and MIG profile exist is the catalog's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class ShapeKind(StrEnum):
    GPU = "gpu"
    MIG = "mig"
    FRACTION = "fraction"


_SHAPE_RE = re.compile(
    r"^(?:(?P<nodes>[0-9]+)x(?=[0-9]+x))?(?:(?P<count>[0-9]*\.?[0-9]+)x)?(?P<gpu>[A-Za-z][A-Za-z0-9_.-]*?)(?:/(?P<mig>[^/\s]+))?$"
)


@dataclass(frozen=True, slots=True, order=True)
class Shape:
    """One replica's accelerator shape. Immutable and hashable: used as a dict key everywhere."""

    gpu_type: str
    kind: ShapeKind = ShapeKind.GPU
    gpus: int = 1
    mig_profile: str | None = None
    fraction: float = 1.0
    nodes: int = 1  # whole-GPU shapes only: the group spans this many nodes, `gpus` on each
    # Shapes key dicts on every tick of a replay, and their names order ties in sizing and messages: the hash of the
    # fields and the name are computed once.
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.gpu_type, self.kind, self.gpus, self.mig_profile, self.fraction, self.nodes)
        object.__setattr__(self, "_hash", hash(fields))
        object.__setattr__(self, "_text", self._name())

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Shape], tuple[str, ShapeKind, int, str | None, float, int]]:
        # Rebuilt from its fields: string hashes differ between processes (a plan's Ray tasks get pickled shapes).
        return Shape, (self.gpu_type, self.kind, self.gpus, self.mig_profile, self.fraction, self.nodes)

    def __str__(self) -> str:
        return self._text

    def _name(self) -> str:
        if self.kind is ShapeKind.MIG:
            return f"{self.gpu_type}/{self.mig_profile}"
        if self.kind is ShapeKind.FRACTION:
            return f"{self.fraction:g}x{self.gpu_type}"
        if self.nodes > 1:
            return f"{self.nodes}x{self.gpus}x{self.gpu_type}"
        return self.gpu_type if self.gpus == 1 else f"{self.gpus}x{self.gpu_type}"

    @property
    def is_gang(self) -> bool:
        """True when the replica needs several whole GPUs at once (`gpus` of them on each of its nodes)."""
        return self.kind is ShapeKind.GPU and self.gpus * self.nodes > 1

    @property
    def total_gpus(self) -> float:
        """Whole GPUs of the replica over all its nodes (the fraction for a share; 1 for a MIG instance's GPU)."""
        if self.kind is ShapeKind.FRACTION:
            return self.fraction
        return float(self.gpus * self.nodes)

    def with_gpu_type(self, gpu_type: str) -> Shape:
        """The same shape on another (canonical) GPU type name."""
        return Shape(gpu_type, self.kind, self.gpus, self.mig_profile, self.fraction, self.nodes)


def parse_shape(text: str, default_gpus: int = 1) -> Shape:
    """Parse a shape string; raise ValueError saying what is wrong.

    A whole-GPU shape written without a count (`H100-80GB`) takes `default_gpus` GPUs (a service's
    tensor-parallel size).

    >>> str(parse_shape("4xH100-80GB")), str(parse_shape("0.5xL4")), str(parse_shape("A100-80GB/3g.40gb"))
    ('4xH100-80GB', '0.5xL4', 'A100-80GB/3g.40gb')
    >>> parse_shape("2x8xH100-80GB").total_gpus
    16.0
    """
    match = _SHAPE_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a shape: write GPU, NxGPU (gang of N GPUs), KxNxGPU (N GPUs on each of K nodes), "
            "GPU/PROFILE (MIG) or FxGPU (0<F<1)"
        )
    gpu = match["gpu"]
    mig = match["mig"]
    count_text = match["count"]
    nodes = int(match["nodes"]) if match["nodes"] is not None else 1
    if nodes != 1:
        if mig is not None or count_text is None or not count_text.isdigit() or nodes < 1:
            raise ValueError(f"{text!r}: a multi-node group is KxNxGPU, K nodes (K >= 1) of N whole GPUs each")
        return Shape(gpu, ShapeKind.GPU, int(count_text), nodes=nodes)
    if mig is not None:
        if count_text is not None:
            raise ValueError(f"{text!r}: a MIG shape is one instance; drop the count")
        if not re.fullmatch(r"\d+g\.\d+gb(\+me)?", mig):
            raise ValueError(f"{text!r}: {mig!r} is not a MIG profile name like 3g.40gb")
        return Shape(gpu, ShapeKind.MIG, 1, mig, 1.0)
    if count_text is None:
        return Shape(gpu, ShapeKind.GPU, default_gpus)
    count = float(count_text)
    if count >= 1:
        if count != int(count):
            raise ValueError(f"{text!r}: a gang takes a whole number of GPUs, not {count_text}")
        return Shape(gpu, ShapeKind.GPU, int(count))
    if count <= 0:
        raise ValueError(f"{text!r}: a GPU share must be above 0")
    return Shape(gpu, ShapeKind.FRACTION, 1, None, count)
