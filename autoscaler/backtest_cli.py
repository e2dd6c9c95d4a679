"""`fleetscale backtest`: how well each forecasting model would have predicted a real trace.

The command (`autoscaler/cli/backtest_command.py`) is only the shell: it loads the trace with the adapters and hands
this module a RateSeries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from autoscaler.series import RateSeries
from forecasting.auto import AutoForecaster, default_candidates
from forecasting.backtest import BacktestScore, rolling_origin
from forecasting.base import Forecaster
from forecasting.naive import SeasonalNaive

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '2d' -> seconds; ValueError naming the text otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration: write e.g. 60s, 15m, 1h")
    return float(match[1]) * _UNITS[match[2] or "s"]


def resample(series: RateSeries, step_s: float) -> RateSeries:
    """Average consecutive windows into windows of `step_s` (a whole multiple of the series' step)."""
    ratio = step_s / series.step_s
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ValueError(f"--step {step_s:g}s must be a whole multiple of the trace's {series.step_s:g}s windows")
    factor = round(ratio)
    if factor == 1:
        return series
    values = np.array(series.values, dtype=np.float64)
    usable = len(values) // factor * factor
    grouped = values[:usable].reshape(-1, factor)
    # A window with any missing part is missing: averaging the rest would understate or overstate load.
    means = np.where(np.isnan(grouped).any(axis=1), np.nan, grouped.mean(axis=1))
    return RateSeries(series.name, series.start_s, step_s, tuple(float(v) for v in means))


@dataclass(frozen=True, slots=True)
class BacktestReport:
    trace: str
    step_s: float
    horizon_s: float
    train_points: int
    test_points: int
    chosen: str
    baseline: str
    scores: dict[str, BacktestScore]

    def as_json(self) -> dict[str, object]:
        return {
            "trace": self.trace,
            "step_s": self.step_s,
            "horizon_s": self.horizon_s,
            "train_points": self.train_points,
            "test_points": self.test_points,
            "chosen": self.chosen,
            "baseline": self.baseline,
            "models": {
                name: {
                    "mase": s.mase,
                    "smape": s.smape,
                    "pinball": s.pinball,
                    "coverage_p50": s.coverage[0.5],
                    "coverage_p90": s.coverage[0.9],
                    "coverage_p99": s.coverage[0.99],
                    "fit_s": s.fit_s,
                    "predict_s": s.predict_s,
                }
                for name, s in self.scores.items()
            },
        }


def models_for(series: RateSeries, train_points: int, horizon: int) -> list[Forecaster]:
    """Every candidate the selector knows for this span, plus the selector itself (what the controller uses)."""
    span_s = train_points * series.step_s
    models = default_candidates(span_s, series.step_s)
    models.append(AutoForecaster(horizon=horizon, ensemble_size=3))
    return models


def run_backtest(
    series: RateSeries,
    horizon_s: float,
    train_fraction: float,
    models: list[Forecaster] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> BacktestReport:
    """Fit every model on the first `train_fraction` of the series and score it over the rest.

    The first row is the plain seasonal naive (daily where two days of training fit, else the last value); a
    candidate of the same name (with corrections) is left out of the table, and stays among the selector's.
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"--train-fraction ({train_fraction}) must be between 0 and 1")
    horizon = max(1, round(horizon_s / series.step_s))
    values = np.array(series.values, dtype=np.float64)
    train = int(len(values) * train_fraction)
    if train < 2 * horizon or len(values) - train < horizon + 1:
        raise ValueError(
            f"{len(values)} windows of {series.step_s:g}s are too few for a {horizon_s:g}s horizon with "
            f"--train-fraction {train_fraction}"
        )
    day = round(86400.0 / series.step_s)
    scale_season = day if train >= 2 * day else 1
    # The yardstick is the plain seasonal naive: no burst or level-shift correction (its quantiles are still
    # calibrated, so that its coverage and pinball loss are comparable).
    baseline = SeasonalNaive(86400.0 if scale_season > 1 else None, burst_correction=False)
    candidates = models if models is not None else models_for(series, train, horizon)
    scores: dict[str, BacktestScore] = {}
    chosen = ""
    for model in [baseline, *[m for m in candidates if m.name != baseline.name]]:
        name = model.name

        def progress(done: int, total: int, name: str = name) -> None:
            if on_progress is not None:
                on_progress(name, done, total)

        score = rolling_origin(
            model, values, series.step_s, train, horizon, scale_season=scale_season, start_s=series.start_s,
            on_progress=progress,
        )  # fmt: skip
        key = "auto" if isinstance(model, AutoForecaster) else model.name
        scores[key] = score
        if isinstance(model, AutoForecaster):
            chosen = model.name
    return BacktestReport(
        series.name, series.step_s, horizon * series.step_s, train, len(values) - train, chosen or baseline.name,
        baseline.name, scores,
    )  # fmt: skip
