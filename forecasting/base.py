"""The one Forecaster contract, its input cleaning, and the calibration every model shares.

Stability: alpha. Subclasses implement `_fit(y)` and `_predict_from(index, horizon)`; everything else is here.

- `__init__` stores hyperparameters only (no validation, no fitting), so that a model can be cloned from them.
- `fit(y, step_s, start_s)` validates and cleans the series, fits, then calibrates quantiles; attributes set by
  fitting end in `_`. `update(new_values)` appends observations cheaply (a refit happens every `refit_every`
  points); `predict(horizon, quantiles)` returns a `Forecast` with the mean and the requested quantiles per step.
- Input: NaN is missing data (a gap in the series), never zero load. Negative and infinite values are treated as
  missing too. The model sees the series with gaps filled by carrying the last value forward (or the first
  value backward at the start); the report says how many values were missing, negative or zero.
- Quantiles are conformal: the model's relative errors at each horizon step, from a rolling backtest at fit time
  and then from every forecast it issued and saw come true, give the quantiles of y / mean - 1 per step. They hold
  their coverage whatever the model, and adapt when the series changes regime.
- Adaptive conformal inference then moves each quantile's level with the coverage actually seen.
- A short-horizon burst correction follows a burst in progress: the last one-step relative error of the model,
  decayed by its lag-1 autocorrelation over the steps, scales the mean (so a spike is not ignored until the next
  refit); a level shift (several one-step errors of one sign, far outside the usual spread) scales it by their
  mean until the model catches up.
- Native quantiles: a model whose quantiles are its own (`native_quantiles` true, `_predict_quantiles_from`
  implemented, e.g. `BurstEnvelope`) gets none of the three above. Its mean and quantiles are published as it
  computes them, `fit` runs no calibration backtest, and `update`/`predict` keep none of the bookkeeping those
  need (issued forecasts, errors per step, coverage), so that both cost what the model's window costs, not what
  the history or the number of issued forecasts does.
- Bounded history: with `max_history` set, the kept series (`observed_`, `filled_`) is cut back to its last
  `max_history` points whenever it reaches 2 x `max_history` (one copy every `max_history` updates: amortized
  O(1) per point), so a model fed for weeks keeps bounded memory. `dropped_` counts the points cut; `start_s_` is
  the time of the first kept point, so index i of the kept series is at `start_s_ + i * step_s_` and issue times
  stay absolute. Models whose state indexes the series adjust it in `_after_drop(count)` (the default refits).
  Without `max_history` (None, the default) nothing is ever dropped and every model behaves as before.

  Worked example: max_history=100, fitted on 150 points from start_s=1.7e9 at step_s=15: the first 50 are cut at
  fit (dropped_=50, start_s_=1.7e9 + 50 * 15); 100 updates of one point later the kept series reaches 200 and is
  cut to 100 (dropped_=150, start_s_=1.7e9 + 2250); a forecast issued then has issued_at_s = 1.7e9 + (150 + 100)
  * 15 = 1.7e9 + 3750: start_s plus the 250 points seen (150 fitted, 100 updates) times step_s, as without a bound.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from forecasting.forecast import Forecast

FloatArray = npt.NDArray[np.float64]
DEFAULT_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class DataReport:
    """What cleaning found in the input series."""

    length: int
    missing: int
    negative: int
    non_finite: int
    zeros: int

    def describe(self) -> str:
        parts = [f"{self.length} points"]
        for name in ("missing", "negative", "non_finite", "zeros"):
            count = getattr(self, name)
            if count:
                parts.append(f"{count} {name.replace('_', '-')}")
        return ", ".join(parts)


def clean_series(values: Sequence[float] | FloatArray) -> tuple[FloatArray, DataReport]:
    """A float copy with negative and infinite values turned into NaN (missing), and a report."""
    array = np.array(values, dtype=np.float64, copy=True)
    missing = int(np.isnan(array).sum())
    non_finite = int(np.isinf(array).sum())
    negative = int((array < 0).sum())
    array[~np.isfinite(array)] = np.nan
    array[array < 0] = np.nan
    zeros = int((array == 0).sum())
    return array, DataReport(len(array), missing, negative, non_finite, zeros)


def _clean_values(values: Sequence[float] | FloatArray) -> FloatArray:
    """`clean_series` without the report, with a fast path for the one value per tick of a controller."""
    if len(values) == 1:
        value = float(values[0])
        return np.array([value if math.isfinite(value) and value >= 0 else math.nan], dtype=np.float64)
    return clean_series(values)[0]


def _fill_after(last: float, new: FloatArray) -> FloatArray:
    """`new` with its gaps filled, carrying `last` (the last filled value before it) into a gap at its start."""
    if len(new) == 1:
        # One value per tick is the controller's case: skip fill_gaps' array work.
        return new if not math.isnan(new[0]) else np.array([last])
    return fill_gaps(np.concatenate(([last], new)))[1:]


def fill_gaps(array: FloatArray) -> FloatArray:
    """Carry the last observed value over gaps (the first observed one backwards at the start)."""
    filled = array.copy()
    mask = np.isnan(filled)
    if not mask.any():
        return filled
    if mask.all():
        raise ValueError("the series has no observed value")
    index = np.where(~mask, np.arange(len(filled)), 0)
    np.maximum.accumulate(index, out=index)
    filled = filled[index]
    first = int(np.argmax(~mask))
    filled[:first] = filled[first]
    return filled


class Forecaster(abc.ABC):
    """Base of every forecasting model (see the module docstring for the contract). Stability: alpha.

    `max_history` bounds the points kept (None: all of them; see "Bounded history" in the module docstring).
    """

    alias: ClassVar[str] = "forecaster"

    def __init__(
        self,
        *,
        calibration_window: int = 500,
        burst_correction: bool = True,
        refit_every: int | None = None,
        max_history: int | None = None,
        seed: int = 0,
    ) -> None:
        self.calibration_window = calibration_window
        self.burst_correction = burst_correction
        self.refit_every = refit_every
        self.max_history = max_history
        self.seed = seed

    # ── the public contract ─────────────────────────────────────────────────────────────────────────────────────

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as given to __init__ (for cloning and reports)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    @property
    def name(self) -> str:
        return self.alias

    @property
    def native_quantiles(self) -> bool:
        """Whether `predict` publishes the model's own quantiles (`_predict_quantiles_from`), not conformal ones."""
        return False

    @property
    def points_seen(self) -> int:
        """How many points the model was fitted on and fed since, dropped ones included."""
        self._check_fitted()
        return self.dropped_ + len(self.filled_)

    def fit(
        self, y: Sequence[float] | FloatArray, step_s: float, start_s: float = 0.0, *, calibrate: bool = True
    ) -> Self:
        """Fit on `y` (one value per step of `step_s` seconds from `start_s`; NaN = missing).

        `calibrate=False` skips the fit-time backtest of the quantiles (for a member of an ensemble, whose own
        quantiles nobody reads); the quantiles then come from outcomes seen after the fit only. A model with native
        quantiles never runs that backtest. With a history bound, only the last `max_history` points are kept (and
        fitted on); `report_` still describes the whole of `y`.
        """
        if not step_s > 0:
            raise ValueError(f"step_s ({step_s}) must be > 0")
        observed, report = clean_series(y)
        if len(observed) < 2 or np.isnan(observed).all():
            raise ValueError(f"cannot fit on {report.describe()}")
        self.step_s_ = float(step_s)
        limit = self._history_limit()
        if limit is not None and limit < 2:
            raise ValueError(f"max_history ({limit}) must be >= 2")
        # Gaps are filled over the whole series before any cut, so that a kept part that starts inside a gap
        # carries the last value seen before it.
        filled = fill_gaps(observed)
        dropped = len(observed) - limit if limit is not None and len(observed) > limit else 0
        self.fit_start_s_ = float(start_s)
        self.dropped_ = dropped
        self.start_s_ = self.fit_start_s_ + dropped * self.step_s_
        self._keep(observed[dropped:], filled[dropped:])
        self.report_ = report
        self.since_fit_ = 0
        self._fit(self.filled_)
        self._set_floor()
        self._calibrate(backtest=calibrate and not self.native_quantiles)
        return self

    def update(self, new_values: Sequence[float] | FloatArray) -> Self:
        """Append new observations; refit every `refit_every` points, else only advance the state.

        Costs O(len(new_values)) plus the model's own `_advance` (amortized: the kept series grows by doubling and
        is cut back once per `max_history` points), and, for conformal quantiles only, the scoring of the issued
        forecasts the new values fall in.
        """
        self._check_fitted()
        new = _clean_values(new_values)
        if len(new) == 0:
            return self
        start = len(self.filled_)
        filled_new = _fill_after(float(self.filled_[-1]), new)
        was_native = self.native_quantiles
        self._append(new, filled_new)
        self.since_fit_ += len(new)
        if self.refit_every is not None and self.since_fit_ >= self.refit_every:
            self.since_fit_ = 0
            self._fit(self.filled_)
            if was_native and not self.native_quantiles:
                # The refit chose a model without quantiles of its own (a selector can): calibrate it now.
                self._set_floor()
                self._calibrate()
        else:
            self._advance(start)
        if not self.native_quantiles:
            self._set_floor()
            for offset, value in enumerate(new):
                self._record_outcome(start + offset, float(value))
        limit = self._history_limit()
        if limit is not None and len(self.filled_) >= 2 * limit:
            self._drop_oldest(len(self.filled_) - limit)
        return self

    def predict(self, horizon: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        """Mean and quantiles for the next `horizon` steps."""
        self._check_fitted()
        if horizon < 1:
            raise ValueError(f"horizon ({horizon}) must be >= 1")
        origin = len(self.filled_)
        raw = np.maximum(self._predict_from(origin, horizon), 0.0)
        ordered = sorted(quantiles)
        native = self._predict_quantiles_from(origin, horizon, ordered) if self.native_quantiles else None
        if native is not None:
            # The model's own forecast, as it computed it: no conformal quantiles, no adaptation, no correction.
            mean, paths = raw, native
        else:
            mean = self._corrected(raw)
            paths = self._quantile_paths(mean, self._levels(ordered))
            self._issued.append((origin, mean, paths, float(raw[0])))
        values = {q: tuple(path.tolist()) for q, path in paths.items()}
        # Counted from the fit's start_s over every point seen, so that a cut history keeps absolute times.
        issued_at = self.fit_start_s_ + (self.dropped_ + origin) * self.step_s_
        return Forecast(self.step_s_, tuple(mean.tolist()), values, self.name, issued_at)

    # ── what subclasses implement ───────────────────────────────────────────────────────────────────────────────

    @abc.abstractmethod
    def _fit(self, y: FloatArray) -> None:
        """Fit on the gap-filled series `y` (state for forecasting from any origin up to len(y))."""

    @abc.abstractmethod
    def _predict_from(self, origin: int, horizon: int) -> FloatArray:
        """Mean forecast of steps origin .. origin + horizon - 1 using only self.filled_[:origin]."""

    def _advance(self, start: int) -> None:  # noqa: B027 - optional hook, most models need nothing
        """New values were appended from index `start`: advance any state (cheap; no refit)."""

    def _predict_quantiles_from(
        self, origin: int, horizon: int, quantiles: Sequence[float]
    ) -> dict[float, FloatArray] | None:
        """The model's own quantile paths from `origin` (as `_predict_from`), or None (the default): conformal ones.

        Read only where `native_quantiles` is true. Each requested q maps to `horizon` values, >= 0 and
        non-decreasing in q at every step; `quantiles` come sorted. The mean published with them is
        `_predict_from`'s, uncorrected.
        """
        return None

    def _history_limit(self) -> int | None:
        """The bound on kept points: `max_history` (a model may default it where None would be wasteful)."""
        return self.max_history

    def _after_drop(self, count: int) -> None:
        """The oldest `count` points were cut from the kept series; index i is now what i + count was.

        `start_s_` already names the new first point. The default refits on the kept series, which is right for any
        model; models whose state can simply be shifted (or does not index the series) override it to skip that.
        """
        self._fit(self.filled_)

    @classmethod
    def test_params(cls) -> list[dict[str, Any]]:
        """Small hyperparameter sets for the shared contract test."""
        return [{}]

    # ── the kept series ─────────────────────────────────────────────────────────────────────────────────────────

    def _check_fitted(self) -> None:
        if not hasattr(self, "filled_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")

    def _keep(self, observed: FloatArray, filled: FloatArray) -> None:
        """Store the kept series in fresh buffers with room to grow; `observed_`/`filled_` are views of them.

        Appending writes past the end of the views only, so a view taken earlier (by a model's state, say) never
        sees its values change.
        """
        n = len(observed)
        capacity = max(2 * n, 16)
        self._observed_buffer = np.empty(capacity, dtype=np.float64)
        self._filled_buffer = np.empty(capacity, dtype=np.float64)
        self._observed_buffer[:n] = observed
        self._filled_buffer[:n] = filled
        self.observed_ = self._observed_buffer[:n]
        self.filled_ = self._filled_buffer[:n]

    def _append(self, observed: FloatArray, filled: FloatArray) -> None:
        """Append to the kept series: amortized O(len(observed)), as the buffers double when full."""
        n, k = len(self.filled_), len(observed)
        if n + k > len(self._filled_buffer):
            old_observed, old_filled = self.observed_, self.filled_
            capacity = max(2 * (n + k), 16)
            self._observed_buffer = np.empty(capacity, dtype=np.float64)
            self._filled_buffer = np.empty(capacity, dtype=np.float64)
            self._observed_buffer[:n] = old_observed
            self._filled_buffer[:n] = old_filled
        self._observed_buffer[n : n + k] = observed
        self._filled_buffer[n : n + k] = filled
        self.observed_ = self._observed_buffer[: n + k]
        self.filled_ = self._filled_buffer[: n + k]

    def _drop_oldest(self, count: int) -> None:
        """Cut the oldest `count` points; move the time of the first kept point and the issued forecasts with it."""
        self._keep(self.observed_[count:], self.filled_[count:])
        self.dropped_ += count
        # Recomputed, not accumulated, so that weeks of cuts add no rounding drift to the absolute times.
        self.start_s_ = self.fit_start_s_ + self.dropped_ * self.step_s_
        shifted = [(origin - count, mean, paths, raw) for origin, mean, paths, raw in self._issued]
        self._issued.clear()
        self._issued.extend(shifted)
        self._after_drop(count)

    # ── calibration ─────────────────────────────────────────────────────────────────────────────────────────────

    def _calibrate(self, max_horizon: int = 64, backtest: bool = True) -> None:
        """Relative errors per horizon step from a rolling backtest over the end of the fitted series."""
        n = len(self.filled_)
        self.max_horizon_ = max_horizon
        self._errors: list[deque[float]] = [deque(maxlen=self.calibration_window) for _ in range(max_horizon)]
        self._issued: deque[tuple[int, FloatArray, dict[float, FloatArray], float]] = deque(maxlen=max_horizon + 1)
        self._adjusted: dict[float, float] = {}
        self._one_step: deque[float] = deque(maxlen=self.calibration_window)
        self._last_error = 0.0
        self._decay = 0.0
        origins = min(self.calibration_window, max(0, n // 3)) if backtest else 0
        step = max(1, origins // 60)  # at most ~60 backtest forecasts at fit time; outcomes add more later
        for origin in range(n - origins, n, step):
            horizon = min(max_horizon, n - origin)
            mean = self._predict_from(origin, horizon)
            actual = self.observed_[origin : origin + horizon]
            for k in range(horizon):
                self._add_error(k, float(actual[k]), float(mean[k]))
            self._add_raw_error(float(actual[0]), float(mean[0]))
        self._refresh_decay()

    def _add_error(self, k: int, actual: float, mean: float) -> None:
        if math.isnan(actual):
            return
        self._errors[k].append(actual / self._floor(mean) - 1.0)

    def _add_raw_error(self, actual: float, raw_mean: float) -> None:
        """The model's own (uncorrected) one-step error: what the burst and level-shift corrections read."""
        if math.isnan(actual):
            return
        relative = actual / self._floor(raw_mean) - 1.0
        self._one_step.append(relative)
        self._last_error = relative

    def _set_floor(self) -> None:
        # Relative errors divide by the mean; near zero load they would explode, so the divisor never drops
        # below 1 % of the recent level.
        self._level_floor = max(0.01 * float(np.mean(self.filled_[-1000:])), 1e-9)

    def _floor(self, mean: float) -> float:
        return max(mean, self._level_floor)

    def _record_outcome(self, index: int, actual: float) -> None:
        scored = False
        for origin, mean, paths, raw_first in self._issued:
            k = index - origin
            if 0 <= k < len(mean):
                self._add_error(k, actual, float(mean[k]))
                if k == 0:
                    self._add_raw_error(actual, raw_first)
                    scored = True
                if not math.isnan(actual):
                    for q, path in paths.items():
                        self._adapt(q, actual <= path[k])
        if not scored and not math.isnan(actual):
            # No forecast was issued at this origin: score the model's own one-step forecast, so that the burst
            # and level-shift corrections follow the series even when nobody asks.
            self._add_raw_error(actual, float(self._predict_from(index, 1)[0]))
        if len(self._one_step) % 50 == 0:
            self._refresh_decay()

    # Adaptive conformal inference (Gibbs and Candes, 2021): each requested quantile q is read at a level that
    # moves by ADAPT_RATE toward the coverage actually seen, so a regime the calibration errors did not contain
    # (a burstier hour) still gets its q of outcomes below the q-quantile over time.
    ADAPT_RATE: ClassVar[float] = 0.002

    def _adapt(self, q: float, covered: bool) -> None:
        level = self._adjusted.get(q, q)
        level += self.ADAPT_RATE * (q - (1.0 if covered else 0.0))
        self._adjusted[q] = min(max(level, q / 2), 0.999)

    def _levels(self, quantiles: Sequence[float]) -> dict[float, float]:
        """The adjusted level of each requested quantile, kept in the order of the quantiles."""
        levels: dict[float, float] = {}
        floor = 0.0
        for q in quantiles:
            floor = max(floor, self._adjusted.get(q, q))
            levels[q] = floor
        return levels

    def _refresh_decay(self) -> None:
        errors = np.array(self._one_step, dtype=np.float64)
        if len(errors) < 10 or np.std(errors) == 0:
            self._decay = 0.0
            return
        correlation = float(np.corrcoef(errors[:-1], errors[1:])[0, 1])
        self._decay = min(max(correlation, 0.0), 0.95) if math.isfinite(correlation) else 0.0

    SHIFT_WINDOW: ClassVar[int] = 6
    SHIFT_Z: ClassVar[float] = 3.0

    def _level_shift(self) -> float:
        """The relative level error of the model if its last SHIFT_WINDOW one-step errors say it shifted, else 0.

        A shift is declared when those errors all have one sign and their mean lies more than SHIFT_Z robust
        standard deviations (1.4826 x MAD) from the typical mean of SHIFT_WINDOW consecutive earlier errors. Using
        means of consecutive errors, not single errors, keeps the ordinary runs of autocorrelated errors (which the
        burst correction handles) from counting as shifts. Without it a model fitted on a calm series can smooth
        so slowly (alpha near 0) that it would not follow a new level until the next refit.
        """
        w = self.SHIFT_WINDOW
        if len(self._one_step) < 5 * w:
            return 0.0
        errors = np.fromiter(self._one_step, dtype=np.float64)
        recent, earlier = errors[-w:], errors[:-w]
        if not ((recent > 0).all() or (recent < 0).all()):
            return 0.0
        means = np.convolve(earlier, np.full(w, 1.0 / w), mode="valid")
        center = float(np.median(means))
        spread = 1.4826 * float(np.median(np.abs(means - center)))
        shift = float(np.mean(recent))
        return shift if abs(shift - center) > self.SHIFT_Z * max(spread, 1e-9) else 0.0

    def _corrected(self, raw: FloatArray) -> FloatArray:
        """The model's mean with the level-shift correction, or else the decaying burst correction."""
        if not self.burst_correction:
            return raw
        shift = self._level_shift()
        if shift != 0.0:
            return np.maximum(raw * (1.0 + shift), 0.0)
        if self._decay > 0 and self._last_error != 0:
            factors = 1.0 + self._last_error * self._decay ** np.arange(1, len(raw) + 1)
            return np.maximum(raw * factors, 0.0)
        return raw

    def _quantile_paths(self, mean: FloatArray, levels: dict[float, float]) -> dict[float, FloatArray]:
        """Each requested quantile's path: the mean times (1 + the level-quantile of the relative errors at step k).

        Levels are non-decreasing in q, so the paths never cross. One array per step serves every quantile.
        """
        paths = {q: np.empty_like(mean) for q in levels}
        wanted = list(levels.values())
        for k in range(len(mean)):
            errors = self._errors[min(k, self.max_horizon_ - 1)]
            if len(errors) < 5:
                for q in levels:
                    paths[q][k] = mean[k]
                continue
            relative = np.quantile(np.fromiter(errors, dtype=np.float64, count=len(errors)), wanted)
            for q, r in zip(levels, relative, strict=True):
                paths[q][k] = max(0.0, mean[k] * (1.0 + float(r)))
        return paths
