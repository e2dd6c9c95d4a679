"""Ray Serve's own default autoscaling policy, called from the installed `ray` package with plain values.

`RayServeDefaultPolicy` is what the simulator's `rayserve` baseline calls once per tick and service (the CLI wires
it in; this adapter knows nothing of the simulator). Each call builds the `AutoscalingConfig` and the
`AutoscalingContext` the Serve controller would build, and calls the policy exactly as the controller composes
it: `_apply_autoscaling_config(replica_queue_length_autoscaling_policy)` (scaling factors, upscale and downscale
delays). The answer is Ray's, unrounded; rounding up and clamping to [min_replicas, max_replicas], as the
controller's `apply_bounds` does, is the caller's.

Ray 2.60's delay logic measures the delays with `time.time()`; in a replay that runs minutes of simulated time per
second, the wall clock would never let a delay elapse. So, only while the policy runs, the `time` that module
sees is a clock reading the caller's time (`now_s`). Nothing else of Ray is touched.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RayUnavailableError(RuntimeError):
    pass


_APP_NAME = "fleetscale-sim"


def _ray() -> tuple[Any, Any, Any, Any, Any]:
    try:
        # Ray's modules declare pydantic fields the pydantic 2 way it deprecates; that is Ray's to fix, and a user
        # of `fleetscale whatif` should not see it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ray.serve import autoscaling_policy
            from ray.serve._private.common import DeploymentID, ReplicaID
            from ray.serve.config import AutoscalingConfig, AutoscalingContext
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RayUnavailableError(
            f"the rayserve policy calls Ray Serve's own policy, and ray[serve] is not installed ({exc}); "
            "install it with: pip install 'fleetscale[ray]'"
        ) from None
    return autoscaling_policy, DeploymentID, ReplicaID, AutoscalingConfig, AutoscalingContext


@contextmanager
def _simulated_clock(module: Any, now_s: float) -> Iterator[None]:
    real = module.time
    clock = types.SimpleNamespace(**{name: getattr(real, name) for name in dir(real) if not name.startswith("__")})
    clock.time = lambda: now_s
    module.time = clock
    try:
        yield
    finally:
        module.time = real


class RayServeDefaultPolicy:
    """Ray Serve's default policy as a callable of plain values (the arguments are documented where the simulator
    declares what it calls: the `rayserve` baseline's `ServeScalingPolicy`).

    Raises RayUnavailableError on construction when ray[serve] is not installed. The instance keeps no decision
    state (that is the `policy_state` the caller threads through), only the Ray objects it has built, so one
    instance can serve any number of replays.
    """

    def __init__(self) -> None:
        self._module, self._deployment_id, self._replica_id, self._autoscaling_config, self._context = _ray()
        self._policy = self._module._apply_autoscaling_config(self._module.replica_queue_length_autoscaling_policy)
        # Built once per distinct value: a pydantic model per tick and service would cost more than the policy.
        self._configs: dict[tuple[int, int, float, float, float, float], Any] = {}
        self._ids: dict[str, Any] = {}

    def __call__(
        self,
        deployment: str,
        *,
        min_replicas: int,
        max_replicas: int,
        target_ongoing_requests: float,
        upscale_delay_s: float,
        downscale_delay_s: float,
        look_back_period_s: float,
        current_replicas: int,
        target_replicas: int,
        total_requests: float,
        queued_requests: float,
        policy_state: dict[str, Any],
        now_s: float,
    ) -> tuple[float, dict[str, Any]]:
        key = (
            min_replicas,
            max_replicas,
            target_ongoing_requests,
            upscale_delay_s,
            downscale_delay_s,
            look_back_period_s,
        )
        config = self._configs.get(key)
        if config is None:
            config = self._configs[key] = self._autoscaling_config(
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                target_ongoing_requests=target_ongoing_requests,
                upscale_delay_s=upscale_delay_s,
                downscale_delay_s=downscale_delay_s,
                look_back_period_s=look_back_period_s,
            )
        deployment_id = self._ids.get(deployment)
        if deployment_id is None:
            deployment_id = self._ids[deployment] = self._deployment_id(name=deployment, app_name=_APP_NAME)
        replicas = [
            self._replica_id(unique_id=f"{deployment}-{i}", deployment_id=deployment_id)
            for i in range(current_replicas)
        ]
        ctx = self._context(
            deployment_id=deployment_id,
            deployment_name=deployment,
            app_name=_APP_NAME,
            current_num_replicas=current_replicas,
            target_num_replicas=target_replicas,
            running_replicas=replicas,
            total_num_requests=total_requests,
            total_queued_requests=queued_requests,
            aggregated_metrics={},
            raw_metrics={},
            capacity_adjusted_min_replicas=min_replicas,
            capacity_adjusted_max_replicas=max_replicas,
            policy_state=policy_state,
            last_scale_up_time=None,
            last_scale_down_time=None,
            current_time=now_s,
            config=config,
        )
        with _simulated_clock(self._module, now_s):
            desired, state = self._policy(ctx)
        return float(desired), state
