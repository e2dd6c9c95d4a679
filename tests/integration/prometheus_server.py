"""A real Prometheus on 127.0.0.1 for a test, started and stopped by PID, and a tiny exporter for it to scrape.

- `prometheus_binaries()`: the prometheus and promtool binaries, from `$FLEETSCALE_PROMETHEUS_DIR` or from
  `build/prometheus/usr/bin/` (`make prometheus` unpacks Debian's package there). Missing binaries are an error,
  never a skip: a test that needs Prometheus and silently does not run proves nothing.
- `PrometheusServer`: one Prometheus process on a free loopback port, over a generated config (static scrape jobs,
  optional rule files) and a data directory of its own. `start()` returns once `/-/ready` answers; `stop()` sends
  SIGTERM to the PID it started, then SIGKILL after a timeout, and may be called any number of times; `start()`
  again reuses the same port and the same data, as a Prometheus that comes back after an outage. `wait_up(job)`
  waits for a scrape of every target of the job made by this run of the process (target discovery makes the first
  scrape come about 6 s after the start, whatever the scrape interval), and `query()` returns the HTTP API's raw
  `data.result`. Prometheus's own output goes to `prometheus.log` in the work directory; every error raised here
  ends with its tail.
- `StaticExporter`: a stdlib HTTP server on a free loopback port serving `/metrics`, in the Prometheus text
  exposition format, from a string or a callable that can be changed while it runs.

Only the standard library is used, so that the harness depends on nothing of the code under test (nor on its HTTP
client). Nothing here binds or connects to anything but 127.0.0.1, and urllib ignores any proxy settings.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

ROOT = Path(__file__).resolve().parents[2]
DIR_ENV = "FLEETSCALE_PROMETHEUS_DIR"
"""A directory holding both `prometheus` and `promtool`; by default `<repo>/build/prometheus/usr/bin`."""
DEFAULT_DIR = ROOT / "build" / "prometheus" / "usr" / "bin"

LOOPBACK = "127.0.0.1"
POLL_S = 0.05
READY_TIMEOUT_S = 30.0  # ready takes about 0.12 s; the timeout bounds a failure, not a pass
UP_TIMEOUT_S = 30.0  # the first scrape comes about 6 s after the start (target discovery every 5 s)
STOP_TIMEOUT_S = 10.0  # SIGTERM ends it in about 1 s; SIGKILL after this
HTTP_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 4000

EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# No proxy, whatever the environment says: every request here goes to 127.0.0.1 directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, did not scrape in time, or answered an error."""


def prometheus_binaries() -> tuple[Path, Path]:
    """The paths of `prometheus` and `promtool`: from `$FLEETSCALE_PROMETHEUS_DIR`, else `build/prometheus/usr/bin`.

    Raises `PrometheusError`, saying how to get them, when either is missing or not executable.
    """
    configured = os.environ.get(DIR_ENV)
    where = Path(configured) if configured else DEFAULT_DIR
    binaries = (where / "prometheus", where / "promtool")
    missing = [str(b) for b in binaries if not (b.is_file() and os.access(b, os.X_OK))]
    if missing:
        origin = f"${DIR_ENV}" if configured else f"the default ({DIR_ENV} is not set)"
        raise PrometheusError(
            f"no Prometheus binaries: {', '.join(missing)} missing or not executable ({origin}). "
            f"Run `make prometheus` in {ROOT} (it unpacks Debian's prometheus package into build/prometheus), "
            f"or set {DIR_ENV} to a directory holding both prometheus and promtool."
        )
    return binaries


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick; another process could take it before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _loopback_target(target: str) -> str:
    host, sep, port = target.rpartition(":")
    if host != LOOPBACK or not sep or not port.isdigit():
        raise ValueError(f"scrape target {target!r}: only {LOOPBACK}:PORT targets are allowed")
    return target


def _duration(seconds: float) -> str:
    """A Prometheus duration: whole seconds as `5s`, anything else in milliseconds (`1500ms`)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"an interval must be at least 1 ms, not {seconds!r} s")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _quote(text: str) -> str:
    """A double-quoted string for YAML and PromQL alike (JSON's escapes are valid in both)."""
    return json.dumps(text)


def _http_get(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """The status and body of a GET; HTTP error statuses are returned, connection failures raise OSError."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        try:
            return error.code, error.read()
        finally:
            error.close()


@dataclass(frozen=True)
class ScrapeJob:
    """One static scrape job: `targets` are `127.0.0.1:PORT` strings."""

    name: str
    targets: tuple[str, ...]
    metrics_path: str = "/metrics"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a scrape job needs a name")
        for target in self.targets:
            _loopback_target(target)


JobSpec = ScrapeJob | tuple[str, Sequence[str]] | tuple[str, Sequence[str], str]
"""A scrape job, or `(job_name, targets)`, or `(job_name, targets, metrics_path)`."""


def _scrape_job(spec: JobSpec) -> ScrapeJob:
    if isinstance(spec, ScrapeJob):
        return spec
    if len(spec) == 2:
        return ScrapeJob(spec[0], tuple(spec[1]))
    return ScrapeJob(spec[0], tuple(spec[1]), spec[2])


class PrometheusServer:
    """One Prometheus process on 127.0.0.1, for a test.

    `workdir` (a test's `tmp_path`, so that the log outlives the test) holds `prometheus.yml`, `data/` and
    `prometheus.log`; without it a temporary directory is made and removed by `close()`. The port is picked once,
    at construction, and kept across `stop()` and `start()`. As a context manager it starts on entry (unless
    already started) and closes on exit; an exception leaving the block gets the log's tail as a note.
    """

    def __init__(
        self,
        jobs: Iterable[JobSpec] = (),
        *,
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        rule_files: Iterable[Path | str] = (),
        workdir: Path | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.jobs: list[ScrapeJob] = [_scrape_job(j) for j in jobs]
        names = [j.name for j in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate scrape job names: {names}")
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self.rule_files: list[Path] = [Path(f).resolve() for f in rule_files]
        self.extra_args: list[str] = list(extra_args)
        self.prometheus, self.promtool = prometheus_binaries()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="fleetscale-prometheus-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.port = free_port() if port is None else port
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.returncode: int | None = None
        """The exit status of the last process `stop()` ended (None before the first stop)."""
        self._popen: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.pid is not None else "stopped"
        return f"PrometheusServer({self.url}, {state}, workdir={self.workdir})"

    # ── lifecycle ────────────────────────────────────────────────────────────────────────────────────────────────

    @property
    def pid(self) -> int | None:
        """The PID of the running process this object started, or None."""
        if self._popen is None or self._popen.poll() is not None:
            return None
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def write_config(self) -> Path:
        """Write `prometheus.yml` from the jobs, intervals and rule files (`start()` does it too); its path."""
        lines = [
            "# Written by tests/integration/prometheus_server.py",
            "global:",
            f"  scrape_interval: {_duration(self.scrape_interval_s)}",
            f"  evaluation_interval: {_duration(self.evaluation_interval_s)}",
        ]
        if self.rule_files:
            lines.append("rule_files:")
            lines.extend(f"  - {_quote(str(f))}" for f in self.rule_files)
        lines.append("scrape_configs:" if self.jobs else "scrape_configs: []")
        for job in self.jobs:
            lines.append(f"  - job_name: {_quote(job.name)}")
            lines.append(f"    metrics_path: {_quote(job.metrics_path)}")
            lines.append("    static_configs:")
            lines.append(f"      - targets: [{', '.join(_quote(t) for t in job.targets)}]")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def argv(self) -> list[str]:
        """The command line `start()` runs (no `--web.enable-lifecycle`: the process is stopped by signal only)."""
        return [
            str(self.prometheus),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            *self.extra_args,
        ]

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> Self:
        """Write the config, start Prometheus on this object's port and data, and wait until it is ready.

        Raises `PrometheusError`, with the log's tail, if it exits or is not ready in time (it is stopped then).
        """
        if self.running:
            raise PrometheusError(f"{self!r} is already running")
        self.write_config()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.time()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        try:
            self.wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Stop the process this object started: SIGTERM, then SIGKILL after `timeout_s`; reap it.

        Idempotent: without a process it does nothing. Returns the exit status (`returncode`), None if nothing
        was ever started.
        """
        popen, self._popen = self._popen, None
        if popen is None:
            return self.returncode
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)  # Popen's own send_signal: never signals a reaped (reused) PID
            try:
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout_s)
        self.returncode = popen.returncode
        return self.returncode

    def restart(self, ready_timeout_s: float = READY_TIMEOUT_S) -> Self:
        """`stop()` then `start()`: the same port, the same data directory, the config rewritten."""
        self.stop()
        return self.start(ready_timeout_s)

    def close(self) -> None:
        """Stop the process; remove the work directory if this object made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            exc.add_note(f"{self!r}\n{self.log_tail()}")
        self.close()

    # ── diagnostics ──────────────────────────────────────────────────────────────────────────────────────────────

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of Prometheus's log (all its runs by this object), for a failure message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"--- {self.log_path}: no log ---"
        return f"--- {self.log_path} (last {chars} chars) ---\n{text[-chars:]}"

    def _fail(self, message: str) -> PrometheusError:
        return PrometheusError(f"{message}\n{self!r}\n{self.log_tail()}")

    def _check_alive(self) -> None:
        if self._popen is None:
            raise self._fail("Prometheus is not started")
        rc = self._popen.poll()
        if rc is not None:
            raise self._fail(f"Prometheus (pid {self._popen.pid}) exited with status {rc}")

    # ── waiting ──────────────────────────────────────────────────────────────────────────────────────────────────

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll `/-/ready` until it answers 200; raise (with the log) if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            self._check_alive()
            try:
                status, body = _http_get(f"{self.url}/-/ready", timeout_s=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except (OSError, http.client.HTTPException) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise self._fail(f"Prometheus not ready within {timeout_s:g} s (last: {last})")
            time.sleep(POLL_S)

    def wait_up(self, job: str, timeout_s: float = UP_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until every target of `job` was scraped successfully (`up == 1`) by the process now running.

        Samples from before the last `start()` (the data directory survives a restart) do not count. For a job
        of this object's config, all its targets must be up; for another job (a rule file cannot add one), at
        least one target and all those seen. Returns the `up` series (their latest sample each). Raises
        `PrometheusError` with the targets' last scrape errors and the log when time runs out.
        """
        expected = next((len(j.targets) for j in self.jobs if j.name == job), None)
        promql = f"up{{job={_quote(job)}}}[10m]"
        deadline = time.monotonic() + timeout_s
        fresh: list[dict[str, Any]] = []
        while True:
            self._check_alive()
            fresh = []
            for series in self.query(promql):
                ts, value = series["values"][-1]
                if float(ts) >= self._started_at:  # scraped by this run (wall clock, as Prometheus's timestamps)
                    fresh.append({"metric": series["metric"], "value": [ts, value]})
            if fresh and all(s["value"][1] == "1" for s in fresh) and (expected is None or len(fresh) == expected):
                return fresh
            if time.monotonic() > deadline:
                raise self._fail(
                    f"job {job!r}: not every target up within {timeout_s:g} s "
                    f"(expected {expected if expected is not None else 'some'} targets; fresh up series: {fresh}; "
                    f"targets: {self._targets(job)})"
                )
            time.sleep(POLL_S)

    def wait_query(self, promql: str, timeout_s: float = UP_TIMEOUT_S) -> list[dict[str, Any]]:
        """Poll `query(promql)` until its result is not empty (a recording rule's first evaluation, say)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise self._fail(f"{promql!r}: still no result after {timeout_s:g} s")
            time.sleep(POLL_S)

    def _targets(self, job: str) -> list[dict[str, Any]] | str:
        """The job's active targets as `/api/v1/targets` reports them (health, last error), for a failure."""
        try:
            status, body = _http_get(f"{self.url}/api/v1/targets?state=active")
            data = json.loads(body)["data"]["activeTargets"] if status == 200 else body[:300]
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            return f"unavailable ({error!r})"
        if not isinstance(data, list):
            return repr(data)
        keys = ("scrapeUrl", "health", "lastError", "lastScrape")
        return [{k: t.get(k) for k in keys} for t in data if t.get("labels", {}).get("job") == job]

    # ── queries ──────────────────────────────────────────────────────────────────────────────────────────────────

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query through `/api/v1/query`: the raw `data.result` (a vector's or a matrix's series).

        `at` is the evaluation instant in Unix seconds (default: now). Raises `PrometheusError` on an error
        answer (bad PromQL: HTTP 400 with Prometheus's message) or a scalar or string result (wrap the
        expression in `vector(...)`).
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            status, body = _http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        except (OSError, http.client.HTTPException) as error:
            raise self._fail(f"query {promql!r}: {error!r}") from error
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or status != 200 or answer.get("status") != "success":
            detail = (
                f"{answer.get('errorType')}: {answer.get('error')}" if isinstance(answer, dict) else repr(body[:300])
            )
            raise PrometheusError(f"query {promql!r}: HTTP {status}: {detail}")
        data = cast(dict[str, Any], answer["data"])
        if data.get("resultType") not in ("vector", "matrix"):
            raise PrometheusError(f"query {promql!r}: a {data.get('resultType')} result; wrap it in vector(...)")
        return cast(list[dict[str, Any]], data["result"])

    def query_value(self, promql: str, at: float | None = None) -> float:
        """The value of an instant query that returns exactly one series (PrometheusError otherwise)."""
        result = self.query(promql, at=at)
        if len(result) != 1 or "value" not in result[0]:
            raise PrometheusError(f"query {promql!r}: expected one series of an instant vector, got {result}")
        return float(result[0]["value"][1])


# ── a target to scrape ───────────────────────────────────────────────────────────────────────────────────────────


class _ExporterServer(ThreadingHTTPServer):
    # Prometheus, and a test's own requests, can open connections faster than one thread accepts them: the
    # default backlog of 5 drops some (a failed scrape, `up == 0`).
    request_queue_size = 128
    daemon_threads = True

    def __init__(self, exporter: StaticExporter) -> None:
        self.exporter = exporter
        super().__init__((LOOPBACK, 0), _ExporterHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hung up (its timeout, a Prometheus stopped mid-scrape) is not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _ExporterHandler(BaseHTTPRequestHandler):
    server: _ExporterServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, "text/plain; charset=utf-8", b"only /metrics here\n")
            return
        try:
            body = self.server.exporter.render().encode("utf-8")
        except Exception as error:
            self._send(500, "text/plain; charset=utf-8", f"the exporter's body failed: {error!r}\n".encode())
            return
        self.server.exporter._scraped()
        self._send(200, EXPOSITION_CONTENT_TYPE, body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per scrape is noise
        pass


class StaticExporter:
    """`/metrics` on a free 127.0.0.1 port, in the text exposition format, from `body`: a string or a callable
    returning one (called at every scrape), which may be replaced at any time. Serves from a daemon thread from
    construction on; `close()` (or leaving a `with` block) shuts it down and joins the thread.

    `target` is the `127.0.0.1:PORT` a scrape job lists; `scrapes` counts the successful `/metrics` answers.
    """

    def __init__(self, body: str | Callable[[], str] = "") -> None:
        self.body = body
        self.scrapes = 0
        self._lock = threading.Lock()
        self._server = _ExporterServer(self)
        self.port = int(self._server.server_address[1])
        self.target = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.target}/metrics"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_S}, name=f"exporter:{self.port}"
        )
        self._thread.daemon = True
        self._thread.start()
        self._closed = False

    def render(self) -> str:
        """The text a scrape gets now."""
        body = self.body
        text = body() if callable(body) else body
        return text if not text or text.endswith("\n") else text + "\n"

    def _scraped(self) -> None:
        with self._lock:
            self.scrapes += 1

    def close(self) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
