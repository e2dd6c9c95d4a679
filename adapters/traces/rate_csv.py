"""Rate series CSV: `time,rate_rps`, one row per fixed interval, for traces that only have rates.

`time` is the start of the interval in seconds; `rate_rps` the mean request rate over it. The step is the most
common difference between consecutive times (or `step_s`). A missing interval is a gap (NaN), never zero load:
either a time left out between two rows or an empty (or `nan`) rate. An explicit `0` is zero load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from adapters.traces._common import (
    CsvHeader,
    Loaded,
    Problems,
    on_grid,
    parse_float,
    parse_rate,
    read_lines,
    read_timed_rows,
    trace_name,
)
from autoscaler.series import RateSeries

FMT = "rate"
COLUMNS = ("time", "rate_rps")


def _timed_row(fields: list[str], header: CsvHeader) -> tuple[float, tuple[float, ...]]:
    time_s = parse_float(fields[header.index["time"]], "time")
    rate_text = fields[header.index["rate_rps"]].strip()
    if not rate_text or rate_text.lower() == "nan":
        return time_s, (math.nan,)
    return time_s, (parse_rate(rate_text, "rate_rps"),)


def parse_rate_csv(
    lines: Iterable[str],
    source: str,
    *,
    skip_bad_lines: bool = False,
    step_s: float | None = None,
    name: str | None = None,
) -> Loaded[RateSeries]:
    """A rate series CSV as a RateSeries (NaN for gaps).

    Times must increase and lie on one grid; a bad number, a negative or infinite rate or a missing column is a
    malformed row: DataQualityError naming the file and line, or skipped and counted with `skip_bad_lines`.
    A file with one row needs `step_s`. The report's `missing_windows` counts the NaN intervals.
    """
    problems = Problems(source, skip_bad_lines)
    rows, rows_seen = read_timed_rows(lines, problems, fmt=FMT, required=COLUMNS, row=_timed_row)
    start, step, (values,) = on_grid(rows, problems, step_s, None, width=1)
    series = RateSeries(name if name is not None else trace_name(source), start, step, tuple(values))
    return Loaded(series, problems.report(FMT, rows_seen, series.missing_count))


def load_rate_csv(path: str | Path, *, skip_bad_lines: bool = False, step_s: float | None = None) -> Loaded[RateSeries]:
    """Read a rate series CSV file; see `parse_rate_csv`."""
    path = Path(path)
    return parse_rate_csv(read_lines(path), str(path), skip_bad_lines=skip_bad_lines, step_s=step_s)
