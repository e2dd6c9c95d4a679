"""The pieces `fleetscale run --metrics replay --actuator log` is made of: the scaled clock, the trace as a metrics
source, and the dry-run fleet."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.clock import ScaledClock
from autoscaler.config import Service, ServiceSlo
from autoscaler.dry_run import LogFleet
from autoscaler.ports import ScaleRequest
from autoscaler.shapes import parse_shape
from autoscaler.sim.fleet import ServiceRequests
from autoscaler.sim.trace_source import TraceMetricsSource
from autoscaler.testing import FakeClock

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
CHAT = Service(name="chat", model="Llama-3.1-8B", slo=ServiceSlo(ttft_p95_s=1.0, tpot_p95_s=0.1))


def test_a_scaled_clock_runs_k_times_faster_than_its_real_clock() -> None:
    real = FakeClock()
    clock = ScaledClock(START, 30.0, real)
    real.advance(2.0)
    assert clock.now() == START + timedelta(minutes=1)  # 2 real seconds at x30
    assert clock.monotonic() == pytest.approx(60.0)
    clock.sleep(15.0)  # a tick of 15 s sleeps half a real second
    assert real.sleeps[-1] == pytest.approx(0.5)
    stop = threading.Event()
    stop.set()
    assert clock.sleep(15.0, stop) is True  # a stop request ends the wait
    with pytest.raises(ValueError, match=r"speed \(0.0\) must be > 0"):
        ScaledClock(START, 0.0)
    with pytest.raises(ValueError, match="naive datetime"):
        ScaledClock(datetime(2026, 1, 5), 1.0)


def test_the_trace_reports_what_a_rate_query_over_its_last_minute_would() -> None:
    # 120 requests a minute (one every 0.5 s) for 10 minutes, 1,000-token prompts and 100-token answers.
    arrivals = [0.5 * k for k in range(1, 1201)]
    requests = ServiceRequests("chat", arrivals, [1000] * 1200, [100] * 1200)
    source = TraceMetricsSource({"chat": requests}, START)
    assert source.observe([CHAT], START) == {}  # nothing replayed yet: no data, not zero load
    at = START + timedelta(minutes=5)
    metrics = source.observe([CHAT], at)["chat"]
    assert metrics.sampled_at == at
    assert metrics.request_rps == pytest.approx(2.0)  # the 120 arrivals of (240 s, 300 s], per second
    assert metrics.input_tokens_per_s == pytest.approx(2000.0) and metrics.output_tokens_per_s == pytest.approx(200.0)
    assert metrics.requests_total == 600.0
    early = source.observe([CHAT], START + timedelta(seconds=20))["chat"]
    assert early.request_rps == pytest.approx(2.0)  # a window shorter than a minute at the start
    assert not source.finished(START + timedelta(seconds=600))
    assert source.finished(START + timedelta(seconds=601))
    other = Service(name="other", model="Llama-3.1-8B", slo=ServiceSlo(ttft_p95_s=1.0, tpot_p95_s=0.1))
    assert "other" not in source.observe([CHAT, other], at)  # no trace: no data for it


def test_the_log_fleet_has_what_it_was_asked_for_and_says_so() -> None:
    lines: list[str] = []
    fleet = LogFleet(lines.append)
    h100 = parse_shape("H100-80GB")
    result = fleet.set_replicas(ScaleRequest("chat", h100, 4, None, "abc-000001"))
    assert result.applied == 4
    assert lines == ["set chat H100-80GB: 0 -> 4 (decision abc-000001)"]
    replicas = fleet.snapshot(START).replicas["chat"][h100]
    assert (replicas.ready, replicas.starting, replicas.spec) == (4, 0, 4)
