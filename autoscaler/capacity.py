"""Latency of one replica under load, and its capacity at an SLO.

This is the "under load" half of the performance model (`perf.py` gives the step times). The engine it describes
is the one the simulator runs (`autoscaler/sim/replica.py`): requests arrive at rate lambda, wait in one FIFO
queue, and get a prefill iteration of their own, which has priority over decode steps (vLLM's default scheduling
without chunked prefill); between prefills the engine runs decode steps for all running sequences. Each request
holds a slot (and its KV tokens) from prefill to its last token.

Prompt and output lengths are either all at their means or exponential around them (`LengthSpread`; real
traffic and the replay's rate series are the latter). With prefill times s (mean E[s] over the prompt lengths)
and utilisation rho = lambda * E[s]:

- TPOT: a decode step of b sequences takes t(b); prefills interleave, so the mean time per token is
  tau = t(b) / (1 - rho) with b = lambda * (E[O] - 1) * tau (Little's law), solved as a fixed point. A request's
  own time per token adds the prefills that interrupt its O - 1 steps, a branching count of arrivals whose
  prompts vary; the share of requests over the bound is averaged over the output lengths (`_tpot_miss_share`).
- TTFT: the prefill queue waits like an M/D/1 queue whose server takes "vacations" (decode steps) when idle: the
  M/D/1 wait plus the residual of a decode step (Fuhrmann-Cooper decomposition), stretched by ca^2 + cs^2 for
  arrivals and prefill times that vary (Kingman); TTFT = wait + the request's own prefill, averaged over the
  prompt lengths. The M/D/1 wait distribution comes from the Pollaczek-Khinchine series, solved on a grid; far in
  the tail the Cramer-Lundberg asymptote takes over.
- Concurrency: a request holds a slot for H = E[s] + (E[O] - 1) * tau; with c slots a request may wait for one
  (Erlang C), and for KV room, which it reserves for its prompt and output (Hayward's equivalent servers,
  `_KvRoom`); that wait adds to the TTFT tail.

The SLO holds at lambda when the shares of requests missing on TPOT, on the prefill queue and on a slot add up to
at most 1 - quantile: `quantile` is the share of requests within both bounds, which is what the replay's SLO
attainment counts. capacity_at_slo is the highest such lambda, by bisection (each share grows with lambda). With
n replicas behind a least-loaded router each sees smoother arrivals than Poisson (`arrival_cv2_behind_router`), so
each sustains more; behind round robin or a random pick (`Routing`), each is a lone replica.

tests/unit/test_capacity.py checks it against brute-force simulations of the same engine: within 5 % with equal
lengths; with exponential lengths the share missing at capacity is within 1.35x of the allowed one, and a fleet at
its pooled capacity holds the SLO behind the replay's least-loaded router (and behind the others, the lone capacity).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from autoscaler.perf import ReplicaProfile

_GRID_POINTS_PER_SERVICE = 24
_MAX_GRID_POINTS = 3000


class LengthSpread(StrEnum):
    """How prompt and output lengths vary around their means."""

    # Exponential (rounded, at least 1 token): the spread of chat and completion traffic, and what the replay
    # draws for rate series (autoscaler/sim/workload.py).
    EXPONENTIAL = "exponential"
    FIXED = "fixed"  # every request has the mean lengths (synthetic benchmarks)


@dataclass(frozen=True, slots=True)
class TokenMix:
    """Mean prompt and output tokens per request, and how the lengths spread around them."""

    mean_input_tokens: float
    mean_output_tokens: float
    lengths: LengthSpread = LengthSpread.EXPONENTIAL

    @property
    def tokens_per_request(self) -> float:
        return self.mean_input_tokens + self.mean_output_tokens

    def bucketed(self) -> TokenMix:
        """The mix rounded to 2 significant digits, so that observed mixes share cached capacities."""
        return TokenMix(_two_digits(self.mean_input_tokens), _two_digits(self.mean_output_tokens), self.lengths)


def _two_digits(x: float) -> float:
    if x <= 0:
        return 0.0
    return round(x, 1 - math.floor(math.log10(x)))


class Routing(StrEnum):
    """How the router in front of a service's replicas spreads its requests (`arrival_cv2_behind_router`)."""

    # To the replica with the fewest requests in flight, or the better of two picked at random: Ray Serve, LLM
    # gateways (the Gateway API inference extension, vLLM's router), Envoy's least-request; the replay's router.
    LEAST_LOADED = "least_loaded"
    ROUND_ROBIN = "round_robin"  # each replica in turn: kube-proxy in IPVS mode (rr), Envoy's round robin
    RANDOM = "random"  # a replica at random: a plain Kubernetes Service through kube-proxy in iptables mode

    @property
    def pools(self) -> bool:
        """Whether n replicas behind it each sustain more than a lone one (only a router that sees load)."""
        return self is Routing.LEAST_LOADED


@dataclass(frozen=True, slots=True)
class LatencySlo:
    """p-quantile bounds on time to first token and time per output token, in seconds."""

    ttft_s: float
    tpot_s: float
    quantile: float = 0.95


class Binding(StrEnum):
    """What limits a replica's capacity."""

    TTFT = "ttft_p95_s"
    TPOT = "tpot_p95_s"
    CONCURRENCY = "concurrency"
    PREFILL = "prefill_throughput"


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    """Predicted behaviour of one replica at `arrival_rps`."""

    arrival_rps: float
    stable: bool
    ttft_s: float
    tpot_s: float
    mean_batch: float
    prefill_utilization: float
    slots_needed: float
    slots: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """Capacity at SLO of one replica: the rate it sustains, what binds it, and the latency there."""

    rps: float
    binding: Binding
    at_capacity: LatencyEstimate
    reason: str = ""


# Output lengths up to this are weighted one by one (a short answer's TPOT is the most sensitive to its length);
# longer ones by equal-probability points of the exponential tail, which is again exponential past the cut.
_EXACT_OUTPUT_LENGTHS = 32
_TAIL_POINTS = 24
_PROMPT_POINTS = 48


@functools.lru_cache(maxsize=4096)
def _length_points(mean: float, lengths: LengthSpread) -> tuple[tuple[float, float], ...]:
    """(length, probability) points of the token-length distribution with this mean."""
    if lengths is LengthSpread.FIXED or mean <= 1.0:
        return ((max(mean, 1.0), 1.0),)
    points = []
    for length in range(1, _EXACT_OUTPUT_LENGTHS + 1):
        # round(max(1, X)) == length, X exponential with this mean
        low = 0.0 if length == 1 else length - 0.5
        points.append((float(length), math.exp(-low / mean) - math.exp(-(length + 0.5) / mean)))
    cut = _EXACT_OUTPUT_LENGTHS + 0.5
    tail = math.exp(-cut / mean)
    points.extend(
        (cut - mean * math.log(1.0 - (j + 0.5) / _TAIL_POINTS), tail / _TAIL_POINTS) for j in range(_TAIL_POINTS)
    )
    return tuple(points)


@dataclass(frozen=True, slots=True)
class _Lengths:
    """What the length distribution means for one profile: prefill times over the prompts (equal-weight points),
    and the moments the KV room needs (`_KvRoom`)."""

    prefill_times_s: tuple[float, ...]
    mean_s: float
    second_moment_s2: float
    # E[I], E[I^2], E[I s], E[I^2 s] over prompts; E[O], E[O^2], E[O - 1], E[O (O - 1)], E[O^2 (O - 1)] over outputs
    prompt: tuple[float, float, float, float]
    output: tuple[float, float, float, float, float]

    @property
    def variance_s2(self) -> float:
        return max(self.second_moment_s2 - self.mean_s * self.mean_s, 0.0)

    @property
    def prefill_cv2(self) -> float:
        """Squared coefficient of variation of one prefill's duration."""
        return self.variance_s2 / max(self.mean_s * self.mean_s, 1e-18)

    def rho(self, arrival_rps: float) -> float:
        return arrival_rps * self.mean_s


@functools.lru_cache(maxsize=4096)
def _lengths(profile: ReplicaProfile, mix: TokenMix) -> _Lengths:
    if mix.lengths is LengthSpread.FIXED:
        prompts = [mix.mean_input_tokens]
    else:
        prompts = [
            max(1.0, -mix.mean_input_tokens * math.log(1.0 - (j + 0.5) / _PROMPT_POINTS)) for j in range(_PROMPT_POINTS)
        ]
    times = [profile.prefill_ms(i) / 1000.0 for i in prompts]
    count = len(prompts)
    prompt = (
        sum(prompts) / count,
        sum(i * i for i in prompts) / count,
        sum(i * t for i, t in zip(prompts, times, strict=True)) / count,
        sum(i * i * t for i, t in zip(prompts, times, strict=True)) / count,
    )
    points = _length_points(mix.mean_output_tokens, mix.lengths)
    output = (
        sum(w * o for o, w in points),
        sum(w * o * o for o, w in points),
        sum(w * (o - 1.0) for o, w in points),
        sum(w * o * (o - 1.0) for o, w in points),
        sum(w * o * o * (o - 1.0) for o, w in points),
    )
    mean_s = sum(times) / count
    return _Lengths(tuple(times), mean_s, sum(t * t for t in times) / count, prompt, output)


def _tpot_miss_share(
    profile: ReplicaProfile,
    arrival_rps: float,
    mix: TokenMix,
    lengths: _Lengths,
    tau: float,
    tpot_s: float,
    arrival_cv2: float,
) -> float:
    """The share of requests whose time per output token exceeds `tpot_s` (1.0 where decode cannot keep up), with
    `tau` the mean time per token at this rate (`_decode_fixed_point`).

    A request of O output tokens decodes in O - 1 steps, interrupted by prefills (they have priority): those
    already queued when its own prefill ends (the M/G/1 number in system, L = rho + lambda^2 E[s^2] / (2 (1 - rho)))
    and those of arrivals during its steps (Poisson, mean lambda * (O - 1) * t(b)). Every arrival also stretches
    the request: its prefill takes s, and its decoding makes later steps c longer each. So one extra arrival
    brings, on average, rho_total = lambda * (s + c * (O - 1)) more: a branching process, whose count N has mean
    seeds / (1 - rho_total) and variance seeds * rho_total / (1 - rho_total)^3 + Var(seeds) / (1 - rho_total)^2.
    The time they add, Y, is a sum of N costs of varying size (prompts vary), taken as gamma with that mean and
    variance. The mean time per token over all requests is the fixed point tau (interruptions at the mean rate
    included), so a request of O tokens misses when Y exceeds its mean by more than (target - tau) (O - 1), less
    the queued prefills' time that tau leaves out.

    The share is averaged over the output-length distribution (`LengthSpread`): a short answer spreads one
    long prefill over a few tokens, which is where most misses come from; a request of one output token has no
    time per output token and never misses on it.
    """
    rho = lengths.rho(arrival_rps)
    mean_steps = max(mix.mean_output_tokens - 1, 0.0)
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    batch = arrival_rps * mean_steps * tau
    step_s = profile.decode_step_ms(max(batch, 1.0), context) / 1000.0
    slope_s = (profile.decode_step_ms(batch + 1.0, context) - profile.decode_step_ms(batch, context)) / 1000.0
    rho_total = rho + arrival_rps * slope_s * mean_steps
    if rho_total >= 1.0:
        return 1.0
    queued = rho + rho * rho * (arrival_cv2 + lengths.prefill_cv2) / (2.0 * (1.0 - rho))
    progeny_mean = 1.0 / (1.0 - rho_total)
    progeny_var = arrival_cv2 * rho_total / (1.0 - rho_total) ** 3
    # Each counted arrival costs this request, on average, its prefill plus its share of longer steps; only the
    # prefill part varies from one arrival to the next.
    share_prefill = rho / max(rho_total, 1e-12)
    cost_s = (lengths.mean_s * rho + slope_s * mean_steps * (rho_total - rho)) / max(rho_total, 1e-12)
    cost_var = lengths.variance_s2 * share_prefill
    miss = 0.0
    for outputs, weight in _length_points(mix.mean_output_tokens, mix.lengths):
        steps = outputs - 1.0
        if steps < 0.5:
            continue
        during = arrival_rps * steps * step_s
        seeds_mean = queued + during
        seeds_var = queued * (1.0 + queued) + arrival_cv2 * during
        count_mean = seeds_mean * progeny_mean
        count_var = seeds_mean * progeny_var + seeds_var * progeny_mean**2
        added_mean = count_mean * cost_s
        added_var = count_var * cost_s * cost_s + count_mean * cost_var
        slack_s = (tpot_s - tau) * steps - queued * lengths.mean_s
        miss += weight * _gamma_tail(added_mean, added_var, added_mean + slack_s)
    return miss


def _tpot_quantile(
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, quantile: float, arrival_cv2: float
) -> float:
    """The time per output token that a share `quantile` of requests stays within (for reports)."""
    lengths = _lengths(profile, mix)
    tau = _decode_fixed_point(profile, arrival_rps, mix, lengths.rho(arrival_rps))
    if tau is None:
        return math.inf
    lo, hi = 0.0, profile.decode_step_ms(1.0, mix.mean_input_tokens) / 1000.0
    while _tpot_miss_share(profile, arrival_rps, mix, lengths, tau, hi, arrival_cv2) > 1.0 - quantile:
        hi *= 2.0
        if hi > 1e3:
            return math.inf
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if _tpot_miss_share(profile, arrival_rps, mix, lengths, tau, mid, arrival_cv2) > 1.0 - quantile:
            lo = mid
        else:
            hi = mid
    return hi


def _gamma_tail(mean: float, variance: float, x: float) -> float:
    """P(X > x) for X gamma with this mean and variance (Wilson-Hilferty approximation)."""
    if x <= 0.0:
        return 1.0
    if mean <= 0.0 or variance <= 0.0:
        return 1.0 if x < mean else 0.0
    shape = mean * mean / variance
    spread = 1.0 / (3.0 * math.sqrt(shape))
    z = ((x / mean) ** (1.0 / 3.0) - (1.0 - spread * spread)) / spread
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _decode_fixed_point(profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, rho: float) -> float | None:
    """Mean seconds per output token (tau) with prefill interruptions; None if decode cannot keep up."""
    steps = mix.mean_output_tokens - 1
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    if steps <= 0:
        return 0.0
    limit_batch = 20.0 * profile.max_num_seqs
    tau = profile.decode_step_ms(1.0, context) / 1000.0 / (1.0 - rho)
    for _ in range(500):
        batch = arrival_rps * steps * tau
        if batch > limit_batch:
            return None
        new_tau = profile.decode_step_ms(max(batch, 1.0), context) / 1000.0 / (1.0 - rho)
        if abs(new_tau - tau) <= 1e-9 * tau:
            return new_tau
        tau = new_tau
    return None


def _md1_wait_plus_residual_cdf(rho: float, service_s: float, residual_s: float, x: float) -> float:
    """P(W + V <= x): W the M/D/1 wait (load rho, service time service_s), V ~ Uniform(0, residual_s)."""
    return _md1_wait_plus_residual_cdfs(rho, service_s, residual_s, (x,))[0]


def _md1_wait_plus_residual_cdfs(rho: float, service_s: float, residual_s: float, xs: Sequence[float]) -> list[float]:
    """P(W + V <= x) for each x of `xs`, from one grid."""
    if rho <= 0:
        return [0.0 if x < 0 else 1.0 if residual_s <= 0 else min(1.0, x / residual_s) for x in xs]
    grid_end = _MAX_GRID_POINTS * service_s / _GRID_POINTS_PER_SERVICE
    h = service_s / _GRID_POINTS_PER_SERVICE
    m = _GRID_POINTS_PER_SERVICE
    on_grid = [x for x in xs if 0 <= x <= grid_end]
    n = math.ceil(max(on_grid, default=0.0) / h) + 1
    # F(u) = (1 - rho) + (rho / D) * integral_{u-D}^{u} F;  S = running integral of F (trapezoid).
    f_prev = 1.0 - rho
    cumulative = [0.0]
    f_values = [f_prev]
    k = rho / service_s
    implicit = 1.0 - k * h / 2.0
    for i in range(1, n + 1):
        lagged = cumulative[i - m] if i >= m else 0.0
        base = cumulative[i - 1] + h * f_prev / 2.0 - lagged
        f_i = min(1.0, ((1.0 - rho) + k * base) / implicit)
        cumulative.append(cumulative[i - 1] + h * (f_prev + f_i) / 2.0)
        f_values.append(f_i)
        f_prev = f_i

    def integral_to(u: float) -> float:
        if u <= 0:
            return 0.0
        pos = u / h
        i = min(int(pos), n - 1)
        frac = pos - i
        # Integrate the linear interpolation of F over the partial cell.
        f_mid = f_values[i] + (f_values[i + 1] - f_values[i]) * frac
        return cumulative[i] + h * frac * (f_values[i] + f_mid) / 2.0

    def cdf(x: float) -> float:
        if x < 0:
            return 0.0
        if x > grid_end:
            return _md1_tail_cdf(rho, service_s, max(0.0, x - residual_s))
        if residual_s <= 0:
            pos = x / h
            i = min(int(pos), n - 1)
            return f_values[i] + (f_values[i + 1] - f_values[i]) * (pos - i)
        return (integral_to(x) - integral_to(x - residual_s)) / residual_s

    return [cdf(x) for x in xs]


def _md1_tail_cdf(rho: float, service_s: float, x: float) -> float:
    """Cramer-Lundberg asymptote of the M/D/1 wait: P(W > x) ~ C exp(-theta x).

    With y = theta * D, y > 0 solves rho * (exp(y) - 1) = y, and C = (1 - rho) / (rho * exp(y) - 1). The root lies
    between 0 and 2 * ln(1 / rho) + 2 (where the left side already exceeds the right), so bisection finds it for
    any load without overflow.
    """
    high = 2.0 * math.log(1.0 / rho) + 2.0
    low = 0.0
    for _ in range(100):
        middle = (low + high) / 2.0
        if rho * math.expm1(middle) > middle:
            high = middle
        else:
            low = middle
    y = (low + high) / 2.0
    constant = (1.0 - rho) / (rho * math.exp(y) - 1.0)
    return 1.0 - min(1.0, constant * math.exp(-y * x / service_s))


def predict_latency(
    profile: ReplicaProfile,
    arrival_rps: float,
    mix: TokenMix,
    quantile: float = 0.95,
    replicas: int = 1,
    routing: Routing = Routing.LEAST_LOADED,
) -> LatencyEstimate:
    """Predicted p-quantile TTFT and TPOT of one of `replicas` replicas at `arrival_rps` each, behind `routing`."""
    arrival_cv2 = arrival_cv2_behind_router(replicas, routing)
    lengths = _lengths(profile, mix)
    prefill_s = lengths.mean_s
    slots = profile.max_concurrency(mix.tokens_per_request)
    rho = lengths.rho(arrival_rps)
    tau = _decode_fixed_point(profile, arrival_rps, mix, rho) if rho < 1 else None
    if tau is None or slots == 0:
        return LatencyEstimate(arrival_rps, False, math.inf, math.inf, math.inf, rho, math.inf, slots)
    steps = max(mix.mean_output_tokens - 1, 0.0)
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    tpot = _tpot_quantile(profile, arrival_rps, mix, quantile, arrival_cv2)
    slots_needed = arrival_rps * (prefill_s + steps * tau)
    # the slot wait is left out here
    ttft = prefill_s + _wait_spread(lengths, arrival_cv2) * _quantile_of_wait(rho, prefill_s, step_s, quantile)
    return LatencyEstimate(arrival_rps, True, ttft, tpot, batch, rho, slots_needed, slots)


def _wait_spread(lengths: _Lengths, arrival_cv2: float) -> float:
    """How much longer the prefill queue's waits are than the M/D/1 queue's (Poisson arrivals, equal prompts).

    The GI/G/1 mean wait is about the M/D/1 one times ca^2 + cs^2 (Kingman; ca and cs the coefficients of
    variation of interarrival and prefill times; exact for M/G/1 by Pollaczek-Khinchine). The whole wait
    distribution is stretched by that factor, a common approximation that keeps the M/D/1 solver.
    """
    return arrival_cv2 + lengths.prefill_cv2


def _quantile_of_wait(rho: float, service_s: float, residual_s: float, quantile: float) -> float:
    """The quantile of W + V by bisection on its CDF (used for reporting, not in the capacity search)."""
    lo, hi = 0.0, max(service_s, residual_s)
    while _md1_wait_plus_residual_cdf(rho, service_s, residual_s, hi) < quantile:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if _md1_wait_plus_residual_cdf(rho, service_s, residual_s, mid) >= quantile:
            hi = mid
        else:
            lo = mid
    return hi


def _violation(
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, slo: LatencySlo, arrival_cv2: float
) -> Binding | None:
    """The SLO condition that binds at `arrival_rps`, or None if a share `slo.quantile` of requests meets both
    bounds (the shares that miss on TPOT, on the prefill queue and on a slot are added: a request may miss on
    more than one, so the sum errs on the safe side)."""
    lengths = _lengths(profile, mix)
    prefill_s = lengths.mean_s
    rho = lengths.rho(arrival_rps)
    if rho >= 1:
        return Binding.PREFILL
    tau = _decode_fixed_point(profile, arrival_rps, mix, rho)
    if tau is None:
        return Binding.TPOT
    steps = max(mix.mean_output_tokens - 1, 0.0)
    holding_s = prefill_s + steps * tau
    room = _KvRoom.of(profile, lengths, arrival_rps, tau)
    if arrival_rps * holding_s >= profile.max_num_seqs or room.offered >= room.servers:
        return Binding.CONCURRENCY
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    allowed = 1.0 - slo.quantile
    tpot_tail = _tpot_miss_share(profile, arrival_rps, mix, lengths, tau, slo.tpot_s, arrival_cv2)
    if tpot_tail > allowed:
        return Binding.TPOT
    # Each request's own prefill (its prompt's) comes after the wait, which does not depend on it.
    spread = _wait_spread(lengths, arrival_cv2)
    waits = [(slo.ttft_s - own_s) / spread for own_s in lengths.prefill_times_s]
    prefill_tail = 1.0 - sum(_md1_wait_plus_residual_cdfs(rho, prefill_s, step_s, waits)) / len(waits)
    slack = slo.ttft_s - prefill_s
    slot_tail = max(
        _erlang_wait_tail(arrival_rps * holding_s, profile.max_num_seqs, holding_s, slack),
        _erlang_wait_tail(room.offered, room.servers, holding_s, slack),
    )
    if tpot_tail + prefill_tail + slot_tail > allowed:
        return max((tpot_tail, Binding.TPOT), (prefill_tail, Binding.TTFT), (slot_tail, Binding.CONCURRENCY))[1]
    return None


@dataclass(frozen=True, slots=True)
class _KvRoom:
    """The KV cache as servers of a queue, by Hayward's approximation for requests of varying size.

    The engine reserves each request's prompt and output tokens from admission to its last token. The tokens
    reserved at a random moment (infinitely many servers) have mean m = lambda E[size H] and variance
    v = lambda E[size^2 H]: their peakedness z = v / m is in tokens. Hayward's approximation serves that traffic as
    m / z offered load on (KV tokens) / z servers of the mean holding time. With equal lengths z is the request's
    size, and this is the slot count and load of one-size requests.
    """

    offered: float
    servers: int

    @staticmethod
    def of(profile: ReplicaProfile, lengths: _Lengths, arrival_rps: float, tau: float) -> _KvRoom:
        i1, i2, i1_s, i2_s = lengths.prompt
        o1, o2, d0, d1, d2 = lengths.output
        s = lengths.mean_s
        size_time = i1_s + i1 * d0 * tau + s * o1 + d1 * tau
        size2_time = i2_s + i2 * d0 * tau + 2.0 * (i1_s * o1 + i1 * d1 * tau) + s * o2 + d2 * tau
        peakedness = size2_time / max(size_time, 1e-18)
        servers = int(profile.kv_capacity_tokens.value // max(peakedness, 1.0))
        return _KvRoom(arrival_rps * size_time / max(peakedness, 1.0), servers)


def _erlang_wait_tail(offered: float, servers: int, holding_s: float, t: float) -> float:
    """P(a request waits longer than t for one of `servers`), from the M/M/c queue.

    Erlang C gives the chance to wait, and the wait's tail is exponential with rate (c - A) / H, where
    A = lambda * H servers are busy on average. Holding times vary with the prefills that interrupt a request, so
    the exponential-holding model fits the simulated engine better than the deterministic one (M/D/c).
    """
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    erlang_b = 1.0
    for k in range(1, servers + 1):
        erlang_b = offered * erlang_b / (k + offered * erlang_b)
    erlang_c = erlang_b / (1.0 - (offered / servers) * (1.0 - erlang_b))
    return erlang_c * math.exp(-(servers - offered) * max(t, 0.0) / holding_s)


def _lone_ttft_reason(profile: ReplicaProfile, mix: TokenMix, slo: LatencySlo) -> str:
    lengths = _lengths(profile, mix)
    if mix.lengths is LengthSpread.FIXED:
        mean = f"{mix.mean_input_tokens:,.0f}"
        return f"prefill of {mean} tokens takes {lengths.mean_s:.3f} s (ttft_p95_s is {slo.ttft_s:g})"
    too_long = sum(1 for t in lengths.prefill_times_s if t > slo.ttft_s) / len(lengths.prefill_times_s)
    return (
        f"{too_long:.0%} of prompts (exponential around {mix.mean_input_tokens:,.0f} tokens) take longer than "
        f"ttft_p95_s ({slo.ttft_s:g} s) to prefill alone; at most {1 - slo.quantile:.0%} of requests may miss"
    )


def arrival_cv2_behind_router(replicas: int, routing: Routing = Routing.LEAST_LOADED) -> float:
    """Squared coefficient of variation of the arrivals one of `replicas` replicas sees behind `routing`, as the
    capacity model takes it.

    Service traffic is taken as Poisson (CV 1). Behind a least-loaded router each replica is credited with the
    arrivals of round robin, every n-th one: an Erlang-n renewal stream, CV^2 = 1/n. That router also steers
    around replicas busy with long requests, so the credit is on its safe side (in the replay, four or eight
    replicas at n x C(n) meet the SLO). Round robin itself gets no credit: its arrivals are that smooth, but it
    deals long and short requests blindly, and at n x C(n) with exponential lengths four replicas missed 8.9 % of
    requests where 5 % was allowed. A router that picks at random splits the Poisson stream into n Poisson streams
    (CV^2 = 1). Behind either, n replicas are n lone ones.
    """
    return 1.0 / max(replicas, 1) if routing.pools else 1.0


def capacity_at_slo(
    profile: ReplicaProfile,
    slo: LatencySlo,
    mix: TokenMix,
    replicas: int = 1,
    routing: Routing = Routing.LEAST_LOADED,
) -> Capacity:
    """The highest arrival rate (req/s) each of `replicas` replicas sustains with a share `slo.quantile` of
    requests within both latency bounds (more replicas behind a router that balances them smooth each one's
    arrivals, see `arrival_cv2_behind_router`).

    Returns rps = 0 with the binding condition and a reason when even a lone request misses the SLO (a prompt
    whose prefill alone is longer than the TTFT bound, a decode step longer than the TPOT bound, or no slot).
    """
    return pooled_capacity(profile, slo, mix, routing).at(replicas)


class PooledCapacity:
    """Capacity at the SLO of one shape for one SLO, mix and routing, per number of replicas behind the router,
    each computed once: the cache behind `capacity_at_slo`, and the sizing's view (it asks for several counts per
    decision)."""

    __slots__ = ("_by_replicas", "_pools", "mix", "profile", "routing", "slo")

    def __init__(
        self, profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix, routing: Routing = Routing.LEAST_LOADED
    ) -> None:
        self.profile, self.slo, self.mix, self.routing = profile, slo, mix, routing
        self._pools = routing.pools  # read once: sizing asks `at` thousands of times per decision
        self._by_replicas: dict[int, Capacity] = {}

    def at(self, replicas: int) -> Capacity:
        """Each replica's capacity when there are `replicas` of them (one at least)."""
        # Behind a router blind to load every count is a lone replica's: one figure serves them all.
        replicas = max(replicas, 1) if self._pools else 1
        found = self._by_replicas.get(replicas)
        if found is None:
            found = self._by_replicas[replicas] = _capacity(self.profile, self.slo, self.mix, replicas, self.routing)
        return found

    def replicas_for(self, demand_rps: float) -> int:
        """The fewest replicas n with n x C(n) >= demand (0 for no demand). ceil(demand / C(1)) is always enough,
        as C grows with n, so the search walks down from there; it rarely takes more than one step."""
        if demand_rps <= 0:
            return 0
        single = self.at(1).rps
        if single <= 0:
            raise ValueError(f"{self.profile.model} on {self.profile.shape} cannot meet the SLO at any load")
        # 1e-9 keeps 3.0000000001 from becoming 4 through float noise in the capacity search.
        replicas = math.ceil(demand_rps / single - 1e-9)
        while replicas > 1 and (replicas - 1) * self.at(replicas - 1).rps >= demand_rps * (1 - 1e-9):
            replicas -= 1
        return replicas


@functools.lru_cache(maxsize=16384)
def pooled_capacity(
    profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix, routing: Routing = Routing.LEAST_LOADED
) -> PooledCapacity:
    """The shared `PooledCapacity` of this shape, SLO, mix and routing."""
    return PooledCapacity(profile, slo, mix, routing)


def _capacity(profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix, replicas: int, routing: Routing) -> Capacity:
    arrival_cv2 = arrival_cv2_behind_router(replicas, routing)
    prefill_s = _lengths(profile, mix).mean_s
    if profile.max_concurrency(mix.tokens_per_request) < 1:
        return Capacity(
            0.0,
            Binding.CONCURRENCY,
            predict_latency(profile, 0.0, mix, slo.quantile, replicas, routing),
            f"KV cache holds {profile.kv_capacity_tokens.value:,.0f} tokens, "
            f"less than one request of {mix.tokens_per_request:,.0f}",
        )
    tiny = 1e-6 / max(prefill_s, 1e-6)
    first = _violation(profile, tiny, mix, slo, arrival_cv2)
    if first is not None:
        lone = predict_latency(profile, tiny, mix, slo.quantile, replicas, routing)
        why = {
            Binding.TTFT: _lone_ttft_reason(profile, mix, slo),
            Binding.TPOT: f"one decode step takes {lone.tpot_s:.4f} s (tpot_p95_s is {slo.tpot_s:g})",
        }.get(first, f"{first} violated at any load")
        return Capacity(0.0, first, lone, why)
    lo, hi = tiny, 1.0 / prefill_s
    binding = Binding.PREFILL
    for _ in range(60):
        mid = (lo + hi) / 2.0
        violated = _violation(profile, mid, mix, slo, arrival_cv2)
        if violated is None:
            lo = mid
        else:
            hi = mid
            binding = violated
        if hi - lo <= 1e-4 * hi:
            break
    return Capacity(lo, binding, predict_latency(profile, lo, mix, slo.quantile, replicas, routing))
