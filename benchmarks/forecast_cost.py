"""What forecasting costs the controller per series and tick: update with the newest window, predict the horizon,
plus the refit amortized over the refit interval.

The series are the bundled ServeGen m-small and m-large request rates (10-minute windows, 14 days), each copy
scaled by a seeded factor (0.05x to 2x), rotated by a seeded number of days and given 5 % seeded multiplicative
noise, so that no two series are equal. Every series is fitted on its first 10 days, then ticked `--ticks` times.

Models: `auto` (the default) is what the controller runs. The selector's backtests run once per trace family and
the chosen ensemble is fitted on every series (as a daily refit would: the choice is made on one day's data and
reused), so the fit time is that of the ensemble, not of the selection. The other choices fit one model type.

The figure is `ms_per_series_per_tick` = tick (update + predict, measured) + fit time x step / refit interval.
Per-series costs do not depend on how many series there are (nothing is shared), so `--series` smaller than
1,000 measures the same figure in less time; the table says how many were measured. Goal (issue 3): <= 20 ms.

    .venv/bin/python benchmarks/forecast_cost.py [--series 1000] [--model auto] [--ticks 24] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from figures_json import write_figures

from adapters.traces import load_trace
from autoscaler.series import RateSeries
from forecasting.auto import AutoForecaster
from forecasting.base import Forecaster
from forecasting.gbm import QuantileGBM
from forecasting.holt_winters import HoltWinters
from forecasting.naive import SeasonalNaive
from forecasting.sarimax import Sarimax

ROOT = Path(__file__).resolve().parent.parent
TRACES = ("servegen_m-small_aggregate_rate_10min.csv", "servegen_m-large_aggregate_rate_10min.csv")
GOAL_MS = 20.0
TRAIN_POINTS = 1440
HORIZON = 6


def _family_series() -> list[RateSeries]:
    series = []
    for name in TRACES:
        loaded = load_trace(ROOT / "configs" / "traces" / name)
        assert isinstance(loaded, RateSeries)
        series.append(loaded)
    return series


def _variant(base: RateSeries, rng: np.random.Generator) -> np.ndarray:
    values = np.array(base.values, dtype=np.float64)
    day = round(86400 / base.step_s)
    shifted = np.roll(values, int(rng.integers(0, 7)) * day)
    noise = rng.lognormal(0.0, 0.05, size=len(values))
    return np.asarray(shifted * noise * float(rng.uniform(0.05, 2.0)), dtype=np.float64)


def _factory(model: str, families: list[RateSeries]) -> list[Forecaster]:
    """One prototype per family: what each of its series is fitted with."""
    if model == "auto":
        prototypes: list[Forecaster] = []
        for family in families:
            selector = AutoForecaster(horizon=HORIZON, ensemble_size=3)
            selector.fit(np.array(family.values[:TRAIN_POINTS]), family.step_s)
            members = [m.clone() for m in selector.members_]
            print(f"  {family.name}: the selector chose {selector.chosen_name}")
            prototypes.append(
                AutoForecaster(horizon=HORIZON, candidates=members, ensemble_size=len(members), selection=False)
            )
        return prototypes
    single: dict[str, Forecaster] = {
        "holt_winters": HoltWinters(),
        "sarimax": Sarimax(),
        "quantile_gbm": QuantileGBM(),
        "seasonal_naive": SeasonalNaive(),
    }
    return [single[model] for _ in families]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument(
        "--model", default="auto", choices=["auto", "holt_winters", "sarimax", "quantile_gbm", "seasonal_naive"]
    )
    parser.add_argument("--ticks", type=int, default=24)
    parser.add_argument("--refit-every-s", type=float, default=86400.0, help="refit interval (default: daily)")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to (one core, like a controller)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
        print(f"forecast_cost: pinned to CPU {args.cpu}")
    rng = np.random.default_rng(args.seed)
    families = _family_series()
    prototypes = _factory(args.model, families)
    fit_s: list[float] = []
    tick_s: list[float] = []
    for index in range(args.series):
        family = index % len(families)
        values = _variant(families[family], rng)
        model = prototypes[family].clone()
        started = time.perf_counter()
        model.fit(values[:TRAIN_POINTS], families[family].step_s)
        fit_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for tick in range(args.ticks):
            point = TRAIN_POINTS + tick
            model.update(values[point : point + 1])
            model.predict(HORIZON)
        tick_s.append((time.perf_counter() - started) / args.ticks)
        if (index + 1) % max(1, args.series // 10) == 0:
            print(f"  {index + 1}/{args.series} series", file=sys.stderr)
    step_s = families[0].step_s
    tick_ms = 1000 * statistics.mean(tick_s)
    fit_mean = statistics.mean(fit_s)
    amortized_ms = tick_ms + 1000 * fit_mean * step_s / args.refit_every_s
    figures = {
        "series": float(args.series),
        "tick_ms_per_series": tick_ms,
        "fit_s_per_series": fit_mean,
        "refit_every_s": args.refit_every_s,
        "ms_per_series_per_tick": amortized_ms,
    }
    print(f"{'model':<16} {'series':>7} {'tick ms':>9} {'fit s':>8} {'refit every':>12} {'ms / series / tick':>19}")
    print(
        f"{args.model:<16} {args.series:>7} {tick_ms:>9.2f} {fit_mean:>8.3f} {args.refit_every_s / 3600:>10.0f} h"
        f" {amortized_ms:>19.2f}"
    )
    verdict = "PASS" if amortized_ms <= GOAL_MS else "MISS"
    print(f"goal: <= {GOAL_MS:g} ms per series per tick: {verdict}")
    write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
