"""fleetscale's decision core: forecasts in, explained replica targets and placements out (DESIGN.md).

Importing it does nothing but define things; the compiled replay modules are an explicit opt-in of the entry points
that want them (`autoscaler.native.use_compiled_build`).
"""
