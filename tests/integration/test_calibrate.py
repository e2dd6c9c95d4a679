"""`fleetscale profile calibrate` against a real Prometheus holding the history of replicas 1.3x slower than their
profile: it prints the correction the loop would hold, close to the true factor, and writes a measured profile
file that loads and whose anchor carries its provenance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autoscaler.capacity import LatencySlo, TokenMix
from autoscaler.catalog import load_catalog
from autoscaler.cli import app
from autoscaler.correction import capacity_factor
from autoscaler.perf import parse_model_facts
from autoscaler.testing import FakeFleet
from tests.integration.prometheus_server import PrometheusServer, StaticExporter
from tests.integration.test_prometheus_loop import H100, VllmExporter, scenario, slower_replicas
from tests.unit.conftest import scenario_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOWDOWN = 1.3
RPS = 60.0
REPLICAS = 6
HISTORY_S = 24.0


def scenario_file(tmp_path: Path) -> Path:
    data: dict[str, Any] = scenario_dict()
    data["services"][0]["metrics"] = {"engine": "vllm", "rate_window_s": 5}
    data["policy"] = {"tick_s": 2, "capacity_correction": {"min_requests": 50, "half_life_s": 3}}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_calibrate_prints_the_correction_and_writes_a_measured_profile(tmp_path: Path) -> None:
    config = scenario({"min_requests": 50, "half_life_s": 3})
    plan = config.plans["chat"]
    service = plan.service
    candidate = plan.candidate(H100)
    assert candidate is not None and candidate.profile is not None
    profile = candidate.profile
    mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)

    fleet = FakeFleet()
    fleet.seed("chat", H100, REPLICAS)
    model = VllmExporter("chat", lambda: REPLICAS, slower_replicas(profile, service, SLOWDOWN))
    model.rate_rps = RPS
    truth = capacity_factor(
        profile, LatencySlo(service.slo.ttft_p95_s, service.slo.tpot_p95_s), mix, REPLICAS, service.routing, SLOWDOWN
    )
    with (
        StaticExporter(model.render) as exporter,
        PrometheusServer([("vllm", [exporter.target])], workdir=tmp_path / "prom") as prom,
    ):
        prom.wait_up("vllm")
        time.sleep(HISTORY_S)  # the history calibrate reads
        written = tmp_path / "llama-3.1-8b.yaml"
        result = CliRunner().invoke(
            app,
            [
                "profile", "calibrate", "--scenario", str(scenario_file(tmp_path)), "--service", "chat",
                "--prometheus-url", prom.url, "--since", "60s", "--write", str(written),
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    print(result.output)  # shown with pytest -s
    line = next(text for text in result.output.splitlines() if text.startswith("chat on H100-80GB: capacity x"))
    factor = float(line.split("capacity x")[1].split()[0])
    assert factor == pytest.approx(truth, rel=0.1), (factor, truth)
    slowdowns = next(text for text in result.output.splitlines() if text.startswith("slowdown against the profile"))
    ttft = float(slowdowns.split("TTFT ")[1].split(",")[0])
    tpot = float(slowdowns.split("TPOT ")[1].split()[0])
    assert ttft == pytest.approx(SLOWDOWN, rel=0.05) and tpot == pytest.approx(SLOWDOWN, rel=0.05), slowdowns
    document = yaml.safe_load(written.read_text(encoding="utf-8"))
    facts = parse_model_facts(document, str(written))
    anchor = next(a for a in facts.anchors if a.gpu_type == "H100-80GB" and a.precision.value == "bf16")
    assert anchor.decode_base_ms is not None and anchor.prefill_tokens_per_s is not None
    assert anchor.decode_base_ms.value > profile.decode_base_ms.value  # slower steps
    assert anchor.prefill_tokens_per_s.value < profile.prefill_tokens_per_s.value
    assert "fleetscale profile calibrate, Prometheus http://127.0.0.1:" in anchor.decode_base_ms.source
    assert load_catalog().canonical(anchor.gpu_type) == "H100-80GB"


def test_calibrate_refuses_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    base = [
        "profile",
        "calibrate",
        "--scenario",
        str(scenario_file(tmp_path)),
        "--prometheus-url",
        "http://127.0.0.1:9",
    ]
    cases = {
        "--service nope: not in the scenario": ["--service", "nope"],
        "--since soon: not a duration": ["--service", "chat", "--since", "soon"],
        "--prometheus-url http://127.0.0.1:9: Prometheus at http://127.0.0.1:9 is unreachable": ["--service", "chat"],
    }
    for words, args in cases.items():
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, result.output
        assert words in result.output, result.output
