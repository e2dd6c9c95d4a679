"""ServeGen aggregate rate CSV: the total request rate of one model per fixed window (10 minutes).

Header `window_start_s,total_rate_rps,active_clients,rate_weighted_client_cv,top_client_share` (only the first two
are required). `window_start_s` counts seconds from 00:00 of day 1; `total_rate_rps` is the mean rate in the window.
The step is the most common difference between consecutive window starts (600 s when there is a single row).

Missing data is a gap, never zero load. It shows up two ways, and both become NaN:
- a window start that is absent between two rows;
- a row that says no client was active: `active_clients` 0 with a zero rate and empty statistics (`...,0.0,0,,`).
  The bundled m-small file marks its 37 missing windows this way (the shared README's mean of 1,196 req/s is the
  mean over the other windows). A row with no active client but a non-zero rate contradicts itself: malformed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adapters.traces._common import (
    CsvHeader,
    Loaded,
    Problems,
    RowError,
    on_grid,
    parse_float,
    parse_rate,
    read_lines,
    read_timed_rows,
    trace_name,
)
from autoscaler.series import RateSeries

FMT = "servegen"
COLUMNS = ("window_start_s", "total_rate_rps", "active_clients", "rate_weighted_client_cv", "top_client_share")
REQUIRED = COLUMNS[:2]
WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class ServeGenWindows:
    """All columns of a ServeGen aggregate file on one grid; NaN where a window is missing (or a column absent).

    `client_cv` is what a replay needs to generate arrivals inside a window (e.g. Gamma inter-arrivals with that CV).
    """

    rate: RateSeries
    active_clients: RateSeries
    client_cv: RateSeries
    top_client_share: RateSeries


def _row(fields: list[str], header: CsvHeader) -> tuple[float, tuple[float, float, float, float]]:
    time_s = parse_float(fields[header.index["window_start_s"]], "window_start_s")
    rate_text = fields[header.index["total_rate_rps"]]
    active_at = header.position("active_clients")
    cv_at = header.position("rate_weighted_client_cv")
    share_at = header.position("top_client_share")
    if active_at is None:
        return time_s, (parse_rate(rate_text, "total_rate_rps"), math.nan, math.nan, math.nan)
    active = parse_float(fields[active_at], "active_clients")
    if active < 0 or not active.is_integer():
        raise RowError(f"active_clients: {fields[active_at].strip()!r} is not a whole number >= 0")
    rate = parse_rate(rate_text, "total_rate_rps")
    if active == 0:
        if rate != 0:
            raise RowError(f"total_rate_rps is {rate:g} but active_clients is 0")
        return time_s, (math.nan, math.nan, math.nan, math.nan)  # the file's marker of a missing window
    cv = math.nan
    if cv_at is not None:
        cv = parse_float(fields[cv_at], "rate_weighted_client_cv")
        if cv < 0:
            raise RowError(f"rate_weighted_client_cv: negative ({cv:g})")
    share = math.nan
    if share_at is not None:
        share = parse_float(fields[share_at], "top_client_share")
        if not 0 <= share <= 1:
            raise RowError(f"top_client_share: {share:g} is not between 0 and 1")
    return time_s, (rate, active, cv, share)


def parse_servegen_windows(
    lines: Iterable[str],
    source: str,
    *,
    skip_bad_lines: bool = False,
    step_s: float | None = None,
    name: str | None = None,
) -> Loaded[ServeGenWindows]:
    """Every column of a ServeGen aggregate file; see `parse_servegen` for the rules."""
    problems = Problems(source, skip_bad_lines)
    rows, rows_seen = read_timed_rows(lines, problems, fmt=FMT, required=REQUIRED, row=_row)
    start, step, (rate, active, cv, share) = on_grid(rows, problems, step_s, WINDOW_S, width=4)
    base = name if name is not None else trace_name(source)
    windows = ServeGenWindows(
        rate=RateSeries(base, start, step, tuple(rate)),
        active_clients=RateSeries(f"{base}:active_clients", start, step, tuple(active)),
        client_cv=RateSeries(f"{base}:rate_weighted_client_cv", start, step, tuple(cv)),
        top_client_share=RateSeries(f"{base}:top_client_share", start, step, tuple(share)),
    )
    return Loaded(windows, problems.report(FMT, rows_seen, windows.rate.missing_count))


def parse_servegen(
    lines: Iterable[str],
    source: str,
    *,
    skip_bad_lines: bool = False,
    step_s: float | None = None,
    name: str | None = None,
) -> Loaded[RateSeries]:
    """The `total_rate_rps` of a ServeGen aggregate file as a RateSeries (NaN for missing windows).

    Window starts must increase; a start off the grid, a bad number, a negative rate or a missing column is a
    malformed row (DataQualityError naming the file and line, or skipped and counted with `skip_bad_lines`).
    `step_s` overrides the inferred step. The report's `missing_windows` counts the NaN windows.
    """
    loaded = parse_servegen_windows(lines, source, skip_bad_lines=skip_bad_lines, step_s=step_s, name=name)
    return Loaded(loaded.trace.rate, loaded.report)


def load_servegen(path: str | Path, *, skip_bad_lines: bool = False, step_s: float | None = None) -> Loaded[RateSeries]:
    """Read a ServeGen aggregate rate CSV file; see `parse_servegen`."""
    path = Path(path)
    return parse_servegen(read_lines(path), str(path), skip_bad_lines=skip_bad_lines, step_s=step_s)


def load_servegen_windows(
    path: str | Path, *, skip_bad_lines: bool = False, step_s: float | None = None
) -> Loaded[ServeGenWindows]:
    """Read every column of a ServeGen aggregate rate CSV file; see `parse_servegen`."""
    path = Path(path)
    return parse_servegen_windows(read_lines(path), str(path), skip_bad_lines=skip_bad_lines, step_s=step_s)
