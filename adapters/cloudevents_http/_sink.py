"""Forward audit events over HTTP in CloudEvents structured mode, from a background thread.

`HttpAuditSink` implements `autoscaler.ports.AuditSink` for a collector (Knative Eventing broker, an event gateway,
a log pipeline). It is a *forwarder*, not the record: the loop writes the durable trail with `AuditFile` and may
add this sink beside it. Hence its contract differs from the file's in one way that the port allows: `emit` only
enqueues and returns at once, so a slow or dead collector never holds up a tick. What cannot be delivered is
counted, never raised: `sent`, `dropped` (queue full, or still queued when `close` ran out of time), `rejected`
(the collector answered 3xx/4xx other than 408/429: sending it again would not help) and `failed` (retries
exhausted, or an error that retrying cannot fix).

Each event is one POST whose body is the event's JSON and whose Content-Type is
`application/cloudevents+json; charset=UTF-8` (the HTTP binding's structured content mode). Transient failures
(connection errors, timeouts, 408, 429, 5xx) are retried `max_retries` times, waiting `backoff_s * 2**attempt`,
or the server's Retry-After when it sends one, and never more than `max_delay_s`.

httpx exceptions are translated in one place, `map_httpx_errors`, to the project's vocabulary.
"""

from __future__ import annotations

import email.utils
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import httpx

from autoscaler.errors import AutoscalerError, ConfigError, NotFound, PermanentError, TransientError
from autoscaler.events import STRUCTURED_CONTENT_TYPE, CloudEvent, serialize_event

__all__ = [
    "HTTPX_ERROR_KINDS",
    "HttpAuditSink",
    "error_for_status",
    "map_httpx_error",
    "map_httpx_errors",
    "parse_retry_after",
]

_log = logging.getLogger(__name__)

# ── error mapping ────────────────────────────────────────────────────────────────────────────────────────────────

HTTPX_ERROR_KINDS: Final[Mapping[type[Exception], type[AutoscalerError]]] = {
    # Every class under httpx.HTTPError is listed by name (tests/unit/test_audit_http.py checks none is missing);
    # an exception is mapped by the first class of its MRO found here, so a class a later httpx adds still maps.
    httpx.HTTPError: TransientError,
    httpx.RequestError: TransientError,
    httpx.TransportError: TransientError,
    httpx.TimeoutException: TransientError,
    httpx.ConnectTimeout: TransientError,
    httpx.ReadTimeout: TransientError,
    httpx.WriteTimeout: TransientError,
    httpx.PoolTimeout: TransientError,
    httpx.NetworkError: TransientError,
    httpx.ConnectError: TransientError,
    httpx.ReadError: TransientError,
    httpx.WriteError: TransientError,
    httpx.CloseError: TransientError,
    httpx.ProtocolError: TransientError,
    httpx.RemoteProtocolError: TransientError,  # the server hung up mid-response (a restart, an idle cut)
    httpx.LocalProtocolError: PermanentError,  # we built an invalid request: sending it again sends the same
    httpx.ProxyError: TransientError,  # the proxy is down or overloaded
    httpx.UnsupportedProtocol: ConfigError,  # the URL's scheme is not http(s)
    httpx.DecodingError: PermanentError,  # the response's encoding is broken; it will be broken again
    httpx.TooManyRedirects: ConfigError,  # the URL leads into a redirect loop
    httpx.HTTPStatusError: PermanentError,  # refined by status in error_for_status
    # Not HTTPErrors, but raised by the same calls for a malformed URL:
    httpx.InvalidURL: ConfigError,
}

_TRANSIENT_STATUSES: Final = frozenset({408, 429})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds (`"120"`) or an HTTP-date; None when absent or not
    understood. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def error_for_status(response: httpx.Response, what: str) -> AutoscalerError | None:
    """The project error for a response's status, or None for 2xx. 408, 429 and 5xx are TransientError (with the
    Retry-After as `retry_after_s` when the server sent one); 404 NotFound; 3xx (a redirect: point the sink at the
    final URL), 401 and 403 (credentials) ConfigError; any other 4xx PermanentError."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    message = f"{what}: HTTP {status} {response.reason_phrase}".rstrip()
    if status in _TRANSIENT_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return TransientError(message, retry_after_s=1.0 if retry_after is None else retry_after)
    if status == 404:
        return NotFound(message)
    if 300 <= status < 400:
        location = response.headers.get("Location")
        return ConfigError(f"{message} (a redirect to {location!r}: configure the final URL)")
    if status in (401, 403):
        return ConfigError(f"{message}: check the sink's credentials (headers)")
    return PermanentError(message)


def map_httpx_error(exc: Exception, what: str) -> AutoscalerError:
    """The project error for an httpx exception (`HTTPX_ERROR_KINDS`; a status error by its status). `what` says
    what was being done, for the message."""
    if isinstance(exc, httpx.HTTPStatusError):
        mapped = error_for_status(exc.response, what)
        if mapped is not None:
            return mapped
    for cls in type(exc).__mro__:
        kind = HTTPX_ERROR_KINDS.get(cls)
        if kind is not None:
            return kind(f"{what}: {type(exc).__name__}: {exc}")
    raise TypeError(f"map_httpx_error: {type(exc).__name__} is not an httpx exception") from exc


@contextmanager
def map_httpx_errors(what: str) -> Iterator[None]:
    """Turn the httpx exceptions raised inside into the project's errors (`raise ... from exc`)."""
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise map_httpx_error(exc, what) from exc


# ── the sink ─────────────────────────────────────────────────────────────────────────────────────────────────────


class _Stop:
    """The sentinel `close` queues after the last event."""


_STOP: Final = _Stop()


def _wait_on_event(seconds: float, wakeup: threading.Event) -> bool:
    return wakeup.wait(seconds) if seconds > 0 else wakeup.is_set()


class HttpAuditSink:
    """An `AuditSink` that POSTs each event to `url` in structured mode from a background thread.

    `headers` are sent with every request (an Authorization header, say); `timeout_s` bounds each request;
    `max_retries` is the number of tries after the first; `backoff_s` the first wait, doubled after each retry;
    `max_delay_s` caps every wait, the server's Retry-After included; `queue_size` events wait at most, beyond
    that `emit` drops and counts them. `transport` replaces httpx's network transport (tests pass
    `httpx.MockTransport`). `sleep(seconds, wakeup) -> bool` waits between tries and returns True when `wakeup`
    was set (a `Clock.sleep` fits); tests pass one that records the delays and returns at once.

    Construction raises ConfigError for a URL that is not http(s) or a bound out of range. The thread starts at
    once; `close()` (or leaving a `with` block) stops it.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_delay_s: float = 30.0,
        queue_size: int = 1000,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float, threading.Event], bool] | None = None,
    ) -> None:
        problems = [
            f"`{name}` ({value}) must be {rule}"
            for name, value, ok, rule in (
                ("timeout_s", timeout_s, timeout_s > 0, "positive"),
                ("max_retries", max_retries, max_retries >= 0, "0 or more"),
                ("backoff_s", backoff_s, backoff_s >= 0, "0 or more"),
                ("max_delay_s", max_delay_s, max_delay_s >= 0, "0 or more"),
                ("queue_size", queue_size, queue_size >= 1, "at least 1"),
            )
            if not ok
        ]
        with map_httpx_errors(f"audit sink URL {url!r}"):
            parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            problems.append(f"`url` ({url!r}) must be an absolute http:// or https:// URL")
        if problems:
            raise ConfigError("HttpAuditSink: " + "; ".join(problems))
        self.url = url
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self._sleep = sleep if sleep is not None else _wait_on_event
        self._client = httpx.Client(headers=dict(headers or {}), timeout=timeout_s, transport=transport)
        self._queue: queue.Queue[tuple[str, bytes] | _Stop] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._abort = threading.Event()  # close() ran out of time: stop waiting, drop what is left
        self._sent = self._dropped = self._rejected = self._failed = 0
        self.last_error: str | None = None
        """The last reason an event was rejected or failed, for the loop's log and status."""
        self._thread = threading.Thread(target=self._run, name="fleetscale-audit-http", daemon=True)
        self._thread.start()

    # Counters, read by the loop for its metrics; each only goes up.

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def rejected(self) -> int:
        return self._rejected

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def running(self) -> bool:
        """Whether the sender thread is still alive (after `close`, until its last request has ended)."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the sender (approximate, as any queue size read across threads)."""
        return self._queue.qsize()

    def emit(self, events: Sequence[CloudEvent]) -> None:
        """Queue `events` for sending and return at once; never blocks, never waits for the collector. An event
        that finds the queue full, or comes after `close()`, is dropped and counted. Raises DataQualityError, with
        nothing queued, when an event cannot be serialized (NaN in its data): that is a bug to see, not to count."""
        bodies = [(event.id, serialize_event(event).encode("utf-8")) for event in events]
        with self._lock:  # with close(): nothing may be queued behind the stop sentinel
            for body in bodies:
                if self._closed:
                    self._dropped += 1
                    continue
                try:
                    self._queue.put_nowait(body)
                except queue.Full:
                    self._dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, for at most `timeout_s`, then stop the thread; idempotent. Events still queued when
        the time is up are dropped and counted. A request in flight at that point is left to end on its own
        (bounded by the request timeout) on the daemon thread, which then exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        with suppress(queue.Full):  # full until the deadline: the abort below stops the sender
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # Out of time: what is still queued is dropped now (so the counters say so when close returns), and
            # the sender stops after the request it is in, without waiting for a retry.
            self._abort.set()
            self._drop_rest(0)
            with suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            self._thread.join(0.05)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HttpAuditSink({self.url!r}, sent={self._sent}, dropped={self._dropped}, rejected={self._rejected}, "
            f"failed={self._failed})"
        )

    # ── the sender thread ──

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _Stop):
                    return
                if self._abort.is_set():
                    self._drop_rest(1)
                    return
                event_id, body = item
                try:
                    self._deliver(event_id, body)
                except Exception as exc:
                    # A bug in a transport or a mapping: count it and keep the thread, which every later event needs.
                    _log.exception("audit event %s: unexpected error while sending", event_id)
                    self._count_failure(f"event {event_id}: {type(exc).__name__}: {exc}", rejected=False)
        finally:
            self._client.close()

    def _drop_rest(self, already: int) -> None:
        dropped = already
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Stop):
                dropped += 1
        with self._lock:
            self._dropped += dropped

    def _deliver(self, event_id: str, body: bytes) -> None:
        what = f"posting audit event {event_id} to {self.url}"
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                with map_httpx_errors(what):
                    response = self._client.post(
                        self.url, content=body, headers={"Content-Type": STRUCTURED_CONTENT_TYPE}
                    )
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    response.raise_for_status()
            except TransientError as exc:
                if attempt >= self.max_retries:
                    self._count_failure(f"{exc} (gave up after {attempt + 1} tries)", rejected=False)
                    return
                delay = retry_after if retry_after is not None else self.backoff_s * 2**attempt
                if self._sleep(min(delay, self.max_delay_s), self._abort):
                    self._count_failure(f"{exc} (sink closed before the next try)", rejected=False)
                    return
                attempt += 1
                continue
            except PermanentError as exc:
                # The collector said no (3xx, 4xx): counted as rejected. Anything else permanent (a bad scheme,
                # a broken response) is a failure to send.
                self._count_failure(str(exc), rejected=isinstance(exc.__cause__, httpx.HTTPStatusError))
                return
            with self._lock:
                self._sent += 1
            return

    def _count_failure(self, reason: str, *, rejected: bool) -> None:
        _log.warning("audit event not delivered: %s", reason)
        with self._lock:
            if rejected:
                self._rejected += 1
            else:
                self._failed += 1
            self.last_error = reason
