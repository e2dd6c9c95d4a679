"""The import rules of DESIGN.md section 3, checked by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_decision_core_reads_no_clock() -> None:
    """Stages are pure: no wall-clock reads anywhere in the core (ruff's TID251 bans them too)."""
    for path in (ROOT / "autoscaler").rglob("*.py"):
        if "cli" in path.relative_to(ROOT).parts:  # the command line is the shell, not the core
            continue
        if path == ROOT / "autoscaler" / "clock.py":  # the one module that reads it, behind the Clock port
            continue
        text = path.read_text(encoding="utf-8")
        for banned in ("time.time(", "datetime.now(", "datetime.utcnow(", "time.monotonic("):
            assert banned not in text, f"{path.relative_to(ROOT)} reads the clock ({banned})"


def test_adapters_never_name_the_simulator() -> None:
    """`git grep -n "autoscaler.sim" adapters/` finds nothing: adapters talk to the outside world, not to the
    simulator (DESIGN.md section 3). The same regex as that check, so a mention in a docstring or an
    `autoscaler/sim` path fails too, as it would fail the check."""
    pattern = re.compile(r"autoscaler.sim")
    hits = []
    for path in sorted((ROOT / "adapters").rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file, as git grep skips them
            continue
        hits += [
            f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(text.splitlines(), 1)
            if pattern.search(line)
        ]
    assert not hits, "adapters must not import the simulator:\n" + "\n".join(hits)
