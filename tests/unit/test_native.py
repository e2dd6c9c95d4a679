"""The compiled build of the replay's hot path: an explicit opt-in, used only when it matches its sources.

Importing the core changes nothing (no environment read, no import hook, the `.py` sources run); an entry point's
`use_compiled_build()` loads the compiled modules when the build is current, and gives the same results as the
sources. The tests that need a build use the one `make native` leaves in build/native/ when it is current, and
otherwise build into a temporary folder (about a minute; skipped only where there is no C compiler).
"""

from __future__ import annotations

import base64
import copy
import importlib.machinery
import json
import os
import pickle
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler import native
from autoscaler.catalog import load_catalog
from autoscaler.perf import Figure, Precision, ReplicaProfile, load_profile_book
from autoscaler.shapes import parse_shape
from autoscaler.sim.fleet import ServiceRequests
from autoscaler.sim.policies import BaselineShape

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _is_current(build_dir: Path) -> bool:
    """A build of exactly these sources for this interpreter, whatever FLEETSCALE_PURE_PYTHON says."""
    record = native._record(build_dir)
    files = native._extension_files(build_dir).values()
    return (
        bool(record and record.get("compiled"))
        and not native._stale_sources(record)
        and all(p.is_file() for p in files)
    )


def _c_compiler() -> str | None:
    command = str(sysconfig.get_config_var("CC") or "cc").split()
    return shutil.which(command[0]) if command else None


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A current build: `make native`'s, or one made now in a temporary folder."""
    if _is_current(native.BUILD_DIR):
        return native.BUILD_DIR
    if _c_compiler() is None:
        pytest.skip(f"no C compiler ({sysconfig.get_config_var('CC')!r} not found): nothing can be compiled")
    folder = tmp_path_factory.mktemp("native")
    outcome = native.build(folder)
    assert _is_current(folder), outcome  # a compiler is here, so a failed build is a failure, not a skip
    return folder


def _env(pure: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    return env


def _python(code: str, *args: str, pure: bool = False, stdin: str | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter that turns warnings into errors; its last line of output, as JSON."""
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *args], cwd=ROOT, env=_env(pure), input=stdin,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return figures


@pytest.fixture
def meta_path_kept() -> Iterator[None]:
    """The test must leave the import system of this process as it found it."""
    before = list(sys.meta_path)
    yield
    assert sys.meta_path == before


REPLAY = """
import json, random, sys
from pathlib import Path
from autoscaler import native
status = native.use_compiled_build(Path(sys.argv[1]))
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
print(json.dumps({"status": status, "fleet": sys.modules["autoscaler.sim.fleet"].__file__,
                  "ttft": list(result.ttft_s["chat"]), "tpot": list(result.tpot_s["chat"]),
                  "events": result.scale_events, "cost": summarize(result, config).cost_usd}))
"""


def test_the_compiled_replay_gives_the_same_results_as_the_python_sources(build_dir: Path) -> None:
    compiled, pure = _python(REPLAY, str(build_dir)), _python(REPLAY, str(build_dir), pure=True)
    assert compiled["status"] == native.COMPILED
    assert str(compiled["fleet"]).startswith(str(build_dir)) and str(compiled["fleet"]).endswith(SUFFIX)
    assert pure["status"] == f"plain Python ({native.PURE_ENV} is set)"
    assert pure["fleet"] == str(native.source_path("autoscaler.sim.fleet"))
    for figure in ("ttft", "tpot"):  # compared as JSON text: a request with one output token has a NaN TPOT
        assert json.dumps(compiled[figure]) == json.dumps(pure[figure])
    assert (compiled["events"], compiled["cost"]) == (pure["events"], pure["cost"])


# A fresh interpreter imports the core, watching os.environ for FLEETSCALE_* reads and sys.meta_path for hooks.
PLAIN_IMPORT = """
import json, os, sys
read = []
class Watched(dict):
    def get(self, key, default=None):
        read.append(key)
        return super().get(key, default)
    def __getitem__(self, key):
        read.append(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        read.append(key)
        return super().__contains__(key)
os.environ = Watched(os.environ)
before = list(sys.meta_path)
import autoscaler, autoscaler.perf, autoscaler.sim.fleet
print(json.dumps({"meta_path_kept": sys.meta_path == before, "perf": autoscaler.perf.__file__,
                  "fleet": autoscaler.sim.fleet.__file__, "read": [k for k in read if k.startswith("FLEETSCALE")]}))
"""


def test_importing_the_core_reads_nothing_hooks_nothing_and_runs_the_sources() -> None:
    # Needs no build of its own: build/native/ holds a current one under `make unit`, and no build location is on the
    # import path. The sources would lose only to extension modules next to them, which builds no longer leave.
    figures = _python(PLAIN_IMPORT)  # with -W error: no warning either
    assert figures == {
        "meta_path_kept": True,
        "perf": str(native.source_path("autoscaler.perf")),
        "fleet": str(native.source_path("autoscaler.sim.fleet")),
        "read": [],
    }


# An entry point: opts in (twice, to show that it is harmless), then imports the group; what it got, as JSON.
OPT_IN = """
import importlib, json, sys, warnings
from pathlib import Path
from autoscaler import native
build_dir = Path(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    status = native.use_compiled_build(build_dir)
    again = native.use_compiled_build(build_dir)
modules = [importlib.import_module(m) for m in native.MODULES]
library = sys.modules.get(native.GROUP_LIBRARY)
hooks = sum(type(f).__name__ == "_FromBuild" for f in sys.meta_path)
print(json.dumps({"status": status, "again": again, "hooks": hooks,
                  "warnings": [[w.category.__name__, str(w.message)] for w in caught],
                  "files": [m.__file__ for m in modules], "library": library and library.__file__,
                  "loaders": sorted({type(m.__loader__).__name__ for m in modules})}))
"""


def test_the_opt_in_loads_every_module_of_the_group_from_a_current_build(build_dir: Path) -> None:
    figures = _python(OPT_IN, str(build_dir))
    assert (figures["status"], figures["again"], figures["hooks"]) == (native.COMPILED, native.COMPILED, 1)
    assert figures["warnings"] == []
    assert figures["loaders"] == ["ExtensionFileLoader"]
    files = figures["files"]
    assert isinstance(files, list) and len(files) == len(native.MODULES)
    for file in [*files, figures["library"]]:  # the shims import the group's library by name: from the build too
        assert str(file).startswith(str(build_dir)) and str(file).endswith(SUFFIX), file


def test_the_pure_python_switch_keeps_every_module_of_the_group_on_its_source(build_dir: Path) -> None:
    figures = _python(OPT_IN, str(build_dir), pure=True)
    assert (figures["status"], figures["hooks"]) == (f"plain Python ({native.PURE_ENV} is set)", 0)
    assert (figures["warnings"], figures["library"]) == ([], None)
    assert figures["files"] == [str(native.source_path(m)) for m in native.MODULES]


def test_a_stale_build_is_not_used_and_says_so(build_dir: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(build_dir, stale)
    record = json.loads((stale / native.RECORD_NAME).read_text())
    record["sources"]["autoscaler.sim.engine"] = "0" * 64  # the engine was edited after the build
    (stale / native.RECORD_NAME).write_text(json.dumps(record))
    figures = _python(OPT_IN, str(stale))
    warning = (
        "autoscaler/sim/engine.py changed since the compiled build; using the Python sources (replays run about 3x "
        "slower). Run `make native` to rebuild."
    )
    assert figures["warnings"] == [["RuntimeWarning", warning]] * 2  # each call says so: never silently stale
    assert figures["status"] == "plain Python (the compiled build is out of date: run `make native`)"
    assert (figures["hooks"], figures["library"]) == (0, None)
    assert figures["files"] == [str(native.source_path(m)) for m in native.MODULES]


@pytest.mark.usefixtures("meta_path_kept")
def test_an_opt_in_after_the_sources_were_imported_keeps_them(build_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    assert "autoscaler.perf" in sys.modules  # this module imported it from its source
    with pytest.warns(RuntimeWarning, match=r"autoscaler\.perf.* imported before use_compiled_build\(\)"):
        status = native.use_compiled_build(build_dir)
    assert status == "plain Python (autoscaler.perf was imported before the opt-in)"


@pytest.mark.usefixtures("meta_path_kept")
def test_without_a_build_the_opt_in_quietly_keeps_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    assert native.use_compiled_build(tmp_path) == "plain Python (not compiled: run `make native`)"  # no warning
    (tmp_path / native.RECORD_NAME).write_text(json.dumps({"compiled": False, "reason": "no C compiler"}))
    assert native.use_compiled_build(tmp_path) == "plain Python (not compiled: no C compiler)"


# `fleetscale` as the console script runs it (pyproject.toml), on the given build; `--help` loads the whole CLI.
CONSOLE = """
import json, sys
from pathlib import Path
import autoscaler.native
autoscaler.native.BUILD_DIR = Path(sys.argv[1])
from autoscaler.__main__ import main
sys.argv = ["fleetscale", "--help"]
try:
    main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "fleet": sys.modules["autoscaler.sim.fleet"].__file__}))
"""


def test_the_console_command_opts_in_before_the_cli_imports_the_replay(build_dir: Path) -> None:
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'fleetscale = "autoscaler.__main__:main"' in scripts
    figures = _python(CONSOLE, str(build_dir))
    assert figures["code"] == 0
    assert str(figures["fleet"]).startswith(str(build_dir)) and str(figures["fleet"]).endswith(SUFFIX)
    assert _python(CONSOLE, str(build_dir), pure=True)["fleet"] == str(native.source_path("autoscaler.sim.fleet"))


def test_a_record_that_does_not_match_the_sources_marks_them_all_stale(tmp_path: Path) -> None:
    record = tmp_path / native.RECORD_NAME
    assert native._stale_sources(native._record(tmp_path)) == list(native.MODULES)  # no record at all
    digests = {m: native._digest(native.source_path(m)) for m in native.MODULES}
    record.write_text(json.dumps({"compiled": True, "sources": digests}))
    assert native._stale_sources(native._record(tmp_path)) == []
    digests["autoscaler.sim.engine"] = "0" * 64  # the engine was edited after the build
    record.write_text(json.dumps({"compiled": True, "sources": digests}))
    assert native._stale_sources(native._record(tmp_path)) == ["autoscaler.sim.engine"]
    record.write_text("{not json")
    assert native._stale_sources(native._record(tmp_path)) == list(native.MODULES)


def _profile() -> ReplicaProfile:
    return load_profile_book(load_catalog()).profile("Llama-3.1-8B", parse_shape("H100-80GB"), Precision.BF16)


def _objects() -> list[object]:
    """Frozen dataclasses of the group, of the kinds plans ship to Ray tasks."""
    return [
        Figure(1.5, "derived", "why"),
        _profile(),
        ServiceRequests("chat", [0.0, 1.0], [10, 20], [5, 6], warmup=1),
        BaselineShape(parse_shape("H100-80GB"), 3.0, 7.5),
    ]


def test_frozen_dataclasses_of_the_group_survive_pickle_and_deepcopy() -> None:
    # Plans ship profiles and requests to Ray tasks; compiled frozen dataclasses need the registered reducers.
    for obj in _objects():
        for clone in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
            assert type(clone) is type(obj)
            assert repr(clone) == repr(obj)
    profile = _profile()
    clone = pickle.loads(pickle.dumps(profile))
    assert clone.decode_step_ms(8, 1500.0) == profile.decode_step_ms(8, 1500.0)


# A compiled process reads the source process's pickles (on stdin) and writes its own, as a Ray driver and its
# workers do when one of them runs compiled and the other does not.
CROSS = """
import base64, json, pickle, sys
from pathlib import Path
from autoscaler import native
status = native.use_compiled_build(Path(sys.argv[1]))
from tests.unit.test_native import _objects
mine, theirs = _objects(), pickle.loads(base64.b64decode(sys.stdin.read()))
print(json.dumps({"status": status, "same": [repr(a) == repr(b) for a, b in zip(mine, theirs, strict=True)],
                  "perf": sys.modules["autoscaler.perf"].__file__, "step_ms": theirs[1].decode_step_ms(8, 1500.0),
                  "pickle": base64.b64encode(pickle.dumps(mine)).decode()}))
"""


def test_pickles_cross_between_a_compiled_process_and_a_source_one(build_dir: Path) -> None:
    objects = _objects()
    figures = _python(CROSS, str(build_dir), stdin=base64.b64encode(pickle.dumps(objects)).decode())
    assert figures["status"] == native.COMPILED
    assert str(figures["perf"]).endswith(SUFFIX)
    assert figures["same"] == [True] * len(objects)  # the source pickles, read by the compiled modules
    assert figures["step_ms"] == _profile().decode_step_ms(8, 1500.0)
    theirs = pickle.loads(base64.b64decode(str(figures["pickle"])))  # and the other way round
    assert [repr(o) for o in theirs] == [repr(o) for o in objects]
    assert type(theirs[1]) is ReplicaProfile and theirs[1].decode_step_ms(8, 1500.0) == figures["step_ms"]
