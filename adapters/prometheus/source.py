"""`PrometheusMetricsSource`: the loop's `MetricsSource` over Prometheus's HTTP API (prometheus-api-client).

Per service and tick it asks: how fresh the service's series are (`max(timestamp(gauge))`), the request rate, the
raw request counters (one series per replica, turned into a total that survives replicas coming and going:
`parse.CounterTotal`), the token rates, the queues, the KV cache and the latency quantiles, for the service and, with
`metrics.shape_labels`, for each shape. All queries are evaluated at the loop's `now`. A missing request rate (an
empty answer, NaN, a query that failed for this service alone) gives the service a reading without a rate and with
the reason, so the loop holds it and says why; Prometheus down or timing out raises `TransientError` from the first
query that meets it, and every service holds.

`history()` answers a range query of the request-rate query, for the forecasters after a restart. `gpus()` reads the
DCGM exporter's series, per GPU and per MIG instance, for the efficiency SLOs.

The queries are in `queries.py`, the parsing (pure, table-tested) in `parse.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from adapters.prometheus.parse import (
    CounterTotal,
    Reading,
    Series,
    error_from_client_message,
    gpus_from,
    newest_sample,
    parse_matrix,
    parse_vector,
    single_value,
    usable,
)
from adapters.prometheus.queries import ServiceQueries, dcgm_metrics, dcgm_query
from autoscaler.config import DcgmField, DcgmMetric, DcgmSettings, MetricSignal, Service
from autoscaler.errors import AutoscalerError, DataQualityError, TransientError
from autoscaler.model import GpuTelemetry, ShapeTelemetry
from autoscaler.ports import RateSample, ServiceMetrics
from autoscaler.shapes import Shape, parse_shape

S = MetricSignal


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Prompt and generation tokens per second at one step (None: not reported)."""

    input_tokens_per_s: float | None
    output_tokens_per_s: float | None


def error_from_exception(exc: BaseException, *, query: str, url: str, timeout_s: float) -> AutoscalerError:
    """The project's error for what the client raised: a timeout or a refused connection is transient, an HTTP
    error answer is mapped by its status (`parse.error_for`)."""
    if isinstance(exc, PrometheusApiClientException):
        return error_from_client_message(str(exc), query=query, url=url)
    if isinstance(exc, requests.Timeout):
        return TransientError(f"Prometheus at {url} did not answer within {timeout_s:g} s", retry_after_s=5.0)
    if isinstance(exc, requests.ConnectionError):
        return TransientError(f"Prometheus at {url} is unreachable ({type(exc).__name__})", retry_after_s=5.0)
    if isinstance(exc, ValueError):  # a body that is not JSON: a proxy's error page
        return TransientError(f"Prometheus at {url} answered something that is not JSON", retry_after_s=5.0)
    if isinstance(exc, requests.RequestException):
        return TransientError(f"Prometheus at {url}: {type(exc).__name__}: {exc}", retry_after_s=5.0)
    raise exc


class PrometheusMetricsSource:
    """See the module docstring. `max_age_s` is the staleness bound of an evaluation (a cached answer); the
    freshness of the series themselves is the loop's `metrics_max_age_s`, applied to `sampled_at`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        dcgm: DcgmSettings | None = None,
        max_age_s: float = 60.0,
        concurrency: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        # The client's connection pool keeps 10 connections to Prometheus alive; more threads would open and drop
        # connections every tick.
        self.concurrency = max(1, min(concurrency, 10))
        self.timeout_s = timeout_s
        self.dcgm = dcgm or DcgmSettings()
        self.max_age_s = max_age_s
        # One quick retry of a gateway error; a refused connection fails at once (the loop retries next tick, and a
        # tick must not wait seconds per query for a Prometheus that is down).
        retry = Retry(total=1, connect=0, read=0, backoff_factor=0, status_forcelist=(502, 504), raise_on_status=False)
        # The client hands `timeout` to requests, which takes float seconds; its own hint says int.
        self._client = PrometheusConnect(
            url=self.url,
            headers=dict(headers or {}),
            retry=retry,
            timeout=timeout_s,  # type: ignore[arg-type]
        )
        self._counters: dict[str, CounterTotal] = {}  # per service
        self._queries: dict[tuple[str, str], ServiceQueries] = {}

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"PrometheusMetricsSource({self.url!r}, timeout_s={self.timeout_s:g})"

    # ── transport ───────────────────────────────────────────────────────────────────────────────────────────────

    def _instant(self, query: str, now: datetime) -> tuple[Series, ...]:
        try:
            result: Any = self._client.custom_query(query, params={"time": f"{now.timestamp():.3f}"})
        except Exception as exc:  # translated to the project's errors, or re-raised, below
            raise error_from_exception(exc, query=query, url=self.url, timeout_s=self.timeout_s) from exc
        return parse_vector(result, query)

    def _instant_or_problem(self, query: str, now: datetime) -> tuple[tuple[Series, ...], str]:
        """The series of a query, or none and the reason when it fails for this service alone (invalid, not
        executable). A transient failure propagates: Prometheus is down for everyone."""
        try:
            return self._instant(query, now), ""
        except TransientError:
            raise
        except AutoscalerError as exc:
            return (), str(exc)

    def _range_points(
        self, query: str, start: datetime, end: datetime, step_s: float
    ) -> tuple[tuple[float, float], ...]:
        """The points of a range query that must answer one series (none when it answers nothing)."""
        try:
            result = self._client.custom_query_range(query, start, end, f"{step_s:g}s")
        except Exception as exc:  # as in _instant
            raise error_from_exception(exc, query=query, url=self.url, timeout_s=self.timeout_s) from exc
        matrix = parse_matrix(result, query)
        if len(matrix) > 1:
            raise DataQualityError(
                f"query {query!r} returned {len(matrix)} series over the range where one is expected"
            )
        return matrix[0].points if matrix else ()

    # ── MetricsSource ───────────────────────────────────────────────────────────────────────────────────────────

    def observe(self, services: Sequence[Service], now: datetime) -> Mapping[str, ServiceMetrics]:
        """Each service's reading; the services are read `concurrency` at a time (a service's dozen queries run one
        after another), so that a fleet of hundreds fits in a tick over a network's round trips."""
        if len(services) <= 1 or self.concurrency <= 1:
            return {service.name: self._observe_service(service, now) for service in services}
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(services)), thread_name_prefix="prometheus")
        try:
            futures = [(service.name, pool.submit(self._observe_service, service, now)) for service in services]
            return {name: future.result() for name, future in futures}
        finally:
            # On a failure (Prometheus down) the services not yet started are not asked at all.
            pool.shutdown(wait=True, cancel_futures=True)

    def _queries_of(self, service: Service, shape: str = "") -> ServiceQueries:
        key = (service.name, shape)
        queries = self._queries.get(key)
        if queries is None:
            labels = service.metrics.shape_labels.get(shape) if shape else None
            queries = self._queries[key] = ServiceQueries.of(service, labels)
        return queries

    def _reading(self, query: str, now: datetime) -> Reading:
        """One signal; a query that fails for this service alone (invalid, not executable) is a missing value with
        the reason. A transient failure propagates: Prometheus is down for everyone."""
        series, problem = self._instant_or_problem(query, now)
        if problem:
            return Reading.missing(problem)
        return single_value(series, query=query, now_s=now.timestamp(), max_age_s=self.max_age_s)

    def _observe_service(self, service: Service, now: datetime) -> ServiceMetrics:
        queries = self._queries_of(service)
        series, problem = self._instant_or_problem(queries.freshness, now)
        fresh = Reading.missing(problem) if problem else newest_sample(series, query=queries.freshness)
        if fresh.value is None:
            return ServiceMetrics(now, None, problem=fresh.problem)
        sampled_at = datetime.fromtimestamp(min(fresh.value, now.timestamp()), UTC)
        rate = self._reading(queries.signals[S.REQUEST_RPS], now)
        telemetry = self._telemetry(queries, now, rate)
        shapes: dict[Shape, ShapeTelemetry] = {}
        for text in service.metrics.shape_labels:
            shape_queries = self._queries_of(service, text)
            shape_rate = self._reading(shape_queries.signals[S.REQUEST_RPS], now)
            shapes[parse_shape(text, service.tensor_parallel_size or 1)] = self._telemetry(
                shape_queries, now, shape_rate
            )
        return ServiceMetrics(
            sampled_at,
            rate.value,
            input_tokens_per_s=self._optional(queries, S.INPUT_TOKENS_PER_S, now),
            output_tokens_per_s=self._optional(queries, S.OUTPUT_TOKENS_PER_S, now),
            requests_total=self._requests_total(service.name, queries, now),
            telemetry=telemetry,
            shapes=shapes,
            problem=rate.problem,
        )

    def _optional(self, queries: ServiceQueries, signal: MetricSignal, now: datetime) -> float | None:
        query = queries.signals.get(signal)
        return None if query is None else self._reading(query, now).value

    def _telemetry(self, queries: ServiceQueries, now: datetime, rate: Reading) -> ShapeTelemetry:
        replicas = self._optional(queries, S.REPLICAS, now)
        return ShapeTelemetry(
            request_rps=rate.value,
            running=self._optional(queries, S.RUNNING, now),
            waiting=self._optional(queries, S.WAITING, now),
            kv_cache_usage=self._optional(queries, S.KV_CACHE_USAGE, now),
            ttft_p50_s=self._optional(queries, S.TTFT_P50_S, now),
            ttft_p95_s=self._optional(queries, S.TTFT_P95_S, now),
            tpot_p50_s=self._optional(queries, S.TPOT_P50_S, now),
            tpot_p95_s=self._optional(queries, S.TPOT_P95_S, now),
            replicas=None if replicas is None else round(replicas),
        )

    def _requests_total(self, service: str, queries: ServiceQueries, now: datetime) -> float | None:
        series, problem = self._instant_or_problem(queries.counter, now)
        if problem or not series:
            return None
        advanced, problem = self._counters.get(service, CounterTotal()).advance(series, now.timestamp())
        if problem:
            return None
        self._counters[service] = advanced
        return advanced.total

    def history(self, service: Service, start: datetime, end: datetime, step_s: float) -> Sequence[RateSample]:
        points = self._range_points(self._queries_of(service).signals[S.REQUEST_RPS], start, end, step_s)
        # The first window of a series rests on part of a window (its first samples), and rate() reads low there: a
        # forecaster refilled with it would see a ramp that never was, and a trend in it.
        settled_s = points[0][0] + service.metrics.rate_window_s if points else 0.0
        return [
            RateSample(datetime.fromtimestamp(at_s, UTC), None if usable(value, what="rate") else value)
            for at_s, value in points
            if at_s >= settled_s
        ]

    def telemetry_history(
        self, service: Service, start: datetime, end: datetime, step_s: float, shape: str | None = None
    ) -> list[tuple[datetime, ShapeTelemetry, TokenRates]]:
        """What the service's replicas (of `shape`, by its `metrics.shape_labels`) reported at every `step_s` in
        [start, end]: request rate, p95 TTFT and TPOT, replicas reporting, and the token rates (for the mix), oldest
        first; steps where the request rate is missing are left out. For `fleetscale profile calibrate`."""
        queries = self._queries_of(service, shape or "")
        wanted = (S.REQUEST_RPS, S.TTFT_P95_S, S.TPOT_P95_S, S.REPLICAS, S.INPUT_TOKENS_PER_S, S.OUTPUT_TOKENS_PER_S)
        series: dict[MetricSignal, dict[float, float]] = {}
        for signal in wanted:
            query = queries.signals.get(signal)
            if query is None:
                continue
            points = self._range_points(query, start, end, step_s)
            series[signal] = {t: v for t, v in points if not usable(v, what=signal)}
        out = []
        for at_s, rps in sorted(series.get(S.REQUEST_RPS, {}).items()):

            def value(signal: MetricSignal, at_s: float = at_s) -> float | None:
                return series.get(signal, {}).get(at_s)

            replicas = value(S.REPLICAS)
            telemetry = ShapeTelemetry(
                request_rps=rps,
                ttft_p95_s=value(S.TTFT_P95_S),
                tpot_p95_s=value(S.TPOT_P95_S),
                replicas=None if replicas is None else round(replicas),
            )
            tokens = TokenRates(value(S.INPUT_TOKENS_PER_S), value(S.OUTPUT_TOKENS_PER_S))
            out.append((datetime.fromtimestamp(at_s, UTC), telemetry, tokens))
        return out

    # ── DCGM ────────────────────────────────────────────────────────────────────────────────────────────────────

    def gpus(self, now: datetime) -> tuple[GpuTelemetry, ...]:
        """Every GPU and MIG instance the DCGM exporter reports, with its engine activity and framebuffer (in
        fleetscale's units whatever the exporter's version). Raises as `observe` does."""
        answers: dict[DcgmField, tuple[DcgmMetric, tuple[Series, ...]]] = {}
        for field in DcgmField:
            for metric in dcgm_metrics(self.dcgm, field):
                series = self._instant(dcgm_query(self.dcgm, metric), now)
                if series:  # else not under this name: try the next one
                    answers[field] = (metric, series)
                    break
        return gpus_from(answers)
