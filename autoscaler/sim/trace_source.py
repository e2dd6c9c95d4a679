"""A trace replayed as a live metrics source: `fleetscale run --metrics replay`.

The trace's time 0 is the moment `start`; at `now`, each service reports what a metrics query over the last
`window_s` would: the requests that arrived in (now - window_s, now] per second, their prompt and output tokens per
second, and the count of requests since the start (the counter the loop turns into per-tick rates). Nothing is
served: this is the demand side only; the fleet is whatever the actuator makes it (`autoscaler/dry_run.py`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime

from autoscaler.config import Service
from autoscaler.model import require_aware
from autoscaler.ports import RateSample, ServiceMetrics
from autoscaler.sim.fleet import ServiceRequests


class _Replay:
    def __init__(self, requests: ServiceRequests) -> None:
        self.arrival_s = requests.arrival_s
        # Prefix sums: the tokens of any range of arrivals in O(1).
        self.input_before = [0, *itertools.accumulate(requests.input_tokens)]
        self.output_before = [0, *itertools.accumulate(requests.output_tokens)]

    def window(self, start_s: float, end_s: float) -> tuple[int, int, int]:
        """(requests, input tokens, output tokens) that arrived in (start_s, end_s]."""
        lo = bisect.bisect_right(self.arrival_s, start_s)
        hi = bisect.bisect_right(self.arrival_s, end_s)
        return hi - lo, self.input_before[hi] - self.input_before[lo], self.output_before[hi] - self.output_before[lo]

    def arrived(self, at_s: float) -> int:
        return bisect.bisect_right(self.arrival_s, at_s)


class TraceMetricsSource:
    """The `MetricsSource` of a replay (see the module docstring)."""

    def __init__(self, requests: Mapping[str, ServiceRequests], start: datetime, window_s: float = 60.0) -> None:
        self.start = require_aware(start, "TraceMetricsSource(start)")
        self.window_s = window_s
        self.replays = {name: _Replay(reqs) for name, reqs in requests.items()}
        self.end_s = max((reqs.arrival_s[-1] for reqs in requests.values() if reqs.arrival_s), default=0.0)

    def offset_s(self, now: datetime) -> float:
        return (now - self.start).total_seconds()

    def finished(self, now: datetime) -> bool:
        """Whether the trace has no arrival left after `now`."""
        return self.offset_s(now) > self.end_s

    def observe(self, services: Sequence[Service], now: datetime) -> Mapping[str, ServiceMetrics]:
        offset = self.offset_s(now)
        span = min(self.window_s, max(offset, 0.0))
        result = {}
        for service in services:
            replay = self.replays.get(service.name)
            if replay is None or span <= 0:
                continue  # no trace for it, or nothing has been replayed yet: no data (the service holds)
            count, tokens_in, tokens_out = replay.window(offset - span, offset)
            result[service.name] = ServiceMetrics(
                sampled_at=now,
                request_rps=count / span,
                input_tokens_per_s=tokens_in / span,
                output_tokens_per_s=tokens_out / span,
                requests_total=float(replay.arrived(offset)),
            )
        return result

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        return ()  # before the replay started there was no traffic to remember
