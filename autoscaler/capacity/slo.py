"""Capacity at an SLO: the share of requests missing either bound at a rate, the highest rate that keeps it
within the allowed share, per replica count behind a router, and latency predictions for reports."""

from __future__ import annotations

import functools
import math

from autoscaler.capacity.decode import decode_fixed_point, tpot_miss_share, tpot_quantile
from autoscaler.capacity.kv_room import KvRoom
from autoscaler.capacity.lengths import lengths_of
from autoscaler.capacity.queueing import erlang_wait_tail, md1_wait_plus_residual_cdfs, quantile_of_wait, wait_spread
from autoscaler.capacity.values import Binding, Capacity, LatencyEstimate, LatencySlo, LengthSpread, Routing, TokenMix
from autoscaler.perf import ReplicaProfile


def _violation(
    profile: ReplicaProfile, arrival_rps: float, mix: TokenMix, slo: LatencySlo, arrival_cv2: float
) -> Binding | None:
    """The SLO condition that binds at `arrival_rps`, or None if a share `slo.quantile` of requests meets both
    bounds (the shares that miss on TPOT, on the prefill queue and on a slot are added: a request may miss on
    more than one, so the sum errs on the safe side)."""
    lengths = lengths_of(profile, mix)
    prefill_s = lengths.mean_s
    rho = lengths.rho(arrival_rps)
    if rho >= 1:
        return Binding.PREFILL
    tau = decode_fixed_point(profile, arrival_rps, mix, rho)
    if tau is None:
        return Binding.TPOT
    steps = max(mix.mean_output_tokens - 1, 0.0)
    holding_s = prefill_s + steps * tau
    room = KvRoom.of(profile, lengths, arrival_rps, tau)
    if arrival_rps * holding_s >= profile.max_num_seqs or room.offered >= room.servers:
        return Binding.CONCURRENCY
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    allowed = 1.0 - slo.quantile
    tpot_tail = tpot_miss_share(profile, arrival_rps, mix, lengths, tau, slo.tpot_s, arrival_cv2)
    if tpot_tail > allowed:
        return Binding.TPOT
    # Each request's own prefill (its prompt's) comes after the wait, which does not depend on it.
    spread = wait_spread(lengths, arrival_cv2)
    waits = [(slo.ttft_s - own_s) / spread for own_s in lengths.prefill_times_s]
    prefill_tail = 1.0 - sum(md1_wait_plus_residual_cdfs(rho, prefill_s, step_s, waits)) / len(waits)
    slack = slo.ttft_s - prefill_s
    slot_tail = max(
        erlang_wait_tail(arrival_rps * holding_s, profile.max_num_seqs, holding_s, slack),
        erlang_wait_tail(room.offered, room.servers, holding_s, slack),
    )
    if tpot_tail + prefill_tail + slot_tail > allowed:
        return max((tpot_tail, Binding.TPOT), (prefill_tail, Binding.TTFT), (slot_tail, Binding.CONCURRENCY))[1]
    return None


def _lone_ttft_reason(profile: ReplicaProfile, mix: TokenMix, slo: LatencySlo) -> str:
    lengths = lengths_of(profile, mix)
    if mix.lengths is LengthSpread.FIXED:
        mean = f"{mix.mean_input_tokens:,.0f}"
        return f"prefill of {mean} tokens takes {lengths.mean_s:.3f} s (ttft_p95_s is {slo.ttft_s:g})"
    too_long = sum(1 for t in lengths.prefill_times_s if t > slo.ttft_s) / len(lengths.prefill_times_s)
    return (
        f"{too_long:.0%} of prompts (exponential around {mix.mean_input_tokens:,.0f} tokens) take longer than "
        f"ttft_p95_s ({slo.ttft_s:g} s) to prefill alone; at most {1 - slo.quantile:.0%} of requests may miss"
    )


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
    lengths = lengths_of(profile, mix)
    prefill_s = lengths.mean_s
    slots = profile.max_concurrency(mix.tokens_per_request)
    rho = lengths.rho(arrival_rps)
    tau = decode_fixed_point(profile, arrival_rps, mix, rho) if rho < 1 else None
    if tau is None or slots == 0:
        return LatencyEstimate(arrival_rps, False, math.inf, math.inf, math.inf, rho, math.inf, slots)
    steps = max(mix.mean_output_tokens - 1, 0.0)
    batch = arrival_rps * steps * tau
    context = mix.mean_input_tokens + mix.mean_output_tokens / 2
    step_s = profile.decode_step_ms(batch, context) / 1000.0 if batch > 0 else 0.0
    tpot = tpot_quantile(profile, arrival_rps, mix, quantile, arrival_cv2)
    slots_needed = arrival_rps * (prefill_s + steps * tau)
    # the slot wait is left out here
    ttft = prefill_s + wait_spread(lengths, arrival_cv2) * quantile_of_wait(rho, prefill_s, step_s, quantile)
    return LatencyEstimate(arrival_rps, True, ttft, tpot, batch, rho, slots_needed, slots)


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
    requests within both latency bounds (more replicas behind a least-loaded router smooth each one's arrivals,
    see `arrival_cv2_behind_router`; behind round robin or a random pick, each is a lone replica).

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
    prefill_s = lengths_of(profile, mix).mean_s
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
