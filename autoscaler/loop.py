"""The control loop: one tick at a time, over the ports, the same for the controller, Ray Serve, the load tests and
the simulator.

`ControlLoop.tick()` runs these phases, in order, each timed (`TickReport.phases`):

1. observe: the metrics of every service (`MetricsSource.observe`), the inventory (`InventorySource.snapshot`),
   the month-to-date spend when a monthly budget needs it. A source that fails makes what it concerned hold:
   metrics -> the services hold (never scaling down); inventory -> no decision this tick (never half a view);
   spend -> the budget fails closed.
2. snapshot: one frozen `Observation` of all of it, and each service's rate for this tick (the increase of its
   request counter since the last tick).
3. forecast: each service's forecaster learns the tick's rate and forecasts over its horizon
   (`autoscaler/forecasters.py`).
4. decide: `decide()` (pure), with the tick's one `now`.
5. audit intent: for every service whose decision changes something, is about to be applied, or says something new
   (its reason changed), an intent event goes to the audit sink, which returns once it is durable; in apply mode the
   counts about to be asked for are saved with the state too (so that a restart after a crash mid-actuation does not
   take them for another writer). If the intent cannot be recorded, nothing is applied this tick (safety rule 7).
6. actuate (apply mode): per service, the shapes that grow first, then those that shrink (make before break); a
   hold is never actuated; a failure holds that service only, and a service whose calls fail transiently waits
   `retry_after_s`, doubling up to `MAX_BACKOFF_S`, before the loop tries again (reset on success).
7. audit outcome: what the actuator answered, per intent.
8. persist: the policy state (with what was applied) and the forecasters' state (`StateStore.save`, atomic).

Modes: `observe` computes and records; `recommend` also publishes (the `publish` callback: the CLI prints, later
adapters export); `apply` also actuates.

`run()` ticks every `tick_s` on the loop's clock until its stop event is set (SIGTERM: the tick in progress ends,
its state is saved, then `run` returns). A tick that overruns is reported and the next starts at the next slot of
the schedule: missed ticks are skipped, never stacked. `start()`, before the first tick, loads the stored state
and refills each forecaster from the metrics source's history since the state was saved.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autoscaler.audit import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, CloudEvent, source_for_scenario
from autoscaler.compiled import CompiledScenario
from autoscaler.config import EfficiencyIndicator, Mode
from autoscaler.decide import decide
from autoscaler.errors import AutoscalerError, TransientError
from autoscaler.forecasters import ForecasterBank, ForecastSettings
from autoscaler.model import (
    Decision,
    GpuTelemetry,
    Observation,
    PolicyState,
    PoolObservation,
    Reason,
    ServiceDecision,
    ServiceObservation,
    ShapeReplicas,
    ShapeTelemetry,
)
from autoscaler.ports import (
    Actuator,
    AuditSink,
    Clock,
    GpuTelemetrySource,
    Inventory,
    InventorySource,
    MetricsSource,
    ScaleRequest,
    ServiceMetrics,
    SpendSource,
    StateStore,
    StoredState,
)
from autoscaler.records import (
    OUTCOME_NOT_APPLIED,
    OUTCOME_SKIPPED,
    Action,
    Actuation,
    inputs_digest,
    intent_data,
    outcome_data,
    outcome_of,
)
from autoscaler.shapes import Shape
from forecasting import Forecast

PHASES = ("observe", "snapshot", "forecast", "decide", "audit intent", "actuate", "audit outcome", "persist")
MAX_BACKOFF_S = 300.0
PERMANENT_BACKOFF_S = 300.0  # a refused call (a 403, a missing workload) is tried again after this, not every tick


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did: its decision (None when the inventory could not be read), the time of each phase, the
    actuations, the services it audited, and the problems it met (a source down, the audit log full)."""

    number: int
    at: datetime
    decision_id: str
    decision: Decision | None
    phases: tuple[tuple[str, float], ...]
    actuations: tuple[Actuation, ...] = ()
    audited: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    overrun_s: float = 0.0  # set by run(): how far the tick ran past its slot
    skipped_ticks: int = 0  # set by run(): slots skipped after an overrun

    @property
    def duration_s(self) -> float:
        return sum(seconds for _, seconds in self.phases)

    def changes(self) -> list[ServiceDecision]:
        """The services whose target differs from what runs."""
        return [] if self.decision is None else [s for s in self.decision.services if s.changes]


@dataclass(frozen=True, slots=True)
class StartReport:
    """What `start()` found: whether a state was loaded (and how old it was), how many history points each
    forecaster took, and what failed."""

    loaded: bool
    saved_at: datetime | None
    refilled: Mapping[str, int]
    problems: tuple[str, ...] = ()


@dataclass
class _Backoff:
    until_s: float
    delay_s: float


@dataclass
class _Ports:
    clock: Clock
    metrics: MetricsSource
    inventory: InventorySource
    actuator: Actuator
    store: StateStore | None
    audit: AuditSink | None
    spend: SpendSource | None


def with_mode(config: CompiledScenario, mode: Mode) -> CompiledScenario:
    """`config` with its policy's mode replaced (the compiled plans are shared, not rebuilt)."""
    if config.scenario.policy.mode is mode:
        return config
    policy = config.scenario.policy.model_copy(update={"mode": mode})
    return dataclasses.replace(config, scenario=config.scenario.model_copy(update={"policy": policy}))


class ControlLoop:
    """The loop over its ports (see the module docstring). `store` None keeps the state in memory only; `audit` None
    records nothing (the simulator). `run_id` prefixes decision ids, which number the ticks: it must differ between
    process starts that write the same audit trail (a crash after an intent but before the state is saved repeats a
    tick number, and CloudEvents ids must be unique), so by default it is random."""

    def __init__(
        self,
        config: CompiledScenario,
        *,
        clock: Clock,
        metrics: MetricsSource,
        inventory: InventorySource,
        actuator: Actuator,
        store: StateStore | None = None,
        audit: AuditSink | None = None,
        spend: SpendSource | None = None,
        mode: Mode | None = None,
        forecasting: ForecastSettings | None = None,
        run_id: str = "",
        publish: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.config = config if mode is None else with_mode(config, mode)
        self.ports = _Ports(clock, metrics, inventory, actuator, store, audit, spend)
        self.policy = self.config.scenario.policy
        self.mode = self.policy.mode
        self.source = source_for_scenario(self.config.scenario.name)
        self.run_id = run_id or _random_id()
        self.publish = publish
        self.state = PolicyState()
        # Whether the selector runs is the scenario's word (policy.forecast_selection); the rest are the settings'.
        settings = dataclasses.replace(forecasting or ForecastSettings(), selection=self.policy.forecast_selection)
        self.forecasters = ForecasterBank(self.policy.tick_s, settings)
        self.ticks = 0
        self.services = [plan.service for plan in self.config.plans.values()]
        self.quantiles = tuple(
            sorted({*self.policy.forecast_quantile.values(), self.policy.budget_fallback_quantile, 0.5})
        )
        # The quantile each service is sized at (its tier's): what its forecaster's selection is scored on.
        self._sized_at = {s.name: (self.policy.forecast_quantile[s.tier],) for s in self.services}
        self._counters: dict[str, tuple[float, float]] = {}  # service -> (sampled at, requests_total)
        self._audited: dict[str, tuple[Reason, tuple[tuple[str, int], ...]]] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._exported: dict[str, dict[str, Any]] = {}  # the forecasters' state as last saved
        self._exported_at: datetime | None = None

    # ── start ───────────────────────────────────────────────────────────────────────────────────────────────────

    def start(self) -> StartReport:
        """Load the stored state and refill the forecasters from the metrics source's history.

        A stored state that cannot be read (an unknown version, a corrupt file) raises: starting over silently
        would reset every window and forget what was applied. A history query that fails is reported; the
        forecasters then start from what the state held.
        """
        stored = self.ports.store.load() if self.ports.store is not None else None
        problems: list[str] = []
        if stored is not None:
            self.state = stored.policy
            self.ticks = stored.ticks
            self.forecasters.restore(stored.forecasters)
        now = self.ports.clock.now()
        refilled: dict[str, int] = {}
        for service in self.services:
            forecaster = self.forecasters.of(service.name)
            since_s = (
                forecaster.end_s
                if forecaster.end_s is not None
                else now.timestamp() - self.forecasters.settings.history_s
            )
            start = datetime.fromtimestamp(
                max(since_s, now.timestamp() - self.forecasters.settings.history_s), now.tzinfo
            )
            try:
                samples = self.ports.metrics.history(service, start, now, self.policy.tick_s)
            except AutoscalerError as exc:
                problems.append(f"history of {service.name}: {type(exc).__name__}: {exc}")
                continue
            refilled[service.name] = self.forecasters.refill(
                service.name, [(s.at.timestamp(), s.request_rps) for s in samples]
            )
        return StartReport(stored is not None, None if stored is None else stored.saved_at, refilled, tuple(problems))

    # ── one tick ────────────────────────────────────────────────────────────────────────────────────────────────

    def tick(self) -> TickReport:
        clock = self.ports.clock
        self.ticks += 1
        number = self.ticks
        now = clock.now()
        decision_id = f"{self.run_id}-{number:06d}"
        timer = _PhaseTimer(clock)
        problems: list[str] = []

        # 1. observe
        metrics, metrics_problem = self._observe_metrics(now)
        if metrics_problem:
            problems.append(metrics_problem)
        inventory: Inventory | None
        try:
            inventory = self.ports.inventory.snapshot(now)
        except AutoscalerError as exc:
            inventory = None
            problems.append(f"inventory: {type(exc).__name__}: {exc} (no decision this tick)")
        spend = self._spend(now, problems)
        gpus = self._gpus(now, problems)
        timer.lap("observe")

        # 2. snapshot
        tick_rates = self._tick_rates(metrics)
        observation = None if inventory is None else self._observation(metrics, metrics_problem, inventory, spend, gpus)
        timer.lap("snapshot")

        # 3. forecast
        self.forecasters.begin_tick()
        forecasts: dict[str, Forecast] = {}
        now_s = now.timestamp()
        for plan in self.config.plans.values():
            name = plan.service.name
            self.forecasters.of(name).add(now_s, tick_rates.get(name))
            predicted = self.forecasters.forecast(name, plan.horizon_s, self.quantiles, self._sized_at[name])
            if predicted is not None:
                forecasts[name] = predicted
        timer.lap("forecast")

        if observation is None or inventory is None:
            for phase in PHASES[3:]:
                timer.lap(phase)
            return TickReport(number, now, decision_id, None, timer.phases, problems=tuple(problems))

        # 4. decide
        decision, state = decide(observation, forecasts, self.config, self.state, now)
        self.state = state
        timer.lap("decide")

        # 5. audit intent
        plans = self._actions(decision, inventory)
        intents = self._intents(decision, observation, forecasts, plans, decision_id, number)
        recorded = self._emit([event for _, event in intents], problems, "intent")
        if self.mode is Mode.APPLY and plans and recorded:
            for service, actions in plans.items():
                for action in actions:
                    self.state = self.state.with_requested(service, action.shape, action.replicas, now_s)
            recorded = self._persist(now, problems)  # write-ahead: what is about to be asked for is on disk too
        timer.lap("audit intent")

        # 6. actuate
        actuations: list[Actuation] = []
        skipped: dict[str, str] = {}
        if self.mode is Mode.APPLY:
            for service, actions in plans.items():
                if not recorded:
                    skipped[service] = "the intent could not be recorded: nothing applied (safety rule 7)"
                    continue
                backoff = self._backoff.get(service)
                if backoff is not None and clock.monotonic() < backoff.until_s:
                    skipped[service] = (
                        f"backing off after a failed call: retrying in {backoff.until_s - clock.monotonic():.0f} s"
                    )
                    continue
                actuations.extend(self._actuate(service, actions, decision_id, now_s))
        timer.lap("actuate")

        # 7. audit outcome
        self._emit(
            self._outcomes(decision, intents, plans, actuations, skipped, decision_id, number), problems, "outcome"
        )
        timer.lap("audit outcome")

        # 8. persist
        self._persist(now, problems)
        timer.lap("persist")

        report = TickReport(
            number, now, decision_id, decision, timer.phases, tuple(actuations),
            tuple(name for name, _ in intents), tuple(problems),
        )  # fmt: skip
        if self.publish is not None and self.mode is not Mode.OBSERVE:
            self.publish(report)
        return report

    # ── phases ──────────────────────────────────────────────────────────────────────────────────────────────────

    def _observe_metrics(self, now: datetime) -> tuple[Mapping[str, ServiceMetrics], str]:
        try:
            return self.ports.metrics.observe(self.services, now), ""
        except AutoscalerError as exc:
            return {}, f"metrics: {type(exc).__name__}: {exc} (every service holds)"

    def _spend(self, now: datetime, problems: list[str]) -> float | None:
        if self.config.scenario.budget.monthly_usd is None or self.ports.spend is None:
            return None
        try:
            return self.ports.spend.month_to_date_spend_usd(now)
        except AutoscalerError as exc:
            problems.append(f"spend: {type(exc).__name__}: {exc} (the monthly budget fails closed)")
            return None

    def _gpus(self, now: datetime, problems: list[str]) -> tuple[GpuTelemetry, ...] | None:
        """What DCGM reports, when an efficiency objective needs engine activity and the source can read it."""
        needs = any(o.indicator is EfficiencyIndicator.BUSY for o in self.config.scenario.efficiency.objectives)
        if not needs or not isinstance(self.ports.metrics, GpuTelemetrySource):
            return None
        try:
            return tuple(self.ports.metrics.gpus(now))
        except AutoscalerError as exc:
            problems.append(f"metrics: GPU telemetry: {type(exc).__name__}: {exc} (busy is unknown this tick)")
            return None

    def _tick_rates(self, metrics: Mapping[str, ServiceMetrics]) -> dict[str, float | None]:
        """Each service's request rate over this tick: the increase of its counter since the last tick (a counter
        that went down was reset: no rate this tick), or the source's rate where it reports no counter."""
        rates: dict[str, float | None] = {}
        for service in self.services:
            name = service.name
            reading = metrics.get(name)
            if reading is None:
                rates[name] = None
                continue
            if reading.requests_total is None:
                rates[name] = reading.request_rps
                continue
            at_s = reading.sampled_at.timestamp()
            previous = self._counters.get(name)
            self._counters[name] = (at_s, reading.requests_total)
            if previous is None or at_s <= previous[0] or reading.requests_total < previous[1]:
                rates[name] = None
                continue
            rates[name] = (reading.requests_total - previous[1]) / (at_s - previous[0])
        return rates

    def _observation(
        self,
        metrics: Mapping[str, ServiceMetrics],
        problem: str,
        inventory: Inventory,
        spend: float | None,
        gpus: tuple[GpuTelemetry, ...] | None = None,
    ) -> Observation:
        services: dict[str, ServiceObservation] = {}
        for service in self.services:
            name = service.name
            replicas: Mapping[Shape, ShapeReplicas] = inventory.replicas.get(name, {})
            reading = metrics.get(name)
            if reading is None:
                why = problem or "the metrics source returned nothing for it"
                services[name] = ServiceObservation(None, replicas=replicas, problem=why)
                continue
            services[name] = ServiceObservation(
                reading.request_rps,
                reading.input_tokens_per_s,
                reading.output_tokens_per_s,
                reading.sampled_at,
                replicas,
                problem=reading.problem,
                telemetry=_telemetry_by_shape(reading, replicas),
            )
        pools = {name: PoolObservation(n) for name, n in inventory.pool_nodes.items()}
        return Observation(services, pools, spend, inventory.nodes, inventory.placed, gpus)

    def _actions(self, decision: Decision, inventory: Inventory) -> dict[str, list[Action]]:
        """Per service, the set-replicas calls apply mode would make: shapes that grow first, then those that
        shrink. A hold is never actuated: its target is what exists, and writing it could lower a spec (a scale-down
        on bad data) or fight another writer."""
        plans: dict[str, list[Action]] = {}
        for result in decision.services:
            if result.hold:
                continue
            replicas = inventory.replicas.get(result.service, {})
            applied = self.state.services[result.service].applied if result.service in self.state.services else {}
            grow: list[Action] = []
            shrink: list[Action] = []
            for shape, wanted in result.target.items():
                spec = replicas[shape].spec if shape in replicas else None
                if spec is None:
                    spec = applied.get(shape)
                if spec is None:
                    spec = replicas[shape].existing if shape in replicas else None
                if spec == wanted:
                    continue
                (grow if spec is None or wanted > spec else shrink).append(Action(shape, spec, wanted))
            if grow or shrink:
                plans[result.service] = grow + shrink
        return plans

    def _intents(
        self,
        decision: Decision,
        observation: Observation,
        forecasts: Mapping[str, Forecast],
        plans: Mapping[str, list[Action]],
        decision_id: str,
        number: int,
    ) -> list[tuple[str, CloudEvent]]:
        events: list[tuple[str, CloudEvent]] = []
        if self.ports.audit is None:  # nothing records them (the simulator): do not build them
            return events
        for result in decision.services:
            key = (result.reason, tuple(sorted((str(s), n) for s, n in result.target.items())))
            actions = plans.get(result.service, []) if self.mode is Mode.APPLY else []
            if not actions and not result.changes and self._audited.get(result.service) == key:
                continue  # nothing new to say: steady decisions are not repeated every tick
            self._audited[result.service] = key
            digest = inputs_digest(observation.services.get(result.service), forecasts.get(result.service))
            data = intent_data(decision, result, decision_id=decision_id, tick=number, digest=digest, actions=actions)
            event = CloudEvent(
                id=f"{decision_id}/{result.service}/intent",
                source=self.source,
                type=TYPE_DECISION_INTENT,
                time=decision.at,
                subject=result.service,
                data=data,
            )
            events.append((result.service, event))
        return events

    def _actuate(self, service: str, actions: list[Action], decision_id: str, now_s: float) -> list[Actuation]:
        plan = self.config.plans[service]
        results = []
        for action in actions:
            request = ScaleRequest(service, action.shape, action.replicas, plan.workload(action.shape), decision_id)
            try:
                answer = self.ports.actuator.set_replicas(request)
            except AutoscalerError as exc:
                self._back_off(service, exc)
                results.append(
                    Actuation(service, action.shape, action.replicas, None, error=f"{type(exc).__name__}: {exc}")
                )
                break  # the rest of this service's change waits too: make-before-break must not half-happen
            self._backoff.pop(service, None)
            self.state = self.state.with_applied(service, action.shape, answer.applied, now_s)
            results.append(Actuation(service, action.shape, action.replicas, answer.applied, answer.note))
        return results

    def _back_off(self, service: str, error: AutoscalerError) -> None:
        now = self.ports.clock.monotonic()
        if isinstance(error, TransientError):
            previous = self._backoff.get(service)
            delay = min(MAX_BACKOFF_S, max(error.retry_after_s, 2 * previous.delay_s if previous else 0.0))
        else:
            delay = PERMANENT_BACKOFF_S
        self._backoff[service] = _Backoff(now + delay, delay)

    def _outcomes(
        self,
        decision: Decision,
        intents: list[tuple[str, CloudEvent]],
        plans: Mapping[str, list[Action]],
        actuations: list[Actuation],
        skipped: Mapping[str, str],
        decision_id: str,
        number: int,
    ) -> list[CloudEvent]:
        events = []
        for service, _ in intents:
            results = [a for a in actuations if a.service == service]
            if service in skipped:
                outcome, note = OUTCOME_SKIPPED, skipped[service]
            elif self.mode is not Mode.APPLY:
                outcome, note = OUTCOME_NOT_APPLIED, f"mode {self.mode.value}: nothing is applied"
            elif service not in plans:
                outcome, note = (
                    OUTCOME_NOT_APPLIED,
                    "nothing to apply" + (" (a hold)" if decision.service(service).hold else ""),
                )
            else:
                outcome, note = outcome_of(results), ""
            data = outcome_data(
                decision_id, number, self.mode.value, outcome, decision.service(service).target, results, note
            )
            events.append(
                CloudEvent(
                    id=f"{decision_id}/{service}/outcome",
                    source=self.source,
                    type=TYPE_DECISION_OUTCOME,
                    time=self.ports.clock.now(),
                    subject=service,
                    data=data,
                )
            )
        return events

    def _emit(self, events: list[CloudEvent], problems: list[str], what: str) -> bool:
        if not events or self.ports.audit is None:
            return True
        try:
            self.ports.audit.emit(events)
        except AutoscalerError as exc:
            problems.append(f"audit {what}: {type(exc).__name__}: {exc}")
            return False
        return True

    def _persist(self, now: datetime, problems: list[str]) -> bool:
        if self.ports.store is None:
            return True
        # The forecasters' series are hours of points per service: exported every few minutes, not every tick (a
        # restart refills what is newer from the metrics source's history). The policy state is saved every time.
        interval = self.forecasters.settings.persist_every_s
        if self._exported_at is None or (now - self._exported_at).total_seconds() >= interval:
            self._exported = self.forecasters.export()
            self._exported_at = now
        stored = StoredState(self.state, self._exported, now, self.ticks)
        try:
            self.ports.store.save(stored)
        except AutoscalerError as exc:
            problems.append(f"state: {type(exc).__name__}: {exc} (kept in memory)")
            return False
        return True

    # ── the run loop ────────────────────────────────────────────────────────────────────────────────────────────

    def run(
        self,
        stop: threading.Event,
        *,
        on_tick: Callable[[TickReport], None] | None = None,
        until: Callable[[TickReport], bool] | None = None,
        max_ticks: int | None = None,
    ) -> int:
        """Tick every `tick_s` until `stop` is set, `until(report)` says so, or `max_ticks` ran; returns the ticks
        run. A stop request ends the wait between ticks at once; a tick in progress always completes (its state is
        saved before `run` returns)."""
        clock = self.ports.clock
        tick_s = self.policy.tick_s
        next_at = clock.monotonic()
        ran = 0
        while not stop.is_set():
            report = self.tick()
            ran += 1
            next_at += tick_s
            late = clock.monotonic() - next_at
            if late > 0:
                skipped = math.floor(late / tick_s) + 1
                next_at += skipped * tick_s
                report = dataclasses.replace(report, overrun_s=late, skipped_ticks=skipped)
            if on_tick is not None:
                on_tick(report)
            if (until is not None and until(report)) or (max_ticks is not None and ran >= max_ticks):
                break
            if clock.sleep(next_at - clock.monotonic(), stop):
                break
        return ran

    def close(self) -> None:
        if self.ports.audit is not None:
            self.ports.audit.close()


class _PhaseTimer:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.mark = clock.monotonic()
        self._phases: list[tuple[str, float]] = []

    def lap(self, phase: str) -> None:
        now = self.clock.monotonic()
        self._phases.append((phase, now - self.mark))
        self.mark = now

    @property
    def phases(self) -> tuple[tuple[str, float], ...]:
        return tuple(self._phases)


def _telemetry_by_shape(
    reading: ServiceMetrics, replicas: Mapping[Shape, ShapeReplicas]
) -> Mapping[Shape, ShapeTelemetry]:
    """What each shape's replicas report: the source's per-shape telemetry, else the service's, when all of the
    service's serving replicas are of one shape (otherwise the service's figures mix shapes and fit none)."""
    if reading.shapes:
        return reading.shapes
    serving = [shape for shape, r in replicas.items() if r.ready > 0]
    if reading.telemetry is None or len(serving) != 1:
        return {}
    return {serving[0]: reading.telemetry}


def _random_id() -> str:
    return secrets.token_hex(4)


__all__ = ["PHASES", "ControlLoop", "StartReport", "TickReport", "with_mode"]
