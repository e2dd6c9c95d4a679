"""The compiled build of the replay's hot path: used only when it matches its sources, same results as Python."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler import native
from autoscaler.catalog import load_catalog
from autoscaler.perf import Figure, Precision, load_profile_book
from autoscaler.shapes import parse_shape
from autoscaler.sim.fleet import ServiceRequests
from autoscaler.sim.policies import BaselineShape

ROOT = Path(__file__).resolve().parents[2]

# A short replay (2,000 requests of the 8B on H100s that HPA scales): its figures, printed as JSON.
REPLAY = """
import json, random
from autoscaler import native
from autoscaler.catalog import load_catalog
from autoscaler.perf import load_profile_book
from autoscaler.compiled import compile_scenario
from autoscaler.config import Scenario
from autoscaler.sim.fleet import FleetSim, ServiceRequests
from autoscaler.sim.policies import HpaPolicy
from autoscaler.sim.replica import poisson_arrivals
from autoscaler.sim.summary import summarize
catalog = load_catalog()
scenario = Scenario.model_validate({
    "name": "native", "fleet": {"pools": [{"name": "h100", "gpu_type": "H100-80GB", "gpus_per_node": 8,
                                     "max_nodes": 4}]},
    "services": [{"name": "chat", "model": "Llama-3.1-8B", "slo": {"ttft_p95_s": 0.5, "tpot_p95_s": 0.05},
                  "min_replicas": 1, "max_replicas": 8, "allowed_shapes": ["H100-80GB"],
                  "mean_input_tokens": 1000, "mean_output_tokens": 200}],
    "policy": {"tick_s": 15},
})
config = compile_scenario(scenario, catalog, load_profile_book(catalog))
rng = random.Random(3)
arrivals = poisson_arrivals(20.0, 2000, 3)
requests = {"chat": ServiceRequests("chat", arrivals, [max(1, round(rng.expovariate(1 / 1000))) for _ in arrivals],
                                    [max(1, round(rng.expovariate(1 / 200))) for _ in arrivals])}
result = FleetSim(config, requests).run(HpaPolicy(config, requests))
print(json.dumps({"status": native.build_status(), "ttft": list(result.ttft_s["chat"]),
                  "tpot": list(result.tpot_s["chat"]), "events": result.scale_events,
                  "cost": summarize(result, config).cost_usd}))
"""


def _replay(pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-c", REPLAY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    figures: dict[str, object] = json.loads(done.stdout)
    return figures


def _compiled_build_present() -> bool:
    record = native._record()
    return bool(record and record.get("compiled"))


@pytest.mark.skipif(not _compiled_build_present(), reason="no compiled build here (`make native` records why)")
def test_the_compiled_replay_gives_the_same_results_as_the_python_sources() -> None:
    compiled, pure = _replay(pure=False), _replay(pure=True)
    assert compiled["status"] == "compiled (mypyc)"
    assert str(pure["status"]).startswith("plain Python")
    for figure in ("ttft", "tpot"):  # compared as JSON text: a request with one output token has a NaN TPOT
        assert json.dumps(compiled[figure]) == json.dumps(pure[figure])
    assert (compiled["events"], compiled["cost"]) == (pure["events"], pure["cost"])


def test_a_record_that_does_not_match_the_sources_marks_them_all_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "native.json"
    monkeypatch.setattr(native, "RECORD", record)
    assert native._stale_sources(native._record()) == list(native.MODULES)  # no record at all
    digests = {m: native._digest(native.source_path(m)) for m in native.MODULES}
    record.write_text(json.dumps({"compiled": True, "sources": digests}))
    assert native._stale_sources(native._record()) == []
    digests["autoscaler.sim.engine"] = "0" * 64  # the engine was edited after the build
    record.write_text(json.dumps({"compiled": True, "sources": digests}))
    assert native._stale_sources(native._record()) == ["autoscaler.sim.engine"]
    record.write_text("{not json")
    assert native._stale_sources(native._record()) == list(native.MODULES)


def test_the_pure_python_switch_imports_every_module_of_the_group_from_its_source() -> None:
    env = {**os.environ, native.PURE_ENV: "1"}
    code = "import importlib; print([importlib.import_module(m).__file__ for m in {modules!r}])"
    done = subprocess.run(
        [sys.executable, "-c", code.format(modules=native.MODULES)], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    files = eval(done.stdout)
    assert files == [str(native.source_path(m)) for m in native.MODULES]


def test_frozen_dataclasses_of_the_group_survive_pickle_and_deepcopy() -> None:
    # Plans ship profiles and requests to Ray tasks; compiled frozen dataclasses need the registered reducers.
    catalog = load_catalog()
    profile = load_profile_book(catalog).profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)
    objects: list[object] = [
        Figure(1.5, "derived", "why"),
        profile,
        ServiceRequests("chat", [0.0, 1.0], [10, 20], [5, 6], warmup=1),
        BaselineShape(parse_shape("H100-80GB"), 3.0, 7.5),
    ]
    for obj in objects:
        for clone in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
            assert type(clone) is type(obj)
            assert repr(clone) == repr(obj)
    clone = pickle.loads(pickle.dumps(profile))
    assert clone.decode_step_ms(8, 1500.0) == profile.decode_step_ms(8, 1500.0)
