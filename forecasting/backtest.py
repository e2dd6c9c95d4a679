"""Rolling-origin backtests: fit once on the training part, then forecast from every origin of the test part,
feeding each new observation with `update` (as the controller would), and score all forecasts together."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from forecasting.base import DEFAULT_QUANTILES, FloatArray, Forecaster, clean_series
from forecasting.metrics import coverage, mase, naive_scale, pinball, smape


@dataclass(frozen=True, slots=True)
class BacktestScore:
    """Accuracy and cost of one model over one backtest."""

    model: str
    mase: float
    smape: float
    pinball: float
    coverage: dict[float, float]
    fit_s: float
    predict_s: float
    forecasts: int
    notes: tuple[str, ...] = field(default=())
    # The pinball loss of each forecast's peak over its horizon against the peak that came: what a capacity
    # planner sizes on (the highest quantile over the coming cold start), not how each step tracks.
    peak_pinball: float = math.nan


def rolling_origin(
    model: Forecaster,
    y: Sequence[float] | FloatArray,
    step_s: float,
    train_size: int,
    horizon: int,
    *,
    stride: int = 1,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    scale_season: int = 1,
    start_s: float = 0.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> BacktestScore:
    """Fit on y[:train_size], then forecast `horizon` steps from each origin train_size, +stride, ... .

    MASE is scaled by the seasonal naive's in-sample error on the training part (season `scale_season` steps).
    predict_s is the mean time of one update + predict (what a controller tick costs).
    """
    values, _ = clean_series(y)
    if not 2 <= train_size < len(values):
        raise ValueError(f"train_size ({train_size}) must leave test data in a series of {len(values)}")
    started = time.perf_counter()
    model.fit(values[:train_size], step_s, start_s)
    fit_s = time.perf_counter() - started
    actuals: list[FloatArray] = []
    predicted: dict[float, list[FloatArray]] = {q: [] for q in quantiles}
    means: list[FloatArray] = []
    origins = list(range(train_size, len(values) - 1, stride))
    tick_s = 0.0
    for index, origin in enumerate(origins):
        started = time.perf_counter()
        if origin > train_size:
            model.update(values[origin - stride : origin])
        forecast = model.predict(horizon, quantiles)
        tick_s += time.perf_counter() - started
        end = min(origin + horizon, len(values))
        actual = values[origin:end]
        actuals.append(actual)
        means.append(np.asarray(forecast.mean[: len(actual)], dtype=np.float64))
        for q in quantiles:
            predicted[q].append(np.asarray(forecast.quantiles[q][: len(actual)], dtype=np.float64))
        if on_progress is not None:
            on_progress(index + 1, len(origins))
    actual_all = np.concatenate(actuals)
    mean_all = np.concatenate(means)
    peak_pinball = _peak_pinball(actuals, predicted)
    scale = naive_scale(values[:train_size], scale_season)
    return BacktestScore(
        model=model.name,
        # Point accuracy is the mean's; the quantiles are judged by pinball loss and coverage.
        mase=mase(actual_all, mean_all, scale),
        smape=smape(actual_all, mean_all),
        pinball=float(np.mean([pinball(actual_all, np.concatenate(predicted[q]), q) for q in quantiles])),
        coverage={q: coverage(actual_all, np.concatenate(predicted[q])) for q in quantiles},
        fit_s=fit_s,
        predict_s=tick_s / max(len(origins), 1),
        forecasts=len(origins),
        notes=(model.report_.describe(),),
        peak_pinball=peak_pinball,
    )


def _peak_pinball(actuals: list[FloatArray], predicted: dict[float, list[FloatArray]]) -> float:
    """Mean over the quantiles of the pinball loss of each window's forecast peak against its actual peak (windows
    with a missing value left out: their peak is unknown)."""
    whole = [i for i, actual in enumerate(actuals) if len(actual) and not np.isnan(actual).any()]
    if not whole:
        return math.nan
    peaks = np.array([float(np.max(actuals[i])) for i in whole])
    losses = []
    for q, paths in predicted.items():
        forecast_peaks = np.array([float(np.max(paths[i])) for i in whole])
        losses.append(pinball(peaks, forecast_peaks, q))
    return float(np.mean(losses))
