"""Prompt and output lengths as the capacity model sees them: distribution points, and what they mean in
prefill time and KV tokens for one profile."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from autoscaler.capacity.values import LengthSpread, TokenMix
from autoscaler.perf import ReplicaProfile

# Output lengths up to this are weighted one by one (a short answer's TPOT is the most sensitive to its length);
# longer ones by equal-probability points of the exponential tail, which is again exponential past the cut.
_EXACT_OUTPUT_LENGTHS = 32


_TAIL_POINTS = 24


_PROMPT_POINTS = 48


@functools.lru_cache(maxsize=4096)
def length_points(mean: float, lengths: LengthSpread) -> tuple[tuple[float, float], ...]:
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
class Lengths:
    """What the length distribution means for one profile: prefill times over the prompts (equal-weight points),
    and the moments the KV room needs (`KvRoom`)."""

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
def lengths_of(profile: ReplicaProfile, mix: TokenMix) -> Lengths:
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
    points = length_points(mix.mean_output_tokens, mix.lengths)
    output = (
        sum(w * o for o, w in points),
        sum(w * o * o for o, w in points),
        sum(w * (o - 1.0) for o, w in points),
        sum(w * o * (o - 1.0) for o, w in points),
        sum(w * o * o * (o - 1.0) for o, w in points),
    )
    mean_s = sum(times) / count
    return Lengths(tuple(times), mean_s, sum(t * t for t in times) / count, prompt, output)
