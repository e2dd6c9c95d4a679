"""Quantile gradient boosting on lag and calendar features (scikit-learn's HistGradientBoostingRegressor).

One model serves every horizon step (the step is a feature), trained on the median (quantile loss at 0.5) of the
ratio between the target and the recent level, so that it transfers across load levels. Features at an origin
(the last observed index is origin - 1) for target step k:
- the last `lags` values, divided by their mean (the scale);
- the latest value at the same time of day and of week as the target, divided by the scale (when the history
  holds two days, or two weeks);
- the target's time of day (sine and cosine) and day of week;
- k.
Quantiles come from the shared conformal calibration (`Forecaster`), which holds its coverage better than
separate quantile models on a few thousand points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from forecasting.base import FloatArray, Forecaster

_DAY_S = 86400.0
_WEEK_S = 7 * _DAY_S


class QuantileGBM(Forecaster):
    alias = "quantile_gbm"

    def __init__(
        self,
        lags: int = 12,
        max_horizon: int = 36,
        max_rows: int = 8000,
        max_iter: int = 100,
        learning_rate: float = 0.08,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lags = lags
        self.max_horizon = max_horizon
        self.max_rows = max_rows
        self.max_iter = max_iter
        self.learning_rate = learning_rate

    def _features(self, y: FloatArray, origin: int, steps: FloatArray) -> tuple[FloatArray, float]:
        """Feature rows for target steps `steps` (0-based) from `origin`, and the scale they are relative to."""
        lags = self.lags
        recent = y[max(0, origin - lags) : origin]
        scale = max(float(np.mean(recent)), 1e-6)
        lag_values = np.full(lags, 1.0)
        lag_values[lags - len(recent) :] = recent / scale
        seasons = self.seasons_
        rows = np.empty((len(steps), lags + len(seasons) + 4))
        for i, k in enumerate(steps.astype(int)):
            target = origin + k
            t_s = self.start_s_ + target * self.step_s_
            phase = 2 * math.pi * (t_s % _DAY_S) / _DAY_S
            rows[i, :lags] = lag_values
            for j, season in enumerate(seasons):
                back = target - season * (1 + (k // season))  # the latest value of the same phase known at origin
                rows[i, lags + j] = y[back] / scale if back >= 0 else np.nan
            step_feature = min(k, self.max_horizon - 1)  # beyond the trained horizon: the last trained step
            rows[i, lags + len(seasons) :] = (math.sin(phase), math.cos(phase), (t_s // _DAY_S) % 7, step_feature)
        return rows, scale

    def _fit(self, y: FloatArray) -> None:
        n = len(y)
        # Same-phase values one day and one week back, only where the history holds two such seasons (a column
        # that is always missing gives the trees nothing).
        self.seasons_ = [
            steps for steps in (round(_DAY_S / self.step_s_), round(_WEEK_S / self.step_s_)) if 2 * steps < n
        ]
        horizon = self.max_horizon
        origins = np.arange(min(self.lags, n - 1), n - 1)
        rng = np.random.default_rng(self.seed)
        pairs = [(int(o), k) for o in origins for k in range(horizon) if o + k < n]
        if len(pairs) > self.max_rows:
            chosen = rng.choice(len(pairs), size=self.max_rows, replace=False)
            pairs = [pairs[i] for i in sorted(chosen)]
        features = []
        targets = []
        for origin, k in pairs:
            row, scale = self._features(y, origin, np.array([k], dtype=np.float64))
            features.append(row[0])
            targets.append(y[origin + k] / scale)
        model = HistGradientBoostingRegressor(
            loss="quantile",
            quantile=0.5,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            random_state=self.seed,
        )
        model.fit(np.array(features), np.array(targets))
        self.model_ = model

    def _after_drop(self, count: int) -> None:
        # The trees read features computed from the kept series at forecast time, and the calendar features from
        # start_s_ (moved with the cut): nothing indexes the series, so no refit. A same-phase value that was cut
        # becomes missing, which the trees handle (as at the start of a series).
        pass

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        rows, scale = self._features(self.filled_, origin, np.arange(horizon, dtype=np.float64))
        return np.maximum(np.asarray(self.model_.predict(rows), dtype=np.float64) * scale, 0.0)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"lags": 4, "max_horizon": 6, "max_iter": 20, "max_rows": 2000}]
