"""`PrometheusMetricsSource.observe` and `history` on canned answers of the query API: the client is replaced by a
table of answers (the real Prometheus is in tests/integration/test_prometheus_loop.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from adapters.prometheus import PrometheusMetricsSource
from adapters.prometheus.queries import ServiceQueries
from autoscaler.config import MetricSignal, Service, ServiceSlo
from autoscaler.errors import TransientError
from autoscaler.shapes import parse_shape

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
S = MetricSignal


def service(name: str = "chat", **metrics: Any) -> Service:
    return Service(name=name, model="Llama-3.1-8B", slo=ServiceSlo(ttft_p95_s=1.0, tpot_p95_s=0.1), metrics=metrics)


def one(value: str, at: float = T) -> list[dict[str, Any]]:
    return [{"metric": {}, "value": [at, value]}]


class CannedClient:
    """Answers each query from a table (an answer, an exception, or a callable of the query's params)."""

    def __init__(self, answers: Mapping[str, Any], default: Any = ()) -> None:
        self.answers = dict(answers)
        self.default = default
        self.asked: list[str] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.asked.append(query)
        answer = self.answers.get(query, self.default)
        if isinstance(answer, BaseException):
            raise answer
        return answer(params) if callable(answer) else list(answer)

    def custom_query_range(self, query: str, start: datetime, end: datetime, step: str) -> Any:
        answer = self.answers[("range", query)]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        pass


def source_with(answers: Mapping[Any, Any], default: Any = ()) -> tuple[PrometheusMetricsSource, CannedClient]:
    source = PrometheusMetricsSource("http://127.0.0.1:9")
    client = CannedClient(answers, default)
    source._client = client  # type: ignore[assignment]
    return source, client


def healthy(svc: Service, rate: str = "12", counter: Callable[[float], list[Any]] | None = None) -> dict[Any, Any]:
    q = ServiceQueries.of(svc)
    return {
        q.freshness: one(str(T - 5)),
        q.signals[S.REQUEST_RPS]: one(rate),
        q.signals[S.RUNNING]: one("7"),
        q.signals[S.WAITING]: one("2"),
        q.signals[S.KV_CACHE_USAGE]: one("0.4"),
        q.signals[S.TTFT_P95_S]: one("0.61"),
        q.signals[S.TPOT_P95_S]: one("NaN"),  # no tokens in the window: not reported, not zero
        q.signals[S.REPLICAS]: one("3"),
        q.counter: [{"metric": {"pod": "a"}, "value": [T, "100"]}],
    }


def test_a_healthy_service_reads_every_signal() -> None:
    svc = service()
    source, _ = source_with(healthy(svc))
    reading = source.observe([svc], NOW)["chat"]
    assert reading.request_rps == 12.0
    assert reading.sampled_at == NOW - timedelta(seconds=5)
    assert reading.problem == ""
    assert reading.telemetry is not None
    t = reading.telemetry
    assert (t.running, t.waiting, t.kv_cache_usage, t.ttft_p95_s, t.tpot_p95_s, t.replicas) == (
        7.0, 2.0, 0.4, 0.61, None, 3,
    )  # fmt: skip
    assert reading.requests_total == 0.0  # the first reading of the counters sets their origin


@pytest.mark.parametrize(
    ("rate", "words"),
    [([], "no series (missing data, not zero)"), (one("NaN"), "NaN"), (one("-3"), "negative")],
    ids=["empty", "nan", "negative"],
)
def test_a_missing_rate_is_a_reading_without_rate_and_with_the_reason(rate: Any, words: str) -> None:
    svc = service()
    answers = healthy(svc)
    answers[ServiceQueries.of(svc).signals[S.REQUEST_RPS]] = rate
    source, _ = source_with(answers)
    reading = source.observe([svc], NOW)["chat"]
    assert reading.request_rps is None
    assert words in reading.problem


def test_no_series_at_all_holds_with_the_reason() -> None:
    source, _ = source_with({})
    reading = source.observe([service()], NOW)["chat"]
    assert reading.request_rps is None
    assert "export nothing" in reading.problem


def test_prometheus_down_or_timing_out_raises_transient_at_the_first_query() -> None:
    svc = service()
    for failure in (requests.ConnectionError("refused"), requests.ReadTimeout("slow")):
        source, client = source_with({}, default=failure)
        services = [svc, *(service(f"s{i}") for i in range(20))]
        with pytest.raises(TransientError):
            source.observe(services, NOW)
        # Each service's read stops at its first query (its freshness); those not yet started are not asked at all.
        assert len(client.asked) <= len(services)
        assert all(q.startswith("max(timestamp(") for q in client.asked)


def test_an_invalid_override_holds_that_service_only() -> None:
    bad = service("bad", queries={"request_rps": "sum(rate(x{$selector}[$window])"})
    good = service("good")
    answers = {**healthy(good), **healthy(bad)}
    answers[ServiceQueries.of(bad).signals[S.REQUEST_RPS]] = PrometheusApiClientException(
        'HTTP Status Code 400 (b\'{"status":"error","errorType":"bad_data","error":"unclosed paren"}\')'
    )
    source, _ = source_with(answers)
    readings = source.observe([bad, good], NOW)
    assert readings["good"].request_rps == 12.0
    assert readings["bad"].request_rps is None
    assert "unclosed paren" in readings["bad"].problem


def test_per_shape_telemetry_with_shape_labels() -> None:
    svc = service(shape_labels={"H100-80GB": {"deployment": "chat-h100"}})
    shape_q = ServiceQueries.of(svc, {"deployment": "chat-h100"})
    answers = healthy(svc)
    answers[shape_q.signals[S.REQUEST_RPS]] = one("5")
    answers[shape_q.signals[S.TTFT_P95_S]] = one("0.9")
    source, _ = source_with(answers)
    reading = source.observe([svc], NOW)["chat"]
    h100 = reading.shapes[parse_shape("H100-80GB")]
    assert (h100.request_rps, h100.ttft_p95_s, h100.running) == (5.0, 0.9, None)


def test_the_request_counter_total_grows_through_a_reset() -> None:
    svc = service()
    q = ServiceQueries.of(svc)
    source, client = source_with(healthy(svc))
    totals = []
    for values in (("100", "40"), ("130", "50"), ("5", "60")):
        client.answers[q.counter] = [
            {"metric": {"pod": "a"}, "value": [T, values[0]]},
            {"metric": {"pod": "b"}, "value": [T, values[1]]},
        ]
        totals.append(source.observe([svc], NOW)["chat"].requests_total)
    assert totals == [0.0, 40.0, 55.0]


def test_history_is_the_rate_query_over_a_range() -> None:
    svc = service()
    query = ServiceQueries.of(svc).signals[S.REQUEST_RPS]
    values = [[T - 120, "0.2"], [T - 75, "0.9"], [T - 60, "1"], [T - 15, "NaN"], [T, "3"]]
    source, _ = source_with({("range", query): [{"metric": {}, "values": values}]})
    samples = source.history(svc, NOW - timedelta(seconds=120), NOW, 15.0)
    # The series' first rate window (60 s) is left out: its rates rest on part of a window.
    assert [s.request_rps for s in samples] == [1.0, None, 3.0]
    assert samples[-1].at == NOW


def test_many_services_are_read_concurrently_each_with_its_own_answers() -> None:
    services = [service(f"s{i}") for i in range(12)]
    answers: dict[Any, Any] = {}
    for i, svc in enumerate(services):
        answers.update(healthy(svc, rate=str(i + 1)))
    source, _ = source_with(answers)
    readings = source.observe(services, NOW)
    assert [readings[f"s{i}"].request_rps for i in range(12)] == [float(i + 1) for i in range(12)]
