"""A Ray Serve config (what `serve deploy` reads) from a scenario and, optionally, a decision's targets.

Every service's Ray Serve bindings (`scale_target` / `shape_scale_targets` of kind `RayServeDeployment`, naming the
application and the deployment) become deployments; a service without one becomes the deployment of its name in the
application of its name, on one shape (the decision's, else its first allowed shape that holds the model). Per shape:

- a whole GPU: `ray_actor_options: {num_gpus: 1, accelerator_type: H100}` (Ray names accelerators by the model
  token NVML reports: H100, A100, H200, L4, ...);
- a share of a GPU: `num_gpus: 0.25` (Ray's fractional GPUs);
- a MIG instance: `num_gpus: 1`, the GPU's accelerator type and the custom resource `mig:<profile>` (Ray sees a MIG
  instance as a GPU of a node started with MIG devices visible, and does not tell profiles apart: such nodes must
  advertise them, for example `ray start --resources '{"mig:3g.40gb": 2}'`);
- a tensor-parallel gang of n GPUs on one node: `placement_group_bundles` of n `{GPU: 1}` bundles with
  `STRICT_PACK`, the replica itself in the first bundle (it asks for one GPU and one CPU there). Serve's
  `gang_scheduling_config`, where the installed Ray has it, gangs *replicas* (a group of replicas scheduled
  together), not the GPUs of one replica, so a tensor-parallel replica is rendered as a placement group;
- a gang across nodes is refused: a Serve replica's placement group cannot be made to span nodes of one pool with a
  guarantee (run those on Kubernetes as a LeaderWorkerSet).

`max_ongoing_requests` is the replica's slots from its profile (the batch its KV cache holds at the service's mean
request length). Scaling: `external_scaler_enabled: true` on each application, so that fleetscale's loop sets the
replica counts through the dashboard's scale API (`num_replicas` is the starting count: the decision's target, else
`min_replicas`, at least 1 as Serve requires at deploy time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.capacity import TokenMix
from autoscaler.compiled import CompiledScenario, ServicePlan
from autoscaler.errors import ConfigError
from autoscaler.model import Decision
from autoscaler.shapes import Shape, ShapeKind


@dataclass(frozen=True, slots=True)
class Binding:
    """One deployment to render: the service, its shape, and where it goes."""

    service: str
    shape: Shape
    app: str
    deployment: str


def ray_accelerator_type(gpu_type: str) -> str:
    """Ray's accelerator type for a catalog GPU type: the model token (`H100-80GB` -> `H100`)."""
    return gpu_type.split("-", 1)[0]


def bindings(config: CompiledScenario, decision: Decision | None = None) -> list[Binding]:
    """The deployments the scenario asks for (module docstring)."""
    out: list[Binding] = []
    for name, plan in config.plans.items():
        service = plan.service
        bound = [
            (shape, plan.workload(shape))
            for shape in (service.shapes() or [c.shape for c in plan.candidates if c.profile is not None])
        ]
        serve = [(shape, w) for shape, w in bound if w is not None and w.is_ray_serve]
        if serve:
            out.extend(Binding(name, shape, str(w.app), w.name) for shape, w in serve)
            continue
        shape = _default_shape(plan, decision)
        out.append(Binding(name, shape, name, name))
    return out


def _default_shape(plan: ServicePlan, decision: Decision | None) -> Shape:
    if decision is not None:
        target = decision.service(plan.service.name).target
        running = [s for s, n in target.items() if n > 0]
        if running:
            return max(running, key=lambda s: target[s])
    usable = [c for c in plan.candidates if c.profile is not None]
    if not usable:
        raise ConfigError(f"services[{plan.service.name}]: no allowed shape holds {plan.service.model}")
    return usable[0].shape


def _actor_options(shape: Shape) -> dict[str, Any]:
    if shape.kind is ShapeKind.FRACTION:
        return {"num_cpus": 1, "num_gpus": shape.fraction, "accelerator_type": ray_accelerator_type(shape.gpu_type)}
    if shape.kind is ShapeKind.MIG:
        return {
            "num_cpus": 1,
            "num_gpus": 1,
            "accelerator_type": ray_accelerator_type(shape.gpu_type),
            "resources": {f"mig:{shape.mig_profile}": 1},
        }
    return {"num_cpus": 1, "num_gpus": 1, "accelerator_type": ray_accelerator_type(shape.gpu_type)}


def deployment(config: CompiledScenario, binding: Binding, replicas: int) -> dict[str, Any]:
    """One deployment's entry of the Serve config."""
    plan = config.plans[binding.service]
    service = plan.service
    shape = binding.shape
    if shape.nodes > 1:
        raise ConfigError(
            f"services[{service.name}]: {shape} spans {shape.nodes} nodes; a Ray Serve replica's placement group "
            "cannot be made to span nodes: run it on Kubernetes (LeaderWorkerSet)"
        )
    candidate = plan.candidate(shape)
    if candidate is None or candidate.profile is None:
        why = candidate.rejected if candidate is not None else "not a candidate shape of the fleet"
        raise ConfigError(f"services[{service.name}]: shape {shape} cannot serve {service.model}: {why}")
    mix = TokenMix(service.mean_input_tokens, service.mean_output_tokens)
    entry: dict[str, Any] = {
        "name": binding.deployment,
        "num_replicas": max(replicas, 1),
        "max_ongoing_requests": max(candidate.profile.max_concurrency(mix.tokens_per_request), 1),
    }
    if shape.kind is ShapeKind.GPU and shape.gpus > 1:
        accelerator = f"accelerator_type:{ray_accelerator_type(shape.gpu_type)}"
        first = {"GPU": 1.0, "CPU": 1.0, accelerator: 0.001}
        entry["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 1}
        entry["placement_group_bundles"] = [first, *({"GPU": 1.0, accelerator: 0.001} for _ in range(shape.gpus - 1))]
        entry["placement_group_strategy"] = "STRICT_PACK"
    else:
        entry["ray_actor_options"] = _actor_options(shape)
    return entry


def serve_config(
    config: CompiledScenario,
    import_paths: Mapping[str, str],
    decision: Decision | None = None,
) -> dict[str, Any]:
    """The Serve config of the scenario (`ServeDeploySchema`'s shape); `import_paths` per application name (the
    code each runs, `module:attribute`; the key `*` stands for every application not named)."""
    apps: dict[str, list[dict[str, Any]]] = {}
    for binding in bindings(config, decision):
        if decision is not None:
            replicas = decision.service(binding.service).target.get(binding.shape, 0)
        else:
            replicas = config.plans[binding.service].service.min_replicas
        apps.setdefault(binding.app, []).append(deployment(config, binding, replicas))
    missing = [app for app in apps if app not in import_paths and "*" not in import_paths]
    if missing:
        raise ConfigError(
            f"import path: the Serve config needs the code of each application (module:attribute); none for "
            f"{', '.join(missing)}: give --import-path APP=module:attr, or --import-path module:attr for all"
        )
    return {
        "applications": [
            {
                "name": app,
                "route_prefix": f"/{app}",
                "import_path": import_paths.get(app, import_paths.get("*", "")),
                "external_scaler_enabled": True,
                "deployments": deployments,
            }
            for app, deployments in apps.items()
        ]
    }
