"""Map a function over jobs as Ray tasks: `fleetscale plan --ray` / `--ray-address ADDR` runs its searches so.

`map_on_ray(fn, shared, jobs)` runs `fn(shared, *job)` as one Ray task per job and returns the results in the
order of `jobs`. `shared` (for the planner: the compiled scenario) is put in the object store once and handed to
every task by reference, rather than pickled once per job. The adapter knows nothing of what `fn` computes; the CLI,
the composition root, decides that.

Without an address it starts a local Ray (address "local", never a stale cluster file; loopback only, no
dashboard, no usage stats, token auth off: the settings Ray 2.60 needs to stay on 127.0.0.1) with as many CPUs as
this machine has. With an address it joins a cluster the user runs; its workers must have fleetscale installed,
since Ray sends `fn` by reference to its module. Either way Ray is shut down afterwards.
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
            configure_logging=False,
        )  # fmt: skip
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(fn)
        ref = ray.put(shared)
        results: list[R] = ray.get([task.remote(ref, *job) for job in jobs])
        return results
    finally:
        ray.shutdown()
