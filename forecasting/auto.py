"""Model selection by rolling-origin backtest: the model the controller uses for one series.

`AutoForecaster` holds back the last `validation_fraction` of the series it is fitted on, backtests every
candidate there (fit on the rest, forecast `horizon` steps from each origin, `update` in between, as in
production), chooses the lowest MASE, and refits the winner on the whole series. A candidate that fails is
skipped and its error recorded; if all fail, or the winner fails later, seasonal naive takes over, and the
forecast's `model` names what produced it.

Candidates depend on the span of the history: seasons (a week, a day, an hour, five minutes) are offered only
where the training part holds at least two of them; `BurstEnvelope` joins them on request.

Selection cost is bounded: each candidate is scored at `max_backtest_origins` origins at most, spread evenly over
the validation part (the values in between are fed with `update` in batches, as a controller that missed a few
ticks would). On 1,440 points that is a stride of 6 steps instead of 1 (ceil(359 origins / 60)).

A winner with quantiles of its own (`native_quantiles`, e.g. `BurstEnvelope`), chosen alone (`ensemble_size=1`),
is published as it is: its mean and quantiles, not conformal quantiles around it, and `model` reads
"auto:burst_envelope". An ensemble of several gets conformal quantiles around the mean of its members, as before.

With `max_history`, the members keep the same bound (or a tighter one of their own): each member trims its own
series, and forecasts from an origin of the selector's series are asked of the members at the same time, their
series being aligned at the end (every update reaches all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from forecasting.backtest import BacktestScore, rolling_origin
from forecasting.base import DEFAULT_QUANTILES, FloatArray, Forecaster
from forecasting.burst import BurstEnvelope
from forecasting.gbm import QuantileGBM
from forecasting.holt_winters import HoltWinters
from forecasting.naive import SeasonalNaive
from forecasting.sarimax import Sarimax

_SEASONS_S = (604800.0, 86400.0, 3600.0, 300.0)


def default_candidates(span_s: float, step_s: float, *, burst_envelope: bool = False) -> list[Forecaster]:
    """The candidate models for a history of `span_s` seconds at `step_s` resolution (and `BurstEnvelope` if asked:
    the controller's per-tick series at 15 s, where bursts matter more than seasons)."""
    seasons = [s for s in _SEASONS_S if span_s >= 2 * s and s >= 4 * step_s]
    main = seasons[1] if len(seasons) > 1 and seasons[0] == 604800.0 else (seasons[0] if seasons else None)
    candidates: list[Forecaster] = [SeasonalNaive(None)]
    candidates.extend(SeasonalNaive(s) for s in seasons[:2])
    candidates.append(HoltWinters(main))
    if main is not None:
        candidates.append(HoltWinters(None))
    candidates.append(Sarimax(season_s=main if main is not None and main >= 3600 else None))
    candidates.append(QuantileGBM())
    if burst_envelope:
        candidates.append(BurstEnvelope())
    return candidates


class AutoForecaster(Forecaster):
    """The candidate with the best backtest (or the mean of the best `ensemble_size`). Stability: alpha.

    `max_backtest_origins` bounds the forecasts scored per candidate (None: every step of the validation part).
    `scored_quantiles` are the quantiles the pinball criterion averages (None: 0.5, 0.9, 0.99): a caller that sizes
    on one quantile scores that one. `incumbent_margin` keeps the first candidate unless another's criterion is lower
    by more than that share of it (0: the best wins outright), for a caller whose first candidate is the model it
    trusts until another is clearly better.
    """

    alias = "auto"

    def __init__(
        self,
        horizon: int = 6,
        candidates: Sequence[Forecaster] | None = None,
        validation_fraction: float = 0.25,
        ensemble_size: int = 1,
        criterion: str = "pinball",
        selection: bool = True,
        max_backtest_origins: int | None = 60,
        scored_quantiles: Sequence[float] | None = None,
        incumbent_margin: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.horizon = horizon
        self.candidates = candidates
        self.validation_fraction = validation_fraction
        self.ensemble_size = ensemble_size
        self.criterion = criterion
        self.selection = selection
        self.max_backtest_origins = max_backtest_origins
        self.scored_quantiles = scored_quantiles
        self.incumbent_margin = incumbent_margin

    @property
    def name(self) -> str:
        return f"auto:{self.chosen_name}" if hasattr(self, "members_") else self.alias

    @property
    def native_quantiles(self) -> bool:
        # Only a winner alone: the mean of several members has no quantiles of its own.
        return hasattr(self, "members_") and len(self.members_) == 1 and self.members_[0].native_quantiles

    def _fit(self, y: FloatArray) -> None:
        n = len(y)
        candidates = (
            list(self.candidates) if self.candidates is not None else default_candidates(n * self.step_s_, self.step_s_)
        )
        self.scores_: dict[str, BacktestScore] = {}
        self.failures_: dict[str, str] = {}
        if not self.selection:
            # A choice made earlier (say, yesterday's selection): fit those members, skip the backtests.
            self._fit_members(candidates[: max(1, self.ensemble_size)])
            return
        split = max(2, int(n * (1 - self.validation_fraction)))
        scale_season = _scale_season(split, self.step_s_)
        stride = _stride(n - 1 - split, self.max_backtest_origins)
        quantiles = tuple(self.scored_quantiles) if self.scored_quantiles is not None else DEFAULT_QUANTILES
        for candidate in candidates:
            model = candidate.clone()
            try:
                score = rolling_origin(
                    model, self.observed_, self.step_s_, split, self.horizon, stride=stride, quantiles=quantiles,
                    scale_season=scale_season, start_s=self.start_s_,
                )  # fmt: skip
            except Exception as exc:
                self.failures_[model.name] = f"{type(exc).__name__}: {exc}"
                continue
            if np.isfinite(score.mase):
                self.scores_[model.name] = score
        ranked = sorted(self.scores_.items(), key=lambda item: _rank(item[1], self.criterion))
        incumbent = candidates[0].clone().name if candidates else None
        if self.incumbent_margin > 0 and ranked and incumbent in self.scores_ and ranked[0][0] != incumbent:
            kept = _criterion(self.scores_[incumbent], self.criterion)
            if _criterion(ranked[0][1], self.criterion) > kept * (1 - self.incumbent_margin):
                # Not better by the margin: the incumbent stays (first), the rest keep their order.
                ranked = [(incumbent, self.scores_[incumbent]), *[r for r in ranked if r[0] != incumbent]]
        by_name = {c.clone().name: c for c in candidates}
        winners = [by_name[name] for name, _ in ranked[: max(1, self.ensemble_size)]] or [SeasonalNaive(None)]
        self._fit_members(winners)

    def _fit_members(self, winners: Sequence[Forecaster]) -> None:
        self.members_: list[Forecaster] = []
        for winner in winners:
            model = winner.clone()
            if self.max_history is not None and (model.max_history is None or model.max_history > self.max_history):
                model.max_history = self.max_history  # the ensemble's bound holds for its members
            try:
                # Only the ensemble's own quantiles are read, so the members skip their calibration.
                self.members_.append(model.fit(self.observed_, self.step_s_, self.start_s_, calibrate=False))
            except Exception as exc:  # a winner failing on the whole series is dropped, and reported
                self.failures_[model.name] = f"{type(exc).__name__}: {exc}"
        if not self.members_:
            fallback = SeasonalNaive(None, max_history=self.max_history)
            self.members_ = [fallback.fit(self.observed_, self.step_s_, self.start_s_)]

    @property
    def chosen_name(self) -> str:
        return "+".join(m.name for m in self.members_)

    def _advance(self, start: int) -> None:
        for member in self.members_:
            member.update(self.observed_[start:])

    def _after_drop(self, count: int) -> None:
        # The members trim their own series (they carry the bound), and _member_origin maps origins onto them:
        # nothing to refit, and above all no new selection.
        pass

    def _member_origin(self, member: Forecaster, origin: int) -> int:
        """`origin` of this series as an index of `member`'s: both end at the last value fed.

        A member that keeps less history (its own tighter bound) is asked from its first point at the earliest.
        """
        return max(1, origin - (len(self.filled_) - len(member.filled_)))

    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        means = [member._predict_from(self._member_origin(member, origin), horizon) for member in self.members_]
        return np.asarray(np.mean(means, axis=0), dtype=np.float64)

    def _predict_quantiles_from(
        self, origin: int, horizon: int, quantiles: Sequence[float]
    ) -> dict[float, FloatArray] | None:
        if not self.native_quantiles:
            return None
        member = self.members_[0]
        return member._predict_quantiles_from(self._member_origin(member, origin), horizon, quantiles)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        return [
            {"horizon": 3, "candidates": [SeasonalNaive(None), HoltWinters(None, log=False)]},
            # A native winner alone: the selector publishes the envelope's own forecast.
            {"horizon": 3, "candidates": [BurstEnvelope()]},
        ]


def _criterion(score: BacktestScore, criterion: str) -> float:
    """Lower is better. Pinball loss (the default) rewards calibrated quantiles as well as an accurate median;
    `peak_pinball` judges each forecast's highest quantile over its horizon against the highest value that came,
    which is what sizing for the coming cold start reads."""
    if criterion == "mase":
        return score.mase
    if criterion == "pinball":
        return score.pinball
    if criterion == "peak_pinball":
        return score.peak_pinball
    raise ValueError(f"criterion must be 'pinball', 'peak_pinball' or 'mase', not {criterion!r}")


def _rank(score: BacktestScore, criterion: str) -> float:
    """The criterion as a sort key: a score it cannot judge (NaN: no whole window to take a peak of) ranks last."""
    value = _criterion(score, criterion)
    return value if np.isfinite(value) else np.inf


def _stride(origins: int, max_origins: int | None) -> int:
    """The stride between backtest origins that keeps `origins` consecutive ones to `max_origins` at most.

    Example: 359 origins (1,440 points, a quarter held back) and max_origins=60 give ceil(359 / 60) = 6, so
    origins 1080, 1086, ..., 1434: 60 forecasts.
    """
    if max_origins is None or origins <= max_origins:
        return 1
    return -(-origins // max(1, max_origins))


def _scale_season(train_points: int, step_s: float) -> int:
    """Season (in steps) of the naive forecast that scales MASE: a day if two fit, else one step."""
    day = round(86400.0 / step_s)
    return day if train_points >= 2 * day else 1
