"""`fleetscale render`: manifests other systems read, made from a scenario. `render alerts` writes the burn-rate
alerts of the scenario's latency and GPU efficiency SLOs as a Prometheus Operator `PrometheusRule`
(`autoscaler/alerts.py`); `--rules-only` writes the plain Prometheus rule file (`rule_files:`, `promtool check
rules`) instead. `render rayserve` writes the Serve config `serve deploy` reads (`adapters/rayserve/render.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from adapters.prometheus.queries import service_selector  # the composition root wires the adapter's selectors
from autoscaler.alerts import prometheus_rule
from autoscaler.cli.common import compile_file, fail, out
from autoscaler.cli.replay_commands import ScenarioOption
from autoscaler.errors import ConfigError

OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")]


def _write_yaml(document: Any, output: Path | None) -> None:
    """`document` as YAML on stdout, or in `output`."""
    text = yaml.safe_dump(document, sort_keys=False, width=1000)
    if output is None:
        out.print(text, markup=False, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"--output {output}: {exc.strerror or exc}") from None


def render_alerts(
    scenario_file: ScenarioOption,
    namespace: Annotated[str, typer.Option(help="Namespace of the PrometheusRule.")] = "monitoring",
    name: Annotated[str | None, typer.Option(help="Its name; default fleetscale-<scenario>-slos.")] = None,
    rules_only: Annotated[
        bool, typer.Option("--rules-only", help="Write a plain Prometheus rule file, not a PrometheusRule.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Burn-rate alerts for the scenario's latency and GPU efficiency SLOs."""
    scenario = compile_file(scenario_file).scenario
    selectors = {s.name: service_selector(s) for s in scenario.services}
    rule = prometheus_rule(scenario, selectors, name=name, namespace=namespace)
    _write_yaml({"groups": rule["spec"]["groups"]} if rules_only else rule, output)


def render_rayserve(
    scenario_file: ScenarioOption,
    import_path: Annotated[
        list[str],
        typer.Option(
            help="The code of an application, APP=module:attribute, or module:attribute for every application "
            "(repeat for several)."
        ),
    ],
    output: OutputOption = None,
) -> None:
    """The Ray Serve config (applications and deployments) of the scenario's services, scaled by fleetscale."""
    from adapters.rayserve.render import serve_config  # the composition root wires the adapter

    compiled = compile_file(scenario_file)
    paths: dict[str, str] = {}
    for text in import_path:
        app, sep, path = text.rpartition("=")
        if ":" not in path or (sep and not app):
            raise fail(f"--import-path {text}: expected module:attribute or APP=module:attribute")
        paths[app if sep else "*"] = path
    try:
        config = serve_config(compiled, paths)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _write_yaml(config, output)
