"""Every default query of every engine is PromQL that Prometheus's own parser accepts (`promtool check rules`, run
on a rule file with each query filled in, selectors included, as a recording rule). What the vLLM queries answer
from a real Prometheus is in test_prometheus_loop.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from adapters.prometheus.queries import ServiceQueries
from autoscaler.config import MetricsEngine, Service, ServiceSlo
from tests.integration.prometheus_server import prometheus_binaries

pytestmark = pytest.mark.integration


def service(engine: MetricsEngine) -> Service:
    return Service(
        name="chat",
        model="Llama-3.1-8B",
        slo=ServiceSlo(ttft_p95_s=1.0, tpot_p95_s=0.1),
        metrics={"engine": engine, "labels": {"namespace": "inference"}, "label_patterns": {"pod": "chat-.*"}},
    )


def test_promtool_accepts_every_default_query(tmp_path: Path) -> None:
    _, promtool = prometheus_binaries()
    rules = []
    for engine in MetricsEngine:
        queries = ServiceQueries.of(service(engine), {"deployment": "chat-h100"})
        named = {**{str(k): v for k, v in queries.signals.items()}, "counter": queries.counter}
        named["freshness"] = queries.freshness
        for signal, query in named.items():
            rules.append({"record": f"fleetscale_check:{engine.value}:{signal}", "expr": query})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "default-queries", "rules": rules}]}), encoding="utf-8")
    checked = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout + checked.stderr
