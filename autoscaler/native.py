"""The compiled build of the replay's hot path: `perf` and `sim.engine`, `fleet`, `policies` and `oracle`, by mypyc.

A replay spends nearly all its time in these modules (an event per prefill and per decode run, a step time per
event, a policy per tick; the oracle replays every window several times). Compiled, they run about three times
faster (benchmarks/sim_speed.py); the results are the same, since the code is. `make` builds them in place, next
to their sources (`native.main()`), and records the SHA-256 of each source in `native.json`. Without
mypyc or a C compiler nothing is built, and everything runs as plain Python.

Python prefers an extension module to a source file of the same name, so a build that no longer matches its
sources would silently run old code. At the first import of `autoscaler`, `use_current_build()` checks the record:
if any of the sources changed since the build (or FLEETSCALE_PURE_PYTHON=1 is set), all of them are imported from
their sources. All of them, because they are one compiled group: mixing compiled and source modules would mix
two copies of the same classes.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
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
GROUP = "autoscaler._native"  # the compiled group's shared library: autoscaler/_native__mypyc.*.so
RECORD = PACKAGE_DIR / "native.json"
PURE_ENV = "FLEETSCALE_PURE_PYTHON"


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _built_files() -> list[Path]:
    """The extension modules of a build, for any interpreter."""
    found = [p for m in MODULES for p in source_path(m).parent.glob(source_path(m).stem + ".*.so")]
    return found + list(PACKAGE_DIR.glob(GROUP.rsplit(".", 1)[1] + "__mypyc.*.so"))


def _compiled_here() -> bool:
    """Is there a build for the running interpreter?"""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return any(p.name.endswith(suffix) for p in _built_files())


def _record() -> dict[str, Any] | None:
    """The last build's record, or None when there is no readable one."""
    try:
        record = json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def build_status() -> str:
    """Why the replay runs compiled or not, in a few words (the benchmark prints it)."""
    if os.environ.get(PURE_ENV):
        return f"plain Python ({PURE_ENV} is set)"
    record = _record()
    if record is None:
        return "plain Python (not compiled: run `make native`)"
    if not record.get("compiled"):
        return f"plain Python (not compiled: {record.get('reason', 'unknown reason')})"
    if _stale_sources(record) or not _compiled_here():
        return "plain Python (the compiled build is out of date: run `make native`)"
    return "compiled (mypyc)"


class _FromSources(importlib.abc.MetaPathFinder):
    """Imports the build's modules from their `.py` files, ahead of the extension modules beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def _stale_sources(record: dict[str, Any] | None) -> list[str]:
    """The sources that differ from the build's `record` (all of them when it is not usable)."""
    built = record.get("sources") if record is not None else None
    if not isinstance(built, dict):
        return list(MODULES)
    return [m for m in MODULES if built.get(m) != _digest(source_path(m))]


def use_current_build() -> None:
    """Import the modules from their sources unless a compiled build of exactly these sources is present."""
    if not _compiled_here():
        return  # nothing compiled for this interpreter: the sources are what Python imports anyway
    if os.environ.get(PURE_ENV):
        sys.meta_path.insert(0, _FromSources())
        return
    stale = _stale_sources(_record())
    if stale:
        sys.meta_path.insert(0, _FromSources())
        names = ", ".join(str(source_path(m).relative_to(ROOT)) for m in stale)
        warnings.warn(
            f"{names} changed since the compiled build; using the Python sources (replays run about 3x slower). "
            "Run `make native` to rebuild.",
            RuntimeWarning,
            stacklevel=2,
        )


def picklable_by_fields(*classes: type) -> None:
    """Pickle (and deep-copy) these frozen dataclasses by their fields, through their constructor.

    A compiled frozen dataclass has no `__dict__`, so the default protocol restores it attribute by attribute,
    which its frozen `__setattr__` refuses. Plans send profiles to Ray tasks, so the compiled modules register
    their frozen dataclasses here (cloudpickle and `copy` read the same registry)."""
    for cls in classes:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        copyreg.pickle(cls, functools.partial(_by_fields, names))


def _by_fields(names: tuple[str, ...], obj: object) -> tuple[type, tuple[object, ...]]:
    return type(obj), tuple(getattr(obj, name) for name in names)


def build() -> str:
    """Compile the modules in place and write the record; returns what happened, in one line."""
    for stale in _built_files():
        stale.unlink()
    sources = {m: _digest(source_path(m)) for m in MODULES}
    try:
        reason = _compile()
    except Exception as error:  # whatever stops the compiler, the package still works as plain Python
        reason = f"{type(error).__name__}: {error}"
    if reason:
        for partial in _built_files():
            partial.unlink()
    record = {"compiled": not reason, "reason": reason, "python": sys.implementation.cache_tag, "sources": sources}
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return f"not compiled ({reason}): replays run as plain Python" if reason else "compiled: " + ", ".join(MODULES)


def _compile() -> str:
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
            command.inplace = True
            command.build_temp = f"{scratch}/o"
            command.build_lib = f"{scratch}/lib"
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
