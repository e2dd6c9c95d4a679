"""Turn loaded traces into the requests a replay serves: rate scaling and arrivals inside rate-series bins.

- A request trace at `rate_scale` k = n + f (n whole, 0 <= f < 1): the trace itself, n - 1 more copies each shifted
  in time by a seeded offset (circularly, over the trace's span), and one more copy thinned to a share f of its
  requests. Each copy keeps the trace's own bursts and token lengths; the copies are independent of each other, as
  k times more users would be. k < 1 thins the trace.
- `time_window` keeps the part of a trace between two offsets from its start (the kept part starts at 0);
  `compress_time` plays a trace k times faster (a request trace's times divided by k; a rate series' bins k times
  shorter with k times the rate), which keeps the number of requests and multiplies the rate.
- A rate series: in each bin, arrivals are a renewal process at the bin's rate with seeded Gamma inter-arrival
  times of coefficient of variation `cv` (1: Poisson); token lengths are drawn around the service's mean prompt
  and output lengths (exponential, at least 1). A bin with no data (NaN) gets no arrivals, and the caller is told
  how many there were.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

from autoscaler.series import RateSeries, RequestTrace
from autoscaler.sim.fleet import ServiceRequests


@dataclass(frozen=True, slots=True)
class Workload:
    requests: ServiceRequests
    source: str
    missing_bins: int = 0


def from_request_trace(service: str, trace: RequestTrace, rate_scale: float = 1.0, seed: int = 0) -> Workload:
    if not rate_scale > 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    if not trace.arrival_s:
        return Workload(ServiceRequests(service, [], [], []), trace.name)
    start = trace.arrival_s[0]
    span = max(trace.arrival_s[-1] - start, 1e-9)
    rng = random.Random(seed)
    whole = math.floor(rate_scale)
    rows: list[tuple[float, int, int]] = []
    base = [(t - start, i, o) for t, i, o in zip(trace.arrival_s, trace.input_tokens, trace.output_tokens, strict=True)]
    for copy in range(whole):
        offset = 0.0 if copy == 0 else rng.uniform(0.0, span)
        rows.extend(((t + offset) % span if offset else t, i, o) for t, i, o in base)
    fraction = rate_scale - whole
    if fraction > 1e-12:
        offset = rng.uniform(0.0, span) if whole else 0.0
        rows.extend(((t + offset) % span, i, o) for t, i, o in base if rng.random() < fraction)
    rows.sort()
    return Workload(
        ServiceRequests(service, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
        f"{trace.name} x{rate_scale:g}",
    )


def from_rate_series(
    service: str,
    series: RateSeries,
    mean_input_tokens: float,
    mean_output_tokens: float,
    rate_scale: float = 1.0,
    cv: float = 1.0,
    seed: int = 0,
) -> Workload:
    if not rate_scale > 0:
        raise ValueError(f"rate_scale must be > 0, got {rate_scale}")
    if not cv > 0:
        raise ValueError(f"cv must be > 0, got {cv}")
    rng = random.Random(seed)
    shape = 1.0 / (cv * cv)  # Gamma shape k with mean 1/rate: CV = 1/sqrt(k)
    arrivals: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    missing = 0
    for b, rate in enumerate(series.values):
        if math.isnan(rate):
            missing += 1
            continue
        rate *= rate_scale
        if rate <= 0:
            continue
        lo = b * series.step_s
        t = lo + rng.uniform(0.0, 1.0 / rate)  # a random phase, so that bins do not all start with an arrival
        while t < lo + series.step_s:
            arrivals.append(t)
            inputs.append(max(1, round(rng.expovariate(1.0 / mean_input_tokens))))
            outputs.append(max(1, round(rng.expovariate(1.0 / mean_output_tokens))))
            t += rng.gammavariate(shape, 1.0 / (rate * shape))
    return Workload(
        ServiceRequests(service, arrivals, inputs, outputs),
        f"{series.name} x{rate_scale:g} (arrivals generated: Gamma, CV {cv:g})",
        missing,
    )


def time_window(trace: RequestTrace | RateSeries, start_s: float, end_s: float) -> RequestTrace | RateSeries:
    """The part of `trace` from `start_s` to `end_s` after its start, shifted to start at 0."""
    if not 0 <= start_s < end_s:
        raise ValueError(f"a time window needs 0 <= start < end, got {start_s:g}..{end_s:g} s")
    if isinstance(trace, RateSeries):
        first = math.floor(start_s / trace.step_s + 1e-9)
        last = math.ceil(end_s / trace.step_s - 1e-9)
        return RateSeries(trace.name, 0.0, trace.step_s, trace.values[first:last])
    origin = trace.arrival_s[0] if trace.arrival_s else 0.0
    keep = [i for i, t in enumerate(trace.arrival_s) if start_s <= t - origin < end_s]
    return RequestTrace(
        trace.name,
        tuple(trace.arrival_s[i] - origin - start_s for i in keep),
        tuple(trace.input_tokens[i] for i in keep),
        tuple(trace.output_tokens[i] for i in keep),
        None if trace.service is None else tuple(trace.service[i] for i in keep),
    )


def compress_time(trace: RequestTrace | RateSeries, factor: float) -> RequestTrace | RateSeries:
    """`trace` played `factor` times faster."""
    if not factor > 0:
        raise ValueError(f"time compression must be > 0, got {factor}")
    if isinstance(trace, RateSeries):
        values = tuple(v * factor for v in trace.values)
        return RateSeries(trace.name, trace.start_s / factor, trace.step_s / factor, values)
    arrivals = tuple(t / factor for t in trace.arrival_s)
    return RequestTrace(trace.name, arrivals, trace.input_tokens, trace.output_tokens, trace.service)


def with_warmup(requests: ServiceRequests, warmup_s: float) -> ServiceRequests:
    """`requests` preceded by a copy of their own last `warmup_s` seconds, which the replay runs but does not
    score: every policy then enters the trace as if it had been running, instead of from an empty history at a
    quiet first minute (the trace is taken as cyclic, the usual assumption for a warm-up)."""
    if warmup_s <= 0 or not requests.arrival_s:
        return requests
    end = requests.arrival_s[-1]
    take = min(warmup_s, max(end, 1e-9))
    first = bisect.bisect_left(requests.arrival_s, end - take)
    arrivals = [t - (end - take) for t in requests.arrival_s[first:]] + [t + take for t in requests.arrival_s]
    # The copied tail ends where the trace begins: keep it strictly before time `take`.
    arrivals[: len(requests.arrival_s) - first] = [
        min(t, take - 1e-6) for t in arrivals[: len(requests.arrival_s) - first]
    ]
    return ServiceRequests(
        requests.service,
        arrivals,
        requests.input_tokens[first:] + requests.input_tokens,
        requests.output_tokens[first:] + requests.output_tokens,
        len(requests.arrival_s) - first,
    )
