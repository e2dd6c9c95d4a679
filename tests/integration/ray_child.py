"""A local Ray cluster with 8 logical GPUs that Ray takes for H100s and L4s alike, and Serve on 127.0.0.1, owned by
this process: the integration tests start it, read its dashboard port from the first line it prints, and stop it
with SIGTERM (it shuts Serve and Ray down, so no process outlives it). Usage: ray_child.py DASHBOARD_PORT
SERVE_PORT."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    dashboard_port, serve_port = int(sys.argv[1]), int(sys.argv[2])
    # Loopback only, no token (the tests of auth set it themselves), quiet, and the repository importable by the
    # Serve controller and replicas (they inherit this environment).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    import ray
    from ray import serve

    ray.init(
        address="local",
        num_cpus=8,
        num_gpus=8,
        resources={"accelerator_type:H100": 8, "accelerator_type:L4": 8},
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        logging_level="ERROR",
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    print(f"ready {dashboard_port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
