"""The import rules of DESIGN.md section 3, checked by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

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
        text = path.read_text(encoding="utf-8")
        for banned in ("time.time(", "datetime.now(", "datetime.utcnow(", "time.monotonic("):
            assert banned not in text, f"{path.relative_to(ROOT)} reads the clock ({banned})"
