"""The oracle: the cheapest fleet that a clairvoyant could run under the same rules, and the instant-start bound.

It knows every future arrival and uses the same simulator (performance model, router, cold starts). For each
tick window it finds, per allowed shape, the fewest replicas that serve the requests arriving in that window
within the SLO: all but a 0.1 % share of them, rounded down (in a window of fewer than 1,000 requests, all of
them), which is what an attainment of 99.9 % allows. It is a binary search; each probe replays that window on
that many ready replicas, started `warmup_s` earlier so that the window inherits the backlog before it. The shape
with the lowest total cost over the trace wins. At each tick it then holds the most any window of the coming cold
start needs (`horizon_s`: node provisioning plus startup plus a tick): replicas start one cold start ahead of the
load that needs them and leave when no window within a cold start needs them.

A request that no fleet could serve within the SLO (alone on an idle replica, its prefill exceeds the TTFT target
or its decode step the TPOT target) is left out of that search: no number of replicas helps it.

The instant-start bound is the same without cold starts: each window gets exactly what it needs, ready at once.
It is the physical limit of autoscaling on this trace and model; the oracle is the limit with cold starts.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.compiled import Candidate, CompiledScenario
from autoscaler.perf import ReplicaProfile
from autoscaler.shapes import Shape
from autoscaler.sim.fleet import FixedTargets, FleetSim, FleetView, ServiceRequests, Targets


def _window(requests: ServiceRequests, start: float, end: float) -> tuple[ServiceRequests, int]:
    """The requests arriving in [start, end), shifted to start at 0, and the index of the first of them."""
    lo = bisect.bisect_left(requests.arrival_s, start)
    hi = bisect.bisect_left(requests.arrival_s, end)
    chunk = ServiceRequests(
        requests.service,
        [t - start for t in requests.arrival_s[lo:hi]],
        requests.input_tokens[lo:hi],
        requests.output_tokens[lo:hi],
    )
    return chunk, lo


def _meets(
    config: CompiledScenario,
    requests: ServiceRequests,
    attainable: list[bool],
    shape: Shape,
    replicas: int,
    judged_from: int,
    attainment: float = 1.0,
) -> bool:
    """Do `replicas` ready replicas of `shape` serve the requests from index `judged_from` on within the SLO, all
    but a (1 - attainment) share of them (rounded down)? `attainable[i]`: request i can meet the SLO at all."""
    judged = len(requests.arrival_s) - judged_from
    if replicas == 0:
        return judged == 0
    slo = config.plans[requests.service].service.slo
    ttft_target, tpot_target = slo.ttft_p95_s, slo.tpot_p95_s
    sim = FleetSim(config, {requests.service: requests}, instant_start=True, drain_grace_s=120.0)
    result = sim.run(FixedTargets({requests.service: {shape: replicas}}, "probe"))
    ttft, tpot = result.ttft_s[requests.service], result.tpot_s[requests.service]
    allowed = math.floor((1.0 - attainment) * judged + 1e-9)
    for i in range(judged_from, len(ttft)):
        if not attainable[i]:
            continue
        first, per_token = ttft[i], tpot[i]
        # NaN compares false: an unserved request is late, a one-token request has no TPOT to miss.
        if not first <= ttft_target or per_token > tpot_target:
            allowed -= 1
            if allowed < 0:
                return False
    return True


def attainable_requests(profile: ReplicaProfile, requests: ServiceRequests, ttft_s: float, tpot_s: float) -> list[bool]:
    """Per request: could it meet the SLO at all, alone on an idle replica? A prompt whose prefill alone takes
    longer than the TTFT target cannot, however many replicas run; the oracle does not buy replicas for it."""
    out = []
    for prompt, output in zip(requests.input_tokens, requests.output_tokens, strict=True):
        fits = profile.prefill_ms(prompt) / 1000.0 <= ttft_s
        out.append(fits and (output <= 1 or profile.decode_step_ms(1, prompt + output) / 1000.0 <= tpot_s))
    return out


def needed_per_window(
    config: CompiledScenario,
    requests: ServiceRequests,
    candidate: Candidate,
    tick_s: float,
    warmup_s: float = 60.0,
    attainment: float = 0.999,
) -> list[int]:
    """Per tick window from time 0: the fewest ready replicas of `candidate` that serve it within the SLO
    (`max_replicas + 1` where even max_replicas do not)."""
    service = config.plans[requests.service].service
    assert candidate.profile is not None
    everyone = attainable_requests(candidate.profile, requests, service.slo.ttft_p95_s, service.slo.tpot_p95_s)
    end = requests.arrival_s[-1] if requests.arrival_s else 0.0
    windows = int(end // tick_s) + 1
    needed = []
    previous = service.min_replicas
    for w in range(windows):
        start = w * tick_s
        chunk, first = _window(requests, max(0.0, start - warmup_s), start + tick_s)
        judged = bisect.bisect_left(chunk.arrival_s, start - max(0.0, start - warmup_s))
        attainable = everyone[first : first + len(chunk.arrival_s)]

        meets = functools.partial(
            _meets, config, chunk, attainable, candidate.shape, judged_from=judged, attainment=attainment
        )
        # Search around the previous window's answer: neighbouring windows need similar fleets.
        low, high = 0, max(1, previous)
        while high <= service.max_replicas and not meets(high):
            low, high = high, high * 2
        high = min(high, service.max_replicas + 1)
        while low + 1 < high:
            mid = (low + high) // 2
            if meets(mid):
                high = mid
            else:
                low = mid
        if high <= service.max_replicas and meets(low):
            high = low
        needed.append(max(service.min_replicas, high))
        previous = max(1, high)
    return needed


@dataclass
class OraclePolicy:
    """Clairvoyant targets per tick (see the module docstring); `instant=True` gives the instant-start bound."""

    config: CompiledScenario
    requests: Mapping[str, ServiceRequests]
    tick_s: float | None = None
    instant: bool = False
    name: str = "oracle"
    plan: dict[str, tuple[Shape, list[int], float]] = field(default_factory=dict)
    # The windows' needs per (service, shape, tick): the oracle and the instant-start bound share them (`compare`).
    needs: dict[tuple[str, Shape, float], list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tick = self.tick_s or self.config.scenario.policy.tick_s
        self.tick_s = tick
        if self.instant:
            self.name = "instant_start"
        for name, requests in self.requests.items():
            best: tuple[float, Shape, list[int], float] | None = None
            for candidate in self.config.plans[name].candidates:
                if candidate.profile is None:
                    continue
                key = (name, candidate.shape, tick)
                if key not in self.needs:
                    self.needs[key] = needed_per_window(self.config, requests, candidate, tick)
                needed = self.needs[key]
                horizon = 0.0 if self.instant else self._cold_start(candidate) + tick
                held = self._hold(needed, horizon, tick)
                cost = sum(held) * candidate.price_usd_per_h
                if best is None or cost < best[0]:
                    best = (cost, candidate.shape, held, horizon)
            if best is None:
                raise ValueError(f"service {name}: no shape can serve it")
            self.plan[name] = (best[1], best[2], best[3])

    def _cold_start(self, candidate: Candidate) -> float:
        return self.config.pools[candidate.pool].node_provisioning_s + candidate.startup_s

    @staticmethod
    def _hold(needed: list[int], horizon_s: float, tick_s: float) -> list[int]:
        """At each tick: the most any window from now to a cold start ahead needs."""
        ahead = math.ceil(horizon_s / tick_s)
        return [max(needed[k : k + ahead + 1]) for k in range(len(needed))]

    def targets(self, view: FleetView) -> Targets:
        assert self.tick_s is not None
        k = round(view.now_s / self.tick_s)
        out = {}
        for name, (shape, held, _) in self.plan.items():
            out[name] = {shape: held[min(k, len(held) - 1)] if held else 0}
        return out
