"""The loop's demand forecaster per service: one request rate a tick in, a `Forecast` over the horizon out.

Each service has a `ServiceForecaster`: the per-tick series (the rate of each tick, on a grid of `step_s`; a tick
without data is a missing value, never zero load), bounded to `history_s`, and a model of the `forecasting`
contract fitted on it.

- The model is the burst envelope (`forecasting.burst.BurstEnvelope`: the recent per-tick rates as quantiles,
  scaled by the trend) from `min_points` points on; before that there is no forecast (the observed rate stands).
- With `policy.forecast_selection` on, where history allows (`select_after_s` of it), the selector
  (`forecasting.auto.AutoForecaster`) backtests the burst envelope against the package's models that fit in a tick
  (`tick_candidates`: seasonal naive and Holt-Winters for the span and step) by the pinball loss of each backtest
  forecast's peak over the horizon, at the quantile the service is sized for (its tier's), against the peak that
  came (what sizing reads: a model whose steps track better may still size lower at the peak), and keeps the
  envelope unless another is better by `selection_margin`; it selects again every `reselect_every_s`. SARIMAX and
  quantile gradient boosting are left out at the tick's resolution: one selection on 2 hours of 15 s ticks took
  them 11 s and 100 s here, against 1.5 s for the rest together. Selections are spread: the bank lets at most
  `selections_per_tick` run in one tick, so a fleet of services does not stall one tick.
  It is off by default: on the 14-day ServeGen replays no way of selecting that was tried (mean pinball over
  p50/p90/p99; pinball at the tier's quantile with a 10 % margin; the peak over the horizon) beat the envelope
  alone: each lowered attainment, by 0.04 to 0.36 points, at -0.8 % to +9.9 % of its cost (README, "The control
  loop").
- A model that fails is replaced by the burst envelope, and the forecast names what produced it
  (`Forecast.model`: "burst_envelope", "auto:holt_winters", ...).

The state each forecaster exports (`export`, a JSON-able mapping persisted with the policy state) is its series
and the model it chose; `restore` refits on it. After a restart the loop refills the series from the metrics
source's history, so a restart costs at most the ticks it was down for.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.state_store import json_number
from forecasting import Forecast
from forecasting.auto import AutoForecaster, default_candidates
from forecasting.base import Forecaster
from forecasting.burst import BurstEnvelope
from forecasting.gbm import QuantileGBM
from forecasting.sarimax import Sarimax


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    """How the loop forecasts (defaults for a 15 s tick)."""

    min_points: int = 8  # ticks of data before the burst envelope is trusted (2 minutes at 15 s)
    envelope_lookback_s: float = 1800.0  # the burst envelope's memory of bursts (its quantiles' window)
    envelope_level_s: float = 300.0  # the burst envelope's level and trend window
    history_s: float = 6 * 3600.0  # series kept per service, for the selector's backtests
    select_after_s: float = 2 * 3600.0  # history the selector needs before it runs (a backtest of an hour and more)
    reselect_every_s: float = 3600.0
    selections_per_tick: int = 1
    persist_every_s: float = 300.0  # how often the loop saves the series with its state (a restart refills the rest)
    selection: bool = True  # False: the burst envelope alone (the loop sets it from policy.forecast_selection)
    # Candidates are judged as sizing reads them: by the pinball loss of each forecast's peak over the horizon, at
    # the quantile the service is sized for, against the peak that came ("peak_pinball"; "pinball" judges every
    # step). A challenger replaces the burst envelope only if it is better by `selection_margin`.
    selection_criterion: str = "peak_pinball"
    selection_margin: float = 0.1


def tick_candidates(span_s: float, step_s: float) -> list[Forecaster]:
    """The package's candidates for a history of `span_s` at `step_s` that a tick can afford (module docstring)."""
    return [c for c in default_candidates(span_s, step_s) if not isinstance(c, Sarimax | QuantileGBM)]


class ServiceForecaster:
    """One service's series and model (see the module docstring)."""

    def __init__(self, step_s: float, settings: ForecastSettings) -> None:
        self.step_s = step_s
        self.settings = settings
        self.capacity = max(settings.min_points, math.ceil(settings.history_s / step_s))
        self.values: deque[float] = deque(maxlen=self.capacity)
        self.end_s: float | None = None  # time of the newest point (its step ends there)
        self.observed = 0  # points with data in `values`
        self.model: Forecaster | None = None
        self.chosen = BurstEnvelope.alias
        self.selected_at_s: float | None = None
        self.problem = ""  # why the last selection or fit failed, if it did

    # ── the series ──────────────────────────────────────────────────────────────────────────────────────────────

    def add(self, at_s: float, rps: float | None) -> None:
        """The rate of the tick that ended at `at_s` (None or NaN: no data). A point at the same grid step as the
        last one replaces nothing (a repeated tick); a gap of ticks becomes missing values."""
        value = math.nan if rps is None or not math.isfinite(rps) or rps < 0 else float(rps)
        if self.end_s is None:
            self._append([value], at_s)
            return
        steps = round((at_s - self.end_s) / self.step_s)
        if steps <= 0:
            return
        if steps > self.capacity:  # down for longer than the history: start over
            self.values.clear()
            self.observed = 0
            self.model = None
            self._append([value], at_s)
            return
        self._append([math.nan] * (steps - 1) + [value], self.end_s + steps * self.step_s)

    def _append(self, points: list[float], end_s: float) -> None:
        for point in points:
            if len(self.values) == self.values.maxlen and not math.isnan(self.values[0]):
                self.observed -= 1
            self.values.append(point)
            if not math.isnan(point):
                self.observed += 1
        self.end_s = end_s
        if self.model is not None:
            try:
                self.model.update(points)
            except Exception as exc:  # a model's numerics failing must not stop the loop: refit on the envelope
                self._fall_back(exc)

    @property
    def start_s(self) -> float:
        """Where the kept series starts: the first point covers the step before it."""
        assert self.end_s is not None
        return self.end_s - len(self.values) * self.step_s

    # ── the model ───────────────────────────────────────────────────────────────────────────────────────────────

    def due_for_selection(self) -> bool:
        if not self.settings.selection or self.end_s is None:
            return False
        if len(self.values) * self.step_s < self.settings.select_after_s:
            return False
        return self.selected_at_s is None or self.end_s - self.selected_at_s >= self.settings.reselect_every_s

    def select(self, horizon_steps: int, scored: Sequence[float]) -> None:
        """Backtest the burst envelope against the package's models on the kept series, scored at the quantiles
        `scored` (those the service is sized for); keep the best, the envelope unless beaten by the margin."""
        assert self.end_s is not None
        span = len(self.values) * self.step_s
        candidates: list[Forecaster] = [self._envelope(), *tick_candidates(span, self.step_s)]
        self.selected_at_s = self.end_s
        try:
            model = AutoForecaster(
                horizon=max(1, horizon_steps),
                candidates=candidates,
                max_history=self.capacity,
                scored_quantiles=tuple(scored),
                criterion=self.settings.selection_criterion,
                incumbent_margin=self.settings.selection_margin,
            )
            model.fit(list(self.values), self.step_s, self.start_s)
        except Exception as exc:  # any model's failure (statsmodels raises many kinds): the envelope serves, saying why
            self._fall_back(exc)
            return
        self.model = model
        self.chosen = model.name
        self.problem = ""

    def _envelope(self) -> BurstEnvelope:
        settings = self.settings
        return BurstEnvelope(settings.envelope_lookback_s, settings.envelope_level_s, max_history=self.capacity)

    def _fall_back(self, exc: Exception) -> None:
        self.problem = f"{self.chosen} failed ({type(exc).__name__}: {exc}); burst_envelope serves"
        self.chosen = BurstEnvelope.alias
        self.model = None

    def forecast(self, horizon_s: float, quantiles: Sequence[float]) -> Forecast | None:
        """The forecast over `horizon_s` (None until `min_points` ticks have data)."""
        if self.end_s is None or self.observed < self.settings.min_points:
            return None
        steps = max(1, math.ceil(horizon_s / self.step_s - 1e-9))
        if self.model is None:
            model = self._envelope()
            model.fit(list(self.values), self.step_s, self.start_s)
            self.model = model
        return self.model.predict(steps, quantiles)

    # ── persistence ─────────────────────────────────────────────────────────────────────────────────────────────

    def export(self) -> dict[str, Any]:
        return {
            "step_s": self.step_s,
            "end_s": self.end_s,
            "values": [json_number(v) for v in self.values],
            "model": self.chosen,
            "selected_at_s": self.selected_at_s,
        }

    def restore(self, document: Mapping[str, Any]) -> None:
        """Take back an exported series (refit lazily). A series of another step is dropped: it would misalign."""
        if float(document.get("step_s", 0.0)) != self.step_s or document.get("end_s") is None:
            return
        values = [math.nan if v is None else float(v) for v in document.get("values", [])][-self.capacity :]
        self.values.clear()
        self.observed = 0
        self.end_s = None
        self.model = None
        if values:
            self._append(values, float(document["end_s"]))
        chosen = str(document.get("model", BurstEnvelope.alias))
        # A selection made before the restart is made again on the restored series as soon as the bank allows.
        selected = document.get("selected_at_s")
        self.selected_at_s = None if chosen != BurstEnvelope.alias else (None if selected is None else float(selected))


class ForecasterBank:
    """The forecasters of every service, with the per-tick budget of selections."""

    def __init__(self, step_s: float, settings: ForecastSettings | None = None) -> None:
        self.step_s = step_s
        self.settings = settings or ForecastSettings()
        self.forecasters: dict[str, ServiceForecaster] = {}
        self._selections_left = self.settings.selections_per_tick

    def of(self, service: str) -> ServiceForecaster:
        forecaster = self.forecasters.get(service)
        if forecaster is None:
            forecaster = self.forecasters[service] = ServiceForecaster(self.step_s, self.settings)
        return forecaster

    def begin_tick(self) -> None:
        self._selections_left = self.settings.selections_per_tick

    def forecast(
        self, service: str, horizon_s: float, quantiles: Sequence[float], scored: Sequence[float] | None = None
    ) -> Forecast | None:
        """The service's forecast (its model selected first, when due and the tick's budget allows, scored at the
        quantiles `scored`: those the service is sized for; all of `quantiles` by default)."""
        forecaster = self.of(service)
        if self._selections_left > 0 and forecaster.due_for_selection():
            self._selections_left -= 1
            forecaster.select(max(1, math.ceil(horizon_s / self.step_s - 1e-9)), scored or quantiles)
        return forecaster.forecast(horizon_s, quantiles)

    def refill(self, service: str, samples: Iterable[tuple[float, float | None]]) -> int:
        """Add history points (time, rate) newer than what the series holds; returns how many were taken."""
        forecaster = self.of(service)
        taken = 0
        for at_s, rps in sorted(samples, key=lambda s: s[0]):
            if forecaster.end_s is None or at_s > forecaster.end_s + self.step_s / 2:
                forecaster.add(at_s, rps)
                taken += 1
        return taken

    def export(self) -> dict[str, dict[str, Any]]:
        return {name: f.export() for name, f in self.forecasters.items()}

    def restore(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        for name, document in documents.items():
            self.of(name).restore(document)
