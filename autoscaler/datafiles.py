"""Where fleetscale's bundled data files (catalog, profiles, examples) live.

They sit in `configs/` at the project root. `FLEETSCALE_CONFIG_DIR` points elsewhere, for an installed copy
or a container image that ships its own `configs/`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from autoscaler.errors import ConfigError


def config_dir() -> Path:
    """The directory that holds `catalog/`, `profiles/` and `examples/`."""
    override = os.environ.get("FLEETSCALE_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "configs"


def load_yaml(path: Path) -> Any:
    """Read one YAML document; a syntax error names the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
