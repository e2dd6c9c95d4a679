"""BurstEnvelope: its formulas by hand, its equality with the simulator's RateForecaster, its native quantiles."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from forecasting.auto import AutoForecaster, default_candidates
from forecasting.burst import BurstEnvelope
from forecasting.naive import SeasonalNaive

NAN = math.nan


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    y: tuple[float, ...]
    params: dict[str, Any]
    want_mean: tuple[float, ...]
    want: dict[float, tuple[float, ...]] = field(default_factory=dict)
    step_s: float = 60.0


R2 = math.sqrt(2.0)

CASES = [
    Case(
        # The module docstring's example. L = 300 / 60 = 5, M = 120 / 60 = 2: v = [10, 20, 30, 40, 60] (the 5 is
        # outside the lookback); level = (40 + 60) / 2 = 50; before = [20, 30], mean 25; growth 2 over 120 s, so
        # trend_k = 2 ** ((k + 1) / 2) = sqrt 2, 2, 2 sqrt 2, 4 (4 = 2 ** 2 is the cap), 4 (2 ** 2.5, capped).
        # q 0.9: sorted(v)[ceil(4.5) - 1] = 60 > level. q 0.5: sorted(v)[ceil(2.5) - 1] = 30 < level: the level.
        "ramp_capped_at_max_trend",
        (5, 10, 20, 30, 40, 60),
        {"lookback_s": 300.0, "level_s": 120.0},
        (50 * R2, 100, 100 * R2, 200, 200),
        {0.5: (50 * R2, 100, 100 * R2, 200, 200), 0.9: (60 * R2, 120, 120 * R2, 240, 240)},
    ),
    Case(
        # L = 4, M = 2: level = 20, before = [40, 40]: growth 0.5 < 1, so the trend stays 1.
        # q 0.9: sorted [20, 20, 40, 40][ceil(3.6) - 1 = 3] = 40; q 0.5: [ceil(2) - 1 = 1] = 20 = the level.
        "falling_load_has_no_trend",
        (40, 40, 20, 20),
        {"lookback_s": 240.0, "level_s": 120.0},
        (20, 20, 20),
        {0.5: (20, 20, 20), 0.9: (40, 40, 40)},
    ),
    Case(
        # L = 5, M = 1: the NaN and the negative reading are missing, so v = [90, 30, 50]; level = 50; before =
        # [30]: growth 5/3 per step, trend 5/3, 25/9, then 125/27 = 4.63 capped at 4.
        # q 0.99: sorted(v)[ceil(2.97) - 1 = 2] = 90; q 0.5: sorted(v)[1] = 50 = the level.
        "missing_and_negative_values_are_left_out",
        (90, NAN, 30, -1, 50),
        {"lookback_s": 300.0, "level_s": 60.0},
        (50 * 5 / 3, 50 * 25 / 9, 200),
        {0.5: (50 * 5 / 3, 50 * 25 / 9, 200), 0.99: (90 * 5 / 3, 90 * 25 / 9, 360)},
    ),
    Case(
        # L = 3: the window [NaN, NaN, NaN] has no observed value, so it reads the gap-filled [12, 12, 12]:
        # level 12, growth 1, every quantile 12.
        "an_all_missing_window_reads_the_carried_value",
        (8, 12, NAN, NAN, NAN),
        {"lookback_s": 180.0, "level_s": 60.0},
        (12, 12),
        {0.9: (12, 12)},
    ),
    Case(
        # Defaults at 60 s: L = 30, M = 5, but only 2 values: level = (4 + 6) / 2 = 5; before = v[0:0] is empty:
        # trend 1. q 0.9: sorted [4, 6][ceil(1.8) - 1 = 1] = 6; q 0.5: [ceil(1) - 1 = 0] = 4 < 5: the level.
        "short_history_has_no_before_window",
        (4, 6),
        {},
        (5, 5),
        {0.5: (5, 5), 0.9: (6, 6)},
    ),
    Case(
        # L = 4, M = 2: level (3 + 5) / 2 = 4; before [0, 0] sums to 0: no growth to measure, trend 1.
        "an_idle_before_window_gives_no_trend",
        (0, 0, 3, 5),
        {"lookback_s": 240.0, "level_s": 120.0},
        (4, 4),
        {0.9: (5, 5)},
    ),
    Case(
        # L = 4, M = 2: level 10, before mean 1: growth 10 over 120 s; trend 10 ** 0.5 = 3.16 at the first step's
        # end (60 s), then 10 capped at max_trend 4.
        "steep_ramp_reaches_the_cap_at_the_second_step",
        (1, 1, 10, 10),
        {"lookback_s": 240.0, "level_s": 120.0, "max_trend": 4.0},
        (10 * math.sqrt(10), 40),
        {0.9: (10 * math.sqrt(10), 40)},
    ),
    Case(
        # L = 4, M = 2: growth 1e5 / 1e-300 = 1e305; 1e305 ** 1.5 overflows a float: the trend is at the cap.
        "an_overflowing_growth_is_the_cap",
        (1e-300, 1e-300, 1e5, 1e5),
        {"lookback_s": 240.0, "level_s": 120.0},
        (4e5, 4e5, 4e5),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_envelope_by_hand(case: Case) -> None:
    model = BurstEnvelope(**case.params).fit(case.y, case.step_s)
    forecast = model.predict(len(case.want_mean), tuple(case.want) or (0.5,))
    assert forecast.mean == pytest.approx(case.want_mean, rel=1e-12)
    for q, want in case.want.items():
        assert forecast.quantiles[q] == pytest.approx(want, rel=1e-12), q
    assert forecast.model == "burst_envelope"


# ── the reference: autoscaler/sim/policies.py RateForecaster's formulas, copied ───────────────────────────────────


def _rate_forecaster(
    rates: Sequence[float], tick_s: float, horizon_s: float, quantiles: Sequence[float]
) -> tuple[tuple[float, ...], dict[float, tuple[float, ...]]]:
    """RateForecaster(tick_s).observe(r) for r in rates, then .forecast(horizon_s, quantiles): (mean, quantiles)."""
    lookback = max(1, round(1800.0 / tick_s))
    level_ticks = max(1, round(300.0 / tick_s))
    history: deque[float] = deque(rates, maxlen=lookback)
    values = sorted(history)
    recent = list(history)[-level_ticks:]
    before = list(history)[-2 * level_ticks : -level_ticks]
    level = sum(recent) / len(recent)
    trend = 1.0
    if before and sum(before) > 0:
        trend = min(4.0, max(1.0, (level / (sum(before) / len(before))) ** (horizon_s / (level_ticks * tick_s))))
    steps = max(1, math.ceil(horizon_s / tick_s))
    quantile_values = {}
    for q in quantiles:
        rank = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
        quantile_values[q] = (max(values[rank], level) * trend,) * steps
    return (level * trend,) * steps, quantile_values


def _rates(n: int, seed: int, ramp: float) -> list[float]:
    """Poisson-like request rates per tick with bursts, on a level that grows by `ramp` per tick."""
    rng = np.random.default_rng(seed)
    level = 30 + ramp * np.arange(n)
    bursts = (rng.random(n) < 0.05) * rng.exponential(60, n)
    return [float(v) for v in rng.poisson(level + bursts) / 1.0]


QUANTILES = (0.5, 0.9, 0.95, 0.99)


@pytest.mark.parametrize(
    ("tick_s", "steps", "ramp", "n"),
    [
        (15.0, 9, 0.0, 400),  # the controller's tick, a 135 s horizon, a flat load (trend 1)
        (15.0, 9, 0.2, 400),  # the same on a ramp: the trend is above 1 and grows over the steps
        (15.0, 1, 0.2, 400),  # one step: every step is the last
        (15.0, 40, 0.5, 150),  # a horizon past level_s on a steep ramp (the cap binds), a short history
        (7.0, 12, 0.1, 600),  # a tick that does not divide level_s: M = 43, a period of 301 s, as there
        (60.0, 5, 1.0, 12),  # few values: the before window is partial
    ],
)
def test_the_peak_and_last_step_equal_rate_forecasters(tick_s: float, steps: int, ramp: float, n: int) -> None:
    rates = _rates(n, seed=int(tick_s) + steps, ramp=ramp)
    horizon_s = steps * tick_s
    want_mean, want = _rate_forecaster(rates, tick_s, horizon_s, QUANTILES)
    # Fitted on the first half and fed the rest one tick at a time, as the control loop would.
    model = BurstEnvelope().fit(rates[: n // 2], tick_s)
    for rate in rates[n // 2 :]:
        model.update([rate])
    forecast = model.predict(steps, QUANTILES)
    # RateForecaster carried the trend to the horizon for every step; here step k carries it to its own end, so
    # the last step is the same to the bit, and the earlier ones are at most that.
    assert forecast.mean[-1] == want_mean[-1]
    assert all(v <= want_mean[-1] for v in forecast.mean)
    for q in QUANTILES:
        assert forecast.quantiles[q][-1] == want[q][-1], q
        assert all(v <= want[q][-1] for v in forecast.quantiles[q])
        # What the decision reads, the peak over the horizon, is the same.
        assert forecast.peak_over(q, horizon_s) == (want[q][0], q)
    if steps == 1:  # the only step is the last: all of it is RateForecaster's
        assert forecast.mean == want_mean
        assert {q: forecast.quantiles[q] for q in QUANTILES} == want


def test_a_flat_load_gives_rate_forecasters_numbers_at_every_step() -> None:
    rates = [20.0, 30.0] * 100  # no growth: the trend is 1 at every step, so every step equals RateForecaster's
    want_mean, want = _rate_forecaster(rates, 15.0, 9 * 15.0, QUANTILES)
    forecast = BurstEnvelope().fit(rates, 15.0).predict(9, QUANTILES)
    assert forecast.mean == want_mean == (25.0,) * 9
    assert {q: forecast.quantiles[q] for q in QUANTILES} == want


# ── native quantiles ──────────────────────────────────────────────────────────────────────────────────────────────


def _bursty(n: int = 600, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.poisson(40, n).astype(np.float64)
    y[300:306] = 400.0  # a burst: it would move a conformal model's corrections and coverage
    y[450:] *= 2.0  # and a level shift
    return y


def test_forecasts_are_a_function_of_the_window_only() -> None:
    # No conformal quantiles, no adaptive conformal inference, no burst or level-shift correction (even with
    # burst_correction on, the default): after any sequence of updates the forecast is that of a model fitted on
    # the same values at once.
    y = _bursty()
    model = BurstEnvelope().fit(y[:100], 15.0, start_s=1.7e9)
    for i in range(100, len(y)):
        model.update([y[i]])
        if i % 7 == 0:
            fed = model.predict(9, QUANTILES)
            fresh = BurstEnvelope().fit(y[: i + 1], 15.0, start_s=1.7e9).predict(9, QUANTILES)
            assert fed == fresh, i
            assert fed.issued_at_s == 1.7e9 + (i + 1) * 15.0


def test_no_calibration_backtest_and_no_bookkeeping() -> None:
    model = BurstEnvelope().fit(_bursty(), 15.0)
    assert all(len(errors) == 0 for errors in model._errors)  # no backtest at fit
    for value in _bursty(200, seed=9):
        model.predict(9, QUANTILES)
        model.update([value])
    # Nothing kept per issued forecast or per outcome: predict and update cost the window only.
    assert len(model._issued) == 0
    assert len(model._one_step) == 0
    assert model._adjusted == {}


def test_history_defaults_to_twice_the_lookback() -> None:
    model = BurstEnvelope().fit(_bursty(), 15.0, start_s=1.7e9)  # L = 1800 / 15 = 120: kept 240 to 479 points
    assert len(model.filled_) == 240
    for value in _bursty(10_000, seed=2):
        model.update([value])
        assert len(model.filled_) < 2 * 240
    assert model.points_seen == 600 + 10_000
    assert model.predict(3).issued_at_s == 1.7e9 + 10_600 * 15.0
    # An explicit bound replaces the default.
    assert len(BurstEnvelope(max_history=500).fit(_bursty(), 15.0).filled_) == 500


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lookback_s": 0.0}, "lookback_s"),
        ({"level_s": -1.0}, "level_s"),
        ({"max_trend": 0.5}, "max_trend"),
        ({"max_history": 1}, "max_history"),
    ],
)
def test_bad_hyperparameters_are_refused_at_fit(params: dict[str, Any], message: str) -> None:
    model = BurstEnvelope(**params)  # __init__ stores them only
    with pytest.raises(ValueError, match=message):
        model.fit([1.0, 2.0, 3.0], 15.0)


# ── in the selector ───────────────────────────────────────────────────────────────────────────────────────────────


def test_the_selector_publishes_a_native_winners_own_forecast() -> None:
    y = _bursty()
    auto = AutoForecaster(horizon=9, candidates=[BurstEnvelope()]).fit(y[:400], 15.0, start_s=1.7e9)
    alone = BurstEnvelope().fit(y[:400], 15.0, start_s=1.7e9)
    assert auto.name == "auto:burst_envelope"
    assert auto.native_quantiles
    assert all(len(errors) == 0 for errors in auto._errors)  # no conformal calibration around it
    for value in y[400:]:
        auto.update([value])
        alone.update([value])
    ours, its = auto.predict(9, QUANTILES), alone.predict(9, QUANTILES)
    assert ours.model == "auto:burst_envelope"
    assert (ours.mean, ours.quantiles, ours.issued_at_s) == (its.mean, its.quantiles, its.issued_at_s)


def test_an_ensemble_with_the_envelope_gets_conformal_quantiles() -> None:
    y = _bursty()
    candidates = [BurstEnvelope(), SeasonalNaive(None)]
    auto = AutoForecaster(horizon=3, candidates=candidates, ensemble_size=2).fit(y[:400], 15.0)
    assert not auto.native_quantiles  # the mean of two members has no quantiles of its own
    for value in y[400:450]:
        auto.update([value])
    forecast = auto.predict(3, QUANTILES)
    assert "burst_envelope" in forecast.model
    for k in range(3):
        path = [forecast.quantiles[q][k] for q in QUANTILES]
        assert all(math.isfinite(v) and v >= 0 for v in path)
        assert path == sorted(path)


def test_a_bounded_selector_keeps_its_native_member_aligned() -> None:
    # The member keeps 2 x 120 points of its own, the selector 300: origins are matched at the last value fed.
    y = _bursty(2000)
    auto = AutoForecaster(horizon=9, candidates=[BurstEnvelope()], max_history=300).fit(y[:400], 15.0)
    alone = BurstEnvelope().fit(y[:400], 15.0)
    for value in y[400:]:
        auto.update([value])
        alone.update([value])
        assert len(auto.filled_) < 600
    assert len(auto.members_[0].filled_) < 480
    assert auto.predict(9, QUANTILES) == dataclasses.replace(alone.predict(9, QUANTILES), model="auto:burst_envelope")


def test_default_candidates_offer_the_envelope_on_request() -> None:
    names = [c.name for c in default_candidates(6 * 3600.0, 15.0, burst_envelope=True)]
    assert names[-1] == "burst_envelope"
    assert "burst_envelope" not in [c.name for c in default_candidates(6 * 3600.0, 15.0)]
