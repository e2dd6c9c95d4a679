"""The capacity model's value types: token mixes, routing, SLOs, and the estimates it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


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
