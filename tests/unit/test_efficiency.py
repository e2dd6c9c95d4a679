"""GPU efficiency SLOs (autoscaler/efficiency.py): indicators from placement and DCGM, the ledger of good and bad
ticks, attainment and multi-window burn rates, the decision's statuses and notes, consolidation while stranding
burns, and the exported metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.config import Efficiency, EfficiencyIndicator, EfficiencyObjective
from autoscaler.decide import decide
from autoscaler.efficiency import Ledger, burn_rate, burning, indicators, update
from autoscaler.model import GpuTelemetry, Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.perf import ProfileBook
from autoscaler.placement.fragmentation import Fragmentation
from autoscaler.placement.model import NodeState, PlacedReplica
from autoscaler.ports import StoredState
from autoscaler.shapes import parse_shape
from autoscaler.state_store import FileStateStore
from tests.unit.conftest import compile_dict, scenario_dict

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
GIB = 1024.0**3


def objective(indicator: str, threshold: float, name: str = "o", target: float = 0.9) -> EfficiencyObjective:
    return EfficiencyObjective(name=name, indicator=indicator, threshold=threshold, objective=target)


def test_indicators_from_placement_and_dcgm() -> None:
    frag = Fragmentation(
        busy_gpus=10, allocated_gpu_share=9.0, stranded_memory_slices=4, stranded_compute_slices=3,
        stranded_memory_gb=40.0, stranded_share=0.5, saturated_gpus=3, stranded_gpus=1.0, fleet_gpus=16,
    )  # fmt: skip
    gpus = [
        GpuTelemetry("n1", "0", engine_active=0.9, fb_used_bytes=40 * GIB),
        GpuTelemetry("n1", "1", mig_profile="3g.40gb", instance="1", engine_active=0.5, fb_used_bytes=20 * GIB),
        GpuTelemetry("n1", "2", engine_active=0.0, fb_used_bytes=0.2 * GIB),  # holds no model: not counted
        GpuTelemetry("n1", "3", engine_active=None, fb_used_bytes=30 * GIB),
    ]
    values = indicators(frag, gpus, Efficiency())
    assert values[EfficiencyIndicator.BUSY] == pytest.approx(0.7)
    assert values[EfficiencyIndicator.STRANDED] == pytest.approx(1.0 / 16)
    assert values[EfficiencyIndicator.SATURATED] == pytest.approx(0.3)
    unknown = indicators(None, None, Efficiency())
    assert set(unknown.values()) == {None}


def test_ledger_attainment_and_burn_rates() -> None:
    o = objective("stranded", 0.05, target=0.9)  # budget: 10 % of ticks
    ledger = Ledger()
    # 6 hours of good ticks, then 30 minutes in which every tick is bad (15 s ticks).
    t = T
    for _ in range(6 * 240):
        ledger = ledger.record(t, True, o.window_s)
        t += 15
    assert burning(ledger, t, o.objective) is None
    for _ in range(120):
        ledger = ledger.record(t, False, o.window_s)
        t += 15
    assert burn_rate(ledger, t, 300, o.objective) == pytest.approx(10.0, rel=0.15)  # all bad: 1 / 0.1
    assert burn_rate(ledger, t, 3600, o.objective) == pytest.approx(5.0, rel=0.15)  # half bad over the hour
    assert burning(ledger, t, o.objective) is None  # 10x over 5 min but 5x over 1 h: not fast; 6h/30m not slow
    # A 10 % budget can never burn fast (14.4x would need more than every tick bad); 4 bad hours of the last 6
    # burn it slowly: 4/6 of the ticks over 6 h (6.7x) and all of them over 30 min (10x).
    for _ in range(4 * 240 - 120):
        ledger = ledger.record(t, False, o.window_s)
        t += 15
    assert burn_rate(ledger, t, 6 * 3600, o.objective) == pytest.approx(6.7, rel=0.05)
    assert burning(ledger, t, o.objective) == "slow"
    good, bad = ledger.counts(t, o.window_s)
    assert (good, bad) == (6 * 240, 4 * 240)
    assert len(ledger.fine) <= 6 * 60 + 1  # minute buckets for 6 hours only; older ones rolled into hours


def test_fast_burn_needs_both_lookbacks() -> None:
    o = objective("saturated", 0.1, target=0.99)  # budget 1 %: a bad hour burns 100x
    ledger = Ledger()
    t = T
    for _ in range(240):
        ledger = ledger.record(t, False, o.window_s)
        t += 15
    assert burning(ledger, t, o.objective) == "fast"
    for _ in range(40):  # 10 good minutes: the 5-minute lookback recovers first, and the alert stops
        ledger = ledger.record(t, True, o.window_s)
        t += 15
    assert burning(ledger, t, o.objective) != "fast"


def test_unknown_ticks_do_not_count() -> None:
    o = objective("busy", 0.85)
    statuses, ledgers = update([o], {EfficiencyIndicator.BUSY: None}, {}, T)
    (status,) = statuses
    assert (status.value, status.good, status.attainment) == (None, None, None)
    assert ledgers["o"].counts(T, o.window_s) == (0, 0)
    assert "busy unknown" in status.sentence()


def h100_scenario(catalog: Catalog, book: ProfileBook, objectives: list[dict[str, object]]) -> CompiledScenario:
    data = scenario_dict()
    data["fleet"]["pools"] = [{"name": "h100", "gpu_type": "H100-80GB", "gpus_per_node": 8, "max_nodes": 4}]
    data["services"][0].update(min_replicas=1, allowed_shapes=["H100-80GB"])
    data["policy"] = {"mode": "apply"}
    data["efficiency"] = {"objectives": objectives}
    return compile_dict(data, catalog, book)


H100 = parse_shape("H100-80GB")


def spread_fleet() -> tuple[tuple[NodeState, ...], tuple[PlacedReplica, ...]]:
    """Two 8-GPU nodes; 5 replicas on the first and 1 on the second: the second could be emptied."""
    nodes = (NodeState("a", "h100", "H100-80GB", 8), NodeState("b", "h100", "H100-80GB", 8))
    placed = (*(PlacedReplica("chat", H100, "a", (i,)) for i in range(5)), PlacedReplica("chat", H100, "b", (0,)))
    return nodes, placed


def observation(at: datetime, rps: float = 60.0) -> Observation:
    nodes, placed = spread_fleet()
    return Observation(
        {"chat": ServiceObservation(rps, sampled_at=at, replicas={H100: ShapeReplicas(6, 0, 6)})},
        nodes=nodes,
        placed=placed,
    )


def test_the_decision_reports_its_objectives_and_keeps_the_ledger(catalog: Catalog, book: ProfileBook) -> None:
    config = h100_scenario(
        catalog, book, [{"name": "no-saturation", "indicator": "saturated", "threshold": 0.1, "objective": 0.99}]
    )
    state = PolicyState()
    for i in range(8):
        decision, state = decide(
            observation(NOW + timedelta(seconds=15 * i)), {}, config, state, NOW + timedelta(seconds=15 * i)
        )
    (status,) = decision.efficiency
    assert status.name == "no-saturation" and status.value == 1.0  # every busy GPU is a whole-GPU replica: no room
    assert status.good is False and status.attainment == 0.0
    assert status.burning == "fast"
    assert any(n.startswith("efficiency no-saturation: saturated 100.0%") for n in decision.notes)
    assert state.efficiency["no-saturation"].counts(NOW.timestamp() + 200, 3600) == (0, 8)


def test_stranding_that_burns_consolidates_onto_fewer_nodes(catalog: Catalog, book: ProfileBook) -> None:
    # Stranded capacity is never above 0 here (whole GPUs strand nothing), so to exercise the cue the objective is
    # impossible to meet: a threshold below zero cannot be configured, so a ledger full of bad ticks stands in.
    config = h100_scenario(catalog, book, [{"name": "stranded", "indicator": "stranded", "threshold": 0.0}])
    bad = Ledger()
    for i in range(240):
        bad = bad.record(NOW.timestamp() - 3600 + 15 * i, False, 7 * 86400)
    burning_state = PolicyState(efficiency={"stranded": bad})
    decision, _ = decide(observation(NOW), {}, config, burning_state, NOW)
    assert decision.placement is not None
    used = decision.placement.nodes_used()
    assert used == {"a"}, used
    assert any("consolidation" in n and "node b emptied" in n for n in decision.notes), decision.notes
    calm, _ = decide(observation(NOW), {}, config, PolicyState(), NOW)
    assert calm.placement is not None and calm.placement.nodes_used() == {"a", "b"}  # no churn without the cue


def test_the_ledger_survives_a_restart(tmp_path: object) -> None:
    from pathlib import Path

    ledger = Ledger().record(T, True, 86400).record(T + 15, False, 86400)
    store = FileStateStore(Path(str(tmp_path)) / "state.json")
    store.save(StoredState(PolicyState(efficiency={"o": ledger}), {}, NOW))
    loaded = store.load()
    assert loaded is not None and loaded.policy.efficiency["o"] == ledger


def test_objective_names_are_unique() -> None:
    with pytest.raises(ValueError, match="used twice"):
        Efficiency.model_validate({"objectives": [{"name": "a", "indicator": "busy", "threshold": 0.8}] * 2})
