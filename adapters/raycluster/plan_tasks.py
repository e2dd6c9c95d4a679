"""Map a function over jobs as Ray tasks: `fleetscale plan --ray` / `--ray-address ADDR` runs its searches so.

`map_on_ray(fn, shared, jobs)` runs `fn(shared, *job)` as one Ray task per job and returns the results in the
order of `jobs`. `shared` (for the planner: the compiled scenario) is put in the object store once and handed to
every task by reference, rather than pickled once per job. The adapter knows nothing of what `fn` computes; the CLI,
the composition root, decides that.

Without an address it starts a local Ray (address "local", never a stale cluster file; loopback only, no
dashboard, no usage stats, token auth off: the settings Ray 2.60 needs to stay on 127.0.0.1) with as many CPUs as
this machine has. With an address it joins a cluster the user runs; its workers must have fleetscale installed,
since Ray sends `fn` by reference to its module. Either way Ray is shut down afterwards.

Either way the job's runtime_env names `autoscaler.native.use_compiled_build` as its `worker_process_setup_hook`,
which Ray runs in every worker process of the job before its first task: the workers then load the compiled build
of the replay's hot path where the driver does (where a worker's fleetscale has a build matching its sources; else
they run the sources, as the driver would there).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, TypeVarTuple

_LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}

# Ray's workers are fresh interpreters that never run the `fleetscale` entry point, which opts the driver in to the
# compiled modules; without the hook they would replay about 3x slower than the driver. By module path, a string:
# Ray imports it in the worker (and job submission accepts only a string), and the adapter imports nothing of the
# replay modules itself. Each ray.init gets a copy: Ray writes the hook's env var into the dict it is handed.
_RUNTIME_ENV = {"worker_process_setup_hook": "autoscaler.native.use_compiled_build"}

S = TypeVar("S")
R = TypeVar("R")
Job = TypeVarTuple("Job")


def _ray() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"--ray needs ray installed ({exc}): pip install 'fleetscale[ray]'") from None
    return ray


def map_on_ray(
    fn: Callable[[S, *Job], R], shared: S, jobs: Iterable[tuple[*Job]], address: str | None = None
) -> list[R]:
    """`[fn(shared, *job) for job in jobs]`, each call a Ray task on a local Ray (`address` None) or a cluster."""
    ray = _ray()
    jobs = list(jobs)
    if address is None:
        os.environ.update(_LOCAL_ENV)
        os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="fleetscale-ray-"))
        ray.init(
            address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
            configure_logging=False, runtime_env=dict(_RUNTIME_ENV),
        )  # fmt: skip
    else:
        # On a cluster the runtime_env given to ray.init is this job's: it reaches every worker the job leases.
        ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=dict(_RUNTIME_ENV))
    try:
        task = ray.remote(fn)
        ref = ray.put(shared)
        results: list[R] = ray.get([task.remote(ref, *job) for job in jobs])
        return results
    finally:
        ray.shutdown()
