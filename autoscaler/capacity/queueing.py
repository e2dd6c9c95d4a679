"""Queueing formulas the capacity model is built from: the M/D/1 prefill queue with decode-step vacations,
its asymptotic tail, Erlang C, and a gamma tail."""

from __future__ import annotations

import math
from collections.abc import Sequence

from autoscaler.capacity.lengths import Lengths

_GRID_POINTS_PER_SERVICE = 24


_MAX_GRID_POINTS = 3000


def gamma_tail(mean: float, variance: float, x: float) -> float:
    """P(X > x) for X gamma with this mean and variance (Wilson-Hilferty approximation)."""
    if x <= 0.0:
        return 1.0
    if mean <= 0.0 or variance <= 0.0:
        return 1.0 if x < mean else 0.0
    shape = mean * mean / variance
    spread = 1.0 / (3.0 * math.sqrt(shape))
    z = ((x / mean) ** (1.0 / 3.0) - (1.0 - spread * spread)) / spread
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def md1_wait_plus_residual_cdf(rho: float, service_s: float, residual_s: float, x: float) -> float:
    """P(W + V <= x): W the M/D/1 wait (load rho, service time service_s), V ~ Uniform(0, residual_s)."""
    return md1_wait_plus_residual_cdfs(rho, service_s, residual_s, (x,))[0]


def md1_wait_plus_residual_cdfs(rho: float, service_s: float, residual_s: float, xs: Sequence[float]) -> list[float]:
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
            return md1_tail_cdf(rho, service_s, max(0.0, x - residual_s))
        if residual_s <= 0:
            pos = x / h
            i = min(int(pos), n - 1)
            return f_values[i] + (f_values[i + 1] - f_values[i]) * (pos - i)
        return (integral_to(x) - integral_to(x - residual_s)) / residual_s

    return [cdf(x) for x in xs]


def md1_tail_cdf(rho: float, service_s: float, x: float) -> float:
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


def quantile_of_wait(rho: float, service_s: float, residual_s: float, quantile: float) -> float:
    """The quantile of W + V by bisection on its CDF (used for reporting, not in the capacity search)."""
    lo, hi = 0.0, max(service_s, residual_s)
    while md1_wait_plus_residual_cdf(rho, service_s, residual_s, hi) < quantile:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    for _ in range(40):
        mid = (lo + hi) / 2.0
        if md1_wait_plus_residual_cdf(rho, service_s, residual_s, mid) >= quantile:
            hi = mid
        else:
            lo = mid
    return hi


def erlang_wait_tail(offered: float, servers: int, holding_s: float, t: float) -> float:
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


def wait_spread(lengths: Lengths, arrival_cv2: float) -> float:
    """How much longer the prefill queue's waits are than the M/D/1 queue's (Poisson arrivals, equal prompts).

    The GI/G/1 mean wait is about the M/D/1 one times ca^2 + cs^2 (Kingman; ca and cs the coefficients of
    variation of interarrival and prefill times; exact for M/G/1 by Pollaczek-Khinchine). The whole wait
    distribution is stretched by that factor, a common approximation that keeps the M/D/1 solver.
    """
    return arrival_cv2 + lengths.prefill_cv2
