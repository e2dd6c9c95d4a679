"""`fleetscale render alerts`: a PrometheusRule that validates against the Prometheus Operator's CRD schema, and
rules that `promtool check rules` (shipped with Prometheus) accepts; the burn-rate arithmetic checked on its own."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

# No stubs for jsonschema in the dev extras (as in test_crash_safety.py).
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml
from typer.testing import CliRunner

from autoscaler.alerts import bucket_at, le_matcher
from autoscaler.cli import app
from tests.integration.prometheus_server import prometheus_binaries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "tests" / "fixtures" / "crds" / "monitoring.coreos.com_prometheusrules.yaml"

SCENARIO = """\
name: alerts-demo
fleet:
  pools:
    - {name: h100, gpu_type: H100-80GB, gpus_per_node: 8, max_nodes: 6, mig_allowed: true}
services:
  - name: chat
    model: Llama-3.1-8B
    slo: {ttft_p95_s: 0.6, tpot_p95_s: 0.05}
    allowed_shapes: [H100-80GB, H100-80GB/3g.40gb]
    metrics: {engine: vllm, labels: {namespace: inference, model_name: meta-llama/Llama-3.1-8B-Instruct},
              label_patterns: {pod: 'chat-.*\\.v1'}}
  - name: code
    model: Llama-3.1-8B
    slo: {ttft_p95_s: 1.0, tpot_p95_s: 0.1, quantile: 0.99}
    allowed_shapes: [H100-80GB]
    metrics: {engine: sglang}
  - name: batch
    model: Llama-3.1-8B
    slo: {ttft_p95_s: 5.0, tpot_p95_s: 0.2}
    allowed_shapes: [H100-80GB]
    metrics: {engine: rayserve}
efficiency:
  objectives:
    - {name: gpus-busy, indicator: busy, threshold: 0.85}
    - {name: little-stranded, indicator: stranded, threshold: 0.05, objective: 0.95}
    - {name: few-saturated, indicator: saturated, threshold: 0.10}
"""


def render(tmp_path: Path, *args: str) -> Any:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    result = CliRunner().invoke(app, ["render", "alerts", "--scenario", str(scenario), *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_the_prometheus_rule_validates_against_its_crd(tmp_path: Path) -> None:
    rule = render(tmp_path, "--namespace", "obs")
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    # The schema's own check is skipped: one of its patterns is Go's regexp syntax (`^(?i)(abort|warn)?$`), which
    # Python's re refuses; it applies to a field the rule does not set.
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    validator.validate(rule)
    broken = {**rule, "spec": {"groups": [{"rules": rule["spec"]["groups"][0]["rules"]}]}}  # a group needs a name
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        validator.validate(broken)
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"] == {
        "name": "fleetscale-alerts-demo-slos",
        "namespace": "obs",
        "labels": {"app.kubernetes.io/name": "fleetscale", "app.kubernetes.io/component": "slo-alerts"},
    }
    groups = {g["name"]: g["rules"] for g in rule["spec"]["groups"]}
    latency = groups["fleetscale-latency-slos"]
    # chat (vLLM) and code (SGLang): TTFT and TPOT, fast and slow; batch (Ray Serve) has no latency histograms.
    assert sorted({r["labels"]["service"] for r in latency}) == ["chat", "code"]
    assert len(latency) == 8
    chat_ttft = next(
        r for r in latency if r["alert"] == "FleetscaleLatencySLOBurnTtftFast" and r["labels"]["service"] == "chat"
    )
    assert 'le=~"0\\\\.50*"' in chat_ttft["expr"]  # 0.6 s is no vLLM bucket: the 0.5 s one stands in
    assert "the largest below 0.6 s" in chat_ttft["annotations"]["description"]
    assert "/ 0.05 > 14.4" in chat_ttft["expr"]
    code_tpot = next(
        r for r in latency if r["alert"] == "FleetscaleLatencySLOBurnTpotSlow" and r["labels"]["service"] == "code"
    )
    assert "/ 0.01 > 6" in code_tpot["expr"]  # a 99 % objective: a 1 % budget
    efficiency = groups["fleetscale-efficiency-slos"]
    assert {r["labels"]["objective"] for r in efficiency} == {"gpus-busy", "little-stranded", "few-saturated"}
    assert all(r["labels"]["severity"] in ("page", "ticket") for r in latency + efficiency)


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    _, promtool = prometheus_binaries()
    rules = tmp_path / "rules.yml"
    out = CliRunner().invoke(
        app, ["render", "alerts", "--scenario", str(_scenario(tmp_path)), "--rules-only", "-o", str(rules)]
    )
    assert out.exit_code == 0, out.output
    checked = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 14 rules found" in checked.stdout + checked.stderr


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bound", "buckets", "expected"),
    [(0.6, (0.25, 0.5, 0.75), 0.5), (0.5, (0.25, 0.5, 0.75), 0.5), (0.1, (0.25,), 0.1), (0.3, None, 0.3)],
)
def test_bucket_at(bound: float, buckets: tuple[float, ...] | None, expected: float) -> None:
    assert bucket_at(bound, buckets) == expected


@pytest.mark.parametrize(
    ("bound", "written", "other"),
    [(0.5, ["0.5", "0.50"], "0.05"), (1.0, ["1", "1.0", "1.000"], "10"), (2560.0, ["2560", "2560.0"], "256")],
)
def test_le_matcher_reads_the_bound_however_it_is_written(bound: float, written: list[str], other: str) -> None:
    import re

    pattern = le_matcher(bound).replace("\\\\", "\\")  # what the PromQL string holds after its escapes
    for text in written:
        assert re.fullmatch(pattern, text), (pattern, text)
    assert not re.fullmatch(pattern, other)
