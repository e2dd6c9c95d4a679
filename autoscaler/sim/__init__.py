"""Simulation: request-by-request replay of the performance model (one replica now; the fleet in issue 5)."""

from autoscaler.sim.replica import ReplicaRun, poisson_arrivals, simulate_replica

__all__ = ["ReplicaRun", "poisson_arrivals", "simulate_replica"]
