"""Decoding under prefill interruptions: the mean time per output token (a fixed point) and the share of requests
whose time per output token misses a bound."""

from __future__ import annotations

import math

from autoscaler.capacity.lengths import Lengths, length_points, lengths_of
from autoscaler.capacity.queueing import gamma_tail
from autoscaler.capacity.values import TokenMix
from autoscaler.perf import ReplicaProfile


def decode_fixed_point(profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, rho: float) -> float | None:
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


def tpot_miss_share(
    profile: ReplicaProfile,
    arrival_rps: float,
    mix: TokenMix,
    lengths: Lengths,
    tau: float,
    tpot_s: float,
    arrival_cv2: float,
) -> float:
    """The share of requests whose time per output token exceeds `tpot_s` (1.0 where decode cannot keep up), with
    `tau` the mean time per token at this rate (`decode_fixed_point`).

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
    for outputs, weight in length_points(mix.mean_output_tokens, mix.lengths):
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
        miss += weight * gamma_tail(added_mean, added_var, added_mean + slack_s)
    return miss


def tpot_quantile(
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, quantile: float, arrival_cv2: float
) -> float:
    """The time per output token that a share `quantile` of requests stays within (for reports)."""
    lengths = lengths_of(profile, mix)
    tau = decode_fixed_point(profile, arrival_rps, mix, lengths.rho(arrival_rps))
    if tau is None:
        return math.inf
    lo, hi = 0.0, profile.decode_step_ms(1.0, mix.mean_input_tokens) / 1000.0
    while tpot_miss_share(profile, arrival_rps, mix, lengths, tau, hi, arrival_cv2) > 1.0 - quantile:
        hi *= 2.0
        if hi > 1e3:
            return math.inf
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if tpot_miss_share(profile, arrival_rps, mix, lengths, tau, mid, arrival_cv2) > 1.0 - quantile:
            lo = mid
        else:
            hi = mid
    return hi
