"""The loop's forecaster per service: the per-tick series, the burst envelope, the selector, persistence."""

from __future__ import annotations

import math

import pytest

from autoscaler.forecasters import ForecasterBank, ForecastSettings, ServiceForecaster
from forecasting.burst import BurstEnvelope

T0 = 1.7e9
QUANTILES = (0.5, 0.9, 0.99)


def _fed(values: list[float | None], settings: ForecastSettings | None = None) -> ServiceForecaster:
    forecaster = ServiceForecaster(15.0, settings or ForecastSettings())
    for k, value in enumerate(values):
        forecaster.add(T0 + 15 * k, value)
    return forecaster


def test_no_forecast_until_enough_ticks_have_data() -> None:
    assert _fed([10.0] * 7).forecast(120.0, QUANTILES) is None
    assert _fed([10.0] * 7 + [None]).forecast(120.0, QUANTILES) is None  # a missing tick is not data
    forecast = _fed([10.0] * 8).forecast(120.0, QUANTILES)
    assert forecast is not None and forecast.model == "burst_envelope"


def test_the_forecast_is_the_burst_envelope_issued_at_the_last_tick() -> None:
    values = [10.0, 12.0, 30.0, 11.0, 10.0, 9.0, 13.0, 10.0, 11.0, 12.0]
    forecast = _fed(values).forecast(130.0, QUANTILES)
    assert forecast is not None
    assert forecast.issued_at_s == T0 + 15 * (len(values) - 1)
    assert len(forecast.mean) == 9  # ceil(130 / 15)
    reference = BurstEnvelope().fit(values, 15.0, T0 - 15).predict(9, QUANTILES)
    assert forecast.quantiles == reference.quantiles


def test_gaps_are_missing_values_and_a_long_outage_starts_over() -> None:
    forecaster = _fed([10.0] * 8)
    forecaster.add(T0 + 15 * 10, 20.0)  # ticks 8 and 9 missed: two missing values between
    assert math.isnan(forecaster.values[-3]) and math.isnan(forecaster.values[-2]) and forecaster.values[-1] == 20.0
    assert len(forecaster.values) == 11
    forecaster.add(T0 + 15 * 10, 99.0)  # the same tick again: ignored
    assert forecaster.values[-1] == 20.0
    forecaster.add(T0 + 15 * 10 + 7 * 3600, 5.0)  # down longer than the 6 h history
    assert list(forecaster.values) == [5.0] and forecaster.forecast(60.0, QUANTILES) is None


def test_history_is_bounded() -> None:
    settings = ForecastSettings(history_s=600.0)  # 40 ticks
    forecaster = _fed([float(k % 7) for k in range(500)], settings)
    assert len(forecaster.values) == 40 and forecaster.observed == 40
    assert forecaster.forecast(60.0, QUANTILES) is not None


def test_export_and_restore_give_the_same_forecast() -> None:
    forecaster = _fed([float(5 + k % 4) if k != 6 else None for k in range(30)])  # type: ignore[misc]
    document = forecaster.export()
    assert document["values"][6] is None
    restored = ServiceForecaster(15.0, ForecastSettings())
    restored.restore(document)
    assert restored.forecast(120.0, QUANTILES) == forecaster.forecast(120.0, QUANTILES)
    other_step = ServiceForecaster(30.0, ForecastSettings())
    other_step.restore(document)  # a series of another tick would misalign: dropped
    assert other_step.end_s is None


def test_the_selector_runs_where_history_allows_one_service_a_tick() -> None:
    settings = ForecastSettings(history_s=3 * 3600.0, select_after_s=1800.0, reselect_every_s=900.0)
    bank = ForecasterBank(15.0, settings)
    # A slow sine with noise: 2 hours of ticks for two services.
    for k in range(480):
        value = 50 + 20 * math.sin(2 * math.pi * k / 240) + (k * 7919 % 13) / 13
        for name in ("a", "b"):
            bank.of(name).add(T0 + 15 * k, value)
    bank.begin_tick()
    first = bank.forecast("a", 120.0, QUANTILES)
    second = bank.forecast("b", 120.0, QUANTILES)
    assert first is not None and first.model.startswith("auto:")
    assert second is not None and second.model == "burst_envelope"  # its selection waits for the next tick
    bank.begin_tick()
    third = bank.forecast("b", 120.0, QUANTILES)
    assert third is not None and third.model.startswith("auto:")
    # The selection is kept until it is due again.
    assert not bank.of("a").due_for_selection()


def test_a_model_that_fails_gives_way_to_the_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    forecaster = _fed([10.0] * 10)
    assert forecaster.forecast(60.0, QUANTILES) is not None
    assert forecaster.model is not None

    def broken(values: object) -> None:
        raise FloatingPointError("overflow in the recursion")

    monkeypatch.setattr(forecaster.model, "update", broken)
    forecaster.add(T0 + 15 * 10, 11.0)
    assert "FloatingPointError" in forecaster.problem
    forecast = forecaster.forecast(60.0, QUANTILES)
    assert forecast is not None and forecast.model == "burst_envelope"
