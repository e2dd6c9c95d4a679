"""The `rayserve` baseline of `fleetscale whatif`: Ray Serve's own default autoscaling policy, run per tick.

This module is the simulator's side of the baseline: per tick and service it gathers what the Serve controller
would hand its policy (replicas, requests in flight, queued requests, the policy's state) from the simulated fleet,
calls the policy through `ServeScalingPolicy`, and bounds the answer as the controller's `apply_bounds` does
(rounded up, then clamped to [min_replicas, max_replicas]). On the first tick there is no metric yet, so the
deployment starts at what the first window needs, as the other baselines do.

The policy itself is Ray's, and the simulator never imports Ray (DESIGN.md section 3): the CLI, the composition
root, passes in `adapters.rayserve.default_policy.RayServeDefaultPolicy`, which implements `ServeScalingPolicy`
with `replica_queue_length_autoscaling_policy` wrapped as the controller wraps it. Anything else that takes the
same plain values (a fake in a test, another policy) can stand in for it.

Invariant: the policy's state dict is threaded through unchanged, per service, from one tick to the next; the
simulator never reads or edits it (it is Ray's, and Ray keeps its delay counters there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoscaler.compiled import CompiledScenario
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetView, ServiceRequests, Targets
from autoscaler.sim.policies import BaselineShape, baseline_shapes, bounded_replicas


class ServeScalingPolicy(Protocol):
    """Ray Serve's per-deployment autoscaling policy, in plain values (stability: internal to fleetscale).

    One call is one decision of the Serve controller for one deployment. The arguments are those of Serve's
    `AutoscalingConfig` (the bounds, `target_ongoing_requests`, the delays and `look_back_period_s`, in seconds)
    and of its `AutoscalingContext`: `current_replicas` (running, i.e. ready), `target_replicas` (the last target),
    `total_requests` (mean requests in flight over the look-back period, gateway queue included), `queued_requests`
    (waiting at the gateway now), `policy_state` (what the previous call returned; `{}` at first) and `now_s` (the
    simulated time, seconds from the start of the replay, which is also the clock the delays are measured on).

    Returns the desired replicas, unrounded (the caller rounds up and bounds them), and the new policy state.
    """

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
    ) -> tuple[float, dict[str, Any]]: ...


@dataclass
class RayServePolicy:
    """Ray Serve's default policy per service (see the module docstring); `target_ongoing_requests` is the knob.

    The defaults are Serve's own, except `target_ongoing_requests`, which `fleetscale whatif` tunes.
    """

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    serve: ServeScalingPolicy
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    name: str = "rayserve"
    _shapes: dict[str, BaselineShape] = field(default_factory=dict)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict)
    _target: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shapes = baseline_shapes(self.config, self.requests)

    def targets(self, view: FleetView) -> Targets:
        out: dict[str, dict[Shape, int]] = {}
        for name, window in view.services.items():
            base = self._shapes[name]
            service = self.config.plans[name].service
            ready = window.ready.get(base.shape, 0)
            if not window.samples:  # the first tick: the deployment starts at what the first window needs
                self._target[name] = bounded_replicas(self.config, name, base.replicas_for(window.rate_rps))
                out[name] = {base.shape: self._target[name]}
                continue
            desired, self._state[name] = self.serve(
                name,
                min_replicas=service.min_replicas,
                max_replicas=service.max_replicas,
                target_ongoing_requests=self.target_ongoing_requests,
                upscale_delay_s=self.upscale_delay_s,
                downscale_delay_s=self.downscale_delay_s,
                look_back_period_s=self.look_back_period_s,
                current_replicas=ready,
                target_replicas=self._target.get(name, ready),
                # What Serve's replica metrics report: the mean in flight over the look-back period.
                total_requests=window.mean_in_flight(self.look_back_period_s, view.now_s),
                queued_requests=float(window.queued),
                policy_state=self._state.get(name, {}),
                now_s=view.now_s,
            )
            # Rounded up, then bounded: the Serve controller's `apply_bounds`.
            self._target[name] = bounded_replicas(self.config, name, math.ceil(desired))
            out[name] = {base.shape: self._target[name]}
        return out
