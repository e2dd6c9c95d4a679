"""The Prometheus harness itself (prometheus_server.py), against the real binary: it scrapes, answers queries,
stops by PID, frees its port, comes back on the same port with its old data, and writes configs promtool accepts."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.prometheus_server import PrometheusServer, StaticExporter, prometheus_binaries

pytestmark = pytest.mark.integration

RULES = """\
groups:
  - name: fleetscale-harness
    rules:
      - record: fleetscale_test:gauge:max
        expr: max(fleetscale_test_gauge)
"""


def _exposition(value: float) -> str:
    return (
        "# HELP fleetscale_test_gauge A gauge the harness test serves.\n"
        "# TYPE fleetscale_test_gauge gauge\n"
        f'fleetscale_test_gauge{{replica="a"}} {value}\n'
    )


def _port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be listened on (SO_REUSEADDR: closed connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.slow  # two first scrapes, about 6 s each (Prometheus's target discovery)
def test_scrapes_stops_by_pid_and_comes_back_with_its_data(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    with (
        StaticExporter(_exposition(42.5)) as exporter,
        PrometheusServer([("exporter", [exporter.target])], rule_files=[rules], workdir=tmp_path / "prom") as prom,
    ):
        up = prom.wait_up("exporter")
        assert [s["metric"]["instance"] for s in up] == [exporter.target]
        [series] = prom.query("fleetscale_test_gauge")
        assert series["metric"] == {
            "__name__": "fleetscale_test_gauge",
            "job": "exporter",
            "instance": exporter.target,
            "replica": "a",
        }
        seen_at, value = float(series["value"][0]), series["value"][1]
        assert value == "42.5"
        assert float(prom.wait_query("fleetscale_test:gauge:max", timeout_s=10)[0]["value"][1]) == 42.5
        assert exporter.scrapes >= 1

        pid, port = prom.pid, prom.port
        assert pid is not None
        assert prom.stop() == 0  # SIGTERM: a clean shutdown
        assert prom.pid is None
        assert not Path(f"/proc/{pid}").exists()
        assert _port_is_free(port)
        assert prom.stop() == 0  # idempotent

        exporter.body = _exposition(7.0)
        prom.start()
        assert (prom.port, prom.url) == (port, f"http://127.0.0.1:{port}")
        assert prom.pid not in (None, pid)
        assert prom.query_value("fleetscale_test_gauge", at=seen_at) == 42.5  # the old data, from the same dir
        prom.wait_up("exporter")  # a scrape by the new process, not the old `up` samples
        assert prom.query_value("fleetscale_test_gauge") == 7.0
        new_pid = prom.pid
    assert new_pid is not None
    assert not Path(f"/proc/{new_pid}").exists()
    assert "=== start" in (tmp_path / "prom" / "prometheus.log").read_text(encoding="utf-8")


def test_promtool_accepts_the_generated_config(tmp_path: Path) -> None:
    _, promtool = prometheus_binaries()
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    server = PrometheusServer(
        [("a", ["127.0.0.1:9"]), ("b", ["127.0.0.1:10", "127.0.0.1:11"], "/custom/metrics")],
        scrape_interval_s=0.5,
        evaluation_interval_s=2,
        rule_files=[rules],
        workdir=tmp_path / "prom",
    )
    config = server.write_config()
    checked = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
    assert "scrape_interval: 500ms" in config.read_text(encoding="utf-8")

    # The check reads the rule files too: a broken one fails it.
    rules.write_text(RULES.replace("max(fleetscale_test_gauge)", "max(fleetscale_test_gauge"), encoding="utf-8")
    broken = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert broken.returncode != 0, broken.stdout + broken.stderr

    with pytest.raises(ValueError, match=r"only 127\.0\.0\.1:PORT"):
        PrometheusServer([("remote", ["10.0.0.1:9100"])], workdir=tmp_path / "other")
