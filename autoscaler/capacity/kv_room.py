"""The KV cache as servers of a queue (Hayward's approximation), for requests of varying size."""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.capacity.lengths import Lengths
from autoscaler.perf import ReplicaProfile


@dataclass(frozen=True, slots=True)
class KvRoom:
    """The KV cache as servers of a queue, by Hayward's approximation for requests of varying size.

    The engine reserves each request's prompt and output tokens from admission to its last token. The tokens
    reserved at a random moment (infinitely many servers) have mean m = lambda E[size H] and variance
    v = lambda E[size^2 H]: their peakedness z = v / m is in tokens. Hayward's approximation serves that traffic as
    m / z offered load on (KV tokens) / z servers of the mean holding time. With equal lengths z is the request's
    size, and this is the slot count and load of one-size requests.
    """

    offered: float
    servers: int

    @staticmethod
    def of(profile: ReplicaProfile, lengths: Lengths, arrival_rps: float, tau: float) -> KvRoom:
        i1, i2, i1_s, i2_s = lengths.prompt
        o1, o2, d0, d1, d2 = lengths.output
        s = lengths.mean_s
        size_time = i1_s + i1 * d0 * tau + s * o1 + d1 * tau
        size2_time = i2_s + i2 * d0 * tau + 2.0 * (i1_s * o1 + i1 * d1 * tau) + s * o2 + d2 * tau
        peakedness = size2_time / max(size_time, 1e-18)
        servers = int(profile.kv_capacity_tokens.value // max(peakedness, 1.0))
        return KvRoom(arrival_rps * size_time / max(peakedness, 1.0), servers)
