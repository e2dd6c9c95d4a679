"""Discrete-event simulation of one replica, request by request, with the step times of `perf.py`.

The engine (the same one `autoscaler/capacity` describes in closed form):
- one FIFO queue; a waiting request is admitted when a slot is free (fewer than `max_num_seqs` running and room
  for its prompt and output tokens in the KV cache);
- an admitted request gets a prefill iteration of its own (`profile.prefill_ms(prompt)`), which produces its
  first token; prefills take priority over decode steps;
- otherwise the engine runs one decode step for all running sequences (`profile.decode_step_ms(b, mean
  context)`), which gives each one token; a sequence leaves after its last token and frees its slot;
- an arrival during a step waits for the step to end.

Per request it records TTFT (arrival to first token) and TPOT ((last token - first token) / (output - 1)).
Finishing sequences are kept in a heap keyed by the step at which they end, so a step costs O(log n), not O(b).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.perf import ReplicaProfile


@dataclass(frozen=True, slots=True)
class ReplicaRun:
    """Per-request results of one simulated replica, in arrival order."""

    ttft_s: tuple[float, ...]
    tpot_s: tuple[float, ...]  # nan for requests with a single output token
    busy_s: float
    end_s: float

    def quantile(self, values: Sequence[float], q: float) -> float:
        finite = sorted(v for v in values if not math.isnan(v))
        if not finite:
            return 0.0
        index = min(len(finite) - 1, max(0, math.ceil(q * len(finite)) - 1))
        return finite[index]

    def ttft_quantile(self, q: float) -> float:
        return self.quantile(self.ttft_s, q)

    def tpot_quantile(self, q: float) -> float:
        return self.quantile(self.tpot_s, q)


def poisson_arrivals(rate_rps: float, count: int, seed: int) -> list[float]:
    """`count` arrival times of a Poisson stream of `rate_rps`, seeded."""
    rng = random.Random(seed)
    t = 0.0
    times = []
    for _ in range(count):
        t += rng.expovariate(rate_rps)
        times.append(t)
    return times


def simulate_replica(
    profile: ReplicaProfile,
    arrivals_s: Sequence[float],
    input_tokens: Sequence[int],
    output_tokens: Sequence[int],
) -> ReplicaRun:
    """Run the engine over requests arriving at `arrivals_s` (sorted) with their token counts."""
    n = len(arrivals_s)
    if not (len(input_tokens) == len(output_tokens) == n):
        raise ValueError("arrivals_s, input_tokens and output_tokens must have the same length")
    kv_capacity = profile.kv_capacity_tokens.value
    max_seqs = profile.max_num_seqs
    ttft = [math.nan] * n
    tpot = [math.nan] * n
    first_token_at = [0.0] * n
    waiting: deque[int] = deque()
    finishing: list[tuple[int, int]] = []  # (step index at which the sequence ends, request)
    now = 0.0
    busy = 0.0
    step = 0
    context_sum = 0.0
    reserved_tokens = 0.0
    next_arrival = 0
    done = 0

    while done < n:
        while next_arrival < n and arrivals_s[next_arrival] <= now:
            waiting.append(next_arrival)
            next_arrival += 1
        running = len(finishing)
        if waiting:
            head = waiting[0]
            need = input_tokens[head] + output_tokens[head]
            if running < max_seqs and reserved_tokens + need <= kv_capacity:
                waiting.popleft()
                duration = profile.prefill_ms(input_tokens[head]) / 1000.0
                now += duration
                busy += duration
                ttft[head] = now - arrivals_s[head]
                first_token_at[head] = now
                if output_tokens[head] <= 1:
                    done += 1
                else:
                    heapq.heappush(finishing, (step + output_tokens[head] - 1, head))
                    context_sum += input_tokens[head] + 1
                    reserved_tokens += need
                continue
            if running == 0:
                raise ValueError(f"request {head} needs {need} KV tokens; the replica has {kv_capacity:.0f}")
        if running:
            duration = profile.decode_step_ms(running, context_sum / running) / 1000.0
            now += duration
            busy += duration
            step += 1
            context_sum += running
            while finishing and finishing[0][0] == step:
                _, request = heapq.heappop(finishing)
                tpot[request] = (now - first_token_at[request]) / (output_tokens[request] - 1)
                context_sum -= input_tokens[request] + output_tokens[request]
                reserved_tokens -= input_tokens[request] + output_tokens[request]
                done += 1
            continue
        if next_arrival < n:
            now = max(now, arrivals_s[next_arrival])
    return ReplicaRun(tuple(ttft), tuple(tpot), busy, now)
