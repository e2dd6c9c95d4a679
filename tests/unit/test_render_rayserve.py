"""`fleetscale render rayserve`: the Serve config of a scenario, validated with Ray's own `ServeDeploySchema` (what
`serve deploy` parses), per shape: whole GPUs, GPU shares, MIG instances and tensor-parallel gangs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from adapters.rayserve.render import Binding, deployment, ray_accelerator_type, serve_config
from autoscaler.catalog import Catalog
from autoscaler.cli import app
from autoscaler.errors import ConfigError
from autoscaler.perf import ProfileBook
from autoscaler.shapes import parse_shape
from tests.unit.conftest import compile_dict

serve_schema = pytest.importorskip("ray.serve.schema", reason="ray[serve] is in the dev extras (make test)")

POOLS = [
    {"name": "h100", "gpu_type": "H100-80GB", "gpus_per_node": 8, "max_nodes": 4, "mig_allowed": True},
    {
        "name": "l4",
        "gpu_type": "L4",
        "gpus_per_node": 4,
        "max_nodes": 4,
        "gpu_price_usd_per_h": 0.8,
        "fractional_allowed": True,
    },
]


def service(name: str, shapes: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "model": "Llama-3.1-8B", "slo": {"ttft_p95_s": 1.0, "tpot_p95_s": 0.1},
        "min_replicas": 2, "allowed_shapes": shapes, **extra,
    }  # fmt: skip


def scenario(catalog: Catalog, book: ProfileBook) -> Any:
    return compile_dict(
        {
            "name": "serve",
            "fleet": {"pools": POOLS},
            "services": [
                service("chat", ["H100-80GB"]),
                service("tiny", ["0.25xL4"], model="Llama-3.2-1B"),
                service("mig", ["H100-80GB/3g.40gb"]),
                service("tp", ["2xH100-80GB"], model="Llama-3.1-70B", precision="fp8"),
                service(
                    "bound",
                    ["H100-80GB", "H100-80GB/3g.40gb"],
                    shape_scale_targets={
                        "H100-80GB": {"kind": "RayServeDeployment", "app": "llm", "name": "bound-h100"},
                        "H100-80GB/3g.40gb": {"kind": "RayServeDeployment", "app": "llm", "name": "bound-mig"},
                    },
                ),
            ],
        },
        catalog,
        book,
    )


def deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for a in config["applications"] for d in a["deployments"]}


def test_every_shape_renders_a_config_serve_accepts(catalog: Catalog, book: ProfileBook) -> None:
    config = serve_config(scenario(catalog, book), {"*": "my_llm:app"})
    serve_schema.ServeDeploySchema.model_validate(config)  # raises on anything `serve deploy` would refuse
    apps = {a["name"]: a for a in config["applications"]}
    assert set(apps) == {"chat", "tiny", "mig", "tp", "llm"}
    assert all(a["external_scaler_enabled"] and a["import_path"] == "my_llm:app" for a in apps.values())
    d = deployments(config)
    assert d["chat"]["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "H100"}
    assert d["chat"]["num_replicas"] == 2  # min_replicas, without a decision
    assert d["tiny"]["ray_actor_options"]["num_gpus"] == 0.25
    assert d["tiny"]["ray_actor_options"]["accelerator_type"] == "L4"
    assert d["mig"]["ray_actor_options"]["resources"] == {"mig:3g.40gb": 1}
    tp = d["tp"]
    assert tp["placement_group_strategy"] == "STRICT_PACK"
    assert [b["GPU"] for b in tp["placement_group_bundles"]] == [1.0, 1.0]
    assert tp["placement_group_bundles"][0]["CPU"] == 1.0  # the replica itself sits in the first bundle
    assert tp["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1}
    assert {"bound-h100", "bound-mig"} <= set(d)  # one deployment per bound shape, in the named application
    assert all(x["max_ongoing_requests"] >= 1 for x in d.values())


def test_a_multi_node_gang_is_refused(catalog: Catalog, book: ProfileBook) -> None:
    # No profile holds a multi-node shape today, so no valid scenario asks for one; the guard stands for when one does.
    config = scenario(catalog, book)
    with pytest.raises(ConfigError, match="spans 2 nodes"):
        deployment(config, Binding("chat", parse_shape("2x8xH100-80GB"), "chat", "chat"), 1)


def test_missing_import_paths_name_the_applications(catalog: Catalog, book: ProfileBook) -> None:
    with pytest.raises(ConfigError, match="none for chat, tiny, mig, tp, llm"):
        serve_config(scenario(catalog, book), {})
    config = serve_config(scenario(catalog, book), {"*": "a:b", "llm": "llm_app:deployment"})
    assert {a["name"]: a["import_path"] for a in config["applications"]}["llm"] == "llm_app:deployment"


def test_accelerator_types_are_rays() -> None:
    assert [ray_accelerator_type(t) for t in ("H100-80GB", "A100-40GB", "H200-141GB", "L4", "L40S")] == [
        "H100", "A100", "H200", "L4", "L40S",
    ]  # fmt: skip


def test_the_command_prints_yaml_serve_accepts(tmp_path: Path) -> None:
    scenario_file = Path(__file__).resolve().parents[2] / "configs" / "examples" / "chat-fleet.yaml"
    result = CliRunner().invoke(
        app, ["render", "rayserve", "--scenario", str(scenario_file), "--import-path", "my_llm:app"]
    )
    assert result.exit_code == 0, result.output
    serve_schema.ServeDeploySchema.model_validate(yaml.safe_load(result.output))
    bad = CliRunner().invoke(app, ["render", "rayserve", "--scenario", str(scenario_file), "--import-path", "nocolon"])
    assert bad.exit_code == 2
    assert "--import-path nocolon: expected module:attribute" in bad.output
