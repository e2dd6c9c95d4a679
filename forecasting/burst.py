"""The burst envelope: the recent per-step rates as quantiles, the recent level as the mean, both scaled by the trend.

Stability: alpha. The model for the controller's per-tick series (one request rate every 15 s), where load comes
in bursts: what the next cold-start window may bring is what the windows of the last half hour brought. Its
quantiles are its own (`native_quantiles`): they are published as computed, with no conformal calibration, no
adaptive conformal inference and no burst or level-shift correction, and `update`/`predict` cost O(lookback).

With L = max(1, round(lookback_s / step_s)) and M = max(1, round(level_s / step_s)), and v the last L observed
values before the origin (missing ones left out; the gap-filled ones if all are missing), n = len(v):

    level     = mean(v[-M:])
    before    = v[max(0, n - 2M) : max(0, n - M)]                         (may be empty)
    trend_k   = 1                                          if before is empty or sums to 0
              = min(max_trend, max(1, (level / mean(before)) ** ((k + 1) * step_s / (M * step_s))))  otherwise
    mean_k    = level * trend_k                                           k = 0 .. horizon - 1
    q-quantile_k = max(sorted(v)[min(n - 1, max(0, ceil(q * n) - 1))], level) * trend_k

The trend is the growth of the last M steps over the M before them, carried to the end of step k and capped at
max_trend, so that a ramp is met ahead; it never goes below 1, so a falling load is followed by the level alone
(scaling down is the stabilization's decision, not the forecast's). The exponent's period is M * step_s, the time
the level actually spans (level_s itself when step_s divides it, as at 15 s and 300 s).

Worked example: step_s=60, lookback_s=300 (L=5), level_s=120 (M=2), max_trend=4, fitted on
[5, 10, 20, 30, 40, 60]: v = [10, 20, 30, 40, 60]; level = (40 + 60) / 2 = 50; before = [20, 30], mean 25; the
growth 50 / 25 = 2 over 120 s gives trend_k = 2 ** ((k + 1) * 60 / 120) = 1.414, 2, 2.828, then 4 (capped).
The mean is 70.7, 100, 141.4, 200. The 0.9-quantile reads sorted(v)[ceil(4.5) - 1] = v[4] = 60 (above the level):
84.9, 120, 169.7, 240. The 0.5-quantile reads sorted(v)[2] = 30, below the level, so it is the level: the mean.

Compared with `RateForecaster` (autoscaler/sim/policies.py), which it replaces under the `Forecaster` contract:
its trend was one value, carried to the exact horizon in seconds and applied to every step; here each step has
its own, carried to the step's end. For a horizon of a whole number of steps the last step (and so the peak over
the horizon, as the trend never falls with k) is the same to the last bit; earlier steps of a ramp are lower. A
horizon that is not a whole number of steps gets the trend at the end of its last step, a little higher.
Missing, negative and infinite values are left out here (it had none to leave out), and it waited for 8 values
before forecasting; this model forecasts from the 2 that `fit` needs, so the caller decides when to trust it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from forecasting.base import FloatArray, Forecaster


class BurstEnvelope(Forecaster):
    """Empirical quantiles of the last `lookback_s` and the mean of the last `level_s`, times the trend.

    `max_history` defaults (None) to 2 x L points here, twice all the model ever reads, so memory stays bounded
    whatever else the caller passes; give an int for another bound.
    """

    alias = "burst_envelope"

    def __init__(
        self, lookback_s: float = 1800.0, level_s: float = 300.0, max_trend: float = 4.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.lookback_s = lookback_s
        self.level_s = level_s
        self.max_trend = max_trend

    @property
    def native_quantiles(self) -> bool:
        return True

    def _history_limit(self) -> int | None:
        if self.max_history is not None:
            return self.max_history
        return 2 * max(1, round(self.lookback_s / self.step_s_))

    def _fit(self, y: FloatArray) -> None:
        if not self.lookback_s > 0 or not self.level_s > 0:
            raise ValueError(f"lookback_s ({self.lookback_s}) and level_s ({self.level_s}) must be > 0")
        if not self.max_trend >= 1:
            raise ValueError(f"max_trend ({self.max_trend}) must be >= 1")
        self.lookback_ = max(1, round(self.lookback_s / self.step_s_))
        self.level_steps_ = max(1, round(self.level_s / self.step_s_))
        # predict() asks for the mean, then the quantiles, from one origin: the envelope is computed once for
        # both. Keyed by the absolute index of the origin (dropped_ + origin), which no cut of the history reuses.
        self._cached: tuple[int, int, float, list[float], list[float]] | None = None

    def _after_drop(self, count: int) -> None:
        # The state is the kept series itself, read afresh at each forecast: nothing to shift or refit.
        pass

    def _envelope(self, origin: int, horizon: int) -> tuple[float, list[float], list[float]]:
        """(level, the window's values sorted, trend_k for k < horizon) at `origin`."""
        key = self.dropped_ + origin
        cached = self._cached
        if cached is not None and cached[0] == key and cached[1] == horizon:
            return cached[2], cached[3], cached[4]
        first = max(0, origin - self.lookback_)
        # Plain Python over ~120 values beats numpy's per-call overhead at this size (see the tests' timing).
        values = [v for v in self.observed_[first:origin].tolist() if v == v]  # v == v is false for NaN only
        if not values:
            values = self.filled_[first:origin].tolist()
        n, m = len(values), self.level_steps_
        recent = values[-m:]
        level = sum(recent) / len(recent)
        before = values[max(0, n - 2 * m) : max(0, n - m)]
        trends = [1.0] * horizon
        if before and sum(before) > 0:
            growth = level / (sum(before) / len(before))
            step_s = self.step_s_
            period_s = m * step_s
            for k in range(horizon):
                try:
                    trends[k] = min(self.max_trend, max(1.0, growth ** ((k + 1) * step_s / period_s)))
                except OverflowError:  # a growth from a near-zero level, raised far: past any cap
                    trends[k] = self.max_trend
        values.sort()
        self._cached = (key, horizon, level, values, trends)
        return level, values, trends

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        level, _, trends = self._envelope(origin, horizon)
        return level * np.array(trends, dtype=np.float64)

    def _predict_quantiles_from(
        self, origin: int, horizon: int, quantiles: Sequence[float]
    ) -> dict[float, FloatArray] | None:
        level, values, trends = self._envelope(origin, horizon)
        n = len(values)
        trend = np.array(trends, dtype=np.float64)
        paths: dict[float, FloatArray] = {}
        for q in quantiles:
            # The smallest value with at least q of the window at or below it (no interpolation: a burst's peak is
            # a value that was seen).
            rank = min(n - 1, max(0, math.ceil(q * n) - 1))
            paths[q] = max(values[rank], level) * trend
        return paths

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        # At the contract test's 60 s step: L = 30, M = 5; and a shorter window with a low cap.
        return [{}, {"lookback_s": 600.0, "level_s": 120.0, "max_trend": 2.0}]
