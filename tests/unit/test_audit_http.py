"""The CloudEvents HTTP sink (adapters/cloudevents_http): structured-mode requests, retries and their waits,
counting what is not delivered, a non-blocking emit, a bounded close, and the httpx error mapping.

Transport-level tests use httpx.MockTransport (no sockets); waits go through an injected `sleep` that records the
delays and returns at once. The one integration test posts to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters.cloudevents_http import (
    HTTPX_ERROR_KINDS,
    HttpAuditSink,
    error_for_status,
    map_httpx_error,
    map_httpx_errors,
    parse_retry_after,
)
from autoscaler.audit import TYPE_DECISION_INTENT, CloudEvent, source_for_scenario
from autoscaler.errors import (
    AutoscalerError,
    ConfigError,
    DataQualityError,
    NotFound,
    PermanentError,
    TransientError,
)
from autoscaler.ports import AuditSink

URL = "http://collector.test/events"
T0 = datetime(2000, 1, 1, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def event(n: int = 0, **data: Any) -> CloudEvent:
    return CloudEvent(
        id=f"d-{n:04d}-intent",
        source=source_for_scenario("unit"),
        type=TYPE_DECISION_INTENT,
        time=T0 + timedelta(seconds=15 * n),
        subject="chat",
        data={"decision_id": f"d-{n:04d}", **data},
    )


class Collector:
    """A scripted collector: answers each request with the next scripted response (the last one repeats) and
    records what it got. `block()` makes every request wait until `release()`, to hold the sender mid-request."""

    def __init__(self, *script: int | httpx.Response | Exception) -> None:
        self.script = list(script) or [204]
        self.requests: list[httpx.Request] = []
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def block(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.entered.set()
        assert self._gate.wait(5), "the test never released the collector"
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return httpx.Response(step)

    @property
    def ids(self) -> list[str]:
        return [json.loads(r.content)["id"] for r in self.requests]


class Delays:
    """The injected `sleep`: records each wait and returns at once (True when the sink is closing)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, seconds: float, wakeup: threading.Event) -> bool:
        self.seen.append(seconds)
        return wakeup.is_set()


@pytest.fixture
def delays() -> Delays:
    return Delays()


@pytest.fixture
def make_sink(delays: Delays) -> Iterator[Callable[..., HttpAuditSink]]:
    """Build sinks on a MockTransport; every one is closed and its thread gone at the end of the test."""
    sinks: list[tuple[HttpAuditSink, Collector]] = []

    def build(collector: Collector, **kwargs: Any) -> HttpAuditSink:
        kwargs.setdefault("sleep", delays)
        kwargs.setdefault("backoff_s", 0.01)
        sink = HttpAuditSink(URL, transport=httpx.MockTransport(collector), **kwargs)
        sinks.append((sink, collector))
        return sink

    yield build
    for sink, collector in sinks:
        collector.release()
        sink.close(timeout_s=1.0)
        wait_stopped(sink)


def wait_stopped(sink: HttpAuditSink, timeout_s: float = 2.0) -> None:
    """Wait for the sender thread to end: a test stops what it starts."""
    deadline = time.monotonic() + timeout_s
    while sink.running:
        assert time.monotonic() < deadline, "the sender thread did not stop"
        time.sleep(0.001)


# ── the request ──────────────────────────────────────────────────────────────────────────────────────────────────


def test_the_sink_implements_the_port(make_sink: Callable[..., HttpAuditSink]) -> None:
    assert isinstance(make_sink(Collector()), AuditSink)


def test_structured_mode_request(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector(202)
    sink = make_sink(collector, headers={"Authorization": "Bearer t0ken"})
    sent = event(1, target={"H100-80GB": 3})
    sink.emit([sent])
    sink.close()
    (request,) = collector.requests
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["Content-Type"] == "application/cloudevents+json; charset=UTF-8"
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert json.loads(request.content) == sent.to_json()  # the body is the event itself, not an envelope
    assert (sink.sent, sink.dropped, sink.rejected, sink.failed) == (1, 0, 0, 0)


def test_events_go_one_request_each_in_order(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    sink = make_sink(collector)
    sink.emit([event(0), event(1)])
    sink.emit([event(2)])
    sink.close()
    assert collector.ids == ["d-0000-intent", "d-0001-intent", "d-0002-intent"]


# ── retries ──────────────────────────────────────────────────────────────────────────────────────────────────────


def test_503_is_retried_with_exponential_backoff_then_succeeds(
    make_sink: Callable[..., HttpAuditSink], delays: Delays
) -> None:
    collector = Collector(503, 503, 200)
    sink = make_sink(collector, backoff_s=0.01)
    sink.emit([event()])
    sink.close()
    assert len(collector.requests) == 3
    assert delays.seen == [0.01, 0.02]  # backoff_s * 2**attempt
    assert (sink.sent, sink.failed) == (1, 0)


def test_429_waits_for_retry_after(make_sink: Callable[..., HttpAuditSink], delays: Delays) -> None:
    collector = Collector(httpx.Response(429, headers={"Retry-After": "2"}), 200)
    sink = make_sink(collector, backoff_s=0.01, max_delay_s=10.0)
    sink.emit([event()])
    sink.close()
    assert delays.seen == [2.0]  # the server's word, not the backoff
    assert sink.sent == 1


def test_retry_after_is_capped(make_sink: Callable[..., HttpAuditSink], delays: Delays) -> None:
    collector = Collector(httpx.Response(429, headers={"Retry-After": "3600"}), 200)
    sink = make_sink(collector, max_delay_s=0.05)
    sink.emit([event()])
    sink.close()
    assert delays.seen == [0.05]
    assert sink.sent == 1


def test_retry_after_with_the_real_wait_is_short_when_capped(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector(httpx.Response(429, headers={"Retry-After": "1"}), 200)
    sink = make_sink(collector, sleep=None, max_delay_s=0.02)
    started = time.monotonic()
    sink.emit([event()])
    sink.close(timeout_s=1.0)
    assert sink.sent == 1
    assert 0.02 <= time.monotonic() - started < 0.5


def test_400_is_not_retried_and_counts_as_rejected(make_sink: Callable[..., HttpAuditSink], delays: Delays) -> None:
    collector = Collector(400, 200)
    sink = make_sink(collector)
    sink.emit([event()])
    sink.close()
    assert len(collector.requests) == 1 and delays.seen == []
    assert (sink.sent, sink.rejected, sink.failed) == (0, 1, 0)
    assert sink.last_error is not None and "HTTP 400" in sink.last_error


def test_retries_are_bounded_then_the_event_counts_as_failed(
    make_sink: Callable[..., HttpAuditSink], delays: Delays
) -> None:
    collector = Collector(503)
    sink = make_sink(collector, max_retries=2, backoff_s=0.01)
    sink.emit([event()])
    sink.close()
    assert len(collector.requests) == 3  # the first try and 2 retries
    assert delays.seen == [0.01, 0.02]
    assert (sink.sent, sink.failed) == (0, 1)
    assert sink.last_error is not None and "gave up after 3 tries" in sink.last_error


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("hung up")],
    ids=["connect", "timeout", "hung-up"],
)
def test_connection_errors_and_timeouts_are_retried(
    make_sink: Callable[..., HttpAuditSink], delays: Delays, error: Exception
) -> None:
    collector = Collector(error, 200)
    sink = make_sink(collector)
    sink.emit([event()])
    sink.close()
    assert (sink.sent, sink.failed) == (1, 0)
    assert delays.seen == [0.01]


def test_an_unexpected_transport_error_is_counted_and_the_sender_goes_on(
    make_sink: Callable[..., HttpAuditSink],
) -> None:
    collector = Collector(RuntimeError("bug in a transport"), 200)
    sink = make_sink(collector)
    sink.emit([event(0), event(1)])
    sink.close()
    assert (sink.sent, sink.failed) == (1, 1)
    assert sink.last_error is not None and "RuntimeError" in sink.last_error


# ── the queue and close ──────────────────────────────────────────────────────────────────────────────────────────


def test_emit_never_blocks_on_a_slow_collector(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    collector.block()  # every request hangs until released
    sink = make_sink(collector)
    started = time.monotonic()
    sink.emit([event(0)])
    assert collector.entered.wait(1)
    sink.emit([event(n) for n in range(1, 50)])
    assert time.monotonic() - started < 0.05
    collector.release()
    sink.close()
    assert sink.sent == 50


def test_a_full_queue_drops_and_counts(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    collector.block()
    sink = make_sink(collector, queue_size=2)
    sink.emit([event(0)])
    assert collector.entered.wait(1)  # the sender holds event 0; the queue is empty
    sink.emit([event(1), event(2), event(3)])  # 1 and 2 fill the queue; 3 is dropped
    assert sink.dropped == 1 and sink.pending == 2
    collector.release()
    sink.close()
    assert collector.ids == ["d-0000-intent", "d-0001-intent", "d-0002-intent"]
    assert (sink.sent, sink.dropped) == (3, 1)


def test_close_drains_the_queue(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    sink = make_sink(collector)
    sink.emit([event(n) for n in range(5)])
    sink.close()
    assert sink.sent == 5 and sink.pending == 0
    assert not sink.running


def test_close_gives_up_at_its_timeout_and_counts_what_is_left(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    collector.block()
    sink = make_sink(collector)
    sink.emit([event(n) for n in range(4)])
    assert collector.entered.wait(1)
    started = time.monotonic()
    sink.close(timeout_s=0.03)
    assert time.monotonic() - started < 0.5
    assert sink.dropped == 3  # events 1-3 never left the queue
    collector.release()  # the request in flight ends; the sender then stops
    wait_stopped(sink)
    assert (sink.sent, sink.dropped) == (1, 3)


def test_close_interrupts_a_backoff_wait(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector(503)
    sink = make_sink(collector, sleep=None, backoff_s=10.0, max_delay_s=10.0)
    sink.emit([event()])
    assert collector.entered.wait(1)
    started = time.monotonic()
    sink.close(timeout_s=0.03)
    wait_stopped(sink)
    assert time.monotonic() - started < 0.5
    assert sink.failed == 1
    assert sink.last_error is not None and "closed before the next try" in sink.last_error


def test_close_is_idempotent_and_emit_after_close_drops(make_sink: Callable[..., HttpAuditSink]) -> None:
    collector = Collector()
    sink = make_sink(collector)
    sink.close()
    sink.close()
    sink.emit([event()])
    assert (sink.sent, sink.dropped) == (0, 1)
    assert collector.requests == []


def test_a_sink_is_a_context_manager() -> None:
    collector = Collector()
    with HttpAuditSink(URL, transport=httpx.MockTransport(collector)) as sink:
        sink.emit([event()])
    assert sink.sent == 1 and not sink.running


def test_an_event_that_cannot_be_serialized_raises_at_emit(make_sink: Callable[..., HttpAuditSink]) -> None:
    sink = make_sink(Collector())
    with pytest.raises(DataQualityError, match=r"data\.ratio is nan"):
        sink.emit([event(0), event(1, ratio=float("nan"))])
    assert sink.pending == 0 and sink.dropped == 0  # nothing of the batch was queued


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://collector.test/", {}, "http:// or https://"),
        ("/events", {}, "absolute"),
        ("http://[::1", {}, "audit sink URL"),
        (URL, {"max_retries": -1}, "`max_retries` \\(-1\\) must be 0 or more"),
        (URL, {"queue_size": 0, "timeout_s": 0}, "`timeout_s` \\(0\\) must be positive; `queue_size`"),
    ],
    ids=["ftp", "relative", "malformed", "negative-retries", "two-at-once"],
)
def test_bad_settings_are_config_errors(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HttpAuditSink(url, transport=httpx.MockTransport(Collector()), **kwargs)


# ── error mapping ────────────────────────────────────────────────────────────────────────────────────────────────


def httpx_error_classes() -> list[type[httpx.HTTPError]]:
    found: list[type[httpx.HTTPError]] = [httpx.HTTPError]
    pending: list[type[httpx.HTTPError]] = [httpx.HTTPError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.split(".")[0] == "httpx" and sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


def an_instance(cls: type[httpx.HTTPError]) -> httpx.HTTPError:
    request = httpx.Request("POST", URL)
    if issubclass(cls, httpx.HTTPStatusError):
        return cls("status", request=request, response=httpx.Response(503, request=request))
    if issubclass(cls, httpx.RequestError):
        return cls("boom", request=request)
    return cls("boom")


def test_every_httpx_exception_class_is_mapped() -> None:
    """A new class in a later httpx fails this test until it is given its place in HTTPX_ERROR_KINDS."""
    classes = httpx_error_classes()
    assert len(classes) >= 20  # the walk found the tree (19 subclasses in httpx 0.28 and 0.29), not only the root
    unmapped = [cls.__name__ for cls in classes if cls not in HTTPX_ERROR_KINDS]
    assert not unmapped, f"httpx exceptions without a mapping: {unmapped}"


@pytest.mark.parametrize("cls", httpx_error_classes(), ids=lambda cls: cls.__name__)
def test_map_httpx_errors_raises_the_mapped_kind_from_the_original(cls: type[httpx.HTTPError]) -> None:
    original = an_instance(cls)
    with pytest.raises(AutoscalerError) as info, map_httpx_errors("posting to the collector"):
        raise original
    want = TransientError if cls is httpx.HTTPStatusError else HTTPX_ERROR_KINDS[cls]  # 503: by status
    assert type(info.value) is want
    assert info.value.__cause__ is original
    assert str(info.value).startswith("posting to the collector: ")


def test_a_subclass_httpx_may_add_maps_through_its_base() -> None:
    class BrandNewTimeout(httpx.ReadTimeout):
        pass

    assert isinstance(map_httpx_error(BrandNewTimeout("slow"), "x"), TransientError)


def test_invalid_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError), map_httpx_errors("x"):
        httpx.URL("http://[::1")


def test_other_exceptions_pass_through_unmapped() -> None:
    with pytest.raises(KeyError), map_httpx_errors("x"):
        raise KeyError("not ours to map")


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after_s"),
    [
        (200, {}, None, None),
        (204, {}, None, None),
        (301, {"Location": "https://elsewhere/"}, ConfigError, None),
        (400, {}, PermanentError, None),
        (401, {}, ConfigError, None),
        (403, {}, ConfigError, None),
        (404, {}, NotFound, None),
        (408, {}, TransientError, 1.0),
        (422, {}, PermanentError, None),
        (429, {"Retry-After": "7"}, TransientError, 7.0),
        (500, {}, TransientError, 1.0),
        (503, {"Retry-After": "120"}, TransientError, 120.0),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else None,
)
def test_error_for_status(
    status: int, headers: dict[str, str], kind: type[AutoscalerError] | None, retry_after_s: float | None
) -> None:
    mapped = error_for_status(httpx.Response(status, headers=headers), "posting")
    if kind is None:
        assert mapped is None
        return
    assert type(mapped) is kind
    assert f"HTTP {status}" in str(mapped)
    if retry_after_s is not None:
        assert isinstance(mapped, TransientError) and mapped.retry_after_s == retry_after_s


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (None, None),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("Sat, 01 Jan 2000 00:00:30 GMT", 30.0),  # 30 s after `now`
        ("Fri, 31 Dec 1999 23:59:00 GMT", 0.0),  # already past
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(value: str | None, want: float | None) -> None:
    assert parse_retry_after(value, now=T0) == want


# ── integration: a real server on loopback ───────────────────────────────────────────────────────────────────────


class _Recording(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.mark.integration
def test_events_arrive_in_order_at_a_real_http_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # straight to loopback, whatever the machine's proxy settings

    received: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (_Recording,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=server.serve_forever, args=(0.01,), name="audit-test-server", daemon=True)
    serving.start()
    try:
        host, port = server.server_address[:2]
        sink = HttpAuditSink(f"http://{host!s}:{port}/events", timeout_s=2.0)
        try:
            events = [event(n, target={"H100-80GB": n}) for n in range(4)]
            sink.emit(events[:2])
            sink.emit(events[2:])
        finally:
            sink.close(timeout_s=5.0)
        assert (sink.sent, sink.failed, sink.rejected, sink.dropped) == (4, 0, 0, 0)
        assert [path for path, _, _ in received] == ["/events"] * 4
        assert {content_type for _, content_type, _ in received} == {"application/cloudevents+json; charset=UTF-8"}
        assert [json.loads(body) for _, _, body in received] == [e.to_json() for e in events]
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=5)
    assert not serving.is_alive()
