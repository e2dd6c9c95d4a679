"""One replica's engine for the fleet simulator: the engine of `replica.py`, advanced from event to event.

The rules are those of `simulate_replica` (FIFO admission when a slot and KV room are free, one prefill per
iteration with priority over decode, a decode step for all running sequences at `decode_step_ms(b, mean
context)`). What differs is the bookkeeping: between two events (a prefill, the next sequence leaving, a new
request) the batch is constant and the mean context grows by one token per step, so the step time grows linearly
and k steps take k t0 + d k (k - 1) / 2 (t0 the first step, d the growth per step). The engine jumps over such a
run in one event instead of one per step, which is what makes fleet replays of hours of traffic possible; the
results are those of stepping (tests/unit/test_sim_engine.py compares the two).

A request that arrives during a run waits for the step in progress to end, then gets its prefill: the run is cut
at that step.

A request that finds the replica empty is run "solo": its prefill and all its decode steps (batch 1) are one event,
the common case of a lightly loaded replica. Should another request arrive before it ends, the solo run is turned
back into the state it has reached (still in its prefill, or decoding alone) and the rules above go on from there.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from autoscaler.perf import ReplicaProfile

Done = Callable[[int, float, float, float], None]  # (request, first token time, last token time, TPOT)


class ReplicaEngine:
    """A replica serving requests (indices into the caller's arrays of arrival times and token counts)."""

    __slots__ = (
        "_kv_slope_s",
        "arrival_s",
        "busy_s",
        "busy_until",
        "context_sum",
        "first_token_s",
        "in_flight",
        "input_tokens",
        "kv_capacity",
        "max_seqs",
        "on_done",
        "output_tokens",
        "profile",
        "reserved",
        "run_growth",
        "run_prefill",
        "run_start",
        "run_steps",
        "run_t0",
        "running",
        "solo",
        "solo_growth",
        "solo_split",
        "solo_steps",
        "solo_t0",
        "step",
        "waiting",
    )

    def __init__(
        self,
        profile: ReplicaProfile,
        arrival_s: list[float],
        input_tokens: list[int],
        output_tokens: list[int],
        on_done: Done,
    ) -> None:
        self.profile = profile
        self.arrival_s = arrival_s
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.on_done = on_done
        self.waiting: deque[int] = deque()
        self.running: list[tuple[int, int]] = []  # (decode step at which the sequence ends, request)
        self.first_token_s: dict[int, float] = {}
        self.step = 0
        self.context_sum = 0.0
        self.reserved = 0.0
        self.kv_capacity = profile.kv_capacity_tokens.value
        self.max_seqs = profile.max_num_seqs
        self.busy_until = math.inf  # end of the iteration in progress; inf when idle
        self.run_start = 0.0
        self.run_steps = 0  # decode steps in the run in progress (0: a prefill or idle)
        self.run_t0 = 0.0
        self.run_growth = 0.0
        self.run_prefill = -1  # the request whose prefill is in progress
        self.busy_s = 0.0
        self.solo = -1  # the request running alone as one event (prefill and decode), if any
        self.solo_split = 0.0  # when its prefill ends (its first token)
        self.solo_steps = 0
        self.solo_t0 = 0.0
        self.solo_growth = 0.0
        self.in_flight = 0  # requests on this replica: waiting, in prefill and decoding (the router reads it)
        # The decode step grows by this per sequence per token of mean context (the step is linear in context).
        self._kv_slope_s = profile.decode_ms_per_seq_per_1k_context.value / 1e6

    @property
    def idle(self) -> bool:
        return self.busy_until == math.inf

    def submit(self, request: int, now: float) -> None:
        """A request arrives at `now` (not before the last event the engine handled)."""
        if self.solo >= 0:
            self._unsolo(now)
        self.waiting.append(request)
        self.in_flight += 1
        if self.idle:
            self._plan(now)
        elif self.run_steps > 1 and len(self.waiting) == 1 and self._admissible(request):
            self._cut(now)

    def _admissible(self, request: int) -> bool:
        need = self.input_tokens[request] + self.output_tokens[request]
        return len(self.running) < self.max_seqs and self.reserved + need <= self.kv_capacity

    def advance(self) -> float:
        """Finish the iteration in progress (at `busy_until`), start the next; returns the new `busy_until`."""
        now = self.busy_until
        if self.solo >= 0:
            request, first = self.solo, self.solo_split
            self.solo = -1
            self.step += self.solo_steps
            self.reserved -= self.input_tokens[request] + self.output_tokens[request]
            self.in_flight -= 1
            self.on_done(request, first, now, (now - first) / self.solo_steps)
        elif self.run_prefill >= 0:
            request = self.run_prefill
            self.run_prefill = -1
            out = self.output_tokens[request]
            if out <= 1:
                self.reserved -= self.input_tokens[request] + out
                self.in_flight -= 1
                self.on_done(request, now, now, math.nan)
            else:
                self.first_token_s[request] = now
                heapq.heappush(self.running, (self.step + out - 1, request))
                self.context_sum += self.input_tokens[request] + 1
        elif self.run_steps:
            b = len(self.running)
            self.step += self.run_steps
            self.context_sum += b * self.run_steps
            while self.running and self.running[0][0] <= self.step:
                _, request = heapq.heappop(self.running)
                out = self.output_tokens[request]
                first = self.first_token_s.pop(request)
                self.context_sum -= self.input_tokens[request] + out
                self.reserved -= self.input_tokens[request] + out
                self.in_flight -= 1
                self.on_done(request, first, now, (now - first) / (out - 1))
        self._plan(now)
        return self.busy_until

    def _plan(self, now: float) -> None:
        self.run_steps = 0
        if self.waiting:
            head = self.waiting[0]
            need = self.input_tokens[head] + self.output_tokens[head]
            if self._admissible(head):
                self.waiting.popleft()
                self.reserved += need
                duration = self.profile.prefill_ms(self.input_tokens[head]) / 1000.0
                steps = self.output_tokens[head] - 1
                if not self.running and not self.waiting and steps > 0:
                    # Alone on the replica: its prefill and its decode steps at batch 1 are one event.
                    t0 = self.profile.decode_step_ms(1, self.input_tokens[head] + 1.0) / 1000.0
                    growth = self._kv_slope_s
                    decode = _run_s(steps, t0, growth)
                    self.solo, self.solo_split, self.solo_steps = head, now + duration, steps
                    self.solo_t0, self.solo_growth = t0, growth
                    self.busy_s += duration + decode
                    self.busy_until = now + duration + decode
                    return
                self.run_prefill = head
                self.busy_s += duration
                self.busy_until = now + duration
                return
            if not self.running:
                raise ValueError(
                    f"request {head} needs {need} KV tokens; the replica has {self.kv_capacity:.0f}: it can never run"
                )
        if self.running:
            b = len(self.running)
            mean = self.context_sum / b
            t0 = self.profile.decode_step_ms(b, mean) / 1000.0
            growth = b * self._kv_slope_s
            steps = self.running[0][0] - self.step  # to the next sequence leaving
            self.run_start, self.run_steps, self.run_t0, self.run_growth = now, steps, t0, growth
            duration = _run_s(steps, t0, growth)
            self.busy_s += duration
            self.busy_until = now + duration
            return
        self.busy_until = math.inf

    def _unsolo(self, now: float) -> None:
        """Turn the solo run back into the state it has reached at `now`: its prefill, or its decode run."""
        request, split, steps = self.solo, self.solo_split, self.solo_steps
        self.solo = -1
        decode = _run_s(steps, self.solo_t0, self.solo_growth)
        if now < split:
            self.run_prefill = request
            self.busy_s -= decode
            self.busy_until = split
            return
        self.first_token_s[request] = split
        heapq.heappush(self.running, (self.step + steps, request))
        self.context_sum += self.input_tokens[request] + 1
        self.run_start, self.run_steps, self.run_t0, self.run_growth = split, steps, self.solo_t0, self.solo_growth

    def _cut(self, now: float) -> None:
        """End the decode run at the step in progress at `now` (a request is waiting for its prefill)."""
        t0, growth = self.run_t0, self.run_growth
        elapsed = now - self.run_start
        # Steps completed by `now`: the largest j with j t0 + growth j (j - 1) / 2 <= elapsed; the step in
        # progress (j + 1) still completes.
        if growth > 1e-15:
            a, b = growth / 2.0, t0 - growth / 2.0
            j = int((-b + math.sqrt(b * b + 4.0 * a * elapsed)) / (2.0 * a))
        else:
            j = int(elapsed / t0) if t0 > 0 else self.run_steps
        while j > 0 and _run_s(j, t0, growth) > elapsed:
            j -= 1
        steps = min(self.run_steps, j + 1)
        if steps >= self.run_steps:
            return
        old = _run_s(self.run_steps, t0, growth)
        new = _run_s(steps, t0, growth)
        self.busy_s -= old - new
        self.run_steps = steps
        self.busy_until = self.run_start + new


def _run_s(steps: int, t0: float, growth: float) -> float:
    """Seconds of `steps` decode steps at a constant batch: the first takes t0, each next one `growth` more."""
    return steps * t0 + growth * steps * (steps - 1) / 2.0
