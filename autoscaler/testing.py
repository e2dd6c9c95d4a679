"""Hand-written fakes of every port (`autoscaler/ports.py`), for fleetscale's tests, the simulator and yours.

Each fake records its calls, takes one-shot error injection (`next_error`: raised by the next call, then cleared),
has knobs for its state, and a `reset()`. They are plain in-memory objects: no threads, no I/O, no clock reads.

- `FakeClock`: starts at a fixed instant (2000-01-01 UTC by default); `sleep` advances it at once; `advance` and
  `set` move it by hand. The simulator drives its loop with one.
- `FakeMetricsSource`: per-service `ServiceMetrics` you set (`set_rate` builds them from a rate), with a request
  counter that advances by rate x elapsed time, and canned history for restarts.
- `FakeFleet`: an `InventorySource` and an `Actuator` over one in-memory fleet: what `set_replicas` applies is
  what `snapshot` reports (new replicas ready at once, or starting until `make_ready`); `max_applied` caps what a
  call may apply (a quota: the platform takes part of a scale-up), `foreign_write` plays another writer.
- `MemoryStateStore`: keeps the `StoredState`; with `serialize=True` it round-trips through the file format.
- `FakeSpendSource`: a month-to-date spend, or an error.
- `MemoryAuditSink` (from `autoscaler.audit`): the events, in a list.

Stability: alpha, like the ports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from autoscaler.audit import MemoryAuditSink
from autoscaler.config import Service
from autoscaler.errors import TransientError
from autoscaler.model import ShapeReplicas, require_aware
from autoscaler.ports import Inventory, RateSample, ScaleRequest, ScaleResult, ServiceMetrics, StoredState
from autoscaler.shapes import Shape
from autoscaler.state_store import decode_state, encode_state

DEFAULT_START = datetime(2000, 1, 1, tzinfo=UTC)

__all__ = [
    "DEFAULT_START",
    "FakeClock",
    "FakeFleet",
    "FakeMetricsSource",
    "FakeSpendSource",
    "MemoryAuditSink",
    "MemoryStateStore",
]


def _take(error: Exception | None) -> None:
    if error is not None:
        raise error


class FakeClock:
    """A clock that moves only when told: `sleep(s)` and `advance(s)` add s seconds, `set(t)` jumps (a clock jump
    backwards included: `monotonic` never goes back, as a real monotonic clock does not)."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = require_aware(start, "FakeClock(start)")
        self._monotonic = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def sleep(self, seconds: float, wakeup: threading.Event | None = None) -> bool:
        self.sleeps.append(seconds)
        if wakeup is not None and wakeup.is_set():
            return True
        self.advance(max(0.0, seconds))
        return False

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        self._monotonic += max(0.0, seconds)
        return self._now

    def set(self, when: datetime) -> None:
        when = require_aware(when, "FakeClock.set")
        self._monotonic += max(0.0, (when - self._now).total_seconds())
        self._now = when

    def reset(self, start: datetime = DEFAULT_START) -> None:
        self.__init__(start)  # type: ignore[misc]


@dataclass
class _Rate:
    request_rps: float | None
    input_tokens: float
    output_tokens: float
    since: datetime
    total: float


class FakeMetricsSource:
    """Metrics you set. `set_rate(service, rps)` makes the service report that rate (and `rps x tokens` token
    rates) sampled at the clock's `now` from then on, with a request counter that grows with it; `set(service,
    metrics)` sets a fixed `ServiceMetrics` (a stale sample, a NaN); `drop(service)` makes it report nothing."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.next_error: Exception | None = None
        self.calls: list[tuple[str, datetime]] = []
        self.histories: dict[str, list[RateSample]] = {}
        self._rates: dict[str, _Rate] = {}
        self._fixed: dict[str, ServiceMetrics | None] = {}

    def set_rate(
        self, service: str, request_rps: float | None, input_tokens: float = 1000.0, output_tokens: float = 200.0
    ) -> None:
        now = self.clock.now()
        total = self._total(service, now)
        self._rates[service] = _Rate(request_rps, input_tokens, output_tokens, now, total)
        self._fixed.pop(service, None)

    def set(self, service: str, metrics: ServiceMetrics) -> None:
        self._fixed[service] = metrics

    def drop(self, service: str) -> None:
        self._fixed[service] = None

    def _total(self, service: str, now: datetime) -> float:
        rate = self._rates.get(service)
        if rate is None:
            return 0.0
        elapsed = max(0.0, (now - rate.since).total_seconds())
        return rate.total + (rate.request_rps or 0.0) * elapsed

    def observe(self, services: Sequence[Service], now: datetime) -> Mapping[str, ServiceMetrics]:
        self.calls.append(("observe", now))
        error, self.next_error = self.next_error, None
        _take(error)
        result: dict[str, ServiceMetrics] = {}
        for service in services:
            name = service.name
            if name in self._fixed:
                fixed = self._fixed[name]
                if fixed is not None:
                    result[name] = fixed
                continue
            rate = self._rates.get(name)
            if rate is None:
                continue
            rps = rate.request_rps
            result[name] = ServiceMetrics(
                sampled_at=now,
                request_rps=rps,
                input_tokens_per_s=None if rps is None else rps * rate.input_tokens,
                output_tokens_per_s=None if rps is None else rps * rate.output_tokens,
                requests_total=self._total(name, now),
            )
        return result

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        self.calls.append(("history", end))
        error, self.next_error = self.next_error, None
        _take(error)
        return [s for s in self.histories.get(service.name, []) if start <= s.at <= end]

    def reset(self) -> None:
        self.__init__(self.clock)  # type: ignore[misc]


@dataclass
class _Workload:
    ready: int = 0
    starting: int = 0
    spec: int = 0


@dataclass
class FakeFleet:
    """An in-memory fleet that is both the `InventorySource` and the `Actuator`.

    `set_replicas` sets the spec and, by default, makes the replicas ready at once (`start_ready=False`: new ones
    start, and `make_ready()` readies them; removed ones go at once). `max_applied[(service, shape)]` caps what one
    call applies (a quota). `foreign_write(service, shape, n)` sets the spec as another writer would.
    """

    start_ready: bool = True
    next_error: Exception | None = None
    snapshot_error: Exception | None = None
    max_applied: dict[tuple[str, Shape], int] = field(default_factory=dict)
    calls: list[ScaleRequest] = field(default_factory=list)
    snapshots: int = 0
    _workloads: dict[tuple[str, Shape], _Workload] = field(default_factory=dict)

    def seed(self, service: str, shape: Shape, replicas: int) -> None:
        """Replicas that run before the loop starts (ready, spec set by someone earlier)."""
        self._workloads[(service, shape)] = _Workload(replicas, 0, replicas)

    def foreign_write(self, service: str, shape: Shape, replicas: int) -> None:
        self._workloads.setdefault((service, shape), _Workload()).spec = replicas

    def make_ready(self) -> None:
        for workload in self._workloads.values():
            workload.ready += workload.starting
            workload.starting = 0

    def replicas(self, service: str) -> dict[Shape, int]:
        """Ready plus starting per shape (what runs)."""
        return {s: w.ready + w.starting for (svc, s), w in self._workloads.items() if svc == service}

    def specs(self, service: str) -> dict[Shape, int]:
        return {s: w.spec for (svc, s), w in self._workloads.items() if svc == service}

    def snapshot(self, now: datetime) -> Inventory:
        self.snapshots += 1
        error, self.snapshot_error = self.snapshot_error, None
        _take(error)
        replicas: dict[str, dict[Shape, ShapeReplicas]] = {}
        for (service, shape), w in self._workloads.items():
            replicas.setdefault(service, {})[shape] = ShapeReplicas(w.ready, w.starting, w.spec)
        return Inventory(replicas)

    def set_replicas(self, request: ScaleRequest) -> ScaleResult:
        self.calls.append(request)
        error, self.next_error = self.next_error, None
        _take(error)
        key = (request.service, request.shape)
        workload = self._workloads.setdefault(key, _Workload())
        cap = self.max_applied.get(key)
        applied = request.replicas if cap is None else min(request.replicas, max(cap, workload.spec))
        note = "" if applied == request.replicas else f"quota allows {applied} of {request.replicas}"
        workload.spec = applied
        running = workload.ready + workload.starting
        if applied > running:
            if self.start_ready:
                workload.ready += applied - running
            else:
                workload.starting += applied - running
        elif applied < running:
            gone = running - applied
            cancelled = min(gone, workload.starting)  # starting replicas are cancelled first
            workload.starting -= cancelled
            workload.ready -= gone - cancelled
        return ScaleResult(applied, note)

    def reset(self) -> None:
        self.__init__(self.start_ready)  # type: ignore[misc]


class MemoryStateStore:
    """Keeps the last saved `StoredState`. `serialize=True` stores the file format's document instead, so that
    what comes back is what a restart from disk would read."""

    def __init__(self, serialize: bool = False) -> None:
        self.serialize = serialize
        self.next_error: Exception | None = None
        self.saves = 0
        self._state: StoredState | None = None
        self._document: dict[str, object] | None = None

    def load(self) -> StoredState | None:
        error, self.next_error = self.next_error, None
        _take(error)
        if self.serialize:
            return None if self._document is None else decode_state(self._document, "memory state store")
        return self._state

    def save(self, state: StoredState) -> None:
        error, self.next_error = self.next_error, None
        _take(error)
        self.saves += 1
        if self.serialize:
            self._document = encode_state(state)
        else:
            self._state = state

    def reset(self) -> None:
        self.__init__(self.serialize)  # type: ignore[misc]


class FakeSpendSource:
    """A month-to-date spend in USD (None: unknown, which raises as a real source would)."""

    def __init__(self, spend_usd: float | None = 0.0) -> None:
        self.spend_usd = spend_usd
        self.next_error: Exception | None = None

    def month_to_date_spend_usd(self, now: datetime) -> float:
        error, self.next_error = self.next_error, None
        _take(error)
        if self.spend_usd is None:
            raise TransientError("month-to-date spend is unknown")
        return self.spend_usd
