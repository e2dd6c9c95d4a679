"""The `rayserve` baseline: Ray Serve's own default autoscaling policy, called from the installed `ray` package.

Each tick, per service, it builds the `AutoscalingContext` the Serve controller would build from the simulated
state and calls the policy exactly as the controller composes it: `_apply_autoscaling_config(
replica_queue_length_autoscaling_policy)` (scaling factors, upscale and downscale delays), then rounds up and clamps
to [min_replicas, max_replicas] as the controller's `apply_bounds` does. The context's `total_num_requests` is the
mean of the requests in flight (replica queues and the gateway's) over `look_back_period_s`, what Serve's replica
metrics report.

Ray 2.60's delay logic measures the delays with `time.time()`; in a replay that runs minutes of simulated time per
second, the wall clock would never let a delay elapse. So, only while the policy runs, the `time` that module
sees is a clock reading the simulated time. Nothing else of Ray is touched.
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from autoscaler.compiled import CompiledScenario
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetView, ServiceRequests, Targets
from autoscaler.sim.policies import BaselineShape, baseline_shapes, bounded_replicas


class RayUnavailableError(RuntimeError):
    pass


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


@dataclass
class RayServePolicy:
    """Ray Serve's default policy per service (see the module docstring); `target_ongoing_requests` is the knob."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    name: str = "rayserve"
    _shapes: dict[str, BaselineShape] = field(default_factory=dict)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict)
    _target: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ray = _ray()
        self._shapes = baseline_shapes(self.config, self.requests)
        module, deployment_id, _, autoscaling_config, _ = self._ray
        self._policy = module._apply_autoscaling_config(module.replica_queue_length_autoscaling_policy)
        self._configs = {}
        self._ids = {}
        for name, plan in self.config.plans.items():
            service = plan.service
            self._configs[name] = autoscaling_config(
                min_replicas=service.min_replicas,
                max_replicas=service.max_replicas,
                target_ongoing_requests=self.target_ongoing_requests,
                upscale_delay_s=self.upscale_delay_s,
                downscale_delay_s=self.downscale_delay_s,
                look_back_period_s=self.look_back_period_s,
            )
            self._ids[name] = deployment_id(name=name, app_name="fleetscale-sim")

    def targets(self, view: FleetView) -> Targets:
        module, _, replica_id, _, context = self._ray
        out: dict[str, dict[Shape, int]] = {}
        for name, window in view.services.items():
            base = self._shapes[name]
            service = self.config.plans[name].service
            ready = window.ready.get(base.shape, 0)
            if not window.samples:  # the first tick: the deployment starts at what the first window needs
                self._target[name] = bounded_replicas(self.config, name, base.replicas_for(window.rate_rps))
                out[name] = {base.shape: self._target[name]}
                continue
            target = self._target.get(name, ready)
            ids = [replica_id(unique_id=f"{name}-{i}", deployment_id=self._ids[name]) for i in range(ready)]
            ctx = context(
                deployment_id=self._ids[name],
                deployment_name=name,
                app_name="fleetscale-sim",
                current_num_replicas=ready,
                target_num_replicas=target,
                running_replicas=ids,
                total_num_requests=window.mean_in_flight(self.look_back_period_s, view.now_s),
                total_queued_requests=float(window.queued),
                aggregated_metrics={},
                raw_metrics={},
                capacity_adjusted_min_replicas=service.min_replicas,
                capacity_adjusted_max_replicas=service.max_replicas,
                policy_state=self._state.get(name, {}),
                last_scale_up_time=None,
                last_scale_down_time=None,
                current_time=view.now_s,
                config=self._configs[name],
            )
            with _simulated_clock(module, view.now_s):
                decision, self._state[name] = self._policy(ctx)
            self._target[name] = bounded_replicas(self.config, name, math.ceil(decision))
            out[name] = {base.shape: self._target[name]}
        return out
