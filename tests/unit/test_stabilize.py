"""Stabilization over time: narrative tests on a fake clock, stepped in whole seconds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from autoscaler.config import Policy, Tier
from autoscaler.model import Reason, ServiceState, ShapeReplicas
from autoscaler.shapes import parse_shape
from autoscaler.stabilize import StabilizeInput, StabilizeOutcome, enforce_cap, stabilize_service

H100 = parse_shape("H100-80GB")
SLICE = parse_shape("H100-80GB/3g.40gb")
START = datetime(2000, 1, 1, tzinfo=UTC)
POLICY = Policy(scale_down_window_s=300, scale_down_max_step=2, scale_down_period_s=60)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def step(self, seconds: int) -> float:
        self.now += timedelta(seconds=seconds)
        return self.now.timestamp()

    @property
    def now_s(self) -> float:
        return self.now.timestamp()


def _item(desired: int, current: int, *, primary=H100, others=None, min_replicas=1, max_replicas=50, hold=None):  # type: ignore[no-untyped-def]
    replicas = {primary: ShapeReplicas(ready=current, spec=current)} if current else {}
    replicas.update(others or {})
    return StabilizeInput(
        name="chat", tier=Tier.STANDARD, min_replicas=min_replicas, max_replicas=max_replicas, primary=primary,
        desired_replicas=desired, current=replicas, unit_price={H100: 6.88, SLICE: 3.44},
        hold=hold, hold_message="stale" if hold else "",
    )  # fmt: skip


def test_scale_down_waits_for_the_window_then_steps_at_the_limited_rate() -> None:
    clock = FakeClock()
    state: ServiceState | None = None
    current = 10
    # t=0: watched since now, demand needs 10: steady.
    out = stabilize_service(_item(10, current), state, POLICY, clock.now_s, check_writers=False)
    assert out.target[H100] == 10
    state = out.state
    # t=60: demand falls to 4. The window still holds the 10 of t=0: hold.
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(60), check_writers=False)
    assert (out.target[H100], out.reason) == (10, Reason.SCALE_DOWN_DELAYED)
    state = out.state
    # t=299: one second before the 10 leaves the window: still hold.
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(239), check_writers=False)
    assert out.target[H100] == 10
    state = out.state
    # t=300: the window's max is 4; at most 2 per 60 s: 10 -> 8.
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(1), check_writers=False)
    assert (out.target[H100], out.reason) == (8, Reason.SCALE_DOWN_RATE_LIMITED)
    state, current = out.state, 8
    # t=330: inside the 60 s period after the last scale-down: hold at 8.
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(30), check_writers=False)
    assert (out.target[H100], out.reason) == (8, Reason.SCALE_DOWN_RATE_LIMITED)
    state = out.state
    # t=360: next period: 8 -> 6; t=420: 6 -> 4, and 4 is what demand needs: no limit message.
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(30), check_writers=False)
    assert out.target[H100] == 6
    state, current = out.state, 6
    out = stabilize_service(_item(4, current), state, POLICY, clock.step(60), check_writers=False)
    assert out.target[H100] == 4
    assert out.reason is None


def test_a_new_service_is_not_scaled_down_before_a_whole_window_was_watched() -> None:
    clock = FakeClock()
    out = stabilize_service(_item(2, 10), None, POLICY, clock.now_s, check_writers=False)
    assert (out.target[H100], out.reason) == (10, Reason.SCALE_DOWN_DELAYED)


def test_scale_up_is_immediate_but_bounded() -> None:
    clock = FakeClock()
    # 3 -> 20 wanted: at most max(3 x 2, 3 + 4) = 7 this tick.
    out = stabilize_service(_item(20, 3), None, POLICY, clock.now_s, check_writers=False)
    assert (out.target[H100], out.reason) == (7, Reason.SCALE_UP_RATE_LIMITED)
    # next tick from 7: at most max(14, 11) = 14.
    out = stabilize_service(_item(20, 7), out.state, POLICY, clock.step(15), check_writers=False)
    assert out.target[H100] == 14
    # then 20 fits (<= 28): no limit.
    out = stabilize_service(_item(20, 14), out.state, POLICY, clock.step(15), check_writers=False)
    assert (out.target[H100], out.reason) == (20, None)


def test_no_scale_down_when_metrics_are_stale() -> None:
    out = stabilize_service(_item(1, 9, hold=Reason.HOLD_STALE_METRICS), None, POLICY, FakeClock().now_s, False)
    assert out.target[H100] == 9
    assert out.reason is Reason.HOLD_STALE_METRICS


def test_bounds_win_over_everything() -> None:
    clock = FakeClock()
    # desired 0 below min 2 (after a watched window): never below min_replicas.
    first = stabilize_service(_item(5, 5, min_replicas=2), None, POLICY, clock.now_s, False)
    out = stabilize_service(_item(0, 2, min_replicas=2), first.state, POLICY, clock.step(400), False)
    assert out.target[H100] == 2
    # a hold above max_replicas is cut to max_replicas.
    out = stabilize_service(_item(0, 12, max_replicas=10, hold=Reason.HOLD_STALE_METRICS), None, POLICY, 0.0, False)
    assert out.target[H100] == 10


def test_another_writer_is_detected_in_apply_mode() -> None:
    clock = FakeClock()
    first = stabilize_service(_item(4, 4), None, POLICY, clock.now_s, check_writers=True)
    # The loop records what the actuator applied: 4.
    state = dataclasses.replace(first.state, applied={H100: 4}, requested={H100: 4})
    # Someone set the spec to 6 although fleetscale last applied 4.
    item = dataclasses.replace(_item(3, 4), current={H100: ShapeReplicas(ready=4, spec=6)})
    out = stabilize_service(item, state, POLICY, clock.step(15), check_writers=True)
    assert out.reason is Reason.HOLD_CONFLICT
    assert out.message == ("spec of H100-80GB is 6, fleetscale last applied 4: another writer changed it; backing off")
    assert out.target == {H100: 4}
    # In recommend mode nothing is applied, so a differing spec is not a conflict.
    out = stabilize_service(item, state, POLICY, clock.now_s, check_writers=False)
    assert out.reason is not Reason.HOLD_CONFLICT


def test_what_was_applied_is_not_another_writer() -> None:
    clock = FakeClock()
    # fleetscale asked for 8; a quota let the platform take 4 (what the actuator answered).
    state = ServiceState(clock.now_s, applied={H100: 4}, requested={H100: 4})
    partial = dataclasses.replace(_item(8, 4), current={H100: ShapeReplicas(ready=4, spec=4)})
    out = stabilize_service(partial, state, POLICY, clock.step(15), check_writers=True)
    assert out.reason is not Reason.HOLD_CONFLICT
    assert out.target == {H100: 8}  # the scale-up goes on
    # It asked for 8 and the call timed out: the platform may hold 4 (not applied) or 8 (applied, answer lost).
    unsure = ServiceState(clock.now_s, applied={H100: 4}, requested={H100: 8})
    for spec in (4, 8):
        item = dataclasses.replace(_item(8, 4), current={H100: ShapeReplicas(ready=4, starting=spec - 4, spec=spec)})
        assert stabilize_service(item, unsure, POLICY, clock.step(15), check_writers=True).reason is not (
            Reason.HOLD_CONFLICT
        ), spec
    # Anything else is someone else's.
    item = dataclasses.replace(_item(8, 4), current={H100: ShapeReplicas(ready=4, spec=5)})
    out = stabilize_service(item, unsure, POLICY, clock.step(15), check_writers=True)
    assert out.reason is Reason.HOLD_CONFLICT
    assert "fleetscale last applied 4 (asked for 8)" in out.message


def test_a_shape_change_makes_before_it_breaks() -> None:
    clock = FakeClock()
    old = {H100: ShapeReplicas(ready=3, spec=3)}
    # Moving to 3g.40gb slices: 0 exist, 6 wanted -> 4 this tick (+4), the H100 replicas stay.
    out = stabilize_service(_item(6, 0, primary=SLICE, others=old), None, POLICY, clock.now_s, False)
    assert out.target == {SLICE: 4, H100: 3}
    assert out.reason is Reason.SCALE_UP_RATE_LIMITED
    # Next tick: 4 slices ready, 6 wanted -> 6; still not all ready, the old ones stay.
    item = _item(6, 4, primary=SLICE, others=old)
    out = stabilize_service(item, out.state, POLICY, clock.step(15), False)
    assert out.target == {SLICE: 6, H100: 3}
    # All 6 ready: the H100 replicas drain.
    out = stabilize_service(_item(6, 6, primary=SLICE, others=old), out.state, POLICY, clock.step(15), False)
    assert out.target == {SLICE: 6, H100: 0}
    assert out.reason is Reason.SHAPE_CHANGE


def test_held_replicas_never_take_the_fleet_over_the_cap() -> None:
    # The budget stage allowed 4 replicas ($27.52/h) but the window holds 10 ($68.80/h); cap $40/h.
    item = _item(4, 10)
    held = StabilizeOutcome({H100: 10}, Reason.SCALE_DOWN_DELAYED, "window", ServiceState(0.0))
    result = enforce_cap([item], {"chat": held}, 40.0)
    # Gives back down to the budget stage's 4 only as far as needed: 5 x 6.88 = 34.40 <= 40.
    assert result["chat"].target[H100] == 5
    assert result["chat"].reason is Reason.LIMITED_BY_BUDGET
