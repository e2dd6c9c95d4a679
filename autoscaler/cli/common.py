"""What every command shares: the Typer apps, the two consoles, and loading the catalog and a scenario."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from autoscaler.catalog import Catalog, load_catalog
from autoscaler.compiled import CompiledScenario, compile_scenario
from autoscaler.config import load_scenario
from autoscaler.errors import ConfigError
from autoscaler.perf import ProfileBook, load_profile_book

app = typer.Typer(no_args_is_help=True, add_completion=False, help="fleetscale: autoscaler for GPU inference fleets.")
catalog_app = typer.Typer(no_args_is_help=True, help="The GPU catalog: types, MIG profiles, prices.")
profile_app = typer.Typer(no_args_is_help=True, help="Replica performance profiles.")
app.add_typer(catalog_app, name="catalog")
render_app = typer.Typer(
    no_args_is_help=True, help="Manifests made from a scenario (Prometheus alerts, a Ray Serve config)."
)
app.add_typer(profile_app, name="profile")
app.add_typer(render_app, name="render")

# soft_wrap: a message is one line however narrow the terminal (or pipe) is, so that "one line per error" holds.
# Piped output (CI logs, `make demo | tee`) gets a wide page instead of Rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `message` on stderr, one line, and return the exit to raise (2: bad input, 1: a negative answer)."""
    err.print(message, markup=False)
    return typer.Exit(code)


def load_book() -> tuple[Catalog, ProfileBook]:
    """The bundled catalog and the performance profiles derived on it."""
    catalog = load_catalog()
    return catalog, load_profile_book(catalog)


def compile_file(scenario_file: Path) -> CompiledScenario:
    """The scenario file checked and compiled; a configuration error ends the command with its message."""
    catalog, book = load_book()
    try:
        scenario = load_scenario(scenario_file, catalog, book)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return compile_scenario(scenario, catalog, book)
