"""The Prometheus adapter's parsing, table by table: every answer that is not a usable number is missing data with
its reason, never zero (adapters/prometheus/parse.py)."""

from __future__ import annotations

import math
import string
from typing import Any

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from adapters.prometheus import error_from_exception
from adapters.prometheus.parse import (
    CounterTotal,
    Series,
    error_from_client_message,
    gpus_from,
    newest_sample,
    parse_matrix,
    parse_vector,
    single_value,
)
from adapters.prometheus.queries import DCGM_LEGACY, DEFAULT_QUERIES, ServiceQueries, dcgm_metrics, selector
from autoscaler.config import (
    DcgmField,
    DcgmMetric,
    DcgmSettings,
    MetricsEngine,
    MetricSignal,
    MetricUnit,
    Service,
    ServiceSlo,
)
from autoscaler.errors import ConfigError, DataQualityError, PermanentError, TransientError

NOW = 1_750_000_000.0
Q = "sum(rate(vllm:request_success_total[1m]))"


def vector(*values: tuple[dict[str, str], Any], at: float = NOW) -> list[dict[str, Any]]:
    return [{"metric": labels, "value": [at, value]} for labels, value in values]


def value_of(result: Any, *, at: float = NOW, max_age_s: float = 60.0) -> tuple[float | None, str]:
    reading = single_value(parse_vector(result, Q), query=Q, now_s=at, max_age_s=max_age_s)
    return reading.value, reading.problem


@pytest.mark.parametrize(
    ("result", "value", "problem"),
    [
        (vector(({}, "12.5")), 12.5, ""),
        (vector(({}, "0")), 0.0, ""),  # a real zero (an idle service) is a value
        ([NOW, "3"], 3.0, ""),  # a scalar answer
        ([], None, "no series (missing data, not zero)"),
        (vector(({}, "NaN")), None, "is NaN"),
        (vector(({}, "+Inf")), None, "is +Inf"),
        (vector(({}, "-Inf")), None, "is -Inf"),
        (vector(({}, "-2")), None, "is negative (-2)"),
        (vector(({"pod": "a"}, "1"), ({"pod": "b"}, "2")), None, "2 series where one is expected"),
        (vector(({}, "4"), at=NOW - 600), None, "evaluated 600 s ago (stale"),
        (vector(({}, "4"), at=NOW + 60), None, "60 s in the future"),
    ],
    ids=["value", "zero", "scalar", "empty", "nan", "+inf", "-inf", "negative", "several", "stale", "future"],
)
def test_single_value_table(result: Any, value: float | None, problem: str) -> None:
    got, why = value_of(result)
    assert got == value
    assert problem in why
    if value is None:
        assert why  # a missing value always says why


@pytest.mark.parametrize(
    "result",
    [
        {"resultType": "vector"},  # the envelope, not data.result
        [{"metric": {}, "values": [[NOW, "1"]]}],  # a range answer where an instant one was asked for
        [{"metric": {}, "value": [NOW]}],
        [{"metric": {}, "value": [NOW, "twelve"]}],
        [{"metric": {"pod": 3}, "value": [NOW, "1"]}],
        [{"metric": {}, "value": [NOW, True]}],
    ],
    ids=["envelope", "matrix", "short-pair", "not-a-number", "label-not-string", "bool"],
)
def test_malformed_answers_name_the_query(result: Any) -> None:
    with pytest.raises(DataQualityError, match="vllm:request_success_total"):
        parse_vector(result, Q)


def test_matrix_points_are_sorted_and_checked() -> None:
    (series,) = parse_matrix([{"metric": {"a": "b"}, "values": [[NOW + 15, "2"], [NOW, "1"]]}], Q)
    assert series.points == ((NOW, 1.0), (NOW + 15, 2.0))
    with pytest.raises(DataQualityError):
        parse_matrix([{"metric": {}, "value": [NOW, "1"]}], Q)


def test_newest_sample_is_the_freshest_series() -> None:
    assert newest_sample(parse_vector(vector(({}, str(NOW - 20))), Q), query=Q).value == NOW - 20
    assert newest_sample((), query=Q).value is None


def series(*values: tuple[str, float]) -> tuple[Series, ...]:
    return tuple(Series((("pod", pod),), NOW, value) for pod, value in values)


def test_counter_total_survives_resets_and_replicas_coming_and_going() -> None:
    total, problem = CounterTotal().advance(series(("a", 100.0), ("b", 50.0)), 0.0)
    assert (total.total, problem) == (0.0, "")  # the first reading only sets the origin
    total, _ = total.advance(series(("a", 110.0), ("b", 55.0)), 15.0)
    assert total.total == 15.0
    total, _ = total.advance(series(("a", 3.0), ("b", 60.0)), 30.0)  # a restarted: its 3 new requests count
    assert total.total == 23.0
    total, _ = total.advance(series(("a", 8.0)), 45.0)  # b removed: not a reset of the total
    assert total.total == 28.0
    total, _ = total.advance(series(("a", 10.0), ("c", 4.0)), 60.0)  # c started since: its 4 requests count
    assert total.total == 34.0
    total, _ = total.advance(series(("a", 12.0), ("b", 61.0), ("c", 9.0)), 75.0)  # b back after a gap: +1, not +61
    assert total.total == 42.0
    forgotten, _ = total.advance(series(("a", 12.0), ("c", 9.0)), 90.0)
    forgotten, _ = forgotten.advance(series(("a", 12.0), ("c", 9.0)), 90.0 + 3700.0)
    assert set(forgotten.retired) == set()  # a series gone for over an hour is forgotten


def test_counter_total_skips_a_reading_that_is_not_a_count() -> None:
    start, _ = CounterTotal().advance(series(("a", 1.0)))
    after, problem = start.advance(series(("a", math.nan)))
    assert after is start
    assert "NaN" in problem


@pytest.mark.parametrize(
    ("message", "error", "words"),
    [
        (
            'HTTP Status Code 400 (b\'{"status":"error","errorType":"bad_data","error":"1:5: parse error"}\')',
            ConfigError,
            "bad_data: 1:5: parse error",
        ),
        (
            'HTTP Status Code 422 (b\'{"status":"error","errorType":"execution","error":"many-to-many"}\')',
            DataQualityError,
            "execution: many-to-many",
        ),
        (
            'HTTP Status Code 503 (b\'{"status":"error","errorType":"timeout","error":"query timed out"}\')',
            TransientError,
            "answered 503 (timeout: query timed out)",
        ),
        ("HTTP Status Code 429 (b'slow down')", TransientError, "answered 429"),
        ("HTTP Status Code 502 (b'<html>bad gateway</html>')", TransientError, "answered 502"),
        ("HTTP Status Code 401 (b'unauthorized')", PermanentError, "check the URL and credentials"),
        ("something else entirely", TransientError, "something else"),
    ],
    ids=["400", "422", "503", "429", "502", "401", "unknown"],
)
def test_error_answers_map_to_the_projects_errors(message: str, error: type[Exception], words: str) -> None:
    got = error_from_client_message(message, query=Q, url="http://127.0.0.1:9090")
    assert type(got) is error
    assert words in str(got)


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (requests.ReadTimeout("read timed out"), "did not answer within 2.5 s"),
        (requests.ConnectionError("refused"), "is unreachable"),
        (PrometheusApiClientException("HTTP Status Code 503 (b'')"), "answered 503"),
        (ValueError("Expecting value"), "not JSON"),
    ],
    ids=["timeout", "refused", "client-exception", "not-json"],
)
def test_transport_failures_are_transient(exc: BaseException, words: str) -> None:
    got = error_from_exception(exc, query=Q, url="http://127.0.0.1:9090", timeout_s=2.5)
    assert isinstance(got, TransientError)
    assert words in str(got)


def test_a_programming_error_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        error_from_exception(KeyError("x"), query=Q, url="u", timeout_s=1)


# ── queries ──────────────────────────────────────────────────────────────────────────────────────────────────────


def service(**metrics: Any) -> Service:
    return Service(
        name="chat",
        model="Llama-3.1-8B",
        slo=ServiceSlo(ttft_p95_s=1.0, tpot_p95_s=0.1),
        metrics=metrics,
    )


@pytest.mark.parametrize("engine", list(MetricsEngine))
def test_every_default_query_fills_in_and_aggregates_to_one_series(engine: MetricsEngine) -> None:
    queries = ServiceQueries.of(service(engine=engine))
    assert MetricSignal.REQUEST_RPS in queries.signals
    for signal, query in queries.signals.items():
        assert "$" not in query, (signal, query)
        assert query.split("(")[0] in {"sum", "avg", "max", "count", "histogram_quantile", "clamp_min"}, query
        assert query.count("(") == query.count(")")
    assert set(DEFAULT_QUERIES[engine]) <= set(MetricSignal)


def test_default_selector_names_the_service_and_overrides_replace_queries() -> None:
    default = ServiceQueries.of(service())
    assert 'model_name="chat"' in default.signals[MetricSignal.RUNNING]
    custom = ServiceQueries.of(
        service(
            labels={"namespace": "inference", "model_name": 'a"b'},
            label_patterns={"pod": "chat-.*"},
            queries={"running": "sum(my_running{$selector})", "ttft_p95_s": "max(my_ttft{$selector}[$window])"},
            rate_window_s=90,
        )
    )
    assert custom.signals[MetricSignal.RUNNING] == (
        'sum(my_running{model_name="a\\"b",namespace="inference",pod=~"chat-.*"})'
    )
    assert custom.signals[MetricSignal.TTFT_P95_S].endswith("[90s])")
    assert "vllm:time_to_first_token_seconds_bucket" in custom.signals[MetricSignal.TTFT_P50_S]


def test_vllm_reads_the_deprecated_names_as_fallbacks() -> None:
    vllm = ServiceQueries.of(service()).signals
    assert "vllm:kv_cache_usage_perc{" in vllm[MetricSignal.KV_CACHE_USAGE]
    assert " or vllm:gpu_cache_usage_perc{" in vllm[MetricSignal.KV_CACHE_USAGE]
    tpot = vllm[MetricSignal.TPOT_P95_S]
    assert tpot.index("inter_token_latency_seconds") < tpot.index("time_per_output_token_seconds")


def test_shape_labels_narrow_the_selector() -> None:
    svc = service(shape_labels={"H100-80GB": {"deployment": "chat-h100"}})
    shape = ServiceQueries.of(svc, svc.metrics.shape_labels["H100-80GB"])
    assert 'deployment="chat-h100"' in shape.signals[MetricSignal.WAITING]
    assert 'model_name="chat"' in shape.signals[MetricSignal.WAITING]


def test_selector_escapes_promql_strings() -> None:
    assert selector({"a": 'x"y\\z'}) == 'a="x\\"y\\\\z"'


@pytest.mark.parametrize(
    ("queries", "words"),
    [
        ({"running": "sum(x{$selector}) $tick"}, "$tick"),
        ({"running": "sum(x{$selector}) $"}, "write $$"),
        ({"running": "  "}, "is empty"),
        ({"latency": "x"}, "latency"),
    ],
)
def test_bad_query_overrides_are_config_errors(queries: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("$", r"\$")):
        service(queries=queries)


def test_templates_only_use_the_two_placeholders() -> None:
    for templates in DEFAULT_QUERIES.values():
        for template in templates.values():
            assert set(string.Template(template).get_identifiers()) == {"selector", "window"} or set(
                string.Template(template).get_identifiers()
            ) == {"selector"}


# ── DCGM ─────────────────────────────────────────────────────────────────────────────────────────────────────────


def dcgm_series(metric_labels: dict[str, str], value: float) -> Series:
    return Series(tuple(sorted(metric_labels.items())), NOW, value)


GPU0 = {"gpu": "0", "UUID": "GPU-a", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "n1"}
MIG1 = {**GPU0, "gpu": "1", "UUID": "GPU-b", "GPU_I_PROFILE": "3g.40gb", "GPU_I_ID": "2"}


def test_dcgm_legacy_names_percent_and_mib_become_ratios_and_bytes() -> None:
    legacy = DCGM_LEGACY
    answers = {
        DcgmField.GPU_UTIL: (legacy[DcgmField.GPU_UTIL], [dcgm_series(GPU0, 75.0)]),
        DcgmField.ENGINE_ACTIVE: (legacy[DcgmField.ENGINE_ACTIVE], [dcgm_series(MIG1, 0.4)]),
        DcgmField.FB_USED: (legacy[DcgmField.FB_USED], [dcgm_series(GPU0, 40960.0), dcgm_series(MIG1, 1024.0)]),
    }
    whole, mig = gpus_from(answers)
    assert (whole.node, whole.gpu, whole.mig_profile, whole.engine_active) == ("n1", "0", None, 0.75)
    assert whole.fb_used_bytes == 40960 * 1024 * 1024
    assert (mig.mig_profile, mig.instance, mig.engine_active, mig.fb_used_bytes) == ("3g.40gb", "2", 0.4, 1024**3)


def test_dcgm_names_after_the_4_9_rename_are_read_first_in_their_units() -> None:
    renamed = DcgmSettings(
        names={
            "engine_active": {"metric": "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "unit": "ratio"},
            "gpu_util": {"metric": "DCGM_FI_DEV_GPU_UTIL_RATIO", "unit": "ratio"},
            "fb_used": {"metric": "DCGM_FI_DEV_FB_USED_BYTES", "unit": "bytes"},
        }
    )
    assert [m.metric for m in dcgm_metrics(renamed, DcgmField.FB_USED)] == [
        "DCGM_FI_DEV_FB_USED_BYTES",
        "DCGM_FI_DEV_FB_USED",
    ]
    assert len(dcgm_metrics(renamed, DcgmField.ENGINE_ACTIVE)) == 1  # the same name: read once
    hostname = {**GPU0, "hostname": "n2"}
    hostname.pop("Hostname")
    (gpu,) = gpus_from(
        {
            DcgmField.GPU_UTIL: (
                DcgmMetric(metric="DCGM_FI_DEV_GPU_UTIL_RATIO", unit=MetricUnit.RATIO),
                [dcgm_series(hostname, 0.75)],
            ),
            DcgmField.FB_USED: (
                DcgmMetric(metric="DCGM_FI_DEV_FB_USED_BYTES", unit=MetricUnit.BYTES),
                [dcgm_series(hostname, 2.0e9)],
            ),
        }
    )
    assert (gpu.node, gpu.engine_active, gpu.fb_used_bytes) == ("n2", 0.75, 2.0e9)


def test_dcgm_bad_values_are_left_out_and_ratios_capped() -> None:
    (gpu,) = gpus_from(
        {
            DcgmField.ENGINE_ACTIVE: (DCGM_LEGACY[DcgmField.ENGINE_ACTIVE], [dcgm_series(GPU0, 1.2)]),
            DcgmField.FB_USED: (DCGM_LEGACY[DcgmField.FB_USED], [dcgm_series(GPU0, math.nan)]),
        }
    )
    assert gpu.engine_active == 1.0
    assert gpu.fb_used_bytes is None
