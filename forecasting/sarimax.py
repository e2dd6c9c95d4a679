"""SARIMAX (statsmodels) with daily Fourier terms as regressors, on log(1 + y).

A seasonal ARIMA with a 144-step (daily at 10 minutes) or 8,640-step season is slow to fit and fragile; K pairs of
daily sine/cosine regressors carry the daily shape instead (the usual remedy for long seasons), and a small
ARMA(p, q) on top follows the deviations. New observations are absorbed without a refit: `extend` keeps the
parameters and filters only the new points. Forecasts from past origins (for calibration) use dynamic prediction.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning
from statsmodels.tsa.statespace.sarimax import SARIMAX

from forecasting.base import FloatArray, Forecaster


class Sarimax(Forecaster):
    alias = "sarimax"

    def __init__(
        self,
        order: tuple[int, int, int] = (2, 0, 1),
        season_s: float | None = 86400.0,
        fourier_terms: int = 3,
        log: bool = True,
        max_fit_points: int = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.order = order
        self.season_s = season_s
        self.fourier_terms = fourier_terms
        self.log = log
        self.max_fit_points = max_fit_points

    def _exog(self, start: int, count: int) -> FloatArray | None:
        if self.season_s is None or self.fourier_terms == 0:
            return None
        t = self.start_s_ + (start + np.arange(count)) * self.step_s_
        columns: list[FloatArray] = []
        for k in range(1, self.fourier_terms + 1):
            phase = 2 * math.pi * k * t / self.season_s
            columns.extend((np.sin(phase), np.cos(phase)))
        return np.column_stack(columns)

    def _fit(self, y: FloatArray) -> None:
        z = np.log1p(y) if self.log else y
        # Fit on the most recent points only: the parameters settle long before 2,000 points, and fit time grows
        # with the length.
        first = max(0, len(z) - self.max_fit_points)
        self.fit_start_ = first
        model = SARIMAX(
            z[first:],
            exog=self._exog(first, len(z) - first),
            order=self.order,
            trend="c",
            enforce_stationarity=False,
            enforce_invertibility=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", ValueWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            self.result_ = model.fit(disp=False, maxiter=50)
        self.known_ = len(z)
        self.result_start_ = first

    def _advance(self, start: int) -> None:
        z = np.log1p(self.filled_) if self.log else self.filled_
        new = z[self.known_ :]
        if len(new):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ValueWarning)
                # extend() filters only the new points from the last state (append() re-filters everything).
                self.result_ = self.result_.extend(new, exog=self._exog(self.known_, len(new)))
            self.result_start_ = self.known_
            self.known_ = len(z)

    def _after_drop(self, count: int) -> None:
        # The fitted result keeps its own data; only the indices that map it onto the kept series move. The Fourier
        # terms follow, as start_s_ moved by the same count of steps.
        self.fit_start_ -= count
        self.result_start_ -= count
        self.known_ -= count

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        local = origin - self.result_start_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ValueWarning)
            if origin >= self.known_:
                z = self.result_.forecast(horizon, exog=self._exog(self.known_, horizon))
            elif local <= 0:
                # Before the current state's data: the last value is all this model can still say.
                last = float(self.filled_[max(origin - 1, 0)])
                z = np.full(horizon, np.log1p(last) if self.log else last)
            else:
                end = local + horizon - 1
                extra = max(0, end - (self.known_ - self.result_start_ - 1))
                prediction = self.result_.get_prediction(
                    start=local, end=end, dynamic=True, exog=self._exog(self.known_, extra) if extra else None
                )
                z = prediction.predicted_mean
        values = np.asarray(z, dtype=np.float64)
        return np.maximum(np.expm1(values) if self.log else values, 0.0)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [{"order": (1, 0, 0), "season_s": 600.0, "fourier_terms": 1}]
