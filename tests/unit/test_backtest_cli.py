"""`fleetscale backtest` end to end on a small rate trace, and its helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoscaler.backtest_cli import parse_duration, resample
from autoscaler.cli import app
from autoscaler.series import RateSeries


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("2d", 172800.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "-5m", "0s", "1w"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_resample_averages_whole_groups_and_keeps_gaps_missing() -> None:
    series = RateSeries("s", 0.0, 10.0, (1.0, 3.0, 5.0, math.nan, 7.0))
    coarse = resample(series, 20.0)
    assert coarse.values[0] == 2.0
    assert math.isnan(coarse.values[1])  # a window with a missing part is missing
    assert len(coarse) == 2  # the incomplete last group is dropped
    with pytest.raises(ValueError, match="whole multiple"):
        resample(series, 15.0)


def _rate_trace(path: Path, points: int = 360) -> Path:
    lines = ["time,rate_rps"]
    for i in range(points):
        # A 30-minute cycle at 60 s steps, with a slow rise.
        rate = 20 + 0.02 * i + 8 * math.sin(2 * math.pi * i / 30) + (3 if i % 7 == 0 else 0)
        lines.append(f"{i * 60},{rate:.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_backtest_prints_every_model_and_writes_the_json_contract(tmp_path: Path) -> None:
    trace = _rate_trace(tmp_path / "rates.csv")
    out = tmp_path / "bt.json"
    result = CliRunner().invoke(app, ["backtest", "--trace", str(trace), "--horizon", "5m", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "chosen: auto:" in result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["step_s"] == 60.0
    assert data["horizon_s"] == 300.0
    assert data["chosen"].startswith("auto:")
    assert {"naive", "holt_winters", "sarimax", "quantile_gbm", "auto"} <= set(data["models"])
    for figures in data["models"].values():
        assert set(figures) == {
            "mase", "smape", "pinball", "coverage_p50", "coverage_p90", "coverage_p99", "fit_s", "predict_s",
        }  # fmt: skip
        assert all(math.isfinite(v) for v in figures.values())


def test_backtest_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    trace = _rate_trace(tmp_path / "rates.csv", points=20)
    runner = CliRunner()
    result = runner.invoke(app, ["backtest", "--trace", str(trace), "--horizon", "1h"])
    assert result.exit_code == 2
    assert "too few" in result.output
    result = runner.invoke(app, ["backtest", "--trace", str(trace), "--horizon", "soon"])
    assert result.exit_code == 2
    assert "not a duration" in result.output
    result = runner.invoke(app, ["backtest", "--trace", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
