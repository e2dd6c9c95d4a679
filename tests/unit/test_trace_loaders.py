"""Trace loaders: every format parses, the bundled traces have the statistics their README states, format
detection works, and every malformed line is named by file and line (or skipped and counted on request)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from adapters.traces import (
    FORMATS,
    LoadReport,
    detect_format,
    load_azure,
    load_servegen_windows,
    load_trace,
    load_trace_with_report,
    parse_azure,
    parse_burstgpt,
    parse_generic_csv,
    parse_mooncake,
    parse_rate_csv,
    parse_servegen,
    parse_trace,
)
from autoscaler.errors import ConfigError, DataQualityError
from autoscaler.series import RateSeries, RequestTrace

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "configs" / "traces"
FIXTURES = ROOT / "tests" / "fixtures" / "traces"
CODE = BUNDLED / "AzureLLMInferenceTrace_code.csv"
CONV = BUNDLED / "AzureLLMInferenceTrace_conv.csv"
M_SMALL = BUNDLED / "servegen_m-small_aggregate_rate_10min.csv"
M_LARGE = BUNDLED / "servegen_m-large_aggregate_rate_10min.csv"


def lines(text: str) -> list[str]:
    return text.strip("\n").split("\n")


# --- each format parses a small sample -----------------------------------------------------------------------------

AZURE = """\
TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:04.0319600,91,1
2023-11-16 18:18:04.0000001,0,0
"""


def test_azure_sample() -> None:
    loaded = parse_azure(lines(AZURE), "code.csv")
    t = loaded.trace
    assert t.name == "code"
    # seconds from the first row, exact to the 7th fractional digit (100 ns)
    assert t.arrival_s == (0.0, 0.052, 0.052, 60.0200401)
    assert t.input_tokens == (4808, 3180, 91, 0)
    assert t.output_tokens == (10, 8, 1, 0)
    assert t.service is None
    assert loaded.report == LoadReport(source="code.csv", fmt="azure", rows=4)


def test_azure_crosses_midnight() -> None:
    text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-12-31 23:59:59.5,1,1\n2024-01-01 00:00:00.25,1,1\n"
    assert parse_azure(lines(text), "x.csv").trace.arrival_s == (0.0, 0.75)


def test_servegen_sample_with_a_gap_and_a_missing_marker() -> None:
    text = """\
window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share
0,809.7617,20,2.967,0.468
600,789.8667,20,1.246,0.442
1200,0.0,0,,
2400,750.5,19,1.5,0.4
"""
    loaded = parse_servegen(lines(text), "sg.csv")
    s = loaded.trace
    assert (s.start_s, s.step_s, len(s)) == (0.0, 600.0, 5)
    # 1200 is marked missing (no active client), 1800 is absent: both are gaps (NaN), not zero load
    assert s.values[:2] == (809.7617, 789.8667)
    assert math.isnan(s.values[2]) and math.isnan(s.values[3])
    assert s.values[4] == 750.5
    assert loaded.report.missing_windows == 2
    assert loaded.report.rows == 4


def test_servegen_with_only_the_two_required_columns_and_one_row() -> None:
    s = parse_servegen(["window_start_s,total_rate_rps", "3600,12.5"], "sg.csv").trace
    assert (s.start_s, s.step_s, s.values) == (3600.0, 600.0, (12.5,))  # a single row: the format's 600 s window


def test_servegen_zero_rate_with_active_clients_is_zero_load() -> None:
    text = "window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share\n0,0.0,3,1.0,0.5\n"
    s = parse_servegen(lines(text), "sg.csv").trace
    assert s.values == (0.0,)


def test_mooncake_sample() -> None:
    text = """\
{"timestamp": 0, "input_length": 6955, "output_length": 52, "hash_ids": [0, 1, 2]}
{"timestamp": 27, "input_length": 6472, "output_length": 26, "hash_ids": [0, 1]}
{"timestamp": 27, "input_length": 100.0, "output_length": 0, "hash_ids": []}
{"timestamp": 1500, "input_length": 10, "output_length": 1}
"""
    t = parse_mooncake(lines(text), "mc.jsonl").trace
    assert t.arrival_s == (0.0, 0.027, 0.027, 1.5)  # milliseconds -> seconds
    assert t.input_tokens == (6955, 6472, 100, 10)
    assert t.output_tokens == (52, 26, 0, 1)


def test_burstgpt_sample() -> None:
    text = """\
Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,217,634,API log
"""
    t = parse_burstgpt(lines(text), "burst.csv").trace
    assert t.arrival_s == (5.0, 45.0, 118.0)  # seconds as in the file
    assert t.input_tokens == (472, 1087, 417)
    assert t.output_tokens == (18, 0, 217)  # a failed request (0 response tokens) is kept
    assert t.service == ("ChatGPT", "ChatGPT", "GPT-4")


def test_generic_sample_with_and_without_service() -> None:
    with_service = parse_generic_csv(
        ["timestamp_s,input_tokens,output_tokens,service", "0.5,10,20,chat", '1.5,11,21,"code, v2"'], "g.csv"
    ).trace
    assert with_service.arrival_s == (0.5, 1.5)
    assert with_service.service == ("chat", "code, v2")
    # column order is free, found by name
    plain = parse_generic_csv(["output_tokens,timestamp_s,input_tokens", "20,0.5,10"], "g.csv").trace
    assert (plain.arrival_s, plain.input_tokens, plain.output_tokens, plain.service) == ((0.5,), (10,), (20,), None)


def test_rate_csv_sample_with_gaps() -> None:
    text = "time,rate_rps\n0,1.5\n60,0\n120,\n180,nan\n300,4.25\n"
    loaded = parse_rate_csv(lines(text), "r.csv")
    s = loaded.trace
    assert (s.start_s, s.step_s, len(s)) == (0.0, 60.0, 6)
    # 0 is zero load; an empty value, `nan` and the absent 240 are gaps
    assert s.values[:2] == (1.5, 0.0)
    assert [math.isnan(v) for v in s.values] == [False, False, True, True, True, False]
    assert loaded.report.missing_windows == 3


def test_rate_csv_with_one_row_needs_a_step() -> None:
    with pytest.raises(DataQualityError, match=r"r\.csv: cannot infer the step"):
        parse_rate_csv(["time,rate_rps", "0,1"], "r.csv")
    assert parse_rate_csv(["time,rate_rps", "0,1"], "r.csv", step_s=15.0).trace.step_s == 15.0


def test_crlf_line_endings_and_blank_lines_are_fine() -> None:
    text = "timestamp_s,input_tokens,output_tokens\r\n\r\n0,1,2\r\n1,3,4\r\n\r\n"
    loaded = parse_generic_csv(text.split("\n"), "g.csv")
    assert loaded.trace.arrival_s == (0.0, 1.0)
    assert loaded.report.rows == 2


# --- the bundled traces ------------------------------------------------------------------------------------------


def test_bundled_code_trace() -> None:
    t = load_trace(CODE)
    assert isinstance(t, RequestTrace)
    assert len(t) == 8819
    assert t.arrival_s[0] == 0.0
    assert t.duration_s == pytest.approx(3435.948056)  # ~57 min
    assert 56 * 60 < t.duration_s < 58 * 60
    assert len(t) / t.duration_s == pytest.approx(2.57, abs=0.005)
    per_second = t.to_rate_series(1.0)
    assert per_second.missing_count == 0
    assert per_second.observed_mean() == pytest.approx(2.57, abs=0.005)
    assert per_second.observed_max() == 67.0  # README: peak 67 req/s in 1 s bins
    assert t.to_rate_series(60.0).observed_max() == pytest.approx(10.5, abs=0.05)  # and 10.5 in 60 s bins
    assert sum(t.input_tokens) / len(t) == pytest.approx(2048, abs=1)  # prefill-heavy
    assert sum(t.output_tokens) / len(t) == pytest.approx(28, abs=0.5)


def test_bundled_conv_trace() -> None:
    t = load_trace(CONV)
    assert isinstance(t, RequestTrace)
    assert len(t) == 19366
    assert 58 * 60 < t.duration_s < 59 * 60
    assert len(t) / t.duration_s == pytest.approx(5.53, abs=0.005)
    assert t.to_rate_series(1.0).observed_max() == 16.0
    assert t.to_rate_series(60.0).observed_max() == pytest.approx(8.45, abs=0.005)
    assert sum(t.output_tokens) / len(t) == pytest.approx(211, abs=0.5)  # decode-heavy


def test_bundled_conv_trace_loads_well_under_a_second() -> None:
    started = time.perf_counter()
    load_trace(CONV)
    assert time.perf_counter() - started < 1.0


def test_bundled_m_small_has_14_days_and_37_missing_windows() -> None:
    loaded = load_trace_with_report(M_SMALL)
    s = loaded.trace
    assert isinstance(s, RateSeries)
    assert (s.start_s, s.step_s, len(s)) == (0.0, 600.0, 2016)  # 14 days x 144 windows
    assert s.end_s == 14 * 86400
    assert s.missing_count == 37
    assert loaded.report.missing_windows == 37
    assert loaded.report.skipped == 0
    # the README's mean is over the observed windows; with the 37 gaps read as zeros it would be 1,174
    assert s.observed_mean() == pytest.approx(1196, abs=0.5)
    assert s.observed_max() == pytest.approx(3880, abs=0.5)


def test_bundled_m_large_has_14_days_and_no_gaps() -> None:
    s = load_trace(M_LARGE)
    assert isinstance(s, RateSeries)
    assert (s.step_s, len(s), s.missing_count) == (600.0, 2016, 0)
    assert s.observed_mean() == pytest.approx(196, abs=0.5)
    assert s.observed_max() == pytest.approx(583, abs=0.5)


def test_servegen_windows_keep_the_client_cv() -> None:
    windows = load_servegen_windows(M_SMALL).trace
    assert windows.client_cv.values[0] == 2.967
    assert windows.active_clients.values[0] == 20.0
    assert windows.client_cv.missing_count == 37


def test_bundled_copies_keep_their_attribution() -> None:
    readme = (BUNDLED / "README.md").read_text(encoding="utf-8")
    for needle in ("b469a113", "CC-BY-4.0", "Splitwise", "f891d118", "Apache-2.0", "arXiv 2505.09999"):
        assert needle in readme
    for path in (CODE, CONV, M_SMALL, M_LARGE):
        assert path.name in readme


# --- format detection ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_line", "fmt"),
    [
        ("TIMESTAMP,ContextTokens,GeneratedTokens", "azure"),
        ("window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share", "servegen"),
        ('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}', "mooncake"),
        ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type", "burstgpt"),
        ("timestamp_s,input_tokens,output_tokens", "generic"),
        ("timestamp_s,input_tokens,output_tokens,service", "generic"),
        ("time,rate_rps", "rate"),
    ],
)
def test_detect_format(first_line: str, fmt: str) -> None:
    assert detect_format(first_line) == fmt
    assert fmt in FORMATS


def test_load_trace_detects_each_bundled_format() -> None:
    assert load_trace_with_report(CODE).report.fmt == "azure"
    assert load_trace_with_report(M_LARGE).report.fmt == "servegen"


def test_load_trace_with_an_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text("time,rate_rps\n0,1\n10,2\n", encoding="utf-8")
    s = load_trace(path, "rate")
    assert isinstance(s, RateSeries)
    assert (s.step_s, s.values) == (10.0, (1.0, 2.0))
    # the wrong explicit format fails on the header, naming the file and line 1
    with pytest.raises(DataQualityError, match=r"rates.csv:1: the azure header lacks column\(s\) 'TIMESTAMP'"):
        load_trace(path, "azure")


def test_unknown_format_names_the_file_and_what_was_seen() -> None:
    path = FIXTURES / "unknown_header.csv"
    with pytest.raises(DataQualityError, match=r"unknown_header.csv: cannot tell the trace format") as info:
        load_trace(path)
    assert "'ts,prompt,completion'" in str(info.value)


def test_unknown_format_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown trace format 'parquet'.*azure"):
        load_trace(CODE, "parquet")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataQualityError, match=r"empty\.csv: empty file"):
        load_trace(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("time,rate_rps\n", encoding="utf-8")
    with pytest.raises(DataQualityError, match=r"header\.csv: no data rows"):
        load_trace(header_only)
    with pytest.raises(ConfigError, match=r"nope\.csv: cannot read"):
        load_trace(tmp_path / "nope.csv")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"timestamp_s,input_tokens,output_tokens,service\n0,1,2,chat\n1,1,2,caf\xe9\n")
    with pytest.raises(DataQualityError, match=r"latin1.csv:3: not UTF-8"):
        load_trace(path)


# --- malformed lines name the file and the line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "where", "what"),
    [
        ("azure_bad_number.csv", 4, r"ContextTokens: '31x5' is not a number"),
        ("azure_unsorted.csv", 4, r"timestamps out of order: .* \(line 3\)"),
        ("azure_missing_column.csv", 3, r"missing column 'GeneratedTokens'"),
        ("azure_negative_tokens.csv", 4, r"GeneratedTokens: negative token count -8"),
        ("mooncake_truncated.jsonl", 3, r"not valid JSON"),
        ("servegen_off_grid.csv", 7, r"time 3300 s is off the 600 s grid"),
        ("generic_many_bad.csv", 3, r"input_tokens: 'abc' is not a number"),
    ],
)
def test_malformed_fixture_names_file_and_line(fixture: str, where: int, what: str) -> None:
    with pytest.raises(DataQualityError, match=rf"{fixture}:{where}: {what}"):
        load_trace(FIXTURES / fixture)


@pytest.mark.parametrize(
    ("parse", "text", "where", "what"),
    [
        (parse_azure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 25:00:00.0,1,1", 2, "not a valid time"),
        (parse_azure, "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1", 2, "'yesterday' is not a time"),
        (parse_azure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-30 01:00:00,1,1", 2, "is not a date"),
        (
            parse_azure,
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 01:00:00,1,1,9",
            2,
            "4 fields, the header 3",
        ),
        (parse_azure, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 01:00:00,,1", 2, "ContextTokens is empty"),
        (parse_servegen, "window_start_s,total_rate_rps\n0,1\n600,-2", 3, "negative rate -2"),
        (parse_servegen, "window_start_s,total_rate_rps\n0,1\n0,2", 3, "time 0 s repeats the previous row's"),
        (parse_servegen, "window_start_s,total_rate_rps\n600,1\n0,2", 3, "is earlier than the previous row's"),
        (parse_servegen, "window_start_s,total_rate_rps\n0,1\n600,inf", 3, "'inf' is not a finite number"),
        (
            parse_servegen,
            "window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share\n0,5.0,0,,",
            2,
            "total_rate_rps is 5 but active_clients is 0",
        ),
        (
            parse_servegen,
            "window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share\n0,5.0,3,,0.5",
            2,
            "rate_weighted_client_cv is empty",
        ),
        (
            parse_servegen,
            "window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share\n0,5.0,3,1.0,1.5",
            2,
            "top_client_share: 1.5 is not between 0 and 1",
        ),
        (parse_mooncake, '{"timestamp": 0, "input_length": 1}', 1, "missing key\\(s\\) 'output_length'"),
        (parse_mooncake, "[1, 2, 3]", 1, "expected a JSON object, got list"),
        (parse_mooncake, '{"timestamp": "0", "input_length": 1, "output_length": 1}', 1, "timestamp: '0' is not"),
        (parse_mooncake, '{"timestamp": 0, "input_length": -1, "output_length": 1}', 1, "negative token count -1"),
        (parse_mooncake, '{"timestamp": 0, "input_length": 1.5, "output_length": 1}', 1, "not a whole number"),
        (parse_mooncake, '{"timestamp": 0, "input_length": true, "output_length": 1}', 1, "True is not a number"),
        (
            parse_mooncake,
            '{"timestamp": 10, "input_length": 1, "output_length": 1}\n{"timestamp": 5, "input_length": 1, '
            '"output_length": 1}',
            2,
            "out of order",
        ),
        (
            parse_burstgpt,
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,,472,18,490,Conversation log",
            2,
            "Model is empty",
        ),
        (
            parse_burstgpt,
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,GPT-4,x,18,490,API log",
            2,
            "Request tokens: 'x' is not a number",
        ),
        (parse_generic_csv, "timestamp_s,input_tokens,output_tokens\n1,2,3\n0.5,2,3", 3, "out of order"),
        (parse_generic_csv, "timestamp_s,input_tokens,output_tokens\nnan,2,3", 2, "'nan' is not a finite number"),
        (parse_generic_csv, 'timestamp_s,input_tokens,output_tokens\n1,"2,3', 2, "cannot split the line"),
        (parse_generic_csv, "timestamp_s,input_tokens,output_tokens,service\n1,2,3, ", 2, "service is empty"),
        (parse_rate_csv, "time,rate_rps\n0,1\n60,-1", 3, "negative rate -1"),
        (parse_rate_csv, "time,rate_rps\n0,1\n60,1\n120,1\n180,1\n200,1", 6, "time 200 s is off the 60 s grid"),
        (parse_rate_csv, "time,rate_rps\n0,1\n60", 3, "missing column 'rate_rps'"),
    ],
)
def test_malformed_line_names_source_and_line(parse: object, text: str, where: int, what: str) -> None:
    assert callable(parse)
    with pytest.raises(DataQualityError, match=rf"^sample\.txt:{where}: .*{what}"):
        parse(lines(text), "sample.txt")


def test_a_header_without_the_required_columns_is_named() -> None:
    with pytest.raises(DataQualityError, match=r"g.csv:1: the generic header lacks column\(s\) 'output_tokens'"):
        parse_generic_csv(["timestamp_s,input_tokens", "0,1"], "g.csv")


# --- skip_bad_lines -----------------------------------------------------------------------------------------------


def test_skip_bad_lines_counts_and_lists_the_skipped_rows() -> None:
    loaded = load_trace_with_report(FIXTURES / "generic_many_bad.csv", skip_bad_lines=True)
    report = loaded.report
    assert (report.rows, report.skipped, report.loaded) == (9, 5, 4)
    assert report.skipped_lines == (3, 5, 6, 7, 9)
    assert report.problems[0] == "line 3: input_tokens: 'abc' is not a number"
    assert "line 7: timestamps out of order" in report.problems[3]
    assert "5 malformed rows skipped (lines 3, 5, 6, 7, 9)" in report.summary()
    t = loaded.trace
    assert isinstance(t, RequestTrace)
    assert t.arrival_s == (0.0, 1.0, 2.5, 3.5)
    assert t.service == ("chat", "code", "code", "chat")


def test_skip_bad_lines_on_a_rate_series() -> None:
    loaded = load_trace_with_report(FIXTURES / "servegen_off_grid.csv", skip_bad_lines=True)
    s = loaded.trace
    assert isinstance(s, RateSeries)
    assert len(s) == 6  # 0 .. 3000 s; the off-grid 3300 s row is left out
    assert loaded.report.skipped_lines == (7,)
    assert loaded.report.missing_windows == 2  # the marked 1200 s and the absent 2400 s


def test_skip_bad_lines_lists_the_first_ten_but_counts_all() -> None:
    rows = ["timestamp_s,input_tokens,output_tokens", "0,1,1"] + [f"{i},x,1" for i in range(1, 26)]
    loaded = parse_generic_csv(rows, "g.csv", skip_bad_lines=True)
    assert loaded.report.skipped == 25
    assert loaded.report.skipped_lines == tuple(range(3, 13))
    assert len(loaded.report.problems) == 10
    assert loaded.report.summary().endswith("(lines 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, ...)")


def test_skip_bad_lines_still_fails_when_nothing_is_usable() -> None:
    with pytest.raises(DataQualityError, match=r"g.csv: all 2 data rows are malformed \(first: line 2: "):
        parse_generic_csv(["timestamp_s,input_tokens,output_tokens", "0,x,1", "1,-1,1"], "g.csv", skip_bad_lines=True)


def test_skip_bad_lines_on_the_bundled_trace_skips_nothing() -> None:
    report = load_azure(CODE, skip_bad_lines=True).report
    assert (report.rows, report.skipped, report.skipped_lines) == (8819, 0, ())


def test_parse_trace_detects_from_lines() -> None:
    loaded = parse_trace(lines(AZURE), "inline.csv")
    assert loaded.report.fmt == "azure"
    assert len(loaded.trace) == 4


def test_trace_adapter_imports_only_series_and_errors_of_the_core() -> None:
    """DESIGN.md section 3: adapters depend on the core's types, not on each other or the rest of the core."""
    allowed = {"autoscaler.series", "autoscaler.errors"}
    for path in (ROOT / "adapters" / "traces").glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in {"from", "import"}:
                module = words[1]
                if module.startswith("autoscaler"):
                    assert module in allowed, f"{path.name} imports {module}"
                assert not module.startswith("adapters.") or module.startswith("adapters.traces"), path.name
