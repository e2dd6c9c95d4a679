"""Audit records (what intents and outcomes carry) and `explain` (their sentences), on decisions made here."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.decide import decide
from autoscaler.events import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, CloudEvent, parse_event, serialize_event
from autoscaler.explain import notable, pair, sentence, summary
from autoscaler.model import Alternative, Observation, PolicyState, ServiceObservation, ShapeReplicas
from autoscaler.perf import ProfileBook
from autoscaler.records import Action, Actuation, inputs_digest, intent_data, outcome_data
from autoscaler.shapes import parse_shape
from tests.unit.conftest import compile_dict, scenario_dict

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
H100 = parse_shape("H100-80GB")


@pytest.fixture(scope="module")
def chat(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    return compile_dict(scenario_dict(), catalog, book)


def _events(chat: CompiledScenario, rate: float | None, current: int, outcome: str = "applied") -> list[CloudEvent]:
    observation = ServiceObservation(
        rate, None if rate is None else rate * 1000, None, NOW, {H100: ShapeReplicas(current)}
    )
    decision, _ = decide(Observation({"chat": observation}), {}, chat, PolicyState(), NOW)
    result = decision.service("chat")
    actions = [Action(s, current, n) for s, n in result.target.items() if n != current]
    intent = intent_data(decision, result, decision_id="d-1", tick=1, digest="x", actions=actions)
    results = [
        Actuation("chat", a.shape, a.replicas, a.replicas if outcome == "applied" else None, "", "") for a in actions
    ]
    if outcome == "failed":
        results = [dataclasses.replace(r, error="TransientError: 503") for r in results]
    done = outcome_data("d-1", 1, "apply", outcome, result.target, results)
    common = {"source": "/fleetscale/unit", "time": NOW, "subject": "chat"}
    return [
        CloudEvent(id="d-1/chat/intent", type=TYPE_DECISION_INTENT, data=intent, **common),  # type: ignore[arg-type]
        CloudEvent(id="d-1/chat/outcome", type=TYPE_DECISION_OUTCOME, data=done, **common),  # type: ignore[arg-type]
    ]


def test_an_intent_holds_the_decision_as_values(chat: CompiledScenario) -> None:
    intent = _events(chat, 60.0, 2)[0].data
    assert intent["current"] == {"H100-80GB": 2} and intent["target"]["H100-80GB"] > 2
    assert intent["reason"] == "scale_up" and intent["binding_constraint"] in ("tpot_p95_s", "ttft_p95_s")
    assert [s["stage"] for s in intent["stages"]] == ["forecast", "size", "budget", "stabilize", "place"]
    assert intent["stages"][1]["shape"] == "H100-80GB" and intent["stages"][0]["demand_rps"] == 60.0
    assert intent["current_cost_usd_per_h"] == pytest.approx(2 * 6.88)


def test_a_cost_that_is_infinite_is_recorded_as_null(chat: CompiledScenario) -> None:
    # A shape that cannot serve at all costs infinity; JSON has no infinity, and one such number must not make the
    # tick's intents unrecordable (which would stop every actuation of the tick).
    observation = ServiceObservation(60.0, 60000.0, None, NOW, {H100: ShapeReplicas(2)})
    decision, _ = decide(Observation({"chat": observation}), {}, chat, PolicyState(), NOW)
    result = dataclasses.replace(
        decision.service("chat"), rejected_alternative=Alternative("4xL4", 0, math.inf, "cannot meet the SLO")
    )
    data = intent_data(decision, result, decision_id="d", tick=1, digest="x", actions=[])
    event = CloudEvent(id="d/chat/intent", source="/fleetscale/unit", type=TYPE_DECISION_INTENT, time=NOW, data=data)
    assert parse_event(serialize_event(event)).data["rejected_alternative"]["cost_usd_per_h"] is None


def test_the_inputs_digest_changes_with_the_inputs() -> None:
    a = ServiceObservation(1.0, 2.0, 3.0, NOW, {H100: ShapeReplicas(1)})
    assert inputs_digest(a, None) == inputs_digest(dataclasses.replace(a), None)
    assert inputs_digest(a, None) != inputs_digest(dataclasses.replace(a, request_rps=1.5), None)
    assert len(inputs_digest(a, None)) == 16


def test_explain_says_what_changed_why_and_what_it_cost(chat: CompiledScenario) -> None:
    (item,) = pair(_events(chat, 60.0, 2))
    text = sentence(item)
    target = item.intent["target"]["H100-80GB"]
    assert text.startswith(f"2026-01-05 09:00:00 UTC chat: 2 x H100-80GB -> {target} x H100-80GB (scale_up, bound by ")
    assert "Demand observed 60 req/s (no forecast)." in text
    assert f"Cost $13.76/h -> ${6.88 * target:,.2f}/h (+${6.88 * (target - 2):,.2f}/h)." in text
    assert text.endswith(f"Applied: H100-80GB {target} of {target} (decision d-1).")
    assert notable(item)


def test_explain_tells_holds_failures_and_interrupted_decisions(chat: CompiledScenario) -> None:
    held = sentence(pair(_events(chat, None, 3))[0])
    assert "chat: held at 3 x H100-80GB (hold_missing_metrics): no metrics: holding, never scaling down." in held
    failed = sentence(pair(_events(chat, 60.0, 2, outcome="failed"))[0])
    assert "Failed: H100-80GB failed (TransientError: 503) (decision d-1)." in failed
    intent_only = _events(chat, 60.0, 2)[:1]
    assert sentence(pair(intent_only)[0]).endswith(
        "No outcome recorded (decision d-1): the process stopped while applying it."
    )


def test_explain_filters_by_service_and_time_and_sums_up(chat: CompiledScenario) -> None:
    events = _events(chat, 60.0, 2)
    later = [dataclasses.replace(e, time=NOW + timedelta(hours=1)) for e in _events(chat, 10.0, 5)]
    later = [dataclasses.replace(e, data={**e.data, "decision_id": "d-2"}) for e in later]
    items = pair([*events, *later])
    assert len(items) == 2
    assert len(pair([*events, *later], since=NOW + timedelta(minutes=30))) == 1
    assert pair(events, service="other") == []
    assert summary(items).startswith("2 decisions from 2026-01-05 09:00:00 to 2026-01-05 10:00:00 UTC: ")
    assert summary([]) == "no decisions in the trail for this selection"
