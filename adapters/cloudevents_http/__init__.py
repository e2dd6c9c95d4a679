"""CloudEvents over HTTP: an `AuditSink` that forwards the audit trail to a collector in structured mode.

`HttpAuditSink(url)` POSTs each event as `application/cloudevents+json` from a background thread; `emit` never
blocks the tick and what cannot be delivered is counted (`sent`, `dropped`, `rejected`, `failed`). httpx errors
are mapped to `autoscaler.errors` by `map_httpx_errors` (every httpx exception class is listed in
`HTTPX_ERROR_KINDS`, and a test keeps it so).

This is an adapter: it imports httpx, `autoscaler.events` and `autoscaler.errors` only.
"""

from __future__ import annotations

from adapters.cloudevents_http._sink import (
    HTTPX_ERROR_KINDS,
    HttpAuditSink,
    error_for_status,
    map_httpx_error,
    map_httpx_errors,
    parse_retry_after,
)

__all__ = [
    "HTTPX_ERROR_KINDS",
    "HttpAuditSink",
    "error_for_status",
    "map_httpx_error",
    "map_httpx_errors",
    "parse_retry_after",
]
