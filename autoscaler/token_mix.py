"""The token mix sizing uses: observed prompt and answer lengths, averaged over requests with a half-life.

Capacity at SLO is sensitive to the mean prompt: a replica bound by decode steps that prefills interrupt serves
about a fifth fewer requests when prompts are a fifth longer. One minute's mean is a sample, and a noisy one on
bursty traffic (the Azure code trace's per-minute mean prompt spans 1,500 to 2,500 tokens around 2,048 with 100 to
1,500 requests a minute). Sizing each tick at that minute's mean, with the scale-down window holding the highest
recommendation, sizes the fleet for the heaviest sample of the last minutes rather than for the workload.

So `decide` carries a `MixEstimate` per service in its state: each tick's means weigh in by the requests behind them
(rate x the seconds since the last update), and older ticks fade with `Policy.token_mix_half_life_s`. A real change
of workload is not averaged away: when a tick's mean prompt or answer is further from the estimate than sampling
can explain (`SHIFT_SIGMAS` standard errors of a mean of that many exponential lengths, whose standard deviation is
their mean), the estimate restarts from that tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.capacity import TokenMix

SHIFT_SIGMAS = 4.0


@dataclass(frozen=True, slots=True)
class MixEstimate:
    """Request-weighted mean lengths, the requests' worth of data behind them, and when they were last updated."""

    mix: TokenMix
    requests: float
    at_s: float


def _shifted(estimate: float, observed: float, requests: float) -> bool:
    """Whether a mean of `requests` lengths at `observed` is too far from `estimate` to be sampling noise."""
    if requests <= 0 or estimate <= 0:
        return False
    standard_error = estimate / math.sqrt(requests)
    return abs(observed - estimate) > SHIFT_SIGMAS * standard_error


def update_mix(
    previous: MixEstimate | None,
    observed: TokenMix,
    rate_rps: float,
    now_s: float,
    half_life_s: float,
    tick_s: float,
) -> MixEstimate:
    """The estimate after a tick that observed `observed` mean lengths at `rate_rps`.

    The tick's requests are its rate times the seconds since the last update (`tick_s` on the first tick, and at
    most one half-life, so that a long gap does not give one tick the weight of hours). A half-life of 0 keeps only
    the last tick. A tick at or before the last update (a decision computed again) adds nothing.
    """
    if previous is None or half_life_s <= 0:
        return MixEstimate(observed, rate_rps * tick_s, now_s)
    if now_s <= previous.at_s:
        return previous
    elapsed = min(now_s - previous.at_s, half_life_s)
    requests = rate_rps * elapsed
    old = previous.mix
    if _shifted(old.mean_input_tokens, observed.mean_input_tokens, requests) or _shifted(
        old.mean_output_tokens, observed.mean_output_tokens, requests
    ):
        return MixEstimate(observed, requests, now_s)
    kept = previous.requests * 0.5 ** ((now_s - previous.at_s) / half_life_s)
    total = kept + requests
    if total <= 0:
        return MixEstimate(old, 0.0, now_s)
    mix = TokenMix(
        (kept * old.mean_input_tokens + requests * observed.mean_input_tokens) / total,
        (kept * old.mean_output_tokens + requests * observed.mean_output_tokens) / total,
        observed.lengths,
    )
    return MixEstimate(mix, total, now_s)
