"""Fixtures shared by the unit tests: the bundled catalog and profiles, and small scenarios built in code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autoscaler.catalog import Catalog, load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import Scenario, check_scenario
from autoscaler.perf import ProfileBook, load_profile_book

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script benchmarks/<name>.py as a module, for tests that share its instances or its comparison."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the scripts import their shared helpers as a script would
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def book(catalog: Catalog) -> ProfileBook:
    return load_profile_book(catalog)


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid scenario: one H100 pool (MIG allowed), one L4 pool, one 8B chat service."""
    data: dict[str, Any] = {
        "name": "unit",
        "fleet": {
            "pools": [
                {"name": "h100", "gpu_type": "H100-80GB", "gpus_per_node": 8, "max_nodes": 4, "mig_allowed": True},
                {"name": "l4", "gpu_type": "L4", "gpus_per_node": 4, "max_nodes": 4, "gpu_price_usd_per_h": 0.8},
            ]
        },
        "services": [
            {
                "name": "chat",
                "model": "Llama-3.1-8B",
                "tier": "critical",
                "slo": {"ttft_p95_s": 0.5, "tpot_p95_s": 0.05},
                "min_replicas": 1,
                "max_replicas": 20,
                "allowed_shapes": ["H100-80GB"],
            }
        ],
    }
    data.update(overrides)
    return data


def compile_dict(data: dict[str, Any], catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    scenario = Scenario.model_validate(data)
    issues = check_scenario(scenario, catalog, book)
    assert not issues, issues
    return compile_scenario(scenario, catalog, book)
