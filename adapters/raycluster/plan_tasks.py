"""`fleetscale plan --ray` / `--ray-address ADDR`: each (service, shape) search of the planner as one Ray task.

`--ray` starts a local Ray (address "local", never a stale cluster file; loopback only, no dashboard, no usage
stats, token auth off: the settings Ray 2.60 needs to stay on 127.0.0.1) with as many CPUs as this machine has, and
shuts it down afterwards. `--ray-address` joins a cluster the user runs; its workers must have fleetscale installed
(the tasks import `autoscaler.sim.plan`). The scenario is put in the object store once and shared by all tasks.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from typing import Any

from autoscaler.compiled import CompiledScenario
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import ServiceRequests
from autoscaler.sim.plan import Evaluate, PlanOption, search_replicas

_LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _ray() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"--ray needs ray installed ({exc}): pip install 'fleetscale[ray]'") from None
    return ray


def evaluate_with_ray(config: CompiledScenario, attainment: float, address: str | None = None) -> Evaluate:
    def run(jobs: Iterable[tuple[ServiceRequests, Shape]]) -> list[PlanOption]:
        ray = _ray()
        jobs = list(jobs)
        if address is None:
            os.environ.update(_LOCAL_ENV)
            os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="fleetscale-ray-"))
            ray.init(
                address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                configure_logging=False,
            )  # fmt: skip
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        try:
            task = ray.remote(search_replicas)
            shared = ray.put(config)
            futures = [task.remote(shared, requests, shape, attainment) for requests, shape in jobs]
            results: list[PlanOption] = ray.get(futures)
            return results
        finally:
            ray.shutdown()

    return run
