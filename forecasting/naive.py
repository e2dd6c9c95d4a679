"""Seasonal naive: the value one season ago (or the last value without a season). The baseline and the fallback."""

from __future__ import annotations

from typing import Any

import numpy as np

from forecasting.base import FloatArray, Forecaster


class SeasonalNaive(Forecaster):
    """y[t + k] = y[t + k - m * ceil(k / m)] for a season of m steps; the last value if m is 1 or history is short.

    `season_s` is the season in seconds (86,400 daily, 604,800 weekly); the model turns it into steps. Missing
    values of the last season were filled by carrying the last observation (see `Forecaster`).
    """

    alias = "seasonal_naive"

    def __init__(self, season_s: float | None = 86400.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.season_s = season_s

    @property
    def name(self) -> str:
        if self.season_s is None:
            return "naive"
        return {86400.0: "seasonal_naive_daily", 604800.0: "seasonal_naive_weekly"}.get(
            float(self.season_s), f"seasonal_naive_{self.season_s:g}s"
        )

    def season_steps(self) -> int:
        if self.season_s is None:
            return 1
        return max(1, round(self.season_s / self.step_s_))

    def _fit(self, y: FloatArray) -> None:
        self.m_ = self.season_steps()

    def _after_drop(self, count: int) -> None:
        # The state is the season length only; forecasts read the kept series, which still holds the last season
        # when max_history is at least one season.
        pass

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        history = self.filled_[:origin]
        m = self.m_ if len(history) >= self.m_ else 1
        k = np.arange(horizon)
        return np.asarray(history[len(history) - m + (k % m)], dtype=np.float64)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"season_s": 600.0}, {"season_s": None}]
