"""BurstGPT CSV (HPMLL/BurstGPT): Azure OpenAI GPT service logs.

Header `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`; `Timestamp` is seconds from the
trace's start, rows sorted by it. `Model` (e.g. `ChatGPT`, `GPT-4`) becomes the request's service. `Total tokens`
and `Log Type` are read past: the trace keeps the request and response lengths. A response of 0 tokens (a failed
request in BurstGPT) is kept as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from adapters.traces._common import (
    CsvHeader,
    Loaded,
    RowError,
    parse_float,
    parse_request_csv,
    parse_tokens,
    read_lines,
)
from autoscaler.series import RequestTrace

FMT = "burstgpt"
COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
REQUIRED = COLUMNS[:4]


def _row(fields: list[str], header: CsvHeader) -> tuple[float, int, int, str | None]:
    index = header.index
    model = fields[index["model"]].strip()
    if not model:
        raise RowError("Model is empty")
    return (
        parse_float(fields[index["timestamp"]], "Timestamp"),
        parse_tokens(fields[index["request tokens"]], "Request tokens"),
        parse_tokens(fields[index["response tokens"]], "Response tokens"),
        model,
    )


def parse_burstgpt(
    lines: Iterable[str], source: str, *, skip_bad_lines: bool = False, name: str | None = None
) -> Loaded[RequestTrace]:
    """A BurstGPT trace, with the model as the service of each request.

    A bad number, a negative token count, an empty model, a missing column or a row earlier than the one before it
    is a malformed row: DataQualityError naming the file and line, or skipped and counted with `skip_bad_lines`.
    """
    return parse_request_csv(
        lines,
        source,
        fmt=FMT,
        required=REQUIRED,
        row=_row,
        with_service=lambda header: True,
        skip_bad_lines=skip_bad_lines,
        name=name,
    )


def load_burstgpt(path: str | Path, *, skip_bad_lines: bool = False) -> Loaded[RequestTrace]:
    """Read a BurstGPT CSV file; see `parse_burstgpt`."""
    path = Path(path)
    return parse_burstgpt(read_lines(path), str(path), skip_bad_lines=skip_bad_lines)
