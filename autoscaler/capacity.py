"""Latency of one replica under load, and its capacity at an SLO.

This is the "under load" half of the performance model (`perf.py` gives the step times). The engine it describes
is the one the simulator runs (`autoscaler/sim/replica.py`): requests arrive as a Poisson stream of rate
lambda, wait in one FIFO queue, and get a prefill iteration of their own, which has priority over decode steps
(vLLM's default scheduling without chunked prefill); between prefills the engine runs decode steps for all
running sequences. Each request holds a slot (and its KV tokens) from prefill to its last token.

For a token mix of I prompt and O output tokens, with prefill time s = p(I) and utilisation rho = lambda * s:

- TPOT: a decode step of b sequences takes t(b); prefills interleave, so a sequence's mean time per token is
  tau = t(b) / (1 - rho) with b = lambda * (O - 1) * tau (Little's law), solved as a fixed point. Its quantile is
  tau at the quantile of the arrival rate seen over the window of requests that share its steps.
- TTFT: the prefill queue is an M/D/1 queue whose server takes "vacations" (decode steps) when idle, so its wait is
  the M/D/1 wait plus the residual of a decode step (Fuhrmann-Cooper decomposition); TTFT = wait + s. The M/D/1
  wait distribution comes from the Pollaczek-Khinchine series, solved on a grid; far in the tail the
  Cramer-Lundberg exponential asymptote takes over.
- Concurrency: a request holds a slot for H = s + (O - 1) * tau; with c slots a request may wait for one
  (Erlang C); that wait adds to the TTFT tail.

capacity_at_slo is the highest lambda for which all three hold, by bisection (each condition grows with lambda).
It agrees with the brute-force simulation of the same engine within 5 % (tests/unit/test_capacity_vs_sim.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from enum import StrEnum

from autoscaler.perf import ReplicaProfile

_GRID_POINTS_PER_SERVICE = 24
_MAX_GRID_POINTS = 3000


@dataclass(frozen=True, slots=True)
class TokenMix:
    """Mean prompt and output tokens per request."""

    mean_input_tokens: float
    mean_output_tokens: float

    @property
    def tokens_per_request(self) -> float:
        return self.mean_input_tokens + self.mean_output_tokens

    def bucketed(self) -> TokenMix:
        """The mix rounded to 2 significant digits, so that observed mixes share cached capacities."""
        return TokenMix(_two_digits(self.mean_input_tokens), _two_digits(self.mean_output_tokens))


def _two_digits(x: float) -> float:
    if x <= 0:
        return 0.0
    return round(x, 1 - math.floor(math.log10(x)))


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


def _tpot_quantile(
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, prefill_s: float, quantile: float
) -> float:
    """The quantile of one request's time per output token.

    Its O - 1 decode steps are interrupted by prefills (they have priority): those already queued when its own
    prefill ends (the M/D/1 number in system, L = rho + rho^2 / (2 (1 - rho))) and those of arrivals during its
    steps (Poisson, mean m = lambda * (O - 1) * t(b)). Every arrival also stretches the request: its prefill
    takes s, and its decoding makes every later step c * (O - 1) longer in all. So one extra arrival brings, on
    average, rho_total = lambda * (s + c * (O - 1)) more: a branching process whose total has variance
    seeds * rho_total / (1 - rho_total)^3 (+ the seeds' own variance times the squared mean progeny). The mean
    time per token is the fixed point tau; the spread comes from the gamma distribution with that variance.
    """
    steps = mix.mean_output_tokens - 1
    if steps <= 0:
        return 0.0
    rho = arrival_rps * prefill_s
    tau = _decode_fixed_point(profile, arrival_rps, mix, rho)
    if tau is None:
        return math.inf
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    batch = arrival_rps * steps * tau
    step_s = profile.decode_step_ms(max(batch, 1.0), context) / 1000.0
    slope_s = (profile.decode_step_ms(batch + 1.0, context) - profile.decode_step_ms(batch, context)) / 1000.0
    rho_total = rho + arrival_rps * slope_s * steps
    if rho_total >= 1.0:
        return math.inf
    queued = rho + rho * rho / (2.0 * (1.0 - rho))
    during = arrival_rps * steps * step_s
    seeds_mean = queued + during
    seeds_var = queued * (1.0 + queued) + during
    progeny_mean = 1.0 / (1.0 - rho_total)
    progeny_var = rho_total / (1.0 - rho_total) ** 3
    count_mean = seeds_mean * progeny_mean
    count_var = seeds_mean * progeny_var + seeds_var * progeny_mean**2
    # Each counted arrival costs this request, on average, its prefill plus its share of longer steps.
    cost_s = (prefill_s * rho + slope_s * steps * (rho_total - rho)) / max(rho_total, 1e-12)
    spread = (_gamma_quantile(count_mean, count_var, quantile) - count_mean) * cost_s / steps
    mean = tau + queued * prefill_s / steps
    return mean + spread


def _gamma_quantile(mean: float, variance: float, quantile: float) -> float:
    """Quantile of a gamma distribution with this mean and variance (Wilson-Hilferty approximation)."""
    if mean <= 0 or variance <= 0:
        return 0.0
    shape = mean * mean / variance
    z = _normal_quantile(quantile)
    cube = 1.0 - 1.0 / (9.0 * shape) + z / (3.0 * math.sqrt(shape))
    return max(0.0, mean * cube**3)


def _normal_quantile(q: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.3577518672690,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    low = 0.02425
    if q < low:
        r = math.sqrt(-2.0 * math.log(q))
        return (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1.0
        )
    if q > 1.0 - low:
        return -_normal_quantile(1.0 - q)
    r = q - 0.5
    t = r * r
    return (
        (((((a[0] * t + a[1]) * t + a[2]) * t + a[3]) * t + a[4]) * t + a[5])
        * r
        / (((((b[0] * t + b[1]) * t + b[2]) * t + b[3]) * t + b[4]) * t + 1.0)
    )


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
    if x < 0:
        return 0.0
    if rho <= 0:
        return 1.0 if residual_s <= 0 else min(1.0, x / residual_s)
    if x > _MAX_GRID_POINTS * service_s / _GRID_POINTS_PER_SERVICE:
        return _md1_tail_cdf(rho, service_s, max(0.0, x - residual_s))
    h = service_s / _GRID_POINTS_PER_SERVICE
    m = _GRID_POINTS_PER_SERVICE
    n = math.ceil(x / h) + 1
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

    if residual_s <= 0:
        pos = x / h
        i = min(int(pos), n - 1)
        return f_values[i] + (f_values[i + 1] - f_values[i]) * (pos - i)
    return (integral_to(x) - integral_to(x - residual_s)) / residual_s


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
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, quantile: float = 0.95
) -> LatencyEstimate:
    """Predicted p-quantile TTFT and TPOT of one replica at `arrival_rps` (Poisson arrivals)."""
    prefill_s = profile.prefill_ms(mix.mean_input_tokens) / 1000.0
    slots = profile.max_concurrency(mix.tokens_per_request)
    rho = arrival_rps * prefill_s
    tau = _decode_fixed_point(profile, arrival_rps, mix, rho) if rho < 1 else None
    if tau is None or slots == 0:
        return LatencyEstimate(arrival_rps, False, math.inf, math.inf, math.inf, rho, math.inf, slots)
    steps = max(mix.mean_output_tokens - 1, 0.0)
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    tpot = _tpot_quantile(profile, arrival_rps, mix, prefill_s, quantile)
    slots_needed = arrival_rps * (prefill_s + steps * tau)
    ttft = prefill_s + _quantile_of_wait(rho, prefill_s, step_s, quantile)  # the slot wait is left out here
    return LatencyEstimate(arrival_rps, True, ttft, tpot, batch, rho, slots_needed, slots)


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


def _violation(profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, slo: LatencySlo) -> Binding | None:
    """The first SLO condition violated at `arrival_rps`, or None if all hold."""
    prefill_s = profile.prefill_ms(mix.mean_input_tokens) / 1000.0
    rho = arrival_rps * prefill_s
    if rho >= 1:
        return Binding.PREFILL
    tau = _decode_fixed_point(profile, arrival_rps, mix, rho)
    if tau is None:
        return Binding.TPOT
    steps = max(mix.mean_output_tokens - 1, 0.0)
    slots = profile.max_concurrency(mix.tokens_per_request)
    holding_s = prefill_s + steps * tau
    if arrival_rps * holding_s >= slots:
        return Binding.CONCURRENCY
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    if _tpot_quantile(profile, arrival_rps, mix, prefill_s, slo.quantile) > slo.tpot_s:
        return Binding.TPOT
    slack = slo.ttft_s - prefill_s
    prefill_tail = 1.0 - _md1_wait_plus_residual_cdf(rho, prefill_s, step_s, slack)
    slot_tail = _slot_wait_tail(arrival_rps, holding_s, slots, slack)
    if prefill_tail + slot_tail > 1.0 - slo.quantile:
        return Binding.CONCURRENCY if slot_tail > prefill_tail else Binding.TTFT
    return None


def _slot_wait_tail(arrival_rps: float, holding_s: float, slots: int, t: float) -> float:
    """P(a request waits longer than t for a free slot), from the M/M/c queue.

    Erlang C gives the chance to wait, and the wait's tail is exponential with rate (c - A) / H, where
    A = lambda * H slots are busy on average. Holding times vary with the prefills that interrupt a request, so
    the exponential-holding model fits the simulated engine better than the deterministic one (M/D/c).
    """
    offered = arrival_rps * holding_s
    if offered <= 0:
        return 0.0
    if offered >= slots:
        return 1.0
    erlang_b = 1.0
    for k in range(1, slots + 1):
        erlang_b = offered * erlang_b / (k + offered * erlang_b)
    erlang_c = erlang_b / (1.0 - (offered / slots) * (1.0 - erlang_b))
    return erlang_c * math.exp(-(slots - offered) * max(t, 0.0) / holding_s)


def capacity_at_slo(profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix) -> Capacity:
    """The highest arrival rate (req/s) one replica sustains with p95 TTFT and TPOT within the SLO.

    Returns rps = 0 with the binding condition and a reason when even a lone request misses the SLO (a prompt
    whose prefill alone is longer than the TTFT bound, a decode step longer than the TPOT bound, or no slot).
    """
    return _capacity_cached(profile, slo, mix)


@functools.lru_cache(maxsize=65536)
def _capacity_cached(profile: ReplicaProfile, slo: LatencySlo, mix: TokenMix) -> Capacity:
    prefill_s = profile.prefill_ms(mix.mean_input_tokens) / 1000.0
    if profile.max_concurrency(mix.tokens_per_request) < 1:
        return Capacity(
            0.0,
            Binding.CONCURRENCY,
            predict_latency(profile, 0.0, mix, slo.quantile),
            f"KV cache holds {profile.kv_capacity_tokens.value:,.0f} tokens, "
            f"less than one request of {mix.tokens_per_request:,.0f}",
        )
    tiny = 1e-6 / max(prefill_s, 1e-6)
    first = _violation(profile, tiny, mix, slo)
    if first is not None:
        lone = predict_latency(profile, tiny, mix, slo.quantile)
        why = {
            Binding.TTFT: f"prefill of {mix.mean_input_tokens:,.0f} tokens takes {prefill_s:.3f} s "
            f"(ttft_p95_s is {slo.ttft_s:g})",
            Binding.TPOT: f"one decode step takes {lone.tpot_s:.4f} s (tpot_p95_s is {slo.tpot_s:g})",
        }.get(first, f"{first} violated at any load")
        return Capacity(0.0, first, lone, why)
    lo, hi = tiny, 1.0 / prefill_s
    binding = Binding.PREFILL
    for _ in range(60):
        mid = (lo + hi) / 2.0
        violated = _violation(profile, mid, mix, slo)
        if violated is None:
            lo = mid
        else:
            hi = mid
            binding = violated
        if hi - lo <= 1e-4 * hi:
            break
    return Capacity(lo, binding, predict_latency(profile, lo, mix, slo.quantile))
