"""Forecast accuracy: MASE, sMAPE, pinball loss and quantile coverage. Missing actuals (NaN) are skipped."""

from __future__ import annotations

import numpy as np

from forecasting.base import FloatArray


def naive_scale(y: FloatArray, season: int) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal naive forecast (season >= 1)."""
    season = max(1, min(season, len(y) - 1))
    diffs = np.abs(y[season:] - y[:-season])
    diffs = diffs[np.isfinite(diffs)]
    scale = float(np.mean(diffs)) if len(diffs) else 0.0
    return scale if scale > 0 else 1.0


def mase(actual: FloatArray, predicted: FloatArray, scale: float) -> float:
    mask = np.isfinite(actual)
    return float(np.mean(np.abs(actual[mask] - predicted[mask])) / scale) if mask.any() else float("nan")


def smape(actual: FloatArray, predicted: FloatArray) -> float:
    """Symmetric MAPE in [0, 2]; a point where both are zero counts as 0."""
    mask = np.isfinite(actual)
    a, p = actual[mask], predicted[mask]
    denominator = np.abs(a) + np.abs(p)
    terms = np.where(denominator > 0, 2.0 * np.abs(a - p) / np.where(denominator > 0, denominator, 1.0), 0.0)
    return float(np.mean(terms)) if len(terms) else float("nan")


def pinball(actual: FloatArray, predicted: FloatArray, q: float) -> float:
    mask = np.isfinite(actual)
    diff = actual[mask] - predicted[mask]
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff))) if mask.any() else float("nan")


def coverage(actual: FloatArray, predicted: FloatArray) -> float:
    """Share of actuals at or below the predicted quantile (q for a well calibrated q-quantile)."""
    mask = np.isfinite(actual)
    return float(np.mean(actual[mask] <= predicted[mask])) if mask.any() else float("nan")
