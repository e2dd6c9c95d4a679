"""Latency of one replica under load, and its capacity at an SLO.

This is the "under load" half of the performance model (`perf.py` gives the step times). The engine it describes
is the one the simulator runs (`autoscaler/sim/replica.py`): requests arrive at rate lambda, wait in one FIFO
queue, and get a prefill iteration of their own, which has priority over decode steps (vLLM's default scheduling
without chunked prefill); between prefills the engine runs decode steps for all running sequences. Each request
holds a slot (and its KV tokens) from prefill to its last token.

Prompt and output lengths are either all at their means or exponential around them (`LengthSpread`; real
traffic and the replay's rate series are the latter). With prefill times s (mean E[s] over the prompt lengths)
and utilisation rho = lambda * E[s]:

- TPOT: a decode step of b sequences takes t(b); prefills interleave, so the mean time per token is
  tau = t(b) / (1 - rho) with b = lambda * (E[O] - 1) * tau (Little's law), solved as a fixed point. A request's
  own time per token adds the prefills that interrupt its O - 1 steps, a branching count of arrivals whose
  prompts vary; the share of requests over the bound is averaged over the output lengths (`tpot_miss_share`).
- TTFT: the prefill queue waits like an M/D/1 queue whose server takes "vacations" (decode steps) when idle: the
  M/D/1 wait plus the residual of a decode step (Fuhrmann-Cooper decomposition), stretched by ca^2 + cs^2 for
  arrivals and prefill times that vary (Kingman); TTFT = wait + the request's own prefill, averaged over the
  prompt lengths. The M/D/1 wait distribution comes from the Pollaczek-Khinchine series, solved on a grid; far in
  the tail the Cramer-Lundberg asymptote takes over.
- Concurrency: a request holds a slot for H = E[s] + (E[O] - 1) * tau; with c slots a request may wait for one
  (Erlang C), and for KV room, which it reserves for its prompt and output (Hayward's equivalent servers,
  `KvRoom`); that wait adds to the TTFT tail.

The SLO holds at lambda when the shares of requests missing on TPOT, on the prefill queue and on a slot add up to
at most 1 - quantile: `quantile` is the share of requests within both bounds, which is what the replay's SLO
attainment counts. capacity_at_slo is the highest such lambda, by bisection (each share grows with lambda). With
n replicas behind a least-loaded router each sees smoother arrivals than Poisson (`arrival_cv2_behind_router`), so
each sustains more; behind round robin or a random pick (`Routing`), each is a lone replica.

tests/unit/test_capacity.py checks it against brute-force simulations of the same engine: within 5 % with equal
lengths; with exponential lengths the share missing at capacity is within 1.35x of the allowed one, and a fleet at
its pooled capacity holds the SLO behind the replay's least-loaded router (and behind the others, the lone capacity).
"""

from autoscaler.capacity.slo import (
    PooledCapacity,
    arrival_cv2_behind_router,
    capacity_at_slo,
    pooled_capacity,
    predict_latency,
)
from autoscaler.capacity.values import (
    Binding,
    Capacity,
    LatencyEstimate,
    LatencySlo,
    LengthSpread,
    Routing,
    TokenMix,
)

__all__ = [
    "Binding",
    "Capacity",
    "LatencyEstimate",
    "LatencySlo",
    "LengthSpread",
    "PooledCapacity",
    "Routing",
    "TokenMix",
    "arrival_cv2_behind_router",
    "capacity_at_slo",
    "pooled_capacity",
    "predict_latency",
]
