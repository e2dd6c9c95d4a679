"""A replay reduced to the figures the what-if table and its JSON contract (DESIGN.md section 9) report.

Two attainments, because an SLO stated as a percentile can be read two ways:
- `slo_attainment` (per request): a request attains the SLO when it was served, its TTFT is within the service's
  `ttft_p95_s` and its TPOT within `tpot_p95_s` (a one-token answer has no TPOT and is judged on TTFT), over all
  requests, the unserved ones included (still unfinished when the replay ended);
- `window_attainment` (per minute): the share of one-minute windows of a service with requests in which the p95
  TTFT and the p95 TPOT of the requests that arrived in it are within the targets (an unserved request counts as
  an infinite TTFT), which is how a p95 SLO is usually checked on a dashboard.
Requests of a warm-up (`ServiceRequests.warmup`) are not scored: counts, attainments and percentiles leave them
out, and so do GPU-hours and cost (only what the fleet held from the end of the warm-up counts). Latency
percentiles are over served requests. GPU-hours and cost count each replica from its creation (its GPUs are held
during the cold start) to its end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from autoscaler.compiled import CompiledScenario
from autoscaler.sim.fleet import ReplayResult

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class PolicySummary:
    policy: str
    requests: int
    slo_attainment: float
    ttft_p95_s: float
    tpot_p95_s: float
    gpu_hours: float
    cost_usd: float
    scale_events: int
    unserved: int
    window_attainment: float = 1.0

    def as_json(self) -> dict[str, float | int]:
        data = asdict(self)
        del data["policy"]
        return data


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of the finite values; nan when there are none."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    return finite[min(len(finite) - 1, max(0, math.ceil(q * len(finite)) - 1))]


def summarize(result: ReplayResult, config: CompiledScenario) -> PolicySummary:
    total = met = unserved = windows = met_windows = 0
    ttfts: list[float] = []
    tpots: list[float] = []
    for name, requests in result.requests.items():
        slo = config.plans[name].service.slo
        ttft, tpot, finish = result.ttft_s[name], result.tpot_s[name], result.finish_s[name]
        by_minute: dict[int, tuple[list[float], list[float]]] = {}
        for i in range(requests.warmup, len(requests.arrival_s)):
            total += 1
            minute_ttft, minute_tpot = by_minute.setdefault(int(requests.arrival_s[i] // WINDOW_S), ([], []))
            if math.isnan(finish[i]):
                unserved += 1
                minute_ttft.append(math.inf)
                continue
            ttfts.append(ttft[i])
            minute_ttft.append(ttft[i])
            if not math.isnan(tpot[i]):
                tpots.append(tpot[i])
                minute_tpot.append(tpot[i])
            if ttft[i] <= slo.ttft_p95_s and (math.isnan(tpot[i]) or tpot[i] <= slo.tpot_p95_s):
                met += 1
        for minute_ttft, minute_tpot in by_minute.values():
            windows += 1
            tpot95 = percentile(minute_tpot, 0.95) if minute_tpot else 0.0
            met_windows += percentile(minute_ttft, 0.95) <= slo.ttft_p95_s and tpot95 <= slo.tpot_p95_s
    # The scored period starts with the first scored request (the end of the warm-up).
    start = min(
        (r.arrival_s[r.warmup] for r in result.requests.values() if r.warmup and r.warmup < len(r.arrival_s)),
        default=0.0,
    )
    held = [(max(s.created_s, start), s.end_s, s) for s in result.replica_spans if s.end_s > start]
    gpu_hours = sum((end - begin) * s.gpu_share for begin, end, s in held) / 3600.0
    cost = sum((end - begin) * s.usd_per_h for begin, end, s in held) / 3600.0
    return PolicySummary(
        result.policy,
        total,
        met / total if total else 1.0,
        percentile(ttfts, 0.95),
        percentile(tpots, 0.95),
        gpu_hours,
        cost,
        result.scale_events,
        unserved,
        met_windows / windows if windows else 1.0,
    )
