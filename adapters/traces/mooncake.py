"""Mooncake / Kimi (FAST'25) JSON Lines trace.

One JSON object per line: `{"timestamp": <ms since start>, "input_length": <tokens>, "output_length": <tokens>,
"hash_ids": [...]}`; sorted by timestamp. Arrivals become seconds (timestamp / 1000). `hash_ids` (prefix-cache
block ids) and any other keys are read past.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from adapters.traces._common import (
    Loaded,
    Problems,
    RequestRows,
    RowError,
    check_tokens,
    numbered,
    read_lines,
    trace_name,
)
from autoscaler.series import RequestTrace

FMT = "mooncake"
KEYS = ("timestamp", "input_length", "output_length")


def _row(line: str) -> tuple[float, int, int]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RowError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in KEYS if key not in obj]
    if missing:
        raise RowError(f"missing key(s) {', '.join(repr(k) for k in missing)}")
    ms = obj["timestamp"]
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
        raise RowError(f"timestamp: {ms!r} is not a finite number")
    return (
        ms / 1000.0,
        check_tokens(obj["input_length"], "input_length"),
        check_tokens(obj["output_length"], "output_length"),
    )


def parse_mooncake(
    lines: Iterable[str], source: str, *, skip_bad_lines: bool = False, name: str | None = None
) -> Loaded[RequestTrace]:
    """A Mooncake JSONL trace; arrivals in seconds.

    Invalid JSON, a missing key, a bad or negative number or a request earlier than the one before it is a
    malformed line: DataQualityError naming the file and line, or skipped and counted with `skip_bad_lines`.
    """
    problems = Problems(source, skip_bad_lines)
    requests = RequestRows(with_service=False)
    rows_seen = 0
    for line_no, line in numbered(lines):
        rows_seen += 1
        try:
            arrival, inputs, outputs = _row(line)
            requests.add(line_no, arrival, inputs, outputs)
        except RowError as exc:
            problems.bad(line_no, str(exc))
    problems.nothing_usable(rows_seen)
    trace = requests.trace(name if name is not None else trace_name(source))
    return Loaded(trace, problems.report(FMT, rows_seen))


def load_mooncake(path: str | Path, *, skip_bad_lines: bool = False) -> Loaded[RequestTrace]:
    """Read a Mooncake JSONL file; see `parse_mooncake`."""
    path = Path(path)
    return parse_mooncake(read_lines(path), str(path), skip_bad_lines=skip_bad_lines)
