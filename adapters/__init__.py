"""Adapters: the only place of fleetscale that talks to the outside world.

Each adapter implements a Protocol of `autoscaler.ports` over one external system (Prometheus, Kubernetes,
Ray Serve, trace files) and maps that system's errors to `autoscaler.errors`. Adapters depend on the core's types,
never on each other, and only `autoscaler.cli` wires them into the loop.
"""
