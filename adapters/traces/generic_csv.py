"""Generic request CSV: `timestamp_s,input_tokens,output_tokens` and optionally `service`.

One row per request, sorted by `timestamp_s` (seconds from the trace's start); columns are found by name, so their
order is free. With a `service` column every row must name its service.
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

FMT = "generic"
COLUMNS = ("timestamp_s", "input_tokens", "output_tokens")
OPTIONAL = ("service",)


def _row(fields: list[str], header: CsvHeader) -> tuple[float, int, int, str | None]:
    index = header.index
    service: str | None = None
    service_at = header.position("service")
    if service_at is not None:
        service = fields[service_at].strip()
        if not service:
            raise RowError("service is empty")
    return (
        parse_float(fields[index["timestamp_s"]], "timestamp_s"),
        parse_tokens(fields[index["input_tokens"]], "input_tokens"),
        parse_tokens(fields[index["output_tokens"]], "output_tokens"),
        service,
    )


def parse_generic_csv(
    lines: Iterable[str], source: str, *, skip_bad_lines: bool = False, name: str | None = None
) -> Loaded[RequestTrace]:
    """A generic request CSV (`service` column optional).

    A bad number, a negative token count, an empty service, a missing column or a row earlier than the one before
    it is a malformed row: DataQualityError naming the file and line, or skipped and counted with `skip_bad_lines`.
    """
    return parse_request_csv(
        lines,
        source,
        fmt=FMT,
        required=COLUMNS,
        row=_row,
        with_service=lambda header: header.position("service") is not None,
        skip_bad_lines=skip_bad_lines,
        name=name,
    )


def load_generic_csv(path: str | Path, *, skip_bad_lines: bool = False) -> Loaded[RequestTrace]:
    """Read a generic request CSV file; see `parse_generic_csv`."""
    path = Path(path)
    return parse_generic_csv(read_lines(path), str(path), skip_bad_lines=skip_bad_lines)
