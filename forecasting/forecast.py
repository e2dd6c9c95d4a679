"""The value every forecaster returns: mean and quantiles of a series for each future step."""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Forecast:
    """A forecast of one series (requests/s of one service, say) for `len(mean)` steps of `step_s` seconds.

    Step k covers the interval starting k * step_s after `issued_at_s` (the time of the last observation used).
    `quantiles[q][k]` is the q-quantile at step k; quantiles are non-decreasing in q at every step.
    `model` names the model that produced it (after any fallback), for the decision's audit trail.
    """

    step_s: float
    mean: tuple[float, ...]
    quantiles: Mapping[float, tuple[float, ...]] = field(default_factory=dict)
    model: str = "unknown"
    issued_at_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.step_s > 0:
            raise ValueError(f"step_s ({self.step_s}) must be > 0")
        steps = len(self.mean)
        for q, values in self.quantiles.items():
            if not 0 < q < 1:
                raise ValueError(f"quantile {q} must be in (0, 1)")
            if len(values) != steps:
                raise ValueError(f"quantile {q} has {len(values)} steps, mean has {steps}")
        ordered = sorted(self.quantiles)
        for low, high in itertools.pairwise(ordered):
            if all(map(operator.le, self.quantiles[low], self.quantiles[high])):
                continue  # ordered exactly, the usual case: skip the tolerance arithmetic (a forecast per tick)
            for k, (a, b) in enumerate(zip(self.quantiles[low], self.quantiles[high], strict=True)):
                if a > b + 1e-9 * max(1.0, abs(b)):
                    raise ValueError(f"quantile {low} ({a}) exceeds quantile {high} ({b}) at step {k}")

    @property
    def horizon_s(self) -> float:
        return self.step_s * len(self.mean)

    def quantile_path(self, q: float) -> tuple[tuple[float, ...], float]:
        """The path of quantile q, or of the nearest higher one available (the mean if none is); and which q."""
        if q in self.quantiles:
            return self.quantiles[q], q
        higher = [k for k in self.quantiles if k >= q]
        if higher:
            chosen = min(higher)
            return self.quantiles[chosen], chosen
        if self.quantiles:
            chosen = max(self.quantiles)
            return self.quantiles[chosen], chosen
        return self.mean, 0.5

    def peak_over(self, q: float, within_s: float) -> tuple[float, float]:
        """The highest q-quantile over the steps that start within `within_s`; non-finite values are skipped.

        Returns (value, quantile used). With no usable step, (nan, q).
        """
        path, used = self.quantile_path(q)
        steps = max(1, math.ceil(within_s / self.step_s))
        values = [v for v in path[:steps] if math.isfinite(v)]
        return (max(values) if values else math.nan), used
