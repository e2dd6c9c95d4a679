"""Demand forecasting for fleetscale: one Forecaster contract, quantile forecasts, backtests.

This package imports nothing of the rest of the project: it owns its `Forecast` type, and the decision core
imports it.
"""

from forecasting.forecast import Forecast

__all__ = ["Forecast"]
