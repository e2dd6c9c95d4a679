"""fleetscale's decision core: forecasts in, explained replica targets and placements out (DESIGN.md)."""

from autoscaler.native import use_current_build

# Before any of the compiled modules is imported: a build that does not match its sources is not used.
use_current_build()
