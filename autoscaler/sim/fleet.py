"""The fleet simulator: request-by-request replay of traces on replicas that a policy scales, with cold starts.

Discrete events on one clock (a heap of times):
- arrival: a request of a service reaches its gateway (the traces' arrivals, merged in time order, run beside
  the heap). By the service's `routing`:
  - least_loaded (the default): to the ready replica with the fewest requests in flight, among those below
    `max_ongoing` (the replica's engine slots); when every replica is full or none is ready, it waits in the
    gateway's FIFO queue (Ray Serve's handle queue, Knative's activator buffer) and goes to the first replica that
    frees a slot or becomes ready. With one slot per replica this is the M/M/c queue.
  - round_robin and random: to the next ready replica in turn, or to one drawn at random (seeded by the service's
    name), full or not: it queues in that replica's engine, as behind kube-proxy. With none ready, it waits in the
    gateway's queue.
- engine: a replica's engine ends an iteration (`engine.ReplicaEngine`, the performance model of `perf.py`).
- ready: a replica finishes its cold start: node provisioning when its pool has no free GPU for it (the pool's
  `node_provisioning_s`), then the replica's startup (image pull, weight load, engine init; `startup_s` of its
  profile).
- sample: every `sample_s`, the requests in flight per service (the metric HPA, KPA and Ray Serve scale on).
- tick: every `tick_s`, the policy sees the last window and returns targets per service and shape; new replicas
  start cold, removed ones stop taking requests and drain (DESIGN.md safety rule 5: they go once empty; starting
  ones are cancelled first).

The fleet starts warm: the policy's first targets are ready at time 0. Cost is what the replicas occupy from
creation (cold start included, since the GPU is held) to their last request: GPU share x the pool's price per
GPU-hour, the cost model of sizing. Pools are counted in GPUs: a pool adds a node when a new replica finds no free
GPU share in the nodes it has, and gives a node back after it has stayed unneeded for `node_idle_s` (the cluster
autoscaler's 10 minutes).
"""

from __future__ import annotations

import heapq
import math
import random
import zlib
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from autoscaler.capacity import Routing
from autoscaler.compiled import Candidate, CompiledScenario
from autoscaler.config import NodePool
from autoscaler.pickling import picklable_by_fields
from autoscaler.shapes import Shape
from autoscaler.sim.engine import Done, ReplicaEngine


@dataclass(frozen=True, slots=True)
class ServiceRequests:
    """One service's requests, sorted by arrival (seconds from the start of the replay). The first `warmup`
    requests are a warm-up: replayed, but not scored (see `workload.with_warmup`)."""

    service: str
    arrival_s: list[float]
    input_tokens: list[int]
    output_tokens: list[int]
    warmup: int = 0


class State(IntEnum):
    STARTING = 0
    READY = 1
    DRAINING = 2
    GONE = 3


@dataclass(eq=False, slots=True)
class SimReplica:
    service: str
    shape: Shape
    candidate: Candidate
    engine: ReplicaEngine
    created_s: float
    ready_s: float
    state: State = State.STARTING
    ended_s: float = math.nan
    version: int = 0
    cap: int = 0  # requests in flight the gateway gives it at most


@dataclass(frozen=True, slots=True)
class ServiceWindow:
    """What a policy sees of one service at a tick: the last window's arrivals and tokens, the in-flight samples
    of the last minutes, and the replicas per shape by state. `samples` is the simulator's own buffer (copying it
    every tick would cost more than the tick): read it during the tick, do not keep it."""

    service: str
    window_s: float
    arrivals: int
    input_tokens: int
    output_tokens: int
    samples: Sequence[tuple[float, int, int]]  # (time, requests in flight incl. gateway queue, ready replicas)
    ready: Mapping[Shape, int]
    starting: Mapping[Shape, int]
    queued: int

    def mean_in_flight(self, over_s: float, now_s: float) -> float:
        """Mean requests in flight (gateway queue included) over the last `over_s` seconds of samples."""
        since = now_s - over_s - 1e-9
        total = count = 0
        for t, n, _ in reversed(self.samples):  # newest first: stop at the first sample before the window
            if t <= since:
                break
            total += n
            count += 1
        return total / count if count else 0.0

    @property
    def rate_rps(self) -> float:
        return self.arrivals / self.window_s


@dataclass(frozen=True, slots=True)
class FleetView:
    now_s: float
    services: Mapping[str, ServiceWindow]


Targets = Mapping[str, Mapping[Shape, int]]


class Policy(Protocol):
    """What the simulator scales with: targets per service and shape at each tick."""

    name: str

    def targets(self, view: FleetView) -> Targets: ...


@dataclass
class FixedTargets:
    """A policy that always asks for the same targets: a fleet that stays as it is (probes, plans, benchmarks)."""

    fixed: Targets
    name: str = "fixed"

    def targets(self, view: FleetView) -> Targets:
        return self.fixed


@dataclass(frozen=True, slots=True)
class TickRecord:
    at_s: float
    service: str
    ready: int
    starting: int
    draining: int
    gpus: float
    cost_usd_per_h: float
    arrivals: int
    target: int


@dataclass(frozen=True, slots=True)
class ReplicaSpan:
    """One replica's life: it holds `gpu_share` GPUs at `usd_per_h` from `created_s` (cold start included) to
    `end_s`, and serves from `ready_s`."""

    service: str
    shape: Shape
    created_s: float
    ready_s: float
    end_s: float
    gpu_share: float
    usd_per_h: float


@dataclass
class ReplayResult:
    """Per request: first token and finish time (nan: not served), TTFT and TPOT; per tick: replicas and cost."""

    policy: str
    requests: Mapping[str, ServiceRequests]
    ttft_s: dict[str, Sequence[float]]
    tpot_s: dict[str, Sequence[float]]
    finish_s: dict[str, Sequence[float]]
    ticks: list[TickRecord]
    replica_spans: list[ReplicaSpan]
    scale_events: int
    end_s: float
    node_gpu_hours: dict[str, float] = field(default_factory=dict)


class _Pool:
    """A pool counted in GPUs: nodes that are up or coming, GPU share allocated, and when nodes became unneeded."""

    def __init__(self, pool: NodePool) -> None:
        self.pool = pool
        self.nodes_ready: list[float] = []  # ready times of its nodes
        self.allocated = 0.0
        self.unneeded_since: float | None = None
        self.node_seconds = 0.0
        self.last_s = 0.0

    def _account(self, now: float) -> None:
        self.node_seconds += len(self.nodes_ready) * (now - self.last_s)
        self.last_s = now

    def take(self, share: float, now: float, warm: bool = False) -> float:
        """Allocate `share` GPUs; return when they are available (now, or when a new node is up). The nodes of
        the warm start are up at once."""
        self._account(now)
        size = self.pool.gpus_per_node
        self.allocated += share
        while self.allocated > len(self.nodes_ready) * size + 1e-9:
            self.nodes_ready.append(now if warm else now + self.pool.node_provisioning_s)
        self.unneeded_since = None
        # The share lands on the latest node that its allocation needed.
        needed = math.ceil(self.allocated / size - 1e-9)
        return max(now, sorted(self.nodes_ready)[needed - 1])

    def give(self, share: float, now: float) -> None:
        self._account(now)
        self.allocated = max(0.0, self.allocated - share)

    def shrink(self, now: float, idle_s: float) -> None:
        """Give back nodes that stayed unneeded for `idle_s` (the cluster autoscaler's scale-down)."""
        self._account(now)
        spare = len(self.nodes_ready) - math.ceil(self.allocated / self.pool.gpus_per_node - 1e-9)
        if spare <= 0:
            self.unneeded_since = None
            return
        if self.unneeded_since is None:
            self.unneeded_since = now
        elif now - self.unneeded_since >= idle_s:
            self.nodes_ready.sort()
            del self.nodes_ready[len(self.nodes_ready) - spare :]
            self.unneeded_since = None


# The routings as small ints, for the per-arrival branch.
_LEAST_LOADED, _ROUND_ROBIN, _RANDOM = 0, 1, 2
_ROUTING_CODE = {Routing.LEAST_LOADED: _LEAST_LOADED, Routing.ROUND_ROBIN: _ROUND_ROBIN, Routing.RANDOM: _RANDOM}


class _Service:
    def __init__(
        self,
        requests: ServiceRequests,
        max_ongoing: int | None,
        history_s: float,
        sample_s: float,
        routing: Routing = Routing.LEAST_LOADED,
    ) -> None:
        self.requests = requests
        self.name = requests.service
        self.routing = _ROUTING_CODE[routing]
        self.turn = 0  # round robin's next position among the ready replicas
        self.draw = random.Random(zlib.crc32(self.name.encode()))  # random routing's, the same on every replay
        self.replicas: list[SimReplica] = []
        self.ready: list[SimReplica] = []  # the replicas the gateway routes to
        self.gateway: deque[int] = deque()
        self.next_request = 0
        self.max_ongoing = max_ongoing
        n = len(requests.arrival_s)
        # Arrays of doubles, not lists of floats: a 14-day replay has tens of millions of requests, and whatif keeps
        # every policy's results (8 bytes a figure instead of 32).
        self.ttft = array("d", [math.nan]) * n
        self.tpot = array("d", [math.nan]) * n
        self.finish = array("d", [math.nan]) * n
        self.window_arrivals = 0
        self.window_input = 0
        self.window_output = 0
        self.last_window_arrivals = 0
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=max(1, round(history_s / sample_s)))
        self.in_flight = 0  # requests arrived and not finished: the gateway's queue and the replicas'


class FleetSim:
    """One replay of `requests` under one policy (see the module docstring)."""

    def __init__(
        self,
        config: CompiledScenario,
        requests: Mapping[str, ServiceRequests],
        *,
        tick_s: float | None = None,
        sample_s: float = 2.0,
        history_s: float = 120.0,
        node_idle_s: float = 600.0,
        max_ongoing: int | None = None,
        drain_grace_s: float = 600.0,
        instant_start: bool = False,
    ) -> None:
        unknown = sorted(set(requests) - set(config.plans))
        if unknown:
            raise ValueError(f"traces for services the scenario does not have: {', '.join(unknown)}")
        self.config = config
        self.tick_s = tick_s or config.scenario.policy.tick_s
        self.sample_s = sample_s
        self.history_s = history_s
        self.node_idle_s = node_idle_s
        self.drain_grace_s = drain_grace_s
        self.instant_start = instant_start
        self.services = {
            name: _Service(reqs, max_ongoing, history_s, sample_s, config.plans[name].service.routing)
            for name, reqs in requests.items()
        }
        self.pools = {name: _Pool(pool) for name, pool in config.pools.items()}
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.order = 0
        self.now = 0.0
        self.all_replicas: list[SimReplica] = []
        self.ticks: list[TickRecord] = []
        self.scale_events = 0

    # --- the event loop -------------------------------------------------------------------------------------------

    def _push(self, at: float, kind: int, obj: object, version: int = 0) -> None:
        self.order += 1
        heapq.heappush(self.heap, (at, self.order, kind, obj, version))

    def run(self, policy: Policy) -> ReplayResult:
        services = list(self.services.values())
        last_arrival = max((s.requests.arrival_s[-1] for s in services if s.requests.arrival_s), default=0.0)
        end = last_arrival + self.drain_grace_s
        # Arrivals come from the traces in order: each service's next arrival in a small heap beside the event
        # heap, not an event each in it (on equal times, the service listed first goes first).
        arrivals = [(s.requests.arrival_s[0], k) for k, s in enumerate(services) if s.requests.arrival_s]
        heapq.heapify(arrivals)
        next_arrival, next_service = arrivals[0] if arrivals else (math.inf, -1)
        self._apply(policy.targets(self._view()), warm=True)
        self._push(self.tick_s, _TICK, None)
        self._push(self.sample_s, _SAMPLE, None)
        heap = self.heap
        pop = heapq.heappop
        while heap or next_arrival < math.inf:
            if not heap or next_arrival < heap[0][0]:  # on a tie the event already due goes first
                if next_arrival > end:
                    break
                self.now = next_arrival
                service = services[next_service]
                self._arrival(service)
                if service.next_request < len(service.requests.arrival_s):
                    heapq.heapreplace(arrivals, (service.requests.arrival_s[service.next_request], next_service))
                else:
                    heapq.heappop(arrivals)
                next_arrival, next_service = arrivals[0] if arrivals else (math.inf, -1)
                continue
            at, _, kind, obj, version = pop(heap)
            if at > end:
                break
            self.now = at
            if kind == _ENGINE:
                assert isinstance(obj, SimReplica)
                if obj.version == version:
                    self._engine_event(obj)
            elif kind == _READY:
                assert isinstance(obj, SimReplica)
                if obj.state is State.STARTING and obj.version == version:
                    self._make_ready(self.services[obj.service], obj)
            elif kind == _SAMPLE:
                for service in services:
                    service.samples.append((at, service.in_flight, len(service.ready)))
                self._push(at + self.sample_s, _SAMPLE, None)
            elif kind == _TICK:
                if at <= last_arrival + self.tick_s:
                    self._apply(policy.targets(self._view()))
                    self._push(at + self.tick_s, _TICK, None)
                if not self._busy() and at > last_arrival:
                    break
        return self._result(policy.name)

    def _busy(self) -> bool:
        return any(s.in_flight for s in self.services.values()) or any(
            s.next_request < len(s.requests.arrival_s) for s in self.services.values()
        )

    def _arrival(self, service: _Service) -> None:
        i = service.next_request
        service.next_request += 1
        service.window_arrivals += 1
        service.in_flight += 1
        service.window_input += service.requests.input_tokens[i]
        service.window_output += service.requests.output_tokens[i]
        target = self._route(service)
        if target is None or service.gateway:
            service.gateway.append(i)
        else:
            self._submit(target, i)

    def _route(self, service: _Service) -> SimReplica | None:
        if service.routing != _LEAST_LOADED:
            ready = service.ready
            if not ready:
                return None
            if service.routing == _ROUND_ROBIN:
                service.turn = (service.turn + 1) % len(ready)
                return ready[service.turn]
            return ready[int(service.draw.random() * len(ready))]
        best: SimReplica | None = None
        least = 1 << 60
        for replica in service.ready:
            load = replica.engine.in_flight
            if load < least and load < replica.cap:
                best, least = replica, load
        return best

    def _submit(self, replica: SimReplica, request: int) -> None:
        engine = replica.engine
        before = engine.busy_until
        engine.submit(request, self.now)
        if engine.busy_until != before:
            replica.version += 1
            self.order += 1
            heapq.heappush(self.heap, (engine.busy_until, self.order, _ENGINE, replica, replica.version))

    def _engine_event(self, replica: SimReplica) -> None:
        # The hottest path of a replay (an event per prefill and per decode run): kept free of lookups.
        engine = replica.engine
        engine.advance()
        if replica.state is State.READY:
            service = self.services[replica.service]
            if service.gateway:
                self._feed(service, replica)
        if engine.busy_until != math.inf:
            replica.version += 1
            self.order += 1
            heapq.heappush(self.heap, (engine.busy_until, self.order, _ENGINE, replica, replica.version))
        elif replica.state is State.DRAINING and engine.in_flight == 0:
            self._retire(replica)

    def _feed(self, service: _Service, replica: SimReplica) -> None:
        """Give queued requests to `replica` while it has free slots."""
        while service.gateway and replica.engine.in_flight < replica.cap:
            self._submit(replica, service.gateway.popleft())

    def _retire(self, replica: SimReplica) -> None:
        replica.state = State.GONE
        replica.ended_s = self.now
        self.pools[replica.candidate.pool].give(replica.candidate.gpu_share, self.now)

    # --- scaling ----------------------------------------------------------------------------------------------

    def _view(self) -> FleetView:
        windows = {}
        for name, service in self.services.items():
            ready: dict[Shape, int] = {}
            starting: dict[Shape, int] = {}
            for replica in service.replicas:
                if replica.state is State.READY:
                    ready[replica.shape] = ready.get(replica.shape, 0) + 1
                elif replica.state is State.STARTING:
                    starting[replica.shape] = starting.get(replica.shape, 0) + 1
            windows[name] = ServiceWindow(
                name, self.tick_s, service.window_arrivals, service.window_input, service.window_output,
                service.samples, ready, starting, len(service.gateway),
            )  # fmt: skip
            service.last_window_arrivals = service.window_arrivals
            service.window_arrivals = service.window_input = service.window_output = 0
        return FleetView(self.now, windows)

    def _apply(self, targets: Targets, warm: bool = False) -> None:
        for name, service in self.services.items():
            plan = self.config.plans[name]
            wanted = targets.get(name, {})
            shapes = {r.shape for r in service.replicas if r.state in (State.STARTING, State.READY)} | set(wanted)
            for shape in shapes:
                live = [r for r in service.replicas if r.shape == shape and r.state in (State.STARTING, State.READY)]
                want = wanted.get(shape, 0)
                if want > len(live):
                    candidate = plan.candidate(shape)
                    if candidate is None or candidate.profile is None:
                        raise ValueError(f"service {name}: the policy asked for {shape}, which it cannot run")
                    for _ in range(want - len(live)):
                        self._start(service, shape, candidate, warm)
                    self.scale_events += 0 if warm else 1
                elif want < len(live):
                    # Cancel replicas still starting (newest first), then drain the least loaded ready ones.
                    victims = sorted(live, key=lambda r: (r.state is State.READY, r.engine.in_flight, -r.created_s))
                    for replica in victims[: len(live) - want]:
                        self._stop(replica)
                    self.scale_events += 1
            service.replicas = [r for r in service.replicas if r.state is not State.GONE]
        for pool in self.pools.values():
            pool.shrink(self.now, self.node_idle_s)
        self._record(targets)

    def _start(self, service: _Service, shape: Shape, candidate: Candidate, warm: bool) -> None:
        assert candidate.profile is not None
        requests = service.requests
        engine = ReplicaEngine(
            candidate.profile, requests.arrival_s, requests.input_tokens, requests.output_tokens,
            self._done_callback(service),
        )  # fmt: skip
        nodes_at = self.pools[candidate.pool].take(candidate.gpu_share, self.now, warm)
        # A warm start (time 0) and the instant-start bound skip the cold start.
        ready = self.now if warm or self.instant_start else nodes_at + candidate.startup_s
        replica = SimReplica(service.name, shape, candidate, engine, self.now, ready)
        replica.cap = service.max_ongoing if service.max_ongoing is not None else engine.max_seqs
        service.replicas.append(replica)
        self.all_replicas.append(replica)
        if ready <= self.now:
            self._make_ready(service, replica)
        else:
            self._push(ready, _READY, replica, replica.version)

    def _make_ready(self, service: _Service, replica: SimReplica) -> None:
        replica.state = State.READY
        service.ready.append(replica)
        self._feed(service, replica)

    def _stop(self, replica: SimReplica) -> None:
        if replica.state is State.READY:
            self.services[replica.service].ready.remove(replica)
        if replica.state is State.STARTING:
            replica.version += 1  # its ready event is void
            self._retire(replica)
        elif replica.engine.in_flight == 0:
            self._retire(replica)
        else:
            replica.state = State.DRAINING

    def _done_callback(self, service: _Service) -> Done:
        arrivals = service.requests.arrival_s

        def done(request: int, first: float, last: float, tpot: float) -> None:
            service.in_flight -= 1
            service.ttft[request] = first - arrivals[request]
            service.tpot[request] = tpot
            service.finish[request] = last

        return done

    def _record(self, targets: Targets) -> None:
        for name, service in self.services.items():
            counts = [0, 0, 0]
            gpus = cost = 0.0
            for replica in service.replicas:
                if replica.state is State.GONE:
                    continue
                counts[replica.state] += 1
                gpus += replica.candidate.gpu_share
                cost += replica.candidate.price_usd_per_h
            self.ticks.append(
                TickRecord(
                    self.now, name, counts[State.READY], counts[State.STARTING], counts[State.DRAINING], gpus, cost,
                    service.last_window_arrivals, sum(targets.get(name, {}).values()),
                )
            )  # fmt: skip

    def _result(self, policy: str) -> ReplayResult:
        end = self.now
        spans = []
        for replica in self.all_replicas:
            stop = replica.ended_s if not math.isnan(replica.ended_s) else end
            spans.append(
                ReplicaSpan(
                    replica.service, replica.shape, replica.created_s, min(replica.ready_s, stop), stop,
                    replica.candidate.gpu_share, replica.candidate.price_usd_per_h,
                )
            )  # fmt: skip
        node_hours = {}
        for name, pool in self.pools.items():
            pool._account(end)
            node_hours[name] = pool.node_seconds * pool.pool.gpus_per_node / 3600.0
        return ReplayResult(
            policy,
            {name: s.requests for name, s in self.services.items()},
            {name: s.ttft for name, s in self.services.items()},
            {name: s.tpot for name, s in self.services.items()},
            {name: s.finish for name, s in self.services.items()},
            self.ticks,
            spans,
            self.scale_events,
            end,
            node_hours,
        )


_ENGINE, _READY, _SAMPLE, _TICK = range(4)


# Compiled, these would not unpickle (autoscaler/native.py): plans ship requests to Ray tasks.
picklable_by_fields(ServiceRequests, ServiceWindow, FleetView, TickRecord, ReplicaSpan)
