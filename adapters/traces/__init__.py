"""Trace loaders: real inference traces from files into the core's `RequestTrace` and `RateSeries`.

Formats (one module each, with a pure `parse_*(lines, source)` and a `load_*(path)`):

| fmt        | module        | first line                                                          | gives          |
|------------|---------------|---------------------------------------------------------------------|----------------|
| `azure`    | `azure`       | `TIMESTAMP,ContextTokens,GeneratedTokens`                           | RequestTrace   |
| `servegen` | `servegen`    | `window_start_s,total_rate_rps,...`                                 | RateSeries     |
| `mooncake` | `mooncake`    | `{"timestamp": ..., "input_length": ..., "output_length": ...}`     | RequestTrace   |
| `burstgpt` | `burstgpt`    | `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type` | RequestTrace |
| `generic`  | `generic_csv` | `timestamp_s,input_tokens,output_tokens[,service]`                  | RequestTrace   |
| `rate`     | `rate_csv`    | `time,rate_rps`                                                     | RateSeries     |

Every malformed line raises `DataQualityError` naming the file, the 1-based line and what is wrong; nothing is
dropped silently. `skip_bad_lines=True` skips malformed rows instead, and the `LoadReport` returned with the trace
(`Loaded.report`) counts them and lists the first few lines. So `load_trace` (which returns the bare trace) is
always strict; `load_trace_with_report` can skip. An unreadable file raises `ConfigError`.

This is an adapter: it imports `autoscaler.series` and `autoscaler.errors` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from adapters.traces._common import Loaded, LoadReport, RowError, numbered, read_lines, split_csv
from adapters.traces.azure import load_azure, parse_azure
from adapters.traces.burstgpt import load_burstgpt, parse_burstgpt
from adapters.traces.generic_csv import load_generic_csv, parse_generic_csv
from adapters.traces.mooncake import load_mooncake, parse_mooncake
from adapters.traces.rate_csv import load_rate_csv, parse_rate_csv
from adapters.traces.servegen import (
    ServeGenWindows,
    load_servegen,
    load_servegen_windows,
    parse_servegen,
    parse_servegen_windows,
)
from autoscaler.errors import ConfigError, DataQualityError
from autoscaler.series import RateSeries, RequestTrace

__all__ = [
    "FORMATS",
    "LoadReport",
    "Loaded",
    "ServeGenWindows",
    "detect_format",
    "load_azure",
    "load_burstgpt",
    "load_generic_csv",
    "load_mooncake",
    "load_rate_csv",
    "load_servegen",
    "load_servegen_windows",
    "load_trace",
    "load_trace_with_report",
    "parse_azure",
    "parse_burstgpt",
    "parse_generic_csv",
    "parse_mooncake",
    "parse_rate_csv",
    "parse_servegen",
    "parse_servegen_windows",
    "parse_trace",
]

Trace = RequestTrace | RateSeries
_Parser = Callable[..., Loaded[RequestTrace] | Loaded[RateSeries]]

_PARSERS: dict[str, _Parser] = {
    "azure": parse_azure,
    "servegen": parse_servegen,
    "mooncake": parse_mooncake,
    "burstgpt": parse_burstgpt,
    "generic": parse_generic_csv,
    "rate": parse_rate_csv,
}
FORMATS: tuple[str, ...] = tuple(_PARSERS)

# Columns (lower case) whose presence in a CSV header identifies a format; checked in this order.
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("azure", frozenset({"timestamp", "contexttokens", "generatedtokens"})),
    ("servegen", frozenset({"window_start_s", "total_rate_rps"})),
    ("burstgpt", frozenset({"timestamp", "model", "request tokens", "response tokens"})),
    ("generic", frozenset({"timestamp_s", "input_tokens", "output_tokens"})),
    ("rate", frozenset({"time", "rate_rps"})),
)


def detect_format(first_line: str, source: str = "<input>") -> str:
    """The format of a trace from its first non-blank line (a CSV header or a JSON object).

    Unknown: DataQualityError naming `source` and quoting what was seen.
    """
    line = first_line.strip()
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "timestamp" in obj and "input_length" in obj:
            return "mooncake"
    else:
        try:
            columns = {name.strip().lower() for name in split_csv(line)}
        except RowError:  # an unsplittable line is simply not a known header
            columns = set()
        for fmt, signature in _SIGNATURES:
            if signature <= columns:
                return fmt
    seen = line if len(line) <= 100 else line[:100] + "..."
    raise DataQualityError(
        f"{source}: cannot tell the trace format from its first line {seen!r}; known formats: "
        "azure (TIMESTAMP,ContextTokens,GeneratedTokens), servegen (window_start_s,total_rate_rps,...), "
        "mooncake (JSON lines with timestamp, input_length, output_length), "
        "burstgpt (Timestamp,Model,Request tokens,Response tokens,...), "
        "generic (timestamp_s,input_tokens,output_tokens[,service]), rate (time,rate_rps)"
    )


def parse_trace(
    lines: Sequence[str], source: str, fmt: str | None = None, *, skip_bad_lines: bool = False
) -> Loaded[RequestTrace] | Loaded[RateSeries]:
    """Parse the lines of a trace in format `fmt`, detected from the first non-blank line when None."""
    if fmt is None:
        first = next((line for _, line in numbered(lines)), None)
        if first is None:
            raise DataQualityError(f"{source}: empty file, no trace in it")
        fmt = detect_format(first, source)
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise ConfigError(f"unknown trace format {fmt!r} for {source}; choose one of {', '.join(FORMATS)}")
    return parser(lines, source, skip_bad_lines=skip_bad_lines)


def load_trace_with_report(
    path: str | Path, fmt: str | None = None, *, skip_bad_lines: bool = False
) -> Loaded[RequestTrace] | Loaded[RateSeries]:
    """Read a trace file (format detected when `fmt` is None) with its LoadReport; can skip malformed rows."""
    path = Path(path)
    return parse_trace(read_lines(path), str(path), fmt, skip_bad_lines=skip_bad_lines)


def load_trace(path: str | Path, fmt: str | None = None) -> Trace:
    """Read a trace file: a RequestTrace (request formats) or a RateSeries (rate formats).

    `fmt` is one of FORMATS, or None to detect it from the header or first line. Strict: the first malformed line
    raises DataQualityError (file:line: what); use `load_trace_with_report` to skip bad rows and get their count.
    """
    return load_trace_with_report(path, fmt).trace
