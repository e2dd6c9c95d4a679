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
import heapq
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
    no money is left unused while a service that gave way could use it. Cuts and refills keep a running total and
    a heap per tier, so a decision over thousands of services stays O(n log n).
    """
    replicas: dict[str, int] = {}
    price: dict[str, float] = {}
    for item in items:
        chosen = item.sizing.chosen
        replicas[item.name] = chosen.replicas if chosen else 0
        price[item.name] = chosen.candidate.price_usd_per_h if chosen else 0.0
    total = sum(replicas[n] * price[n] for n in replicas)
    fell_back: set[str] = set()
    limit = cap.usd_per_h
    if limit is not None and total > limit + 1e-9:
        by_tier: dict[Tier, list[BudgetInput]] = {}
        for item in items:
            if item.sizing.chosen is not None:
                by_tier.setdefault(item.tier, []).append(item)
        rank = {item.name: index for index, item in enumerate(sorted(items, key=lambda i: i.name))}

        def kept(item: BudgetInput) -> float:
            return replicas[item.name] / max(_wanted(item), 1)

        for tier in sorted(by_tier, key=lambda t: -t.rank):
            group = by_tier[tier]
            for item in group:
                if total <= limit:
                    break
                chosen = item.sizing.chosen
                assert chosen is not None
                fallback = item.resize_at_fallback(chosen)
                if fallback is not None and fallback.replicas < replicas[item.name]:
                    new = max(item.min_replicas, fallback.replicas)
                    total -= (replicas[item.name] - new) * price[item.name]
                    replicas[item.name] = new
                    fell_back.add(item.name)
            # Round-robin: take from the service that has kept the largest share of what it wanted.
            heap = [(-kept(i), -rank[i.name], i) for i in group if replicas[i.name] > i.min_replicas]
            heapq.heapify(heap)
            while total > limit + 1e-9 and heap:
                _, _, victim = heapq.heappop(heap)
                replicas[victim.name] -= 1
                total -= price[victim.name]
                if replicas[victim.name] > victim.min_replicas:
                    heapq.heappush(heap, (-kept(victim), -rank[victim.name], victim))
            if total <= limit + 1e-9:
                break
        for tier in sorted(by_tier, key=lambda t: t.rank):
            # Give back to whoever kept the smallest share; a replica that does not fit now never will.
            refill = [(kept(i), rank[i.name], i) for i in by_tier[tier] if replicas[i.name] < _wanted(i)]
            heapq.heapify(refill)
            while refill:
                _, _, item = heapq.heappop(refill)
                if total + price[item.name] > limit + 1e-9:
                    continue
                replicas[item.name] += 1
                total += price[item.name]
                if replicas[item.name] < _wanted(item):
                    heapq.heappush(refill, (kept(item), rank[item.name], item))
    over = limit is not None and total > limit + 1e-9
    outcomes: dict[str, BudgetOutcome] = {}
    for item in items:
        count = replicas[item.name]
        cost = count * price[item.name]
        option = item.sizing.chosen
        if count < _wanted(item):
            how = "sized for the fallback quantile, then " if item.name in fell_back else ""
            message = f"budget ({cap.note}) binds: {how}{count} of {_wanted(item)} replicas" + (
                "; still above the cap only to keep min_replicas" if over else ""
            )
            risk = _at_risk(item.sizing, option, count)
            outcomes[item.name] = BudgetOutcome(item.sizing, count, cost, Reason.LIMITED_BY_BUDGET, message, risk)
        else:
            note = f"within budget ({cap.note})" + ("; above the cap only to keep min_replicas" if over else "")
            outcomes[item.name] = BudgetOutcome(item.sizing, count, cost, None, note, ())
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
