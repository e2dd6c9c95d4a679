"""The Ray Serve actuator and inventory (adapters/rayserve/dashboard.py) against a real local Ray with 8 logical
GPUs (tests/integration/ray_child.py, one cluster for this module, stopped by PID): the rendered config deploys,
and the actuator scales it 1 -> 4 -> 2 through the external scale API, keeping the replicas that run; 0.25-GPU
replicas and 2-GPU STRICT_PACK gangs run; a replica that finds no GPU left stays pending, and the inventory says
so (starting, not ready)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from adapters.rayserve.dashboard import RayServeDashboard
from adapters.rayserve.render import serve_config
from autoscaler.catalog import load_catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.config import WorkloadRef
from autoscaler.errors import NotFound, PermanentError
from autoscaler.perf import load_profile_book
from autoscaler.ports import ScaleRequest
from autoscaler.shapes import Shape, parse_shape
from tests.integration.prometheus_server import free_port
from tests.unit.conftest import compile_dict, scenario_dict

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHILD = Path(__file__).with_name("ray_child.py")
H100 = parse_shape("H100-80GB")
START_TIMEOUT_S = 120.0
CONVERGE_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, serve_port = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_TMPDIR": str(tmp), "MPLCONFIGDIR": str(tmp / "mpl")}
    log = (tmp / "ray_child.log").open("w+", encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(port), str(serve_port)], stdout=subprocess.PIPE, stderr=log, env=env, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("ready"):
            log.seek(0)
            raise AssertionError(f"Ray did not start: {line!r}\n{log.read()[-3000:]}")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/ray/version", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
        log.close()


@pytest.fixture(scope="module")
def chat() -> CompiledScenario:
    catalog = load_catalog()
    data = scenario_dict()
    data["services"][0]["min_replicas"] = 1
    return compile_dict(data, catalog, load_profile_book(catalog))


def running(fleet: RayServeDashboard, replicas: int) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    seen = None
    while time.monotonic() < deadline:
        seen = fleet.snapshot(datetime.now(UTC)).replicas.get("chat", {}).get(H100)
        if seen is not None and seen.ready == replicas and seen.starting == 0 and seen.spec == replicas:
            return
        time.sleep(0.5)
    raise AssertionError(f"chat did not reach {replicas} RUNNING replicas: {seen}")


def replica_ids(url: str) -> set[str]:
    details = httpx.get(f"{url}/api/serve/applications/", timeout=10).json()
    replicas = details["applications"]["chat"]["deployments"]["chat"]["replicas"]
    return {r["replica_id"] for r in replicas if r["state"] == "RUNNING"}


def test_the_rendered_config_deploys_and_the_actuator_scales_it(dashboard: str, chat: CompiledScenario) -> None:
    config = serve_config(chat, {"*": "tests.integration.serve_app:app"})
    # A second application without the external scaler: the scale API refuses it (412).
    plain = {**config["applications"][0], "name": "plain", "route_prefix": "/plain", "external_scaler_enabled": False}
    config = {"applications": [*config["applications"], plain]}
    deployed = httpx.put(f"{dashboard}/api/serve/applications/", json=config, timeout=60)
    assert deployed.status_code == 200, deployed.text
    fleet = RayServeDashboard(chat, dashboard)
    try:
        running(fleet, 1)
        first = replica_ids(dashboard)
        assert fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d-1")).applied == 4
        running(fleet, 4)
        four = replica_ids(dashboard)
        assert first <= four  # the replica that ran is kept
        assert fleet.set_replicas(ScaleRequest("chat", H100, 2, None, "d-2")).applied == 2
        running(fleet, 2)
        assert replica_ids(dashboard) <= four  # scaling down stops replicas, starts none
        with pytest.raises(NotFound, match="no such application or deployment"):
            fleet.set_replicas(ScaleRequest("ghost", H100, 1, None, "d-3"))
        refused = ScaleRequest("chat", H100, 3, WorkloadRef(kind="RayServeDeployment", app="plain", name="chat"), "d-4")
        with pytest.raises(PermanentError, match=r"412 .*external_scaler_enabled: true"):
            fleet.set_replicas(refused)
    finally:
        fleet.close()


def mixed() -> CompiledScenario:
    catalog = load_catalog()
    pools = [
        {"name": "h100", "gpu_type": "H100-80GB", "gpus_per_node": 8, "max_nodes": 1},
        {"name": "l4", "gpu_type": "L4", "gpus_per_node": 8, "max_nodes": 1, "gpu_price_usd_per_h": 0.8,
         "fractional_allowed": True},
    ]  # fmt: skip
    slo = {"ttft_p95_s": 2.0, "tpot_p95_s": 0.2}
    services = [
        {"name": "tiny", "model": "Llama-3.2-1B", "slo": slo, "min_replicas": 2, "allowed_shapes": ["0.25xL4"]},
        {"name": "tp", "model": "Llama-3.1-70B", "precision": "fp8", "slo": slo, "min_replicas": 2,
         "allowed_shapes": ["2xH100-80GB"]},
        {"name": "chat", "model": "Llama-3.1-8B", "slo": slo, "min_replicas": 1, "allowed_shapes": ["H100-80GB"]},
    ]  # fmt: skip
    return compile_dict(
        {"name": "mixed", "fleet": {"pools": pools}, "services": services}, catalog, load_profile_book(catalog)
    )


def test_shares_gangs_and_replicas_pending_for_gpus(dashboard: str) -> None:
    config = mixed()
    paths = {"tiny": "tests.integration.serve_app:tiny_app", "tp": "tests.integration.serve_app:tp_app",
             "chat": "tests.integration.serve_app:app"}  # fmt: skip
    rendered = serve_config(config, paths)
    deployed = httpx.put(f"{dashboard}/api/serve/applications/", json=rendered, timeout=60)
    assert deployed.status_code == 200, deployed.text
    fleet = RayServeDashboard(config, dashboard)
    tiny, tp = parse_shape("0.25xL4"), parse_shape("2xH100-80GB")
    try:
        # chat keeps the count the external scaler gave it (counts survive a `serve deploy`): 1 alone, 2 after the
        # test above. Start from 2 either way.
        fleet.set_replicas(ScaleRequest("chat", H100, 2, None, "d-5"))
        assert converge(fleet, {("tiny", tiny): 2, ("tp", tp): 2, ("chat", H100): 2})
        # 2 x 0.25 GPU + 2 x a 2-GPU STRICT_PACK placement group + 2 GPUs: 6.5 of 8 logical GPUs. Two more whole
        # GPUs do not fit in the 1.5 left: one starts, the other waits for a GPU (pending).
        fleet.set_replicas(ScaleRequest("chat", H100, 4, None, "d-6"))
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        seen = None
        while time.monotonic() < deadline:
            seen = fleet.snapshot(datetime.now(UTC)).replicas["chat"][H100]
            if seen.ready == 3 and seen.starting == 1:
                break
            time.sleep(0.5)
        assert seen is not None and (seen.ready, seen.starting, seen.spec) == (3, 1, 4), seen
        time.sleep(3)
        still = fleet.snapshot(datetime.now(UTC)).replicas["chat"][H100]
        assert (still.ready, still.starting) == (3, 1)  # it stays pending: no GPU frees up
    finally:
        fleet.close()


def converge(fleet: RayServeDashboard, wanted: dict[tuple[str, Shape], int]) -> bool:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        replicas = fleet.snapshot(datetime.now(UTC)).replicas
        if all(
            (r := replicas.get(service, {}).get(shape)) is not None and r.ready == n and r.starting == 0
            for (service, shape), n in wanted.items()
        ):
            return True
        time.sleep(0.5)
    raise AssertionError(f"not converged to {wanted}: {fleet.snapshot(datetime.now(UTC)).replicas}")
