"""The compiled build of the replay's hot path: `perf` and `sim.engine`, `fleet`, `policies` and `oracle`, by mypyc.

A replay spends nearly all its time in these modules (an event per prefill and per decode run, a step time per
event, a policy per tick; the oracle replays every window several times). Compiled, they run about three times
faster (benchmarks/sim_speed.py); the results are the same, since the code is.

Importing fleetscale does nothing but define things: the plain-Python sources are what runs unless an entry point
opts in. `make native` (`build()`) compiles the modules into `build/native/` (git-ignored), which is not on the
import path, so a plain `import autoscaler.perf` never sees them, and records the SHA-256 of each source in
`build/native/native.json`. Without mypyc or a C compiler nothing is built; the record says why.

An entry point that wants the speed (the `fleetscale` command in `autoscaler/__main__.py`, the replay benchmarks)
calls `use_compiled_build()` before it imports any of the modules. If the build matches the sources' digests and
FLEETSCALE_PURE_PYTHON is not set, the opt-in puts a finder at the head of `sys.meta_path` that loads the modules
from the build (`importlib.machinery.ExtensionFileLoader`); otherwise it leaves the import system alone
and the sources run, with a RuntimeWarning when a build exists but no longer matches them, so a stale build can
never run silently. The finder serves the group's shared library too (`autoscaler._native__mypyc`, which each
module's shim imports by that name), and always all of the modules or none: they are one compiled group, and mixing
compiled and source modules would mix two copies of the same classes. For the same reason the opt-in declines, with
a warning, when one of them has already been imported from its source.

A process that does not opt in runs the sources, Ray workers included unless they are told to opt in (Ray's
`worker_process_setup_hook` can name `autoscaler.native.use_compiled_build`). Objects cross between a compiled
process and a source one by pickle, which needs the reducers that `picklable_by_fields` registers.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
MODULES = (
    "autoscaler.perf",
    "autoscaler.sim.engine",
    "autoscaler.sim.fleet",
    "autoscaler.sim.policies",
    "autoscaler.sim.oracle",
)
GROUP = "autoscaler._native"  # mypyc's group name; its shared library is the module `autoscaler._native__mypyc`
GROUP_LIBRARY = GROUP + "__mypyc"
BUILD_DIR = ROOT / "build" / "native"  # git-ignored (`build/`), and not on the import path
RECORD_NAME = "native.json"
PURE_ENV = "FLEETSCALE_PURE_PYTHON"
COMPILED = "compiled (mypyc)"  # the status line of a process whose replay modules are the compiled ones


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _extension_files(build_dir: Path) -> dict[str, Path]:
    """Where a build for the running interpreter keeps each module of the group, and the group's library."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return {
        m: build_dir.joinpath(*m.split(".")).with_name(m.rsplit(".", 1)[1] + suffix) for m in (*MODULES, GROUP_LIBRARY)
    }


def _legacy_files() -> list[Path]:
    """Extension modules that older builds left next to the sources, where a plain import would prefer them."""
    found = [p for m in MODULES for p in source_path(m).parent.glob(source_path(m).stem + ".*.so")]
    return found + list(PACKAGE_DIR.glob(GROUP_LIBRARY.rsplit(".", 1)[1] + ".*.so"))


def _record(build_dir: Path) -> dict[str, Any] | None:
    """The last build's record, or None when there is no readable one."""
    try:
        record = json.loads((build_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _stale_sources(record: Mapping[str, Any] | None) -> list[str]:
    """The sources that differ from the build's `record` (all of them when it is not usable)."""
    built = record.get("sources") if record is not None else None
    if not isinstance(built, dict):
        return list(MODULES)
    return [m for m in MODULES if built.get(m) != _digest(source_path(m))]


def build_status(build_dir: Path | None = None) -> str:
    """Whether `use_compiled_build(build_dir)` would load the compiled modules, or why not, in a few words.

    Reads the environment, the record and the sources, and changes nothing."""
    return _verdict(build_dir or BUILD_DIR)[0]


def _verdict(build_dir: Path) -> tuple[str, list[str]]:
    """`build_status`, and the sources that changed since a build that exists (empty when none did)."""
    if os.environ.get(PURE_ENV):
        return f"plain Python ({PURE_ENV} is set)", []
    record = _record(build_dir)
    if record is None:
        return "plain Python (not compiled: run `make native`)", []
    if not record.get("compiled"):
        return f"plain Python (not compiled: {record.get('reason', 'unknown reason')})", []
    stale = _stale_sources(record)
    if stale or not all(p.is_file() for p in _extension_files(build_dir).values()):
        return "plain Python (the compiled build is out of date: run `make native`)", stale
    return COMPILED, []


class _FromBuild(importlib.abc.MetaPathFinder):
    """Loads the group's modules from the extension modules of a build; every other import is left to Python.

    A module that another compiled module imports first is set up by the group's library itself, which derives its
    `__file__` one folder too deep (`build/native/autoscaler/autoscaler/sim/engine...so`, mypyc's layout for a
    library above the package tree); it is still the build's code, and nothing reads that path."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        location = self.files.get(fullname)
        if location is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(location))
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


def use_compiled_build(build_dir: Path | None = None) -> str:
    """Opt in to the compiled modules of `build_dir` (`BUILD_DIR` by default) if they match the sources.

    Returns the status in one line: `COMPILED`, or "plain Python (why)". Call it before the first import of any
    of `MODULES` (an entry point's first statement); calling it again is harmless. The sources are used, and the
    import system is left as it was, when FLEETSCALE_PURE_PYTHON is set, when there is no usable build for this
    interpreter, when a source changed since the build (with a RuntimeWarning: replays run about three times slower
    than they should) and when a module of the group was already imported from its source (with a RuntimeWarning:
    the entry point opted in too late)."""
    build_dir = build_dir or BUILD_DIR
    files = _extension_files(build_dir)
    if any(isinstance(finder, _FromBuild) and finder.files == files for finder in sys.meta_path):
        return COMPILED
    status, stale = _verdict(build_dir)
    if stale:
        names = ", ".join(str(source_path(m).relative_to(ROOT)) for m in stale)
        warnings.warn(
            f"{names} changed since the compiled build; using the Python sources (replays run about 3x slower). "
            "Run `make native` to rebuild.",
            RuntimeWarning,
            stacklevel=2,
        )
    if status != COMPILED:
        return status
    imported = [m for m in files if m in sys.modules]
    if imported:
        warnings.warn(
            f"{', '.join(imported)} imported before use_compiled_build(); using the Python sources (replays run "
            "about 3x slower). Opt in before importing them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return f"plain Python ({imported[0]} was imported before the opt-in)"
    sys.meta_path.insert(0, _FromBuild(files))
    return COMPILED


def build(build_dir: Path | None = None) -> str:
    """Compile the modules into `build_dir` (`BUILD_DIR` by default) and write its record; returns what happened.

    The default build also removes what builds before `BUILD_DIR` left next to the sources: a plain import would
    prefer those extension modules to the sources, exactly what must not happen. A build elsewhere (a test's)
    touches nothing outside `build_dir`."""
    if build_dir is None:
        build_dir = BUILD_DIR
        for legacy in _legacy_files():
            legacy.unlink()
        (PACKAGE_DIR / RECORD_NAME).unlink(missing_ok=True)
    (build_dir / RECORD_NAME).unlink(missing_ok=True)  # no record while the files change: nothing opts in to them
    shutil.rmtree(build_dir / "autoscaler", ignore_errors=True)
    sources = {m: _digest(source_path(m)) for m in MODULES}
    try:
        reason = _compile(build_dir)
    except Exception as error:  # whatever stops the compiler, the package still works as plain Python
        reason = f"{type(error).__name__}: {error}"
    if not reason and not all(p.is_file() for p in _extension_files(build_dir).values()):
        reason = "the build did not produce every module"
    if reason:
        shutil.rmtree(build_dir / "autoscaler", ignore_errors=True)
    record = {"compiled": not reason, "reason": reason, "python": sys.implementation.cache_tag, "sources": sources}
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return f"not compiled ({reason}): replays run as plain Python" if reason else "compiled: " + ", ".join(MODULES)


def _compile(build_dir: Path) -> str:
    """Returns "" on success, or why nothing could be compiled."""
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as error:
        return f"{error.name} is not installed (it comes with the dev extra)"
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="fleetscale-native-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # mypyc reads the mypy settings (strict, the pydantic plugin) from pyproject.toml in the working directory.
        os.chdir(ROOT)
        try:
            files = [str(source_path(m).relative_to(ROOT)) for m in MODULES]
            extensions = mypycify(files, opt_level="3", target_dir=f"{scratch}/c", group_name=GROUP)
            distribution = Distribution({"name": "fleetscale-native", "ext_modules": extensions})
            command = distribution.get_command_obj("build_ext")
            command.inplace = False  # into build_lib, laid out by module name, away from the sources
            command.build_temp = f"{scratch}/o"
            command.build_lib = str(build_dir)
            distribution.run_command("build_ext")
        except SystemExit as error:  # mypyc exits on a type error; distutils on a compiler error
            return f"compilation failed: {error}"
        finally:
            os.chdir(cwd)
    return ""


def main() -> int:
    print(f"fleetscale native build: {build()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
