"""What the trace parsers share: the load report, line bookkeeping, CSV splitting, number checks, file reading.

Every parser walks the lines once, numbering them from 1 as they are in the file (the header is line 1 unless
blank lines precede it; blank lines are not rows and are passed over). A row that cannot be used raises
`RowError` with what is wrong; `Problems` turns that into a `DataQualityError` naming the file and the line, or,
with `skip_bad_lines`, counts it for the `LoadReport`.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Generic, TypeVar

from autoscaler.errors import ConfigError, DataQualityError
from autoscaler.series import RequestTrace

T = TypeVar("T")

# How many skipped lines (and their problems) a report lists; the count is always complete.
LISTED_PROBLEMS = 10


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a loader read and what it left out.

    `rows` counts the data rows seen (header and blank lines excluded); `skipped` those left out because they were
    malformed (only with `skip_bad_lines=True`), the first few listed in `skipped_lines` (1-based line numbers)
    with their `problems`. `missing_windows` counts the bins of a rate series that hold no data (NaN).
    """

    source: str
    fmt: str
    rows: int
    skipped: int = 0
    skipped_lines: tuple[int, ...] = ()
    problems: tuple[str, ...] = ()
    missing_windows: int = 0

    @property
    def loaded(self) -> int:
        """Rows that made it into the trace."""
        return self.rows - self.skipped

    def summary(self) -> str:
        """One line for a CLI or a log: what was loaded, what was skipped and where."""
        text = f"{self.source} ({self.fmt}): {self.loaded} of {self.rows} rows loaded"
        if self.skipped:
            listed = ", ".join(str(n) for n in self.skipped_lines)
            more = ", ..." if self.skipped > len(self.skipped_lines) else ""
            text += f"; {self.skipped} malformed rows skipped (lines {listed}{more})"
        if self.missing_windows:
            text += f"; {self.missing_windows} missing windows (NaN)"
        return text


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """A parsed trace together with the report of how it was read."""

    trace: T
    report: LoadReport


class RowError(Exception):
    """One row cannot be used; the message says what is wrong (the caller adds file and line)."""


class Problems:
    """Raises on the first bad row, or (skip mode) counts the bad rows for the report."""

    def __init__(self, source: str, skip_bad_lines: bool) -> None:
        self.source = source
        self.skip = skip_bad_lines
        self.count = 0
        self.lines: list[int] = []
        self.messages: list[str] = []

    def bad(self, line_no: int, what: str) -> None:
        if not self.skip:
            raise DataQualityError(f"{self.source}:{line_no}: {what}")
        self.count += 1
        if len(self.lines) < LISTED_PROBLEMS:
            self.lines.append(line_no)
            self.messages.append(f"line {line_no}: {what}")

    def report(self, fmt: str, rows: int, missing_windows: int = 0) -> LoadReport:
        return LoadReport(
            source=self.source,
            fmt=fmt,
            rows=rows,
            skipped=self.count,
            skipped_lines=tuple(self.lines),
            problems=tuple(self.messages),
            missing_windows=missing_windows,
        )

    def nothing_usable(self, rows: int) -> None:
        """Raise if no row survived: an empty trace is never a useful result."""
        if rows == 0:
            raise DataQualityError(f"{self.source}: no data rows")
        if self.count >= rows:
            first = self.messages[0] if self.messages else ""
            raise DataQualityError(f"{self.source}: all {rows} data rows are malformed (first: {first})")


def numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending) for every non-blank line."""
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if line.strip():
            yield line_no, line


def split_csv(line: str) -> list[str]:
    """The fields of one CSV line; quoted fields (with commas inside) are allowed within the line."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise RowError(f"cannot split the line into CSV fields: {exc}") from exc


class CsvHeader:
    """Column positions by (case-insensitive) name, from a header line."""

    def __init__(self, source: str, line_no: int, line: str, fmt: str, required: Sequence[str]) -> None:
        try:
            names = [name.strip() for name in split_csv(line)]
        except RowError as exc:
            raise DataQualityError(f"{source}:{line_no}: header: {exc}") from exc
        self.names = names
        self.width = len(names)
        self.index = {name.lower(): i for i, name in reversed(list(enumerate(names)))}
        missing = [name for name in required if name.lower() not in self.index]
        if missing:
            raise DataQualityError(
                f"{source}:{line_no}: the {fmt} header lacks column(s) {', '.join(repr(m) for m in missing)}; "
                f"it has {', '.join(repr(n) for n in names)}"
            )

    def position(self, name: str) -> int | None:
        return self.index.get(name.lower())

    def fields(self, line: str) -> list[str]:
        """The fields of a data row, which must have as many as the header."""
        fields = split_csv(line)
        if len(fields) < self.width:
            raise RowError(
                f"missing column {self.names[len(fields)]!r} (the row has {len(fields)} fields, "
                f"the header {self.width})"
            )
        if len(fields) > self.width:
            raise RowError(f"the row has {len(fields)} fields, the header {self.width}")
        return fields


def parse_float(text: str, column: str) -> float:
    """A finite number."""
    stripped = text.strip()
    if not stripped:
        raise RowError(f"{column} is empty")
    try:
        value = float(stripped)
    except ValueError:
        raise RowError(f"{column}: {stripped!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"{column}: {stripped!r} is not a finite number")
    return value


def parse_rate(text: str, column: str) -> float:
    """A finite rate >= 0."""
    value = parse_float(text, column)
    if value < 0:
        raise RowError(f"{column}: negative rate {value}")
    return value


def parse_tokens(text: str, column: str) -> int:
    """A token count: a whole number >= 0 (`12` or `12.0`)."""
    stripped = text.strip()
    if not stripped:
        raise RowError(f"{column} is empty")
    try:
        value = int(stripped)
    except ValueError:
        try:
            number = float(stripped)
        except ValueError:
            raise RowError(f"{column}: {stripped!r} is not a number") from None
        if not (math.isfinite(number) and number.is_integer()):
            raise RowError(f"{column}: {stripped!r} is not a whole number of tokens") from None
        value = int(number)
    if value < 0:
        raise RowError(f"{column}: negative token count {value}")
    return value


def check_tokens(value: object, column: str) -> int:
    """A token count from JSON: an integer (or integral float) >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(f"{column}: {value!r} is not a number")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise RowError(f"{column}: {value!r} is not a whole number of tokens")
        value = int(value)
    if value < 0:
        raise RowError(f"{column}: negative token count {value}")
    return value


def read_lines(path: Path) -> list[str]:
    """The lines of a text file (UTF-8, a byte-order mark is dropped). Unreadable: ConfigError; not UTF-8: the line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = raw[: exc.start].count(b"\n") + 1
        raise DataQualityError(f"{path}:{line_no}: not UTF-8 text ({exc.reason})") from exc
    return text.split("\n")


class RequestRows:
    """Accumulates the requests of a trace, in order; a row earlier than the one before it is a bad row."""

    def __init__(self, with_service: bool) -> None:
        self.arrivals: list[float] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.services: list[str] | None = [] if with_service else None
        self.last_line = 0

    def add(self, line_no: int, arrival: float, inputs: int, outputs: int, service: str | None = None) -> None:
        if self.arrivals and arrival < self.arrivals[-1]:
            raise RowError(
                f"timestamps out of order: {arrival:.7g} s is earlier than the previous request's "
                f"{self.arrivals[-1]:.7g} s (line {self.last_line}); a request trace must be sorted by time"
            )
        self.arrivals.append(arrival)
        self.inputs.append(inputs)
        self.outputs.append(outputs)
        if self.services is not None:
            self.services.append(service if service is not None else "")
        self.last_line = line_no

    def trace(self, name: str, shift_s: float = 0.0) -> RequestTrace:
        arrivals = tuple(t - shift_s for t in self.arrivals) if shift_s else tuple(self.arrivals)
        services = None if self.services is None else tuple(self.services)
        return RequestTrace(name, arrivals, tuple(self.inputs), tuple(self.outputs), services)


def parse_request_csv(
    lines: Iterable[str],
    source: str,
    *,
    fmt: str,
    required: Sequence[str],
    row: Callable[[list[str], CsvHeader], tuple[float, int, int, str | None]],
    with_service: Callable[[CsvHeader], bool],
    skip_bad_lines: bool,
    name: str | None,
    rebase: bool = False,
) -> Loaded[RequestTrace]:
    """Shared loop of the CSV request formats: header, then one request per row, sorted by time.

    `row` turns the fields of a data row into (time in seconds, input tokens, output tokens, service or None) and
    raises `RowError`. With `rebase`, times count from the first request (wall-clock formats).
    """
    problems = Problems(source, skip_bad_lines)
    rows_seen = 0
    header: CsvHeader | None = None
    requests: RequestRows | None = None
    for line_no, line in numbered(lines):
        if header is None:
            header = CsvHeader(source, line_no, line, fmt, required)
            requests = RequestRows(with_service(header))
            continue
        assert requests is not None
        rows_seen += 1
        try:
            arrival, inputs, outputs, service = row(header.fields(line), header)
            requests.add(line_no, arrival, inputs, outputs, service)
        except RowError as exc:
            problems.bad(line_no, str(exc))
    if header is None or requests is None:
        raise DataQualityError(f"{source}: empty file, expected a {fmt} header")
    problems.nothing_usable(rows_seen)
    shift = requests.arrivals[0] if rebase else 0.0
    trace = requests.trace(name if name is not None else trace_name(source), shift)
    return Loaded(trace, problems.report(fmt, rows_seen))


def trace_name(source: str) -> str:
    """A trace's default name: the file name without directory and extension."""
    return Path(source).stem or source


@dataclass(frozen=True, slots=True)
class TimedRow:
    """One row of a rate series as read, before it is put on the grid: its line, time and values (NaN: missing)."""

    line_no: int
    time_s: float
    values: tuple[float, ...]


def infer_step(times: Sequence[float]) -> float | None:
    """The most common difference between consecutive times (ties: the smallest); None for fewer than two."""
    if len(times) < 2:
        return None
    diffs = Counter(round(b - a, 6) for a, b in pairwise(times))
    best = max(diffs.values())
    return min(d for d, c in diffs.items() if c == best)


def on_grid(
    rows: Sequence[TimedRow],
    problems: Problems,
    step_s: float | None,
    default_step_s: float | None,
    *,
    width: int,
) -> tuple[float, float, list[list[float]]]:
    """Place rows read in increasing time on the regular grid (start, step); a row off the grid is a bad row.
    Bins without a row are NaN. Returns (start, step, one list of values per column)."""
    if step_s is None:
        step_s = infer_step([r.time_s for r in rows])
    if step_s is None:
        step_s = default_step_s
    if step_s is None or not step_s > 0:
        what = "one row" if len(rows) == 1 else "its rows"
        raise DataQualityError(f"{problems.source}: cannot infer the step of the series from {what}; pass step_s")
    start = rows[0].time_s
    placed: list[tuple[int, TimedRow]] = []
    for r in rows:
        k = (r.time_s - start) / step_s
        index = round(k)
        if abs(k - index) > 1e-6:
            problems.bad(r.line_no, f"time {r.time_s:g} s is off the {step_s:g} s grid that starts at {start:g} s")
            continue
        placed.append((index, r))
    n = placed[-1][0] + 1
    columns = [[math.nan] * n for _ in range(width)]
    for index, r in placed:
        for c in range(width):
            columns[c][index] = r.values[c]
    return start, step_s, columns


def read_timed_rows(
    lines: Iterable[str],
    problems: Problems,
    *,
    fmt: str,
    required: Sequence[str],
    row: Callable[[list[str], CsvHeader], tuple[float, tuple[float, ...]]],
) -> tuple[list[TimedRow], int]:
    """Shared loop of the CSV rate formats: header, then one row per window in increasing time.

    `row` turns a data row's fields into (time in seconds, values) and raises `RowError`. Returns the rows read
    and how many data rows there were (bad ones included).
    """
    header: CsvHeader | None = None
    rows: list[TimedRow] = []
    rows_seen = 0
    for line_no, line in numbered(lines):
        if header is None:
            header = CsvHeader(problems.source, line_no, line, fmt, required)
            continue
        rows_seen += 1
        try:
            time_s, values = row(header.fields(line), header)
            check_increasing(rows, line_no, time_s)
        except RowError as exc:
            problems.bad(line_no, str(exc))
            continue
        rows.append(TimedRow(line_no, time_s, values))
    if header is None:
        raise DataQualityError(f"{problems.source}: empty file, expected a {fmt} header")
    problems.nothing_usable(rows_seen)
    return rows, rows_seen


def check_increasing(rows: list[TimedRow], line_no: int, time_s: float) -> None:
    """A rate series row must come after the previous one."""
    if rows and time_s <= rows[-1].time_s:
        what = "repeats" if time_s == rows[-1].time_s else "is earlier than"
        raise RowError(
            f"time {time_s:g} s {what} the previous row's {rows[-1].time_s:g} s (line {rows[-1].line_no}); "
            "a rate series must be in increasing time"
        )
