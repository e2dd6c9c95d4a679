"""Azure LLM inference trace CSV (Azure/AzurePublicDataset, the Splitwise traces).

Header `TIMESTAMP,ContextTokens,GeneratedTokens`; one row per request, sorted by time. `TIMESTAMP` is a wall-clock
time without a time zone and with up to 7 fractional digits (`2023-11-16 18:17:03.9799600`); arrivals count seconds
from the first row, computed in integer nanoseconds so that the 100 ns digit survives.
`ContextTokens` is the prompt length, `GeneratedTokens` the output length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from adapters.traces._common import CsvHeader, Loaded, RowError, parse_request_csv, parse_tokens, read_lines
from autoscaler.series import RequestTrace

FMT = "azure"
COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

_WALL_CLOCK = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")


class _WallClock:
    """Seconds of a wall-clock time after the first time it parsed, exact to the nanosecond (integer arithmetic,
    then one division), each day's date parsed once."""

    def __init__(self) -> None:
        self._days: dict[str, int] = {}
        self._first_ns: int | None = None

    def seconds(self, text: str) -> float:
        match = _WALL_CLOCK.fullmatch(text.strip())
        if match is None:
            raise RowError(f"TIMESTAMP: {text.strip()!r} is not a time like 2023-11-16 18:17:03.9799600")
        day_text, hours, minutes, secs, fraction = match.groups()
        day = self._days.get(day_text)
        if day is None:
            try:
                day = date.fromisoformat(day_text).toordinal()
            except ValueError:
                raise RowError(f"TIMESTAMP: {day_text!r} is not a date") from None
            self._days[day_text] = day
        h, m, s = int(hours), int(minutes), int(secs)
        if h > 23 or m > 59 or s > 60:
            raise RowError(f"TIMESTAMP: {text.strip()!r} is not a valid time of day")
        ns = (day * 86400 + h * 3600 + m * 60 + s) * 1_000_000_000
        if fraction:
            ns += int(fraction.ljust(9, "0"))
        if self._first_ns is None:
            self._first_ns = ns
        return (ns - self._first_ns) / 1e9


def parse_azure(
    lines: Iterable[str], source: str, *, skip_bad_lines: bool = False, name: str | None = None
) -> Loaded[RequestTrace]:
    """An Azure LLM inference trace; arrivals in seconds from the first row.

    A bad time, a bad or negative token count, a missing column or a row earlier than the one before it is a
    malformed row: DataQualityError naming the file and the line, or skipped and counted with `skip_bad_lines`.
    """
    clock = _WallClock()

    def row(fields: list[str], header: CsvHeader) -> tuple[float, int, int, str | None]:
        index = header.index
        return (
            clock.seconds(fields[index["timestamp"]]),
            parse_tokens(fields[index["contexttokens"]], "ContextTokens"),
            parse_tokens(fields[index["generatedtokens"]], "GeneratedTokens"),
            None,
        )

    return parse_request_csv(
        lines,
        source,
        fmt=FMT,
        required=COLUMNS,
        row=row,
        with_service=lambda header: False,
        skip_bad_lines=skip_bad_lines,
        name=name,
        rebase=True,
    )


def load_azure(path: str | Path, *, skip_bad_lines: bool = False) -> Loaded[RequestTrace]:
    """Read an Azure LLM inference trace CSV file; see `parse_azure`."""
    path = Path(path)
    return parse_azure(read_lines(path), str(path), skip_bad_lines=skip_bad_lines)
