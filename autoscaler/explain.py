"""`fleetscale explain`: why each change happened and what it cost, in sentences, from the audit trail.

Each intent event (`autoscaler/records.py`) and the outcome that follows it become one paragraph: when, which
service, from what to what and why (the reason, the binding constraint, the demand and where it came from, the
sizing sentence), the cost per hour before and after, and what was applied. Decisions that changed nothing and
said nothing new are not in the trail; holds are, with the reason they held. By default only changes, holds and
failures are told (`notable`); the trail also records a steady decision whenever its reason changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autoscaler.audit import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, CloudEvent


@dataclass(frozen=True, slots=True)
class Explained:
    """One decision of one service, with its outcome if the trail has it."""

    at: datetime
    service: str
    intent: Mapping[str, Any]
    outcome: Mapping[str, Any] | None


def pair(events: Iterable[CloudEvent], service: str | None = None, since: datetime | None = None) -> list[Explained]:
    """The intents of the trail (of `service`, from `since` on), each with the outcome of the same decision."""
    intents: dict[tuple[str, str], Explained] = {}
    order: list[tuple[str, str]] = []
    for event in events:
        subject = event.subject or ""
        if service is not None and subject != service:
            continue
        if since is not None and event.time < since:
            continue
        key = (str(event.data.get("decision_id", "")), subject)
        if event.type == TYPE_DECISION_INTENT:
            intents[key] = Explained(event.time, subject, event.data, None)
            order.append(key)
        elif event.type == TYPE_DECISION_OUTCOME and key in intents:
            found = intents[key]
            intents[key] = Explained(found.at, found.service, found.intent, event.data)
    return [intents[key] for key in order]


def notable(item: Explained) -> bool:
    """A change, a hold, or a failure: what `explain` tells by default (steady decisions only with --all)."""
    failed = item.outcome is not None and item.outcome.get("outcome") == "failed"
    return bool(item.intent.get("hold")) or failed or item.intent.get("current") != item.intent.get("target")


def _shapes(counts: Mapping[str, int]) -> str:
    shown = [f"{n} x {shape}" for shape, n in counts.items() if n]
    return ", ".join(shown) or "0"


def _money(value: Any) -> str:
    return f"${float(value):,.2f}/h"


def sentence(item: Explained) -> str:
    """The paragraph for one decision (see the module docstring)."""
    data = item.intent
    stamp = item.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    current, target = data.get("current", {}), data.get("target", {})
    reason = data.get("reason", "?")
    forecast = data.get("forecast", {}) or {}
    if data.get("hold"):
        head = f"{stamp} {item.service}: held at {_shapes(current)} ({reason}): {data.get('message', '')}"
    elif current == target:
        head = (
            f"{stamp} {item.service}: stays at {_shapes(target)} ({reason}, bound by {data.get('binding_constraint')})"
        )
    else:
        head = (
            f"{stamp} {item.service}: {_shapes(current)} -> {_shapes(target)} ({reason}, bound by "
            f"{data.get('binding_constraint')})"
        )
    parts = [head + "."]
    if not data.get("hold"):
        parts.append(f"Demand {forecast.get('source', '')}.")
        message = str(data.get("message", ""))
        if message:
            parts.append(message[0].upper() + message[1:] + ".")
    before, after = data.get("current_cost_usd_per_h"), data.get("cost_usd_per_h")
    if before is not None and after is not None and abs(float(after) - float(before)) > 0.005:
        delta = float(after) - float(before)
        sign = "+" if delta > 0 else "-"
        parts.append(f"Cost {_money(before)} -> {_money(after)} ({sign}${abs(delta):,.2f}/h).")
    risks = data.get("slo_at_risk") or []
    if risks:
        parts.append("SLO at risk: " + "; ".join(str(r) for r in risks) + ".")
    parts.append(_outcome_sentence(item.outcome, data))
    return " ".join(p for p in parts if p)


def _outcome_sentence(outcome: Mapping[str, Any] | None, intent: Mapping[str, Any]) -> str:
    decision = intent.get("decision_id", "?")
    if outcome is None:
        if intent.get("actions"):
            return f"No outcome recorded (decision {decision}): the process stopped while applying it."
        return f"(decision {decision})"
    kind = outcome.get("outcome")
    results = outcome.get("results") or []
    if kind in ("applied", "partial", "failed"):
        done = "; ".join(
            f"{r['shape']} "
            + (f"failed ({r['error']})" if r.get("error") else f"{r['applied']} of {r['requested']}")
            + (f", {r['note']}" if r.get("note") else "")
            for r in results
        )
        return f"{str(kind).capitalize()}: {done} (decision {decision})."
    note = outcome.get("note") or str(kind)
    return f"Not applied: {note} (decision {decision})."


def explain_lines(items: Iterable[Explained]) -> Iterator[str]:
    for item in items:
        yield sentence(item)


def summary(items: list[Explained]) -> str:
    """One line: how many decisions, changes, and what was applied, over what span."""
    if not items:
        return "no decisions in the trail for this selection"
    changes = [i for i in items if i.intent.get("current") != i.intent.get("target") and not i.intent.get("hold")]
    holds = [i for i in items if i.intent.get("hold")]
    applied = [i for i in items if i.outcome is not None and i.outcome.get("outcome") in ("applied", "partial")]
    failed = [i for i in items if i.outcome is not None and i.outcome.get("outcome") == "failed"]
    span = f"{items[0].at:%Y-%m-%d %H:%M:%S} to {items[-1].at:%Y-%m-%d %H:%M:%S} UTC"
    return (
        f"{len(items)} decisions from {span}: {len(changes)} changes, {len(holds)} holds; "
        f"{len(applied)} applied, {len(failed)} failed"
    )
