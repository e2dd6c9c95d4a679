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
($68.80 + $27.52 = $96.32), and a 5th would not ($103.20).
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
    """Fit the fleet under `cap` by priority (see the module docstring).

    After the cuts, what the cap still allows goes back, highest tier first, one whole replica at a time, so that
    no money is left unused while a service that gave way could use it.
    """
    state: dict[str, tuple[Option | None, int]] = {}
    for item in items:
        chosen = item.sizing.chosen
        state[item.name] = (chosen, chosen.replicas if chosen else 0)

    def unit_price(name: str) -> float:
        option = state[name][0]
        return 0.0 if option is None else option.candidate.price_usd_per_h

    def total() -> float:
        return sum(state[n][1] * unit_price(n) for n in state)

    fell_back: set[str] = set()
    if cap.usd_per_h is not None and total() > cap.usd_per_h + 1e-9:
        limit = cap.usd_per_h
        by_tier: dict[Tier, list[BudgetInput]] = {}
        for item in items:
            if state[item.name][0] is not None:
                by_tier.setdefault(item.tier, []).append(item)
        for tier in sorted(by_tier, key=lambda t: -t.rank):
            group = by_tier[tier]
            for item in group:
                if total() <= limit:
                    break
                option, replicas = state[item.name]
                assert option is not None
                fallback = item.resize_at_fallback(option)
                if fallback is not None and fallback.replicas < replicas:
                    state[item.name] = (option, max(item.min_replicas, fallback.replicas))
                    fell_back.add(item.name)
            while total() > limit:
                reducible = [i for i in group if state[i.name][1] > i.min_replicas]
                if not reducible:
                    break
                # Round-robin: take from the service that has kept the largest share of what it wanted.
                victim = max(reducible, key=lambda i: (state[i.name][1] / max(_wanted(i), 1), i.name))
                option, replicas = state[victim.name]
                state[victim.name] = (option, replicas - 1)
            if total() <= limit:
                break
        for tier in sorted(by_tier, key=lambda t: t.rank):
            refilled = True
            while refilled:
                refilled = False
                for item in sorted(by_tier[tier], key=lambda i: (state[i.name][1] / max(_wanted(i), 1), i.name)):
                    option, replicas = state[item.name]
                    if replicas < _wanted(item) and total() + unit_price(item.name) <= limit + 1e-9:
                        state[item.name] = (option, replicas + 1)
                        refilled = True
    over = cap.usd_per_h is not None and total() > cap.usd_per_h + 1e-9
    outcomes: dict[str, BudgetOutcome] = {}
    for item in items:
        option, replicas = state[item.name]
        cost = replicas * unit_price(item.name)
        if replicas < _wanted(item):
            how = "sized for the fallback quantile, then " if item.name in fell_back else ""
            message = f"budget ({cap.note}) binds: {how}{replicas} of {_wanted(item)} replicas" + (
                "; still above the cap only to keep min_replicas" if over else ""
            )
            risk = _at_risk(item.sizing, option, replicas)
            outcomes[item.name] = BudgetOutcome(item.sizing, replicas, cost, Reason.LIMITED_BY_BUDGET, message, risk)
        else:
            note = f"within budget ({cap.note})" + ("; above the cap only to keep min_replicas" if over else "")
            outcomes[item.name] = BudgetOutcome(item.sizing, replicas, cost, None, note, ())
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
