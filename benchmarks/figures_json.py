"""The `--json FILE` output every benchmark shares: its figures as one flat JSON object (shared by the scripts)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

Figure = float | int | bool | str


def write_figures(path: Path | None, figures: Mapping[str, Figure]) -> None:
    """Write `figures` to `path` (nothing when it is None) and say so.

    A benchmark's figures are read by scripts that compare runs, so a non-finite number (which JSON cannot carry)
    is a bug of the benchmark: it fails here instead of writing a file nobody can compare.
    """
    if path is None:
        return
    bad = [key for key, value in figures.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise ValueError(f"benchmark figures that are not finite: {', '.join(sorted(bad))}")
    path.write_text(json.dumps(dict(figures), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
