"""Prometheus answers into numbers, or into the reason there is none: pure functions, no I/O.

The rule that runs through this module is the reverse of the one behind KEDA's most-reported bug (its Prometheus
scaler counts an empty answer as 0 by default): here an empty vector, NaN, an infinity, a negative rate, several
series where one was expected, or a sample older than the staleness bound is *missing data* with its reason, never
zero. The loop holds a service whose request rate is missing; it never scales it down on it.

Inputs are what `prometheus_api_client` returns (the `data.result` list of an instant or range query) and the
exceptions it raises; outputs are `Reading`s, `Series` and the project's errors.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.config import DcgmField, DcgmMetric
from autoscaler.errors import AutoscalerError, ConfigError, DataQualityError, PermanentError, TransientError
from autoscaler.model import GpuTelemetry

Labels = tuple[tuple[str, str], ...]  # a series' labels, sorted: hashable, for counters kept across ticks


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an instant vector: its labels, the evaluation time and the value."""

    labels: Labels
    at_s: float
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


@dataclass(frozen=True, slots=True)
class Reading:
    """The one number a query gives, or None with the reason (`problem`)."""

    value: float | None
    problem: str = ""

    @staticmethod
    def missing(problem: str) -> Reading:
        return Reading(None, problem)


def _number(raw: Any, query: str) -> float:
    # Prometheus writes sample values as strings ("1.5", "NaN", "+Inf", "-Inf"); float() reads all of them.
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise DataQualityError(f"query {query!r}: a sample value {raw!r} is not a number")
    try:
        return float(raw)
    except ValueError:
        raise DataQualityError(f"query {query!r}: a sample value {raw!r} is not a number") from None


def _labels(raw: Any, query: str) -> Labels:
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise DataQualityError(f"query {query!r}: a series' `metric` is not a map of label names to values: {raw!r}")
    return tuple(sorted(raw.items()))


def _pair(raw: Any, query: str) -> tuple[float, float]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise DataQualityError(f"query {query!r}: a sample {raw!r} is not [time, value]")
    return _number(raw[0], query), _number(raw[1], query)


def parse_vector(result: Any, query: str) -> tuple[Series, ...]:
    """The series of an instant query's `data.result` (`[{"metric": {...}, "value": [t, "v"]}, ...]`).

    A scalar answer (`[t, "v"]`, what `scalar()` or a bare number returns) is one series without labels. Raises
    `DataQualityError`, naming the query, for anything else.
    """
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], Mapping):
        at_s, value = _pair(result, query)
        return (Series((), at_s, value),)
    if not isinstance(result, list):
        raise DataQualityError(f"query {query!r}: the answer is not a vector: {str(result)[:200]}")
    series = []
    for item in result:
        if not isinstance(item, Mapping) or "value" not in item:
            raise DataQualityError(f"query {query!r}: a series has no `value` (a range answer?): {str(item)[:200]}")
        at_s, value = _pair(item["value"], query)
        series.append(Series(_labels(item.get("metric", {}), query), at_s, value))
    return tuple(series)


@dataclass(frozen=True, slots=True)
class RangeSeries:
    labels: Labels
    points: tuple[tuple[float, float], ...]  # (time, value), oldest first


def parse_matrix(result: Any, query: str) -> tuple[RangeSeries, ...]:
    """The series of a range query's `data.result` (`[{"metric": {...}, "values": [[t, "v"], ...]}, ...]`)."""
    if not isinstance(result, list):
        raise DataQualityError(f"query {query!r}: the answer is not a matrix: {str(result)[:200]}")
    out = []
    for item in result:
        if not isinstance(item, Mapping) or not isinstance(item.get("values"), list):
            raise DataQualityError(f"query {query!r}: a series has no `values` list: {str(item)[:200]}")
        points = tuple(sorted(_pair(p, query) for p in item["values"]))
        out.append(RangeSeries(_labels(item.get("metric", {}), query), points))
    return tuple(out)


def usable(value: float, *, what: str, allow_zero: bool = True) -> str:
    """Why `value` cannot be used as a measurement ("NaN", "+Inf", "negative (-2)"); empty when it can."""
    if math.isnan(value):
        return f"{what} is NaN"
    if math.isinf(value):
        return f"{what} is {'+' if value > 0 else '-'}Inf"
    if value < 0:
        return f"{what} is negative ({value:g})"
    if not allow_zero and value == 0:
        return f"{what} is 0"
    return ""


def single_value(
    series: Sequence[Series],
    *,
    query: str,
    now_s: float,
    max_age_s: float,
    future_skew_s: float = 10.0,
) -> Reading:
    """The value of a query that must answer exactly one series (the default queries aggregate to one).

    Missing, with the reason, when the vector is empty, holds several series, or its one value is NaN (a
    histogram quantile over a window without requests), infinite (a quantile beyond the largest bucket), negative, or
    evaluated at a time older than `max_age_s` or later than `future_skew_s` (a cache or a proxy answering for
    another time).
    """
    if not series:
        return Reading.missing(f"{query} returned no series (missing data, not zero)")
    if len(series) > 1:
        return Reading.missing(
            f"{query} returned {len(series)} series where one is expected (aggregate it, e.g. with sum())"
        )
    only = series[0]
    problem = usable(only.value, what=query)
    if problem:
        return Reading.missing(problem)
    age_s = now_s - only.at_s
    if age_s > max_age_s:
        return Reading.missing(f"{query} was evaluated {age_s:.0f} s ago (stale: more than {max_age_s:g} s)")
    if -age_s > future_skew_s:
        return Reading.missing(f"{query} was evaluated {-age_s:.0f} s in the future (clock skew)")
    return Reading(only.value)


def newest_sample(series: Sequence[Series], *, query: str) -> Reading:
    """The newest sample time from a `max(timestamp(...))` query: Prometheus keeps a gauge visible for its 5-minute
    lookback after the last scrape, so this, not the evaluation time, says how fresh a service's series are."""
    if not series:
        return Reading.missing(f"{query} returned no series: the service's replicas export nothing")
    values = [s.value for s in series if math.isfinite(s.value)]
    if not values:
        return Reading.missing(f"{query}: no finite sample time")
    return Reading(max(values))


# ── counters ─────────────────────────────────────────────────────────────────────────────────────────────────────


RETIRED_KEEP_S = 3600.0  # how long a series that went away is remembered, should it come back


@dataclass(frozen=True, slots=True)
class CounterTotal:
    """A request counter summed over a service's replicas that never goes down, built tick by tick from the raw
    per-replica counters (one series per replica, engine and finish reason).

    Between two readings each series adds its increase. A series whose value went down was reset (its replica
    restarted) and adds its new value, as Prometheus's `increase()` counts a reset. A series that appears after the
    first reading belongs to a replica started since (counters start at 0 with their process) and adds its value;
    one that was seen before, went away and came back (a missed scrape) adds only its increase since it was last
    seen. At the first reading every series only sets the origin (their counts began before fleetscale looked). A
    series that is gone adds nothing (its replica was removed, which is not a reset of the total). So scaling in and
    out never looks like a reset to the loop, and the increase from tick to tick is the requests the replicas
    finished in between.
    """

    total: float = 0.0
    last: Mapping[Labels, float] | None = None  # None: never read
    retired: Mapping[Labels, tuple[float, float]] = field(default_factory=dict)  # labels -> (last value, gone at)

    def advance(self, series: Sequence[Series], now_s: float = 0.0) -> tuple[CounterTotal, str]:
        """The total after this reading at `now_s`, and a problem (a value that is not a count: the reading is
        skipped)."""
        values: dict[Labels, float] = {}
        for s in series:
            problem = usable(s.value, what=f"the request counter {dict(s.labels)}")
            if problem:
                return self, problem
            values[s.labels] = s.value
        if self.last is None:
            return CounterTotal(0.0, values), ""
        added = 0.0
        for labels, value in values.items():
            before = self.last.get(labels)
            if before is None and labels in self.retired:
                before = self.retired[labels][0]
            if before is None:
                added += value  # a replica started since the last reading
            else:
                added += value - before if value >= before else value
        retired = {
            labels: kept
            for labels, kept in self.retired.items()
            if labels not in values and now_s - kept[1] <= RETIRED_KEEP_S
        }
        for labels, value in self.last.items():
            if labels not in values:
                retired[labels] = (value, now_s)
        return CounterTotal(self.total + added, values, retired), ""


# ── DCGM ─────────────────────────────────────────────────────────────────────────────────────────────────────────

# One series per GPU, or per MIG instance on a MIG GPU: the labels that tell them apart (`Hostname` before the
# exporter renamed it `hostname`).
DCGM_INSTANCE_LABELS = ("hostname", "Hostname", "gpu", "UUID", "modelName", "GPU_I_ID", "GPU_I_PROFILE")


def gpus_from(answers: Mapping[DcgmField, tuple[DcgmMetric, Sequence[Series]]]) -> tuple[GpuTelemetry, ...]:
    """Per GPU or MIG instance, the DCGM fields that answered, in fleetscale's units (the metric says its unit).

    Engine activity is the profiling field where it is reported (whole GPUs and MIG instances alike), else the
    older utilization (whole GPUs only). A NaN or negative value is left out, a ratio above 1 is capped at 1.
    """
    values: dict[tuple[str, ...], dict[DcgmField, float]] = {}
    labels_of: dict[tuple[str, ...], dict[str, str]] = {}
    for dcgm_field, (metric, series) in answers.items():
        for s in series:
            labels = dict(s.labels)
            key = tuple(labels.get(name, "") for name in DCGM_INSTANCE_LABELS)
            labels_of.setdefault(key, labels)
            if not usable(s.value, what=metric.metric):
                values.setdefault(key, {})[dcgm_field] = s.value * metric.unit.to_base
    out = []
    for key, labels in labels_of.items():
        fields = values.get(key, {})
        active = fields.get(DcgmField.ENGINE_ACTIVE, fields.get(DcgmField.GPU_UTIL))
        out.append(
            GpuTelemetry(
                node=labels.get("hostname") or labels.get("Hostname") or "",
                gpu=labels.get("gpu", ""),
                uuid=labels.get("UUID", ""),
                model=labels.get("modelName", ""),
                mig_profile=labels.get("GPU_I_PROFILE") or None,
                instance=labels.get("GPU_I_ID") or None,
                engine_active=None if active is None else min(active, 1.0),
                fb_used_bytes=fields.get(DcgmField.FB_USED),
                fb_free_bytes=fields.get(DcgmField.FB_FREE),
            )
        )
    return tuple(sorted(out, key=lambda g: (g.node, g.gpu, g.instance or "")))


# ── errors ───────────────────────────────────────────────────────────────────────────────────────────────────────

_STATUS = re.compile(r"HTTP Status Code (\d{3}) \((.*)\)\s*$", re.DOTALL)


def _error_body(raw: str) -> tuple[str, str]:
    """errorType and error of a Prometheus error body, from the client's message (which embeds `repr(bytes)`)."""
    try:
        body = ast.literal_eval(raw)
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        data = json.loads(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "", raw[:300]
    if not isinstance(data, Mapping):
        return "", str(data)[:300]
    return str(data.get("errorType", "")), str(data.get("error", ""))[:300]


def error_for(status: int, body: str, *, query: str, url: str) -> AutoscalerError:
    """The project's error for an HTTP error answer of the query API.

    400 (bad_data: the PromQL does not parse) is the scenario's mistake: `ConfigError`, naming the query. 422
    (execution: the query cannot run on this data, such as many-to-many matching) will fail the same way next tick:
    `DataQualityError`. 429, 503 (Prometheus's own timeout or overload) and other 5xx are transient. 401, 403 and 404
    say the URL or the credentials are wrong: `PermanentError`.
    """
    error_type, message = _error_body(body)
    detail = f"{error_type}: {message}" if error_type else message
    if status == 400:
        return ConfigError(f"Prometheus refused the query {query!r} ({detail})")
    if status == 422:
        return DataQualityError(f"Prometheus could not run the query {query!r} ({detail})")
    if status == 429 or status >= 500:
        return TransientError(f"Prometheus at {url} answered {status} ({detail or 'no detail'})", retry_after_s=5.0)
    return PermanentError(f"Prometheus at {url} answered {status} to {query!r}: check the URL and credentials")


def error_from_client_message(message: str, *, query: str, url: str) -> AutoscalerError:
    """`error_for` of a `PrometheusApiClientException` ("HTTP Status Code 400 (b'{...}')")."""
    match = _STATUS.search(message)
    if match is None:
        return TransientError(f"Prometheus at {url}: {message[:300]}", retry_after_s=5.0)
    return error_for(int(match.group(1)), match.group(2), query=query, url=url)
