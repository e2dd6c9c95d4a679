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


DCGM_LEGACY = """\
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="1",UUID="b",modelName="H100",Hostname="n1",GPU_I_PROFILE="3g.40gb",GPU_I_ID="2"} 0.4
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="a",modelName="H100",Hostname="n1"} 75
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="a",modelName="H100",Hostname="n1"} 40960
DCGM_FI_DEV_FB_USED{gpu="1",UUID="b",modelName="H100",Hostname="n1",GPU_I_PROFILE="3g.40gb",GPU_I_ID="2"} 1024
"""

# A 4.9-style exporter, its names given in telemetry.dcgm.names with their units (ratios and bytes).
DCGM_RENAMED = """\
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-c",modelName="H100",hostname="n2"} 0.9
# TYPE DCGM_FI_DEV_FB_USED_BYTES gauge
DCGM_FI_DEV_FB_USED_BYTES{gpu="0",UUID="GPU-c",modelName="H100",hostname="n2"} 2.0e+10
"""


def test_dcgm_through_a_real_prometheus_under_both_naming_schemes(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from adapters.prometheus import PrometheusMetricsSource
    from autoscaler.config import DcgmSettings
    from tests.integration.prometheus_server import PrometheusServer, StaticExporter

    renamed = DcgmSettings.model_validate(
        {"names": {"fb_used": {"metric": "DCGM_FI_DEV_FB_USED_BYTES", "unit": "bytes"}}, "labels": {"job": "new"}}
    )
    with (
        StaticExporter(DCGM_LEGACY) as old_exporter,
        StaticExporter(DCGM_RENAMED) as new_exporter,
        PrometheusServer(
            [("old", [old_exporter.target]), ("new", [new_exporter.target])], workdir=tmp_path / "prom"
        ) as prom,
    ):
        prom.wait_up("old")
        prom.wait_up("new")
        legacy = PrometheusMetricsSource(prom.url, dcgm=DcgmSettings(labels={"job": "old"}))
        current = PrometheusMetricsSource(prom.url, dcgm=renamed)
        try:
            now = datetime.now(UTC)
            whole, mig = legacy.gpus(now)
            (gpu,) = current.gpus(now)
        finally:
            legacy.close()
            current.close()
    assert (whole.node, whole.gpu, whole.mig_profile, whole.engine_active) == ("n1", "0", None, 0.75)
    assert whole.fb_used_bytes == 40960 * 1024**2
    assert (mig.mig_profile, mig.instance, mig.engine_active, mig.fb_used_bytes) == ("3g.40gb", "2", 0.4, 1024**3)
    assert (gpu.node, gpu.engine_active, gpu.fb_used_bytes) == ("n2", 0.9, 2.0e10)
