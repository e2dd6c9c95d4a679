"""Replay the same requests under several policies and the two bounds, and put the figures side by side.

Every policy replays the same requests on the same simulator. The oracle and the instant-start bound always run
(`oracle.py`): the table's last column is each policy's cost relative to the oracle's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from autoscaler.compiled import CompiledScenario
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FleetSim, Policy, ReplayResult, ServiceRequests
from autoscaler.sim.oracle import OraclePolicy
from autoscaler.sim.summary import PolicySummary, summarize

PolicyFactory = Callable[[], Policy]


@dataclass(frozen=True)
class Comparison:
    summaries: Mapping[str, PolicySummary]
    results: Mapping[str, ReplayResult]

    def cost_vs_oracle(self, name: str) -> float:
        oracle = self.summaries["oracle"].cost_usd
        return self.summaries[name].cost_usd / oracle if oracle > 0 else float("nan")


def compare(
    config: CompiledScenario,
    requests: Mapping[str, ServiceRequests],
    factories: Mapping[str, PolicyFactory],
    progress: Callable[[str], None] | None = None,
    configs: Mapping[str, CompiledScenario] | None = None,
    replayed: Mapping[str, ReplayResult] | None = None,
) -> Comparison:
    """Replay under each policy of `factories` (by name), then the oracle and the instant-start bound. A policy
    named in `configs` replays on that compiled scenario instead (`fleetscale_free`: every shape allowed); one named
    in `replayed` is not replayed again (a tuned baseline's replay of its kept setting)."""
    runs: dict[str, tuple[PolicyFactory, bool]] = {name: (factory, False) for name, factory in factories.items()}
    needs: dict[tuple[str, Shape, float], list[int]] = {}  # the windows' needs, found once for both bounds
    runs["oracle"] = (lambda: OraclePolicy(config, requests, needs=needs), False)
    runs["instant_start"] = (lambda: OraclePolicy(config, requests, instant=True, needs=needs), True)
    summaries: dict[str, PolicySummary] = {}
    results: dict[str, ReplayResult] = {}
    for name, (factory, instant) in runs.items():
        if progress is not None:
            progress(name)
        result = (replayed or {}).get(name)
        if result is None:
            own = (configs or {}).get(name, config)
            result = FleetSim(own, requests, instant_start=instant).run(factory())
        results[name] = result
        summaries[name] = summarize(result, config)
    return Comparison(summaries, results)
