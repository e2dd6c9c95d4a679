"""GPU efficiency as SLOs: indicators measured every tick, attainment over a window, and multi-window burn rates.

Indicators (`EfficiencyIndicator`), per tick:
- busy: the mean engine activity (DCGM `DCGM_FI_PROF_GR_ENGINE_ACTIVE`, or the older utilization) of the GPUs and
  MIG instances that hold a model (framebuffer in use above `busy_min_fb_bytes`); unknown without DCGM;
- stranded: the GPU-equivalents that no demanded replica can use (free MIG instances of profiles nobody asks for,
  unlaid slices no demanded profile fits, leftovers of time-shared GPUs smaller than the smallest share asked for),
  over the fleet's GPUs, in the decision's placement of its targets;
- saturated: busy GPUs with no room for another replica, over busy GPUs, in the same placement.

A tick is good when its indicator meets the threshold, bad when it does not, and does not count when the indicator
is unknown. An objective holds when the share of good ticks over its window is at least `objective`; its error
budget is the rest. The burn rate over a lookback is the share of bad ticks there over the budget: 1 spends the
budget exactly over the window. As the SRE workbook does for latency SLOs, two pairs of lookbacks decide: the budget
burns fast when the burn rate exceeds 14.4 over both 1 h and 5 min (2 % of a 30-day budget in an hour), slowly when
it exceeds 6 over both 6 h and 30 min. (`fleetscale render alerts` writes the same rules for Prometheus.)

The tick counts are kept in the policy state as a ledger of buckets: a minute each for the last 6 hours (the burn
rates) and an hour each beyond (the window's attainment), so a restart keeps them and the state stays small.
Pure: ledger in, ledger out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from autoscaler.config import Efficiency, EfficiencyIndicator, EfficiencyObjective
from autoscaler.model import GpuTelemetry
from autoscaler.placement.fragmentation import Fragmentation

FINE_S = 60.0
COARSE_S = 3600.0
FINE_SPAN_S = 6 * 3600.0

# (name, long lookback, short lookback, burn-rate threshold): the SRE workbook's multiwindow, multi-burn-rate alerts.
FAST_BURN = ("fast", 3600.0, 300.0, 14.4)
SLOW_BURN = ("slow", 6 * 3600.0, 1800.0, 6.0)
LOOKBACKS_S = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 6 * 3600.0}


@dataclass(frozen=True, slots=True)
class Ledger:
    """Good and bad ticks of one objective, in buckets: (bucket start, good, bad), oldest first; minute buckets
    for the last 6 hours, hour buckets before."""

    fine: tuple[tuple[float, int, int], ...] = ()
    coarse: tuple[tuple[float, int, int], ...] = ()

    def record(self, now_s: float, good: bool | None, window_s: float) -> Ledger:
        """The ledger with this tick counted (`good` None: unknown, not counted), old buckets rolled up or
        dropped."""
        fine = list(self.fine)
        coarse = list(self.coarse)
        if good is not None:
            start = math.floor(now_s / FINE_S) * FINE_S
            if fine and fine[-1][0] == start:
                at, g, b = fine[-1]
                fine[-1] = (at, g + good, b + (not good))
            else:
                fine.append((start, int(good), int(not good)))
        while fine and fine[0][0] < now_s - FINE_SPAN_S:
            at, g, b = fine.pop(0)
            hour = math.floor(at / COARSE_S) * COARSE_S
            if coarse and coarse[-1][0] == hour:
                _, cg, cb = coarse[-1]
                coarse[-1] = (hour, cg + g, cb + b)
            else:
                coarse.append((hour, g, b))
        coarse = [c for c in coarse if c[0] >= now_s - window_s - COARSE_S]
        return Ledger(tuple(fine), tuple(coarse))

    def counts(self, now_s: float, lookback_s: float) -> tuple[int, int]:
        """(good, bad) ticks in the last `lookback_s` (whole buckets; hour buckets beyond the fine span)."""
        since = now_s - lookback_s
        good = bad = 0
        # Within the fine span the minute buckets alone answer; an hour bucket would add up to an hour more.
        for buckets in (self.fine,) if lookback_s <= FINE_SPAN_S else (self.fine, self.coarse):
            for at, g, b in buckets:
                if at >= since - (FINE_S if buckets is self.fine else COARSE_S) + 1e-9:
                    good += g
                    bad += b
        return good, bad


@dataclass(frozen=True, slots=True)
class ObjectiveStatus:
    """One objective this tick: the indicator's value (None: unknown), whether the tick was good, the attainment
    over the window, the burn rate per lookback, and whether the budget burns fast or slowly."""

    name: str
    indicator: EfficiencyIndicator
    threshold: float
    objective: float
    value: float | None
    good: bool | None
    attainment: float | None
    burn_rates: Mapping[str, float]
    burning: str | None  # "fast", "slow" or None

    def sentence(self) -> str:
        op = ">=" if self.indicator.higher_is_better else "<="
        value = "unknown" if self.value is None else f"{self.value:.1%}"
        attained = "no ticks yet" if self.attainment is None else f"{self.attainment:.2%} of ticks"
        burn = f"; burning {self.burning} ({self.burn_rates.get('1h', 0):.1f}x over 1 h)" if self.burning else ""
        return (
            f"efficiency {self.name}: {self.indicator} {value} (objective {op} {self.threshold:.0%} in "
            f"{self.objective:.0%} of ticks; {attained}){burn}"
        )


def indicators(
    fragmentation: Fragmentation | None, gpus: Sequence[GpuTelemetry] | None, settings: Efficiency
) -> dict[EfficiencyIndicator, float | None]:
    """This tick's value of every indicator (None where it cannot be measured)."""
    busy: float | None = None
    if gpus:
        holding = [
            g.engine_active
            for g in gpus
            if g.engine_active is not None and (g.fb_used_bytes or 0.0) > settings.busy_min_fb_bytes
        ]
        busy = sum(holding) / len(holding) if holding else None
    if fragmentation is None:
        return {EfficiencyIndicator.BUSY: busy, EfficiencyIndicator.STRANDED: None, EfficiencyIndicator.SATURATED: None}
    return {
        EfficiencyIndicator.BUSY: busy,
        EfficiencyIndicator.STRANDED: fragmentation.stranded_ratio if fragmentation.fleet_gpus else None,
        EfficiencyIndicator.SATURATED: fragmentation.saturated_ratio if fragmentation.busy_gpus else None,
    }


def _good(objective: EfficiencyObjective, value: float | None) -> bool | None:
    if value is None:
        return None
    if objective.indicator.higher_is_better:
        return value >= objective.threshold
    return value <= objective.threshold


def burn_rate(ledger: Ledger, now_s: float, lookback_s: float, objective: float) -> float:
    good, bad = ledger.counts(now_s, lookback_s)
    total = good + bad
    return 0.0 if total == 0 else (bad / total) / (1.0 - objective)


def burning(ledger: Ledger, now_s: float, objective: float) -> str | None:
    """ "fast", "slow" or None, by the two pairs of lookbacks (module docstring)."""
    for name, long_s, short_s, threshold in (FAST_BURN, SLOW_BURN):
        long_rate = burn_rate(ledger, now_s, long_s, objective)
        short_rate = burn_rate(ledger, now_s, short_s, objective)
        if long_rate > threshold and short_rate > threshold:
            return name
    return None


def update(
    objectives: Iterable[EfficiencyObjective],
    values: Mapping[EfficiencyIndicator, float | None],
    ledgers: Mapping[str, Ledger],
    now_s: float,
) -> tuple[tuple[ObjectiveStatus, ...], dict[str, Ledger]]:
    """Count this tick for every objective; their statuses and the new ledgers."""
    statuses = []
    new: dict[str, Ledger] = {}
    for objective in objectives:
        value = values.get(objective.indicator)
        good = _good(objective, value)
        ledger = ledgers.get(objective.name, Ledger()).record(now_s, good, objective.window_s)
        new[objective.name] = ledger
        g, b = ledger.counts(now_s, objective.window_s)
        rates = {name: burn_rate(ledger, now_s, s, objective.objective) for name, s in LOOKBACKS_S.items()}
        statuses.append(
            ObjectiveStatus(
                objective.name,
                objective.indicator,
                objective.threshold,
                objective.objective,
                value,
                good,
                None if g + b == 0 else g / (g + b),
                rates,
                burning(ledger, now_s, objective.objective),
            )
        )
    return tuple(statuses), new


def stranding_burns(objectives: Iterable[EfficiencyObjective], ledgers: Mapping[str, Ledger], now_s: float) -> bool:
    """Whether a `stranded` objective burns its budget, fast or slowly (the placement's cue to consolidate: an
    objective of 90 % can never burn 14.4x, so waiting for a fast burn would wait forever)."""
    return any(
        o.indicator is EfficiencyIndicator.STRANDED
        and o.name in ledgers
        and burning(ledgers[o.name], now_s, o.objective) is not None
        for o in objectives
    )
