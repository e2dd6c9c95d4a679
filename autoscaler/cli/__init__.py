"""`fleetscale`, the command line: the composition root that loads files and wires the core to the outside.

Commands: validate, schema, catalog (show, mig-check), profile (show, capacity, calibrate), decide, run, explain,
backtest, whatif, plan, render (alerts, rayserve);
one module per group, each registering its commands on the shared app (`common.py`).
Exit codes: 0 success, 1 a negative answer (an invalid MIG layout, no plan), 2 bad input (a config error, an unknown
name).
"""

from __future__ import annotations

import sys

from autoscaler.cli.backtest_command import backtest_command
from autoscaler.cli.calibrate_command import profile_calibrate
from autoscaler.cli.common import app, catalog_app, err, profile_app, render_app
from autoscaler.cli.config_commands import (
    catalog_mig_check,
    catalog_show,
    profile_capacity,
    profile_show,
    schema,
    validate,
)
from autoscaler.cli.decide_command import decide_command
from autoscaler.cli.explain_command import explain_command
from autoscaler.cli.render_command import render_alerts, render_rayserve
from autoscaler.cli.replay_commands import plan_command, whatif_command
from autoscaler.cli.run_command import run_command
from autoscaler.errors import ConfigError

__all__ = ["app", "main"]

# The commands, in the order `fleetscale --help` lists them.
app.command()(validate)
app.command()(schema)
app.command("decide")(decide_command)
app.command("run")(run_command)
app.command("explain")(explain_command)
app.command("backtest")(backtest_command)
app.command("whatif")(whatif_command)
app.command("plan")(plan_command)
catalog_app.command("show")(catalog_show)
catalog_app.command("mig-check")(catalog_mig_check)
profile_app.command("show")(profile_show)
profile_app.command("capacity")(profile_capacity)
profile_app.command("calibrate")(profile_calibrate)
render_app.command("alerts")(render_alerts)
render_app.command("rayserve")(render_rayserve)


def main() -> None:
    """Console entry point: configuration errors end with their message and exit code 2, never a traceback."""
    try:
        app()
    except ConfigError as exc:
        err.print(str(exc), markup=False)
        sys.exit(2)
