"""The Forecast value the core reads."""

from __future__ import annotations

import math

import pytest

from forecasting import Forecast


def test_peak_over_the_horizon_uses_the_steps_that_start_within_it() -> None:
    forecast = Forecast(60.0, (1, 2, 3, 9), {0.9: (2, 4, 6, 20)}, "ets")
    # 150 s covers the steps starting at 0, 60 and 120 s.
    assert forecast.peak_over(0.9, 150) == (6, 0.9)
    assert forecast.peak_over(0.9, 10_000) == (20, 0.9)


def test_missing_quantile_takes_the_nearest_higher_one_then_the_highest() -> None:
    forecast = Forecast(60.0, (1, 1), {0.5: (1, 1), 0.95: (3, 3)})
    assert forecast.peak_over(0.9, 60) == (3, 0.95)
    assert forecast.peak_over(0.99, 60) == (3, 0.95)
    assert Forecast(60.0, (2, 5)).peak_over(0.9, 120) == (5, 0.5)


def test_non_finite_steps_are_skipped() -> None:
    forecast = Forecast(60.0, (math.nan, 4.0), {0.9: (math.nan, 4.0)})
    assert forecast.peak_over(0.9, 120) == (4.0, 0.9)
    value, _ = Forecast(60.0, (math.nan,), {0.9: (math.nan,)}).peak_over(0.9, 60)
    assert math.isnan(value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_s": 0.0, "mean": (1.0,)}, "step_s"),
        ({"step_s": 1.0, "mean": (1.0,), "quantiles": {1.5: (1.0,)}}, "in \\(0, 1\\)"),
        ({"step_s": 1.0, "mean": (1.0, 2.0), "quantiles": {0.5: (1.0,)}}, "steps"),
        ({"step_s": 1.0, "mean": (1.0,), "quantiles": {0.5: (3.0,), 0.9: (2.0,)}}, "exceeds"),
    ],
)
def test_invalid_forecasts_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Forecast(**kwargs)  # type: ignore[arg-type]
