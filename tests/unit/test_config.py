"""Scenario configuration: one case per validation rule, the accepted boundaries, and the catalog-aware checks.

Every case starts from one small valid scenario (`_base`) and changes a few fields, written as paths the way the
error messages write them (`fleet.pools[0].min_nodes`). Each problem must come back as a ConfigIssue with the
field path, the offending value where there is one, and a message naming the rule. `catalog` and `book` are the
session fixtures of tests/unit/conftest.py.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from autoscaler.catalog import Catalog
from autoscaler.config import (
    ConfigIssue,
    Scenario,
    check_scenario,
    issues_from_validation_error,
    load_scenario,
)
from autoscaler.datafiles import config_dir
from autoscaler.errors import ConfigError
from autoscaler.perf import ProfileBook
from tests.unit.conftest import scenario_dict

SOURCE = "scenario.yaml"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXAMPLES = sorted((config_dir() / "examples").glob("*.yaml"))


class _Delete:
    """Marker: remove the field instead of setting it."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()
NO_VALUE: Any = object()  # the issue has no single offending value: the message names the values
Changes = tuple[tuple[str, Any], ...]


def _base() -> dict[str, Any]:
    """The shared small scenario (an H100 pool with MIG and catalog price, an L4 pool with its own price), with
    the bounds these tables assume: 2 L4 nodes, at most 4 chat replicas, the default tier."""
    data = scenario_dict(name="test-fleet")
    data["fleet"]["pools"][1]["max_nodes"] = 2
    chat = data["services"][0]
    del chat["tier"]
    chat["max_replicas"] = 4
    return data


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _apply(data: dict[str, Any], changes: Changes) -> dict[str, Any]:
    """A copy of `data` with each `path = value` applied; an index one past the end appends."""
    result = copy.deepcopy(data)
    for path, value in changes:
        steps: list[str | int] = [key if key else int(index) for key, index in _STEP.findall(path)]
        node: Any = result
        for step in steps[:-1]:
            node = node[step]
        last = steps[-1]
        if value is DELETE:
            del node[last]
        elif isinstance(last, int) and last == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[last] = copy.deepcopy(value)
    return result


def _issues(data: dict[str, Any]) -> list[ConfigIssue]:
    try:
        Scenario.model_validate(data)
    except ValidationError as exc:
        return issues_from_validation_error(exc)
    return []


def _expected_prefix(path: str, value: Any) -> str:
    where = path or "(top level)"
    if value is not NO_VALUE:
        where += f" = {value!r}"
    return f"{SOURCE}: {where}: "


def _assert_one_issue(issues: list[ConfigIssue], path: str, value: Any, message: str) -> None:
    lines = [issue.format(SOURCE) for issue in issues]
    assert len(issues) == 1, lines
    (issue,) = issues
    assert issue.path == path
    if value is not NO_VALUE:
        assert issue.value == value
    line = lines[0]
    assert line.startswith(_expected_prefix(path, value)), line
    assert message in issue.message, line


def test_base_scenario_is_valid(catalog: Catalog, book: ProfileBook) -> None:
    scenario = Scenario.model_validate(_base())
    assert check_scenario(scenario, catalog, book) == []


# ---------------------------------------------------------------------------------------------------------------
# Rules of the models themselves (pydantic): one case per rule.


@dataclass(frozen=True)
class RuleCase:
    name: str
    changes: Changes
    want_path: str
    want_message: str
    want_value: Any = NO_VALUE


_SERVICE_2 = {"name": "chat", "model": "Llama-3.2-1B", "slo": {"ttft_p95_s": 1.0, "tpot_p95_s": 0.1}}

RULE_CASES = [
    # Cross-field rules (model validators): the message names both fields and both values.
    RuleCase(
        "min_nodes above max_nodes",
        (("fleet.pools[0].min_nodes", 5),),
        "fleet.pools[0]",
        "min_nodes (5) must be <= max_nodes (4)",
    ),
    RuleCase("duplicate pool name", (("fleet.pools[1].name", "h100"),), "fleet", "pool name 'h100' is used twice"),
    RuleCase("duplicate service name", (("services[1]", _SERVICE_2),), "", "service name 'chat' is used twice"),
    RuleCase(
        "min_replicas above max_replicas",
        (("services[0].min_replicas", 5),),
        "services[0]",
        "min_replicas (5) must be <= max_replicas (4)",
    ),
    RuleCase(
        "shape string that is not a shape",
        (("services[0].allowed_shapes", ["H100 80GB"]),),
        "services[0]",
        "'H100 80GB' is not a shape",
    ),
    RuleCase(
        "gang of a fractional number of GPUs",
        (("services[0].allowed_shapes", ["2.5xH100-80GB"]),),
        "services[0]",
        "a gang takes a whole number of GPUs, not 2.5",
    ),
    RuleCase(
        "MIG shape with a count",
        (("services[0].allowed_shapes", ["2xH100-80GB/3g.40gb"]),),
        "services[0]",
        "a MIG shape is one instance; drop the count",
    ),
    RuleCase(
        "MIG profile name malformed",
        (("services[0].allowed_shapes", ["H100-80GB/half"]),),
        "services[0]",
        "'half' is not a MIG profile name like 3g.40gb",
    ),
    RuleCase(
        "MIG shape with tensor_parallel_size 2",
        (("services[0].allowed_shapes", ["H100-80GB/3g.40gb"]), ("services[0].tensor_parallel_size", 2)),
        "services[0]",
        "allowed_shapes ('H100-80GB/3g.40gb') is a mig shape, but tensor_parallel_size (2) needs whole GPUs",
    ),
    RuleCase(
        "fraction shape with tensor_parallel_size 4",
        (("services[0].allowed_shapes", ["0.5xL4"]), ("services[0].tensor_parallel_size", 4)),
        "services[0]",
        "allowed_shapes ('0.5xL4') is a fraction shape, but tensor_parallel_size (4) needs whole GPUs",
    ),
    RuleCase(
        "forecast_quantile without best_effort",
        (("policy", {"forecast_quantile": {"critical": 0.99, "standard": 0.9}}),),
        "policy.forecast_quantile",
        "needs a quantile for every tier; missing: best_effort",
    ),
    RuleCase(
        "forecast_quantile of 1 (must be < 1)",
        (("policy", {"forecast_quantile": {"critical": 1.0, "standard": 0.9, "best_effort": 0.5}}),),
        "policy.forecast_quantile.critical",
        "Input should be less than 1",
        1.0,
    ),
    RuleCase(
        "forecast_quantile of 0 (must be > 0)",
        (("policy", {"forecast_quantile": {"critical": 0.99, "standard": 0.9, "best_effort": 0}}),),
        "policy.forecast_quantile.best_effort",
        "Input should be greater than 0",
        0,
    ),
    RuleCase(
        "forecast_quantile for an unknown tier",
        (("policy", {"forecast_quantile": {"critical": 0.99, "standard": 0.9, "best_effort": 0.5, "gold": 0.9}}),),
        "policy.forecast_quantile.gold.[key]",
        "Input should be 'critical', 'standard' or 'best_effort'",
        "gold",
    ),
    RuleCase(
        "unknown routing",
        (("services[0].routing", "ipvs"),),
        "services[0].routing",
        "Input should be 'least_loaded', 'round_robin' or 'random'",
        "ipvs",
    ),
    RuleCase(
        "negative token_mix_half_life_s",
        (("policy", {"token_mix_half_life_s": -1}),),
        "policy.token_mix_half_life_s",
        "Input should be greater than or equal to 0",
        -1,
    ),
    RuleCase(
        "budget_fallback_quantile above 1",
        (("policy", {"budget_fallback_quantile": 1.5}),),
        "policy.budget_fallback_quantile",
        "Input should be less than 1",
        1.5,
    ),
    RuleCase(
        "negative pool price",
        (("fleet.pools[1].gpu_price_usd_per_h", -0.8),),
        "fleet.pools[1].gpu_price_usd_per_h",
        "Input should be greater than 0",
        -0.8,
    ),
    RuleCase(
        "zero pool price",
        (("fleet.pools[1].gpu_price_usd_per_h", 0),),
        "fleet.pools[1].gpu_price_usd_per_h",
        "Input should be greater than 0",
        0,
    ),
    RuleCase(
        "negative hourly budget",
        (("budget", {"hard_usd_per_h": -10}),),
        "budget.hard_usd_per_h",
        "Input should be greater than 0",
        -10,
    ),
    RuleCase(
        "negative monthly budget",
        (("budget", {"monthly_usd": -1.0}),),
        "budget.monthly_usd",
        "Input should be greater than 0",
        -1.0,
    ),
    # Unknown fields, at every level.
    RuleCase("unknown field at the top", (("colour", "blue"),), "colour", "Extra inputs are not permitted", "blue"),
    RuleCase("unknown field in fleet", (("fleet.zone", "eu"),), "fleet.zone", "Extra inputs are not permitted", "eu"),
    RuleCase(
        "unknown field in a pool",
        (("fleet.pools[0].colour", "blue"),),
        "fleet.pools[0].colour",
        "Extra inputs are not permitted",
        "blue",
    ),
    RuleCase(
        "unknown field in a service",
        (("services[0].replicas", 3),),
        "services[0].replicas",
        "Extra inputs are not permitted",
        3,
    ),
    RuleCase(
        "unknown field in an SLO",
        (("services[0].slo.ttft_p99_s", 1.0),),
        "services[0].slo.ttft_p99_s",
        "Extra inputs are not permitted",
        1.0,
    ),
    RuleCase(
        "unknown field in budget",
        (("budget", {"soft_usd_per_h": 10}),),
        "budget.soft_usd_per_h",
        "Extra inputs are not permitted",
        10,
    ),
    RuleCase(
        "unknown field in policy (a unit typo)",
        (("policy", {"tick_ms": 15000}),),
        "policy.tick_ms",
        "Extra inputs are not permitted",
        15000,
    ),
    # Names: DNS labels of at most 63 characters.
    RuleCase(
        "scenario name with capitals and underscore",
        (("name", "Chat_Fleet"),),
        "name",
        "String should match pattern",
        "Chat_Fleet",
    ),
    RuleCase(
        "service name starting with a dash",
        (("services[0].name", "-chat"),),
        "services[0].name",
        "String should match pattern",
        "-chat",
    ),
    RuleCase(
        "pool name ending with a dash", (("fleet.pools[0].name", "h100-"),), "fleet.pools[0].name", "match", "h100-"
    ),
    RuleCase(
        "pool name of 64 characters",
        (("fleet.pools[0].name", "a" * 64),),
        "fleet.pools[0].name",
        "String should have at most 63 characters",
        "a" * 64,
    ),
    # Single-field bounds and enumerations.
    RuleCase(
        "gpus_per_node 0",
        (("fleet.pools[0].gpus_per_node", 0),),
        "fleet.pools[0].gpus_per_node",
        "greater than or equal to 1",
        0,
    ),
    RuleCase(
        "gpus_per_node 17",
        (("fleet.pools[0].gpus_per_node", 17),),
        "fleet.pools[0].gpus_per_node",
        "less than or equal to 16",
        17,
    ),
    RuleCase(
        "max_nodes 0", (("fleet.pools[0].max_nodes", 0),), "fleet.pools[0].max_nodes", "greater than or equal to 1", 0
    ),
    RuleCase(
        "negative min_nodes",
        (("fleet.pools[0].min_nodes", -1),),
        "fleet.pools[0].min_nodes",
        "greater than or equal to 0",
        -1,
    ),
    RuleCase(
        "negative node_provisioning_s",
        (("fleet.pools[0].node_provisioning_s", -5),),
        "fleet.pools[0].node_provisioning_s",
        "greater than or equal to 0",
        -5,
    ),
    RuleCase(
        "negative min_replicas",
        (("services[0].min_replicas", -1),),
        "services[0].min_replicas",
        "greater than or equal to 0",
        -1,
    ),
    RuleCase(
        "max_replicas 0",
        (("services[0].max_replicas", 0),),
        "services[0].max_replicas",
        "greater than or equal to 1",
        0,
    ),
    RuleCase(
        "tensor_parallel_size 0",
        (("services[0].tensor_parallel_size", 0),),
        "services[0].tensor_parallel_size",
        "greater than or equal to 1",
        0,
    ),
    RuleCase(
        "zero TTFT bound",
        (("services[0].slo.ttft_p95_s", 0),),
        "services[0].slo.ttft_p95_s",
        "Input should be greater than 0",
        0,
    ),
    RuleCase("unknown tier", (("services[0].tier", "gold"),), "services[0].tier", "'critical', 'standard' or", "gold"),
    RuleCase("unknown precision", (("services[0].precision", "fp4"),), "services[0].precision", "'bf16'", "fp4"),
    RuleCase("unknown mode", (("policy", {"mode": "auto"}),), "policy.mode", "'observe', 'recommend' or", "auto"),
    RuleCase("tick_s 0", (("policy", {"tick_s": 0}),), "policy.tick_s", "Input should be greater than 0", 0),
    RuleCase(
        "scale_up_max_ratio below 1",
        (("policy", {"scale_up_max_ratio": 0.5}),),
        "policy.scale_up_max_ratio",
        "greater than or equal to 1",
        0.5,
    ),
    RuleCase(
        "shape_switch_min_savings_ratio of 1",
        (("policy", {"shape_switch_min_savings_ratio": 1}),),
        "policy.shape_switch_min_savings_ratio",
        "Input should be less than 1",
        1,
    ),
    # Workload bindings: what a service scales, and how its metrics are found.
    RuleCase(
        "a Deployment without its namespace",
        (("services[0].scale_target", {"kind": "Deployment", "name": "chat"}),),
        "services[0].scale_target",
        "kind (Deployment) needs namespace (the namespace of 'chat')",
    ),
    RuleCase(
        "a Ray Serve deployment without its application",
        (("services[0].scale_target", {"kind": "RayServeDeployment", "name": "chat"}),),
        "services[0].scale_target",
        "kind (RayServeDeployment) needs app (the Serve application of deployment 'chat')",
    ),
    RuleCase(
        "a Ray Serve deployment with a namespace",
        (("services[0].scale_target", {"kind": "RayServeDeployment", "name": "chat", "app": "a", "namespace": "n"}),),
        "services[0].scale_target",
        "kind (RayServeDeployment) takes app and name, not namespace or api_version",
    ),
    RuleCase(
        "an unknown kind without its api_version",
        (("services[0].scale_target", {"kind": "InferenceService", "name": "chat", "namespace": "ml"}),),
        "services[0].scale_target",
        "kind ('InferenceService') is not one fleetscale knows (Deployment, StatefulSet, LeaderWorkerSet, RayService, "
        "RayServeDeployment): give its api_version",
    ),
    RuleCase(
        "a kind that is not a Kubernetes kind",
        (("services[0].scale_target", {"kind": "deployment", "name": "chat", "namespace": "ml"}),),
        "services[0].scale_target",
        "kind ('deployment') must be a Kubernetes kind (CamelCase) or RayServeDeployment",
    ),
    RuleCase(
        "an api_version that is not group/version",
        (
            (
                "services[0].scale_target",
                {"kind": "InferenceService", "name": "chat", "namespace": "ml", "api_version": "serving.kserve.io"},
            ),
        ),
        "services[0].scale_target",
        "api_version ('serving.kserve.io') must be group/version, e.g. example.com/v1",
    ),
    RuleCase(
        "a Kubernetes name with capitals",
        (("services[0].scale_target", {"kind": "Deployment", "name": "Chat", "namespace": "ml"}),),
        "services[0].scale_target",
        "name ('Chat') must be a lowercase DNS name, as Kubernetes requires",
    ),
    RuleCase(
        "an unknown field in a workload",
        (("services[0].scale_target", {"kind": "Deployment", "name": "chat", "namespace": "ml", "replicas": 3}),),
        "services[0].scale_target.replicas",
        "Extra inputs are not permitted",
        3,
    ),
    RuleCase(
        "one scale_target for two shapes",
        (
            ("services[0].allowed_shapes", ["H100-80GB", "H100-80GB/3g.40gb"]),
            ("services[0].scale_target", {"kind": "Deployment", "name": "chat", "namespace": "ml"}),
        ),
        "services[0]",
        "scale_target (Deployment ml/chat) would run 2 shapes (H100-80GB, H100-80GB/3g.40gb), but a workload's pods "
        "have one accelerator shape: name a workload per shape in shape_scale_targets",
    ),
    RuleCase(
        "a workload for a shape the service may not take",
        (("services[0].shape_scale_targets", {"L4": {"kind": "Deployment", "name": "chat-l4", "namespace": "ml"}}),),
        "services[0]",
        "shape_scale_targets ('L4') is not one of allowed_shapes (H100-80GB)",
    ),
    RuleCase(
        "two shapes bound to one workload",
        (
            ("services[0].allowed_shapes", ["H100-80GB", "H100-80GB/3g.40gb"]),
            (
                "services[0].shape_scale_targets",
                {
                    "H100-80GB": {"kind": "Deployment", "name": "chat", "namespace": "ml"},
                    "H100-80GB/3g.40gb": {"kind": "Deployment", "name": "chat", "namespace": "ml"},
                },
            ),
        ),
        "services[0]",
        "shape_scale_targets: 'H100-80GB/3g.40gb' and 'H100-80GB' name the same workload (Deployment ml/chat)",
    ),
    RuleCase(
        "a metrics label that Prometheus would refuse",
        (("services[0].metrics", {"labels": {"model-name": "llama"}}),),
        "services[0].metrics.labels",
        "label name 'model-name' must match [a-zA-Z_][a-zA-Z0-9_]* (a Prometheus label)",
    ),
    RuleCase(
        "negative metrics_max_future_skew_s",
        (("policy", {"metrics_max_future_skew_s": -1}),),
        "policy.metrics_max_future_skew_s",
        "Input should be greater than or equal to 0",
        -1,
    ),
    RuleCase(
        "forecast_max_age_s 0",
        (("policy", {"forecast_max_age_s": 0}),),
        "policy.forecast_max_age_s",
        "Input should be greater than 0",
        0,
    ),
    # Structure.
    RuleCase("no pools", (("fleet.pools", []),), "fleet.pools", "List should have at least 1 item"),
    RuleCase("no services", (("services", []),), "services", "List should have at least 1 item"),
    RuleCase("service without an SLO", (("services[0].slo", DELETE),), "services[0].slo", "Field required"),
    RuleCase("pool without gpu_type", (("fleet.pools[0].gpu_type", DELETE),), "fleet.pools[0].gpu_type", "required"),
]


@pytest.mark.parametrize("case", RULE_CASES, ids=lambda case: case.name)
def test_each_rule_reports_path_value_and_reason(case: RuleCase) -> None:
    data = _apply(_base(), case.changes)
    with pytest.raises(ValidationError) as raised:
        Scenario.model_validate(data)
    _assert_one_issue(issues_from_validation_error(raised.value), case.want_path, case.want_value, case.want_message)


@dataclass(frozen=True)
class BoundaryCase:
    name: str
    changes: Changes


BOUNDARY_CASES = [
    BoundaryCase("min_replicas == max_replicas", (("services[0].min_replicas", 4), ("services[0].max_replicas", 4))),
    BoundaryCase("min_nodes == max_nodes", (("fleet.pools[0].min_nodes", 4),)),
    BoundaryCase("min_replicas 0 (scale to zero)", (("services[0].min_replicas", 0),)),
    BoundaryCase("max_replicas 1", (("services[0].min_replicas", 1), ("services[0].max_replicas", 1))),
    BoundaryCase("gpus_per_node 16", (("fleet.pools[0].gpus_per_node", 16),)),
    BoundaryCase("name of 63 characters", (("name", "a" * 63),)),
    BoundaryCase("one-character names", (("name", "a"), ("services[0].name", "b"), ("fleet.pools[0].name", "c"))),
    BoundaryCase(
        "quantiles just inside (0, 1)",
        (("policy", {"forecast_quantile": {"critical": 0.999, "standard": 0.5, "best_effort": 0.001}}),),
    ),
    BoundaryCase(
        "tensor_parallel_size 2 with a bare whole-GPU shape",
        (("services[0].tensor_parallel_size", 2), ("services[0].allowed_shapes", ["H100-80GB"])),
    ),
    BoundaryCase(
        "tensor_parallel_size 1 with a MIG shape",
        (("services[0].tensor_parallel_size", 1), ("services[0].allowed_shapes", ["H100-80GB/3g.40gb"])),
    ),
    BoundaryCase("shape_switch_min_savings_ratio 0", (("policy", {"shape_switch_min_savings_ratio": 0}),)),
    BoundaryCase("node_provisioning_s 0", (("fleet.pools[0].node_provisioning_s", 0),)),
    BoundaryCase("empty allowed_shapes (every shape that holds the model)", (("services[0].allowed_shapes", []),)),
    BoundaryCase("metrics_max_future_skew_s 0", (("policy", {"metrics_max_future_skew_s": 0}),)),
    BoundaryCase(
        "a workload of each kind",
        (
            ("services[0].allowed_shapes", ["H100-80GB", "H100-80GB/3g.40gb", "L4"]),
            ("services[0].scale_target", {"kind": "RayServeDeployment", "app": "chat-app", "name": "Chat_8B"}),
            (
                "services[0].shape_scale_targets",
                {
                    "H100-80GB": {"kind": "LeaderWorkerSet", "name": "chat", "namespace": "inference"},
                    "H100-80GB/3g.40gb": {
                        "kind": "InferenceService",
                        "api_version": "serving.kserve.io/v1beta1",
                        "name": "chat-mig",
                        "namespace": "inference",
                    },
                },
            ),
            ("services[0].metrics", {"labels": {"model_name": "meta-llama/Llama-3.1-8B", "namespace": "inference"}}),
        ),
    ),
]


@pytest.mark.parametrize("case", BOUNDARY_CASES, ids=lambda case: case.name)
def test_boundary_is_accepted(case: BoundaryCase, catalog: Catalog, book: ProfileBook) -> None:
    data = _apply(_base(), case.changes)
    assert _issues(data) == []
    assert check_scenario(Scenario.model_validate(data), catalog, book) == []


def test_every_problem_is_reported_at_once() -> None:
    # KEDA-style aggregation: three unrelated mistakes give three issues, not the first one only.
    data = _apply(
        _base(),
        (
            ("fleet.pools[0].colour", "blue"),
            ("fleet.pools[1].gpu_price_usd_per_h", -0.8),
            ("services[0].min_replicas", 5),
        ),
    )
    lines = [issue.format(SOURCE) for issue in _issues(data)]
    assert lines == [
        f"{SOURCE}: fleet.pools[0].colour = 'blue': Extra inputs are not permitted",
        f"{SOURCE}: fleet.pools[1].gpu_price_usd_per_h = -0.8: Input should be greater than 0",
        f"{SOURCE}: services[0]: min_replicas (5) must be <= max_replicas (4)",
    ]


def test_models_are_frozen() -> None:
    scenario = Scenario.model_validate(_base())
    with pytest.raises(ValidationError, match="frozen"):
        scenario.services[0].max_replicas = 10  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------------
# Rules that need the catalog and the profiles (check_scenario).


@dataclass(frozen=True)
class CheckCase:
    name: str
    changes: Changes
    want_path: str
    want_value: Any
    want_message: str


CHECK_CASES = [
    CheckCase(
        "unknown GPU type in a pool",
        (("fleet.pools[1].gpu_type", "H900"),),
        "fleet.pools[1].gpu_type",
        "H900",
        "unknown GPU type 'H900' (known: A30-24GB, A100-40GB",
    ),
    CheckCase(
        "L4 pool without a price (the catalog has none)",
        (("fleet.pools[1].gpu_price_usd_per_h", DELETE),),
        "fleet.pools[1].gpu_price_usd_per_h",
        None,
        "the catalog has no default price for L4; set one",
    ),
    CheckCase(
        "A30 pool without a price (the catalog has none)",
        (("fleet.pools[2]", {"name": "a30", "gpu_type": "A30", "gpus_per_node": 4, "max_nodes": 1}),),
        "fleet.pools[2].gpu_price_usd_per_h",
        None,
        "the catalog has no default price for A30-24GB; set one",
    ),
    CheckCase(
        "mig_allowed on L4 (no MIG)",
        (("fleet.pools[1].mig_allowed", True),),
        "fleet.pools[1].mig_allowed",
        True,
        "L4 does not support MIG",
    ),
    CheckCase(
        "unknown model",
        (("services[0].model", "GPT-5"),),
        "services[0].model",
        "GPT-5",
        "no performance profile for model 'GPT-5' (known: ",
    ),
    CheckCase(
        "shape on a GPU type no pool has",
        (("services[0].allowed_shapes", ["A100-80GB"]),),
        "services[0].allowed_shapes[0]",
        "A100-80GB",
        "no pool of the fleet has A100-80GB GPUs",
    ),
    CheckCase(
        "shape on an unknown GPU type",
        (("services[0].allowed_shapes", ["H100-80GB", "H900"]),),
        "services[0].allowed_shapes[1]",
        "H900",
        "unknown GPU type 'H900'",
    ),
    CheckCase(
        "unknown MIG profile",
        (("services[0].allowed_shapes", ["H100-80GB/5g.50gb"]),),
        "services[0].allowed_shapes[0]",
        "H100-80GB/5g.50gb",
        "H100-80GB has no MIG profile '5g.50gb' (known: 1g.10gb",
    ),
    CheckCase(
        "MIG shape on a GPU without MIG",
        (("services[0].allowed_shapes", ["L4/1g.6gb"]),),
        "services[0].allowed_shapes[0]",
        "L4/1g.6gb",
        "L4 has no MIG",
    ),
    CheckCase(
        "MIG shape without a mig_allowed pool",
        (("fleet.pools[0].mig_allowed", False), ("services[0].allowed_shapes", ["H100-80GB/3g.40gb"])),
        "services[0].allowed_shapes[0]",
        "H100-80GB/3g.40gb",
        "no H100-80GB pool has mig_allowed: true",
    ),
    CheckCase(
        "fraction without fractional_allowed",
        (("services[0].allowed_shapes", ["0.5xH100-80GB"]),),
        "services[0].allowed_shapes[0]",
        "0.5xH100-80GB",
        "no H100-80GB pool has fractional_allowed: true",
    ),
    CheckCase(
        "gang of 16 on nodes of 8",
        (("services[0].allowed_shapes", ["16xH100-80GB"]),),
        "services[0].allowed_shapes[0]",
        "16xH100-80GB",
        "a gang of 16 GPUs must fit on one node; H100-80GB nodes have at most 8",
    ),
    CheckCase(
        "gang from tensor_parallel_size on nodes of 4 (written as a bare shape)",
        (("services[0].allowed_shapes", ["L4"]), ("services[0].tensor_parallel_size", 8)),
        "services[0].allowed_shapes[0]",
        "L4",
        "a gang of 8 GPUs must fit on one node; L4 nodes have at most 4",
    ),
    CheckCase(
        # 70.6 B params * 2 bytes = 141.1 GB of weights; 2 x (80 GB * 0.9 - 2 GB) = 140 GB usable: no KV cache left.
        "Llama-3.1-70B bf16 does not fit 2xH100-80GB",
        (("services[0].model", "Llama-3.1-70B"), ("services[0].allowed_shapes", ["2xH100-80GB"])),
        "services[0].allowed_shapes[0]",
        "2xH100-80GB",
        "cannot hold Llama-3.1-70B: 2xH100-80GB: weights 141.1 GB",
    ),
]


@pytest.mark.parametrize("case", CHECK_CASES, ids=lambda case: case.name)
def test_each_catalog_rule_reports_path_value_and_reason(case: CheckCase, catalog: Catalog, book: ProfileBook) -> None:
    scenario = Scenario.model_validate(_apply(_base(), case.changes))
    _assert_one_issue(check_scenario(scenario, catalog, book), case.want_path, case.want_value, case.want_message)


def test_catalog_rules_accept_aliases_and_fitting_shapes(catalog: Catalog, book: ProfileBook) -> None:
    # GPU aliases (H100 -> H100-80GB) and model aliases resolve; 70B bf16 fits 4xH100-80GB (280 GB usable).
    data = _apply(
        _base(),
        (
            ("fleet.pools[0].gpu_type", "h100"),
            ("services[0].model", "llama-3.1-8b"),
            ("services[0].allowed_shapes", ["H100", "H100/3g.40gb", "h100-sxm/4g.40gb"]),
            ("services[1]", {**_SERVICE_2, "name": "big", "model": "Llama-3.1-70B", "allowed_shapes": ["4xH100"]}),
        ),
    )
    assert check_scenario(Scenario.model_validate(data), catalog, book) == []


def test_every_catalog_problem_is_reported_at_once(catalog: Catalog, book: ProfileBook) -> None:
    data = _apply(
        _base(),
        (
            ("fleet.pools[1].mig_allowed", True),
            ("fleet.pools[1].gpu_price_usd_per_h", DELETE),
            ("services[0].allowed_shapes", ["A100-80GB", "0.5xH100-80GB"]),
            ("services[1]", {**_SERVICE_2, "name": "other", "model": "GPT-5"}),
        ),
    )
    issues = check_scenario(Scenario.model_validate(data), catalog, book)
    assert [(i.path, i.value) for i in issues] == [
        ("fleet.pools[1].gpu_price_usd_per_h", None),
        ("fleet.pools[1].mig_allowed", True),
        ("services[0].allowed_shapes[0]", "A100-80GB"),
        ("services[0].allowed_shapes[1]", "0.5xH100-80GB"),
        ("services[1].model", "GPT-5"),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Loading files.


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_loads_without_issues(path: Path, catalog: Catalog, book: ProfileBook) -> None:
    scenario = load_scenario(path, catalog, book)
    assert scenario.name
    assert check_scenario(scenario, catalog, book) == []


def test_examples_exist() -> None:
    assert EXAMPLES, "configs/examples/ has no scenario"


WriteYaml = Callable[[str], Path]


@pytest.fixture
def write_yaml(tmp_path: Path) -> WriteYaml:
    def write(text: str) -> Path:
        path = tmp_path / "scenario.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_load_scenario_lists_every_issue_one_per_line(catalog: Catalog, book: ProfileBook) -> None:
    path = FIXTURES / "scenarios" / "invalid-three-errors.yaml"
    with pytest.raises(ConfigError) as raised:
        load_scenario(path, catalog, book)
    assert str(raised.value).splitlines() == [
        f"{path}: fleet.pools[0].colour = 'blue': Extra inputs are not permitted",
        f"{path}: fleet.pools[1].gpu_price_usd_per_h = -0.8: Input should be greater than 0",
        f"{path}: services[0]: min_replicas (5) must be <= max_replicas (4)",
    ]


def test_load_scenario_reports_catalog_problems(write_yaml: WriteYaml, catalog: Catalog, book: ProfileBook) -> None:
    path = write_yaml(
        "name: x\n"
        "fleet:\n"
        "  pools: [{name: l4, gpu_type: L4, gpus_per_node: 1, max_nodes: 1}]\n"
        "services:\n"
        "  - {name: s, model: Llama-3.2-1B, slo: {ttft_p95_s: 1, tpot_p95_s: 0.1}, allowed_shapes: [L4]}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_scenario(path, catalog, book)
    assert str(raised.value) == (
        f"{path}: fleet.pools[0].gpu_price_usd_per_h = None: the catalog has no default price for L4; set one"
    )


def test_load_scenario_names_file_and_line_of_a_yaml_error(catalog: Catalog, book: ProfileBook) -> None:
    path = FIXTURES / "scenarios" / "invalid-yaml-syntax.yaml"
    with pytest.raises(ConfigError, match=r":8:\d+: invalid YAML: mapping values are not allowed here") as raised:
        load_scenario(path, catalog, book)
    assert str(raised.value).startswith(f"{path}:8:")


@pytest.mark.parametrize(
    ("text", "want_message"),
    [
        pytest.param("", "(top level): Input should be a valid dictionary", id="empty file"),
        pytest.param("- a\n- b\n", "(top level): Input should be a valid dictionary", id="a list"),
    ],
)
def test_load_scenario_rejects_a_document_that_is_not_a_mapping(
    write_yaml: WriteYaml, text: str, want_message: str, catalog: Catalog, book: ProfileBook
) -> None:
    path = write_yaml(text)
    with pytest.raises(ConfigError) as raised:
        load_scenario(path, catalog, book)
    assert str(raised.value).startswith(f"{path}: {want_message}")
