"""The control loop over fakes of its ports: a narrative over fake time, and the rules each phase keeps."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from autoscaler.audit import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, MemoryAuditSink
from autoscaler.catalog import Catalog
from autoscaler.compiled import CompiledScenario
from autoscaler.config import Mode
from autoscaler.errors import NotFound, TransientError
from autoscaler.forecasters import ForecastSettings
from autoscaler.loop import PHASES, ControlLoop, TickReport
from autoscaler.model import Reason
from autoscaler.perf import ProfileBook
from autoscaler.ports import RateSample, ScaleRequest, ScaleResult, ServiceMetrics
from autoscaler.shapes import parse_shape
from autoscaler.testing import FakeClock, FakeFleet, FakeMetricsSource, MemoryStateStore
from tests.unit.conftest import compile_dict, scenario_dict

H100 = parse_shape("H100-80GB")


@pytest.fixture(scope="module")
def chat(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict()
    data["policy"] = {"mode": "apply", "scale_down_window_s": 120, "scale_down_period_s": 30}
    return compile_dict(data, catalog, book)


@pytest.fixture(scope="module")
def two(catalog: Catalog, book: ProfileBook) -> CompiledScenario:
    data = scenario_dict()
    data["services"].append(dict(data["services"][0], name="batch", tier="standard"))
    data["policy"] = {"mode": "apply"}
    return compile_dict(data, catalog, book)


class World:
    """A loop and the fakes around it. The burst envelope remembers 2 minutes here (30 by default), so that a
    narrative of half an hour sees a burst come and go."""

    def __init__(self, config: CompiledScenario, *, mode: Mode | None = None, start_ready: bool = True) -> None:
        self.clock = FakeClock()
        self.metrics = FakeMetricsSource(self.clock)
        self.fleet = FakeFleet(start_ready=start_ready)
        self.store = MemoryStateStore(serialize=True)
        self.audit = MemoryAuditSink()
        self.published: list[TickReport] = []
        self.loop = self.new_loop(config, mode)

    def new_loop(self, config: CompiledScenario, mode: Mode | None = None) -> ControlLoop:
        return ControlLoop(
            config, clock=self.clock, metrics=self.metrics, inventory=self.fleet, actuator=self.fleet,
            store=self.store, audit=self.audit, mode=mode, run_id="t", publish=self.published.append,
            forecasting=ForecastSettings(envelope_lookback_s=120.0, envelope_level_s=60.0),
        )  # fmt: skip

    def tick(self, seconds: float = 15.0) -> TickReport:
        """Advance the clock a tick, then tick."""
        self.clock.advance(seconds)
        return self.loop.tick()


def test_a_tick_runs_its_phases_in_order(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 10.0)
    report = world.tick()
    assert tuple(name for name, _ in report.phases) == PHASES
    assert report.decision is not None and report.problems == ()


def test_thirty_minutes_of_a_service(chat: CompiledScenario) -> None:
    world = World(chat)
    fleet, metrics = world.fleet, world.metrics
    fleet.seed("chat", H100, 2)
    # 0-2 min: a quiet service at 10 req/s holds its 2 replicas (1 would serve 10 req/s; the window keeps 2).
    metrics.set_rate("chat", 10.0)
    for _ in range(8):
        world.tick()
    assert fleet.replicas("chat") == {H100: 2}
    # 2 min: demand jumps to 150 req/s: the loop scales up at once, bounded (x2 or +4 a tick: 2 -> 6).
    metrics.set_rate("chat", 150.0)
    report = world.tick()
    assert report.decision is not None
    assert report.decision.service("chat").reason is Reason.SCALE_UP_RATE_LIMITED
    assert fleet.replicas("chat")[H100] == 6
    # The next tick goes the rest of the way.
    for _ in range(4):
        report = world.tick()
    peak = fleet.replicas("chat")[H100]
    assert report.decision is not None
    assert peak > 6 and peak == report.decision.service("chat").desired[H100]
    # 3:15: demand falls back to 10 req/s: the scale-down waits for its 120 s window.
    metrics.set_rate("chat", 10.0)
    for _ in range(7):
        report = world.tick()
        assert fleet.replicas("chat")[H100] == peak
    assert report.decision is not None and report.decision.service("chat").reason is Reason.SCALE_DOWN_DELAYED
    # Then it steps down, 2 replicas per 30 s period (the default scale_down_max_step).
    for _ in range(8):
        world.tick()
    assert fleet.replicas("chat")[H100] < peak
    settled = fleet.replicas("chat")[H100]
    # 10 min: the metrics source goes dark for 5 minutes: every tick holds, nothing scales down.
    metrics.drop("chat")
    for _ in range(20):
        report = world.tick()
        assert report.decision is not None
        result = report.decision.service("chat")
        assert result.hold and result.reason is Reason.HOLD_MISSING_METRICS
        assert report.actuations == ()
    assert fleet.replicas("chat")[H100] == settled
    # 15 min: it is back at 10 req/s; the loop carries on and settles at what 10 req/s needs.
    metrics.set_rate("chat", 10.0)
    for _ in range(72):
        report = world.tick()
    assert report.decision is not None
    assert not report.decision.service("chat").hold
    assert fleet.replicas("chat")[H100] == report.decision.service("chat").target[H100] <= settled
    # 30 minutes of ticks in all, every one audited as it should be: each intent has its outcome.
    assert world.clock.now() - FakeClock().now() == timedelta(minutes=30)
    intents = {e.id.removesuffix("/intent") for e in world.audit.of_type(TYPE_DECISION_INTENT)}
    outcomes = {e.id.removesuffix("/outcome") for e in world.audit.of_type(TYPE_DECISION_OUTCOME)}
    assert intents == outcomes and intents


def test_a_partial_apply_is_not_another_writer(chat: CompiledScenario) -> None:
    world = World(chat)
    world.fleet.seed("chat", H100, 2)
    world.metrics.set_rate("chat", 10.0)
    world.tick()
    # A quota lets the platform take 4 replicas whatever fleetscale asks for.
    world.fleet.max_applied[("chat", H100)] = 4
    world.metrics.set_rate("chat", 200.0)
    report = world.tick()
    assert [(a.requested, a.applied, a.note) for a in report.actuations] == [(6, 4, "quota allows 4 of 6")]
    # The next tick reads spec 4: what was applied, not a conflict. It goes on asking.
    report = world.tick()
    assert report.decision is not None
    assert report.decision.service("chat").reason is not Reason.HOLD_CONFLICT
    assert report.actuations and report.actuations[0].requested > 4


def test_another_writer_makes_the_loop_back_off(chat: CompiledScenario) -> None:
    world = World(chat)
    world.fleet.seed("chat", H100, 3)
    world.metrics.set_rate("chat", 60.0)
    assert world.tick().actuations  # fleetscale sets the spec (before it has written, there is no other writer)
    world.fleet.foreign_write("chat", H100, 7)  # an HPA, or a person with kubectl
    report = world.tick()
    assert report.decision is not None
    result = report.decision.service("chat")
    assert result.reason is Reason.HOLD_CONFLICT and result.hold
    assert report.actuations == ()
    assert world.fleet.specs("chat") == {H100: 7}  # left as the other writer set it


def test_a_failing_service_holds_alone(two: CompiledScenario) -> None:
    world = World(two)
    world.metrics.set_rate("chat", 40.0)
    world.metrics.set_rate("batch", 40.0)

    class OneFails:
        def __init__(self, fleet: FakeFleet) -> None:
            self.fleet = fleet

        def set_replicas(self, request: ScaleRequest) -> ScaleResult:
            if request.service == "batch":
                raise TransientError("429 Too Many Requests", retry_after_s=60.0)
            return self.fleet.set_replicas(request)

    world.loop.ports.actuator = OneFails(world.fleet)
    report = world.tick()
    by_service = {a.service: a for a in report.actuations}
    assert by_service["chat"].applied and not by_service["chat"].error
    assert by_service["batch"].applied is None and "429" in by_service["batch"].error
    assert world.fleet.replicas("chat")[H100] > 0 and world.fleet.replicas("batch") == {}
    # batch waits for its retry_after_s (60 s) before it is tried again; chat goes on.
    world.loop.ports.actuator = world.fleet
    for _ in range(3):
        report = world.tick()
        assert all(a.service != "batch" for a in report.actuations)
    outcome = [e for e in world.audit.of_type(TYPE_DECISION_OUTCOME) if e.subject == "batch"][-1]
    assert outcome.data["outcome"] == "skipped" and "backing off" in outcome.data["note"]
    report = world.tick()  # 60 s later
    assert [a.service for a in report.actuations if a.service == "batch"] == ["batch"]
    assert world.fleet.replicas("batch")[H100] > 0


def test_a_workload_that_is_gone_is_retried_later_not_every_tick(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)
    world.fleet.next_error = NotFound("deployment inference/chat not found")
    report = world.tick()
    assert "NotFound" in report.actuations[0].error
    calls = len(world.fleet.calls)
    for _ in range(10):
        world.tick()
    assert len(world.fleet.calls) == calls  # a permanent error waits PERMANENT_BACKOFF_S, not 15 s


def test_nothing_is_applied_when_the_intent_cannot_be_recorded(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)
    world.audit.next_error = TransientError("audit.jsonl: ENOSPC: No space left on device")
    report = world.tick()
    assert report.actuations == () and world.fleet.calls == []
    assert any(p.startswith("audit intent: TransientError") for p in report.problems)
    report = world.tick()  # the disk has room again
    assert report.actuations and world.fleet.replicas("chat")


def test_the_intent_is_on_record_before_the_actuator_is_called(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)
    seen: list[int] = []

    class Witness:
        def set_replicas(self, request: ScaleRequest) -> ScaleResult:
            intents = [
                e for e in world.audit.of_type(TYPE_DECISION_INTENT) if e.data["decision_id"] == request.decision_id
            ]
            seen.append(len(intents))
            stored = world.store.load()
            assert stored is not None and stored.policy.services["chat"].requested[H100] == request.replicas
            return world.fleet.set_replicas(request)

    world.loop.ports.actuator = Witness()
    world.tick()
    assert seen == [1]


def test_no_decision_without_an_inventory(chat: CompiledScenario) -> None:
    world = World(chat)
    world.fleet.seed("chat", H100, 4)
    world.metrics.set_rate("chat", 1.0)
    world.fleet.snapshot_error = TransientError("the API server timed out")
    report = world.tick()
    assert report.decision is None and report.actuations == ()
    assert report.problems == ("inventory: TransientError: the API server timed out (no decision this tick)",)
    assert world.fleet.replicas("chat") == {H100: 4}


def test_a_metrics_source_that_fails_holds_every_service(two: CompiledScenario) -> None:
    world = World(two)
    world.fleet.seed("chat", H100, 5)
    world.fleet.seed("batch", H100, 5)
    world.metrics.next_error = TransientError("prometheus: timed out after 5 s")
    report = world.tick()
    assert report.decision is not None
    for result in report.decision.services:
        assert result.reason is Reason.HOLD_MISSING_METRICS
        assert "prometheus: timed out" in result.message
    assert report.actuations == ()


def test_stale_and_future_samples_hold(chat: CompiledScenario) -> None:
    world = World(chat)
    world.fleet.seed("chat", H100, 5)
    now = world.clock.now()
    world.metrics.set("chat", ServiceMetrics(now - timedelta(minutes=5), 0.1))
    report = world.tick()
    assert report.decision is not None and report.decision.service("chat").reason is Reason.HOLD_STALE_METRICS
    world.metrics.set("chat", ServiceMetrics(world.clock.now() + timedelta(minutes=5), 0.1))
    report = world.tick()
    assert report.decision is not None and report.decision.service("chat").reason is Reason.HOLD_BAD_METRICS
    assert world.fleet.replicas("chat") == {H100: 5}


@pytest.mark.parametrize(("mode", "published", "applied"), [("observe", 0, 0), ("recommend", 1, 0), ("apply", 1, 1)])
def test_modes(chat: CompiledScenario, mode: str, published: int, applied: int) -> None:
    world = World(chat, mode=Mode(mode))
    world.metrics.set_rate("chat", 40.0)
    report = world.tick()
    assert len(world.published) == published
    assert len(world.fleet.calls) == applied
    assert report.audited == ("chat",)  # every mode records what it decided
    outcome = world.audit.of_type(TYPE_DECISION_OUTCOME)[0]
    assert outcome.data["outcome"] == ("applied" if applied else "not_applied")


def test_steady_decisions_are_not_recorded_every_tick(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 10.0)
    for _ in range(40):
        world.tick()
    intents = world.audit.of_type(TYPE_DECISION_INTENT)
    assert 1 <= len(intents) < 10


def test_an_overrun_is_reported_and_the_next_tick_is_not_stacked(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)

    class Slow:
        def set_replicas(self, request: ScaleRequest) -> ScaleResult:
            world.clock.advance(40.0)  # the API server took 40 s
            return world.fleet.set_replicas(request)

    world.loop.ports.actuator = Slow()
    reports: list[TickReport] = []
    world.loop.run(threading.Event(), on_tick=reports.append, max_ticks=3)
    assert reports[0].skipped_ticks == 2 and reports[0].overrun_s == pytest.approx(25.0)
    # After 40 s the next slot is at 45 s: the ticks run at 0, 45, ... not three at once.
    assert [r.at for r in reports][1] - reports[0].at == timedelta(seconds=45)


def test_a_stop_request_ends_the_run_after_the_tick_in_progress(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)
    stop = threading.Event()

    def on_tick(report: TickReport) -> None:
        if report.number == 3:
            stop.set()  # as the SIGTERM handler does

    ran = world.loop.run(stop, on_tick=on_tick)
    assert ran == 3
    stored = world.store.load()
    assert stored is not None and stored.ticks == 3


def test_a_restarted_loop_continues_from_the_saved_state(chat: CompiledScenario) -> None:
    world = World(chat)
    world.metrics.set_rate("chat", 40.0)
    for _ in range(12):
        world.tick()
    before = world.loop.state.services["chat"]
    # The process dies; a new one starts on the same store and the same fleet, 45 s later. The forecasters' series
    # was saved with the first tick's state (it is saved every 5 minutes); the metrics source's history, a point
    # every 15 s, has the rest.
    world.clock.advance(45)
    now = world.clock.now()
    world.metrics.histories["chat"] = [RateSample(now - timedelta(seconds=15 * k), 40.0) for k in range(20)]
    loop = world.new_loop(chat)
    started = loop.start()
    assert started.loaded and started.refilled == {"chat": 14}  # 30 s to 225 s: every point after the saved one
    assert loop.ticks == 12
    assert loop.state.services["chat"].first_seen_s == before.first_seen_s
    assert loop.state.services["chat"].applied == before.applied
    world.loop = loop
    report = world.tick()
    assert report.decision is not None
    result = report.decision.service("chat")
    assert result.reason is not Reason.HOLD_CONFLICT
    assert result.forecast_model == "burst_envelope"  # the restored series is long enough to forecast at once


def test_each_shape_is_scaled_through_its_own_workload(catalog: Catalog, book: ProfileBook) -> None:
    data = scenario_dict()
    data["services"][0]["allowed_shapes"] = ["H100", "H100-80GB/3g.40gb"]  # an alias: decisions say H100-80GB
    data["services"][0]["shape_scale_targets"] = {"H100": {"kind": "Deployment", "name": "chat", "namespace": "ml"}}
    data["services"][0]["scale_target"] = {"kind": "LeaderWorkerSet", "name": "chat-mig", "namespace": "ml"}
    data["policy"] = {"mode": "apply"}
    world = World(compile_dict(data, catalog, book))
    world.metrics.set_rate("chat", 60.0)
    world.tick()
    (call,) = world.fleet.calls
    assert call.shape == H100 and call.workload is not None and str(call.workload) == "Deployment ml/chat"
    plan = world.loop.config.plans["chat"]
    assert str(plan.workload(parse_shape("H100-80GB/3g.40gb"))) == "LeaderWorkerSet ml/chat-mig"


def test_the_scenario_says_whether_the_selector_runs(catalog: Catalog, book: ProfileBook) -> None:
    assert World(compile_dict(scenario_dict(), catalog, book)).loop.forecasters.settings.selection is False
    data = scenario_dict()
    data["policy"] = {"forecast_selection": True}
    assert World(compile_dict(data, catalog, book)).loop.forecasters.settings.selection is True
