"""One contract test, run on every forecasting model (STYLE.md convention 15)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from forecasting.auto import AutoForecaster
from forecasting.backtest import rolling_origin
from forecasting.base import Forecaster, clean_series, fill_gaps
from forecasting.burst import BurstEnvelope
from forecasting.gbm import QuantileGBM
from forecasting.holt_winters import HoltWinters
from forecasting.naive import SeasonalNaive
from forecasting.sarimax import Sarimax

MODELS: list[type[Forecaster]] = [SeasonalNaive, HoltWinters, Sarimax, QuantileGBM, BurstEnvelope, AutoForecaster]
CASES = [(cls, params) for cls in MODELS for params in cls.test_params()]
IDS = [f"{cls.__name__}-{i}" for cls in MODELS for i, _ in enumerate(cls.test_params())]
STEP_S = 60.0


def _series(n: int = 240, seed: int = 3) -> np.ndarray:
    """A 10-minute cycle (season 600 s = 10 steps) on a slow trend with Poisson-like noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 50 + 0.05 * t + 15 * np.sin(2 * math.pi * t / 10)
    return np.asarray(rng.poisson(level), dtype=np.float64)


@pytest.mark.parametrize(("cls", "params"), CASES, ids=IDS)
def test_contract(cls: type[Forecaster], params: dict[str, Any]) -> None:
    y = _series()
    original = y.copy()
    model = cls(**params)
    # __init__ stores hyperparameters only.
    assert not any(k.endswith("_") for k in vars(model))
    assert model.fit(y, STEP_S) is model
    assert np.array_equal(y, original), "fit mutated its input"
    forecast = model.predict(7, (0.5, 0.9, 0.99))
    assert len(forecast.mean) == 7
    assert set(forecast.quantiles) == {0.5, 0.9, 0.99}
    for k in range(7):
        low, mid, high = (forecast.quantiles[q][k] for q in (0.5, 0.9, 0.99))
        assert 0 <= low <= mid <= high
        assert math.isfinite(forecast.mean[k]) and forecast.mean[k] >= 0
    assert forecast.model.startswith(model.name.split(":")[0])
    assert forecast.issued_at_s == pytest.approx(len(y) * STEP_S)
    # Same hyperparameters and seed, same data: the same forecast.
    again = cls(**params).fit(y, STEP_S).predict(7, (0.5, 0.9, 0.99))
    assert again.mean == pytest.approx(forecast.mean)
    # update() absorbs new points and moves the forecast origin.
    new = _series(260)[240:]
    model.update(new)
    after = model.predict(3)
    assert after.issued_at_s == pytest.approx(260 * STEP_S)
    assert np.array_equal(new, _series(260)[240:]), "update mutated its input"


@pytest.mark.parametrize(("cls", "params"), CASES, ids=IDS)
def test_gaps_and_bad_values_are_missing_data_not_zero_load(cls: type[Forecaster], params: dict[str, Any]) -> None:
    y = _series()
    y[100:110] = np.nan  # a gap of ten steps
    y[50] = -3.0  # a negative reading
    y[60] = np.inf
    # A history bound as long as the series, so that the gap is kept to be read (BurstEnvelope keeps less).
    model = cls(**params, max_history=len(y)).fit(y, STEP_S)
    assert model.report_.missing == 10
    assert model.report_.negative == 1
    assert model.report_.non_finite == 1
    assert np.isfinite(model.filled_).all()
    assert model.filled_[105] == model.filled_[99]  # the gap carries the last observation, it does not drop to 0
    forecast = model.predict(4)
    assert all(math.isfinite(v) for v in forecast.mean)


UNIX_S = 1.7e9  # a forecaster fitted on a real series starts at a Unix time, and its forecasts say when


@pytest.mark.parametrize(("cls", "params"), CASES, ids=IDS)
def test_a_bounded_history_stays_bounded_and_keeps_absolute_time(cls: type[Forecaster], params: dict[str, Any]) -> None:
    # 240 points fitted with max_history=60: the first 180 are cut at fit; then 300 more, fed one at a time and in
    # batches (one larger than the bound), are cut back to 60 each time the kept series reaches 120.
    y = _series(540)
    model = cls(**params, max_history=60).fit(y[:240], STEP_S, start_s=UNIX_S)
    assert len(model.filled_) == 60
    fed = 240
    for size in [1] * 70 + [7, 50, 3, 90] + [1] * 80:
        model.update(y[fed : fed + size])
        fed += size
        assert len(model.filled_) == len(model.observed_) <= 2 * 60
    assert fed == 540 == model.points_seen
    forecast = model.predict(7, (0.5, 0.9, 0.99))
    for k in range(7):
        low, mid, high = (forecast.quantiles[q][k] for q in (0.5, 0.9, 0.99))
        assert 0 <= low <= mid <= high and math.isfinite(high)
        assert math.isfinite(forecast.mean[k]) and forecast.mean[k] >= 0
    assert forecast.issued_at_s == UNIX_S + 540 * STEP_S


@pytest.mark.parametrize(("cls", "params"), CASES, ids=IDS)
def test_cutting_the_history_changes_no_forecast(cls: type[Forecaster], params: dict[str, Any]) -> None:
    # With a bound of 120 (more than any of these models reads back), the kept series is cut from 240 to 120
    # points after 120 updates; every model's state follows the cut (shifted, not refitted), so the forecasts
    # are those of the same model keeping everything.
    y = _series(270)
    kept = cls(**params).fit(y[:120], STEP_S, start_s=UNIX_S)
    cut = cls(**params, max_history=120).fit(y[:120], STEP_S, start_s=UNIX_S)
    for value in y[120:]:
        kept.update([value])
        cut.update([value])
    assert cut.dropped_ == 120 and len(cut.filled_) == 150
    a, b = kept.predict(7, (0.5, 0.9, 0.99)), cut.predict(7, (0.5, 0.9, 0.99))
    assert b.mean == pytest.approx(a.mean, rel=1e-9)
    for q in (0.5, 0.9, 0.99):
        assert b.quantiles[q] == pytest.approx(a.quantiles[q], rel=1e-9)
    assert b.issued_at_s == a.issued_at_s == UNIX_S + 270 * STEP_S


def test_a_model_without_a_drop_hook_is_refitted_on_the_kept_series() -> None:
    class MeanOfHistory(Forecaster):
        """Forecasts the mean of the series it was fitted on: state that indexes (summarizes) the series."""

        alias = "mean_of_history"

        def _fit(self, y: np.ndarray) -> None:
            self.mean_ = float(np.mean(y))
            self.fits_ = getattr(self, "fits_", 0) + 1

        def _predict_from(self, origin: int, horizon: int) -> np.ndarray:
            return np.full(horizon, self.mean_)

    model = MeanOfHistory(max_history=4, burst_correction=False).fit([1.0, 2.0, 3.0, 4.0], STEP_S)
    model.update([10.0, 10.0, 10.0])
    assert model.fits_ == 1  # 7 points kept: under 2 x 4
    model.update([10.0])  # 8 = 2 x 4: cut to the last 4, and refitted on them
    assert model.fits_ == 2
    assert model.filled_.tolist() == [10.0] * 4
    assert model.predict(1).mean == (10.0,)


def test_fill_gaps_carries_forward_and_back() -> None:
    filled = fill_gaps(np.array([np.nan, 2.0, np.nan, np.nan, 5.0, np.nan]))
    assert filled.tolist() == [2.0, 2.0, 2.0, 2.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="no observed value"):
        fill_gaps(np.array([np.nan, np.nan]))


def test_cleaning_reports_what_it_found() -> None:
    _, report = clean_series([1.0, 0.0, -1.0, math.nan, math.inf])
    assert (report.missing, report.negative, report.non_finite, report.zeros) == (1, 1, 1, 1)
    assert "1 zeros" in report.describe()


def test_unfitted_model_and_bad_horizon_say_what_is_wrong() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        SeasonalNaive().predict(3)
    model = SeasonalNaive(None).fit(_series(), STEP_S)
    with pytest.raises(ValueError, match="horizon"):
        model.predict(0)


def test_seasonal_naive_repeats_the_last_season() -> None:
    y = np.arange(20, dtype=np.float64)  # season of 600 s = 10 steps at 60 s
    forecast = SeasonalNaive(season_s=600).fit(y, STEP_S).predict(12)
    assert forecast.mean == tuple(float(v) for v in [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 10, 11])


def test_quantiles_hold_their_coverage_on_a_stationary_series() -> None:
    y = _series(1200, seed=11)
    score = rolling_origin(HoltWinters(season_s=600.0), y, STEP_S, 800, 5, quantiles=(0.5, 0.9))
    assert 0.85 <= score.coverage[0.9] <= 0.95
    assert 0.4 <= score.coverage[0.5] <= 0.6


def test_auto_chooses_by_backtest_and_falls_back_when_everything_fails() -> None:
    class Broken(SeasonalNaive):
        alias = "broken"

        @property
        def name(self) -> str:
            return "broken"

        def _fit(self, y: np.ndarray) -> None:
            raise RuntimeError("no luck")

    model = AutoForecaster(horizon=3, candidates=[Broken(None)]).fit(_series(), STEP_S)
    assert "broken" in model.failures_
    assert model.predict(3).model == "auto:naive"
    good = AutoForecaster(horizon=3, candidates=[SeasonalNaive(None), SeasonalNaive(600.0)]).fit(_series(), STEP_S)
    # The 10-step cycle makes the seasonal naive far better than the last value.
    assert good.name == "auto:seasonal_naive_600s"
    assert good.scores_["seasonal_naive_600s"].pinball < good.scores_["naive"].pinball


@pytest.mark.parametrize(("max_origins", "want"), [(None, 59), (60, 59), (10, 10), (1, 1)])
def test_selection_scores_at_most_max_backtest_origins(max_origins: int | None, want: int) -> None:
    # 240 points, a quarter held back: origins 180 .. 238, 59 of them. A bound of 10 gives a stride of
    # ceil(59 / 10) = 6: origins 180, 186, ..., 234, 10 forecasts.
    model = AutoForecaster(horizon=3, candidates=[SeasonalNaive(None)], max_backtest_origins=max_origins)
    assert model.fit(_series(), STEP_S).scores_["naive"].forecasts == want


@pytest.mark.parametrize(("cls", "params"), CASES, ids=IDS)
def test_a_service_that_scales_to_zero_gets_finite_non_negative_forecasts(
    cls: type[Forecaster], params: dict[str, Any]
) -> None:
    y = np.zeros(240)
    y[::37] = 5.0  # now and then a request burst on an idle service
    forecast = cls(**params).fit(y, STEP_S).predict(5, (0.5, 0.9, 0.99))
    for k in range(5):
        assert 0 <= forecast.quantiles[0.5][k] <= forecast.quantiles[0.9][k] <= forecast.quantiles[0.99][k]
        assert math.isfinite(forecast.quantiles[0.99][k])


def test_a_level_shift_is_followed_within_a_few_steps() -> None:
    # 200 steps around 100, then the load doubles (ServeGen m-small changes regime like this around day 9).
    rng = np.random.default_rng(5)
    y = np.concatenate((rng.normal(100, 3, 200), rng.normal(200, 5, 40)))
    model = HoltWinters(season_s=None).fit(y[:200], STEP_S)
    for value in y[200:210]:
        model.update([value])
    forecast = model.predict(3)
    # Ten steps after the shift the forecast is near the new level, not the old one.
    assert forecast.mean[0] == pytest.approx(200, rel=0.1)
    assert forecast.quantiles[0.9][0] >= forecast.mean[0] * 0.95


def test_selection_scores_the_quantiles_it_is_told_and_keeps_the_incumbent_within_its_margin() -> None:
    y = _series(300)  # a 10-step cycle on a trend: the last value (naive) trails it
    candidates = [SeasonalNaive(None), SeasonalNaive(600.0)]
    free = AutoForecaster(horizon=3, candidates=candidates, scored_quantiles=(0.9,)).fit(y, STEP_S)
    assert set(free.scores_["naive"].coverage) == {0.9}  # scored at the quantile asked for only
    naive, seasonal = (free.scores_[n].pinball for n in ("naive", "seasonal_naive_600s"))
    assert seasonal < naive and free.name == "auto:seasonal_naive_600s"
    # The incumbent (the first candidate) stays unless the best beats it by more than the margin.
    beaten_by = 1 - seasonal / naive
    kept = AutoForecaster(horizon=3, candidates=candidates, scored_quantiles=(0.9,), incumbent_margin=beaten_by + 0.01)
    assert kept.fit(y, STEP_S).name == "auto:naive"
    lost = AutoForecaster(horizon=3, candidates=candidates, scored_quantiles=(0.9,), incumbent_margin=beaten_by - 0.01)
    assert lost.fit(y, STEP_S).name == "auto:seasonal_naive_600s"


def test_peak_pinball_judges_the_peak_over_the_horizon() -> None:
    # A spike every 5 steps: within any 5-step window the peak is a spike. The last value (naive) misses it in most
    # windows; the seasonal naive of 5 steps puts it in every path.
    y = np.array([100.0 if k % 5 == 0 else 10.0 for k in range(200)])
    naive = rolling_origin(SeasonalNaive(None), y, STEP_S, 150, 5, quantiles=(0.9,))
    seasonal = rolling_origin(SeasonalNaive(5 * STEP_S), y, STEP_S, 150, 5, quantiles=(0.9,))
    assert seasonal.peak_pinball < naive.peak_pinball
    assert math.isfinite(naive.peak_pinball)
    chosen = AutoForecaster(
        horizon=5, candidates=[SeasonalNaive(None), SeasonalNaive(5 * STEP_S)], scored_quantiles=(0.9,),
        criterion="peak_pinball",
    )  # fmt: skip
    assert chosen.fit(y, STEP_S).name == "auto:seasonal_naive_300s"
