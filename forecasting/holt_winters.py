"""ETS / Holt-Winters: additive damped trend and additive season, on log(1 + y) by default.

statsmodels' `ExponentialSmoothing` estimates the smoothing parameters (alpha, beta, gamma, phi) and the initial
states; fleetscale then runs the recursion itself, so that it has the states at every time (forecasts from any
origin for calibration) and can absorb new observations in O(1) without refitting:

    l_t = alpha (y_t - s_{t-m}) + (1 - alpha)(l_{t-1} + phi b_{t-1})
    b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}
    s_t = gamma (y_t - l_{t-1} - phi b_{t-1}) + (1 - gamma) s_{t-m}
    y_{t+h|t} = l_t + (phi + ... + phi^h) b_t + s_{t+h-m}     (h <= m; the season repeats beyond)

On the log scale an additive season is a multiplicative one on the rate, which is what daily request curves are.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from forecasting.base import FloatArray, Forecaster


class HoltWinters(Forecaster):
    """Additive damped Holt-Winters with optional season (in seconds) and log transform."""

    alias = "holt_winters"

    def __init__(self, season_s: float | None = 86400.0, log: bool = True, damped: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.season_s = season_s
        self.log = log
        self.damped = damped

    def _transform(self, y: FloatArray) -> FloatArray:
        return np.log1p(y) if self.log else y

    def _inverse(self, z: FloatArray) -> FloatArray:
        return np.expm1(z) if self.log else z

    def _fit(self, y: FloatArray) -> None:
        z = self._transform(y)
        m = 0 if self.season_s is None else max(1, round(self.season_s / self.step_s_))
        seasonal = m >= 2 and len(z) >= 2 * m
        self.m_ = m if seasonal else 0
        model = ExponentialSmoothing(
            z,
            trend="add",
            damped_trend=self.damped,
            seasonal="add" if seasonal else None,
            seasonal_periods=m if seasonal else None,
            initialization_method="heuristic" if len(z) >= 10 + 2 * max(m, 1) else "estimated",
        )
        with warnings.catch_warnings():
            # statsmodels warns when its optimizer stops early; the fit is still usable, and the calibration
            # measures how good it is.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = model.fit()
        params = result.params
        self.alpha_ = float(params["smoothing_level"])
        self.beta_ = float(params.get("smoothing_trend", 0.0) or 0.0)
        self.gamma_ = float(params.get("smoothing_seasonal", 0.0) or 0.0) if self.m_ else 0.0
        self.phi_ = float(params.get("damping_trend", 1.0) or 1.0) if self.damped else 1.0
        level0 = float(params["initial_level"])
        trend0 = float(params.get("initial_trend", 0.0) or 0.0)
        season0 = np.asarray(params.get("initial_seasons", []), dtype=np.float64) if self.m_ else np.zeros(0)
        n = len(z)
        self.level_ = np.empty(n)
        self.trend_ = np.empty(n)
        self.season_ = np.concatenate((season0, np.empty(n))) if self.m_ else np.zeros(0)
        self._initial = (level0, trend0)
        self._run(z, 0)

    def _run(self, z: FloatArray, start: int) -> None:
        """Run the recursion over z[start:], writing states at those times."""
        a, b, g, phi, m = self.alpha_, self.beta_, self.gamma_, self.phi_, self.m_
        level = self.level_[start - 1] if start > 0 else self._initial[0]
        trend = self.trend_[start - 1] if start > 0 else self._initial[1]
        for t in range(start, len(z)):
            s_old = self.season_[t] if m else 0.0  # season_[t] holds s_{t-m} (the initial seasons come first)
            previous = level + phi * trend
            level = a * (z[t] - s_old) + (1 - a) * previous
            trend = b * (level - (previous - phi * trend)) + (1 - b) * phi * trend
            self.level_[t] = level
            self.trend_[t] = trend
            if m:
                self.season_[t + m] = g * (z[t] - previous) + (1 - g) * s_old

    def _advance(self, start: int) -> None:
        z = self._transform(self.filled_)
        grow = len(z) - len(self.level_)
        self.level_ = np.concatenate((self.level_, np.empty(grow)))
        self.trend_ = np.concatenate((self.trend_, np.empty(grow)))
        if self.m_:
            self.season_ = np.concatenate((self.season_, np.empty(grow)))
        self._run(z, start)

    def _after_drop(self, count: int) -> None:
        # The states are indexed like the series: shift them instead of refitting, so that the parameters and every
        # forecast stay exactly what they were. The state before the new first point becomes the initial one.
        self._initial = (float(self.level_[count - 1]), float(self.trend_[count - 1]))
        self.level_ = self.level_[count:].copy()
        self.trend_ = self.trend_[count:].copy()
        if self.m_:
            self.season_ = self.season_[count:].copy()  # season_[t] holds s_{t-m}: the same shift applies

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        if origin == 0:
            level, trend = self._initial
        else:
            level, trend = float(self.level_[origin - 1]), float(self.trend_[origin - 1])
        h = np.arange(1, horizon + 1, dtype=np.float64)
        # phi + phi^2 + ... + phi^h, which is h for an undamped trend.
        damp: FloatArray = h if self.phi_ == 1.0 else self.phi_ * (1 - self.phi_**h) / (1 - self.phi_)
        z = level + damp * trend
        if self.m_:
            # season for time origin + k is s_{origin + k - m * j}, the latest one known at the origin.
            k = np.arange(horizon)
            index = origin + (k % self.m_)  # season_[t] holds s_{t-m}; the latest known for time origin+k
            z = z + self.season_[index]
        return np.maximum(self._inverse(z), 0.0)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"season_s": 600.0}, {"season_s": None, "log": False}]
