"""Stage 3, budget: cost caps by priority. Fails closed.

The cap in USD per hour is the smaller of `hard_usd_per_h` and, with a monthly budget, what is left of the month's
budget divided by the hours left in the month. A monthly budget whose month-to-date spend is unknown cannot be
evaluated: then nothing may cost more than the fleet costs now (no scale-up beyond current spend), and the
decision says so.

When the desired fleet costs more than the cap, services give way lowest tier first (best_effort, then standard,
then critical). Within a tier, each service first falls back to sizing for a lower demand quantile
(`budget_fallback_quantile`, on the same shape), then loses replicas one at a time, round-robin, down to
min_replicas. The cap is never exceeded except to keep min_replicas. Every service that gave way names the SLO
that is now at risk: the one that bounds its replicas' capacity.

Worked example: cap $100/h; critical wants 10 x $6.88 = $68.80, best_effort 8 x $6.88 = $55.04 (total $123.84).
best_effort falls back to its p50 demand, 6 replicas ($110.08 total), then loses replicas: 4 replicas fit
($68.80 + $27.52 = $96.32).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from autoscaler.config import Budget, Tier
from autoscaler.model import Reason
from autoscaler.sizing import Option, Sizing


@dataclass(frozen=True, slots=True)
class BudgetCap:
    """The effective cap of this tick (None: no budget set) and a sentence on how it was derived."""

    usd_per_h: float | None
    note: str
    evaluable: bool = True


def effective_cap(
    budget: Budget, now: datetime, month_to_date_spend_usd: float | None, current_cost_usd_per_h: float
) -> BudgetCap:
    """The hourly cap for this tick, failing closed to the current spend when it cannot be evaluated."""
    caps: list[tuple[float, str]] = []
    if budget.hard_usd_per_h is not None:
        caps.append((budget.hard_usd_per_h, f"hard cap ${budget.hard_usd_per_h:.2f}/h"))
    if budget.monthly_usd is not None:
        spend = month_to_date_spend_usd
        if spend is None or not math.isfinite(spend) or spend < 0:
            return BudgetCap(
                current_cost_usd_per_h,
                f"monthly budget cannot be evaluated (month-to-date spend is {spend!r}): no scale-up beyond "
                f"the current ${current_cost_usd_per_h:.2f}/h",
                evaluable=False,
            )
        days = calendar.monthrange(now.year, now.month)[1]
        month_end = now.replace(day=days, hour=23, minute=59, second=59, microsecond=0)
        hours_left = max((month_end - now).total_seconds() / 3600.0, 1.0 / 60.0)
        left = max(0.0, budget.monthly_usd - spend)
        caps.append(
            (left / hours_left, f"monthly ${budget.monthly_usd:,.0f}: ${left:,.2f} left over {hours_left:.1f} h")
        )
    if not caps:
        return BudgetCap(None, "no budget set")
    cap, note = min(caps)
    return BudgetCap(cap, note)


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    """Per service the sizing after the budget, whether it gave way and what is at risk."""

    sizing: Sizing
    replicas: int
    cost_usd_per_h: float
    reason: Reason | None
    message: str
    slo_at_risk: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BudgetInput:
    """What the budget stage needs of one service."""

    name: str
    tier: Tier
    min_replicas: int
    sizing: Sizing
    resize_at_fallback: Callable[[Option], Option | None]


def apply_budget(items: list[BudgetInput], cap: BudgetCap) -> dict[str, BudgetOutcome]:
    """Fit the fleet under `cap` by priority (see the module docstring)."""
    state: dict[str, tuple[Option | None, int]] = {}
    for item in items:
        chosen = item.sizing.chosen
        state[item.name] = (chosen, chosen.replicas if chosen else 0)

    def unit_price(name: str) -> float:
        option = state[name][0]
        return 0.0 if option is None else option.candidate.price_usd_per_h

    def total() -> float:
        return sum(state[n][1] * unit_price(n) for n in state)

    gave_way: dict[str, str] = {}
    if cap.usd_per_h is not None and total() > cap.usd_per_h + 1e-9:
        limit = cap.usd_per_h
        by_tier: dict[Tier, list[BudgetInput]] = {}
        for item in items:
            by_tier.setdefault(item.tier, []).append(item)
        for tier in sorted(by_tier, key=lambda t: -t.rank):
            group = [i for i in by_tier[tier] if state[i.name][0] is not None]
            for item in group:
                if total() <= limit:
                    break
                option, replicas = state[item.name]
                assert option is not None
                fallback = item.resize_at_fallback(option)
                if fallback is not None and fallback.replicas < replicas:
                    state[item.name] = (option, max(item.min_replicas, fallback.replicas))
                    gave_way[item.name] = f"sized for the fallback quantile: {fallback.replicas} replicas"
            while total() > limit:
                reducible = [i for i in group if state[i.name][1] > i.min_replicas]
                if not reducible:
                    break
                # Round-robin: take from the service that has kept the largest share of what it wanted.
                victim = max(reducible, key=lambda i: (state[i.name][1] / max(_wanted(i), 1), i.name))
                option, replicas = state[victim.name]
                state[victim.name] = (option, replicas - 1)
                gave_way[victim.name] = f"cut to {replicas - 1} replicas"
            if total() <= limit:
                break
    outcomes: dict[str, BudgetOutcome] = {}
    for item in items:
        option, replicas = state[item.name]
        cost = replicas * unit_price(item.name)
        if item.name in gave_way:
            risk = _at_risk(item.sizing, option, replicas)
            over = total() > (cap.usd_per_h or math.inf) + 1e-9
            message = f"budget ({cap.note}) binds: {gave_way[item.name]}" + (
                "; still above the cap only to keep min_replicas" if over else ""
            )
            outcomes[item.name] = BudgetOutcome(item.sizing, replicas, cost, Reason.LIMITED_BY_BUDGET, message, risk)
        else:
            outcomes[item.name] = BudgetOutcome(item.sizing, replicas, cost, None, f"within budget ({cap.note})", ())
    return outcomes


def _wanted(item: BudgetInput) -> int:
    return item.sizing.chosen.replicas if item.sizing.chosen else 0


def _at_risk(sizing: Sizing, option: Option | None, replicas: int) -> tuple[str, ...]:
    if option is None or option.capacity is None:
        return ()
    served = option.capacity.rps * replicas
    if served >= sizing.demand_rps:
        return ()
    return (
        f"{option.capacity.binding}: {replicas} x {option.shape} serve {served:.3g} req/s at the SLO, "
        f"demand is {sizing.demand_rps:.3g} req/s",
    )
