"""The audit trail: every decision as CloudEvents 1.0 records, written ahead of what it changes.

DESIGN.md safety rule 7: a decision's *intent* is recorded before it is applied and its *outcome* after. The loop
hands the events of a tick to an `AuditSink` (autoscaler/ports.py); this module holds the sinks that need no
third-party package (the event value, `CloudEvent`, is the core's `autoscaler/events.py`, re-exported here):

- `AuditFile`: the durable sink, a JSON Lines file (one event a line, UTF-8). Invariants it keeps:
    * write-ahead: `emit` returns only once the batch's bytes are written and fsynced;
    * a batch is one `os.write` on a file opened `O_APPEND`, so lines never interleave and a batch is never split
      across a rotation (it goes whole into the old file or whole into the new one);
    * every line ends with a newline: a write that fails is cut back to the size before it, and a torn last line
      left by a crash is cut off (and reported) when the file is next opened;
    * size-based rotation to `<path>.1` ... `<path>.<backups>`, the oldest dropped.
  One process writes a given file (the leader); readers may run at any time.
- `read_audit`: the events of a log, oldest rotated file first, strict: a bad line is an error naming file and line.
- `MemoryAuditSink`: the in-memory fake of `AuditSink` for tests and the simulator.
- `AuditTee`: a durable sink first, then forwarders (the HTTP sink) that only queue.

The HTTP forwarder lives in `adapters/cloudevents_http` (it needs httpx, which the core never imports).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from autoscaler.errors import (
    AutoscalerError,
    ConfigError,
    DataQualityError,
    NotFound,
    PermanentError,
    TransientError,
)
from autoscaler.events import (
    SPECVERSION,
    STRUCTURED_CONTENT_TYPE,
    TYPE_APPROVAL_PREFIX,
    TYPE_DECISION_INTENT,
    TYPE_DECISION_OUTCOME,
    CloudEvent,
    parse_event,
    serialize_event,
    source_for_scenario,
)
from autoscaler.ports import AuditSink

__all__ = [
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "TYPE_APPROVAL_PREFIX",
    "TYPE_DECISION_INTENT",
    "TYPE_DECISION_OUTCOME",
    "AuditFile",
    "AuditTee",
    "CloudEvent",
    "MemoryAuditSink",
    "parse_event",
    "read_audit",
    "rotated_paths",
    "serialize_event",
    "source_for_scenario",
]

_DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
_TAIL_CHUNK_BYTES: Final = 64 * 1024
_NOTE_HEAD_BYTES: Final = 80


# ── the file sink ────────────────────────────────────────────────────────────────────────────────────────────────


def rotated_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The rotated files of the log at `path` that exist (`<path>.1`, `<path>.2`, ...), oldest first."""
    base = Path(path)
    numbered: list[tuple[int, Path]] = []
    try:
        entries = list(base.parent.iterdir())
    except FileNotFoundError:
        return []
    prefix = base.name + "."
    for entry in entries:
        suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
        if suffix.isdigit() and suffix == str(int(suffix)):
            numbered.append((int(suffix), entry))
    return [p for _, p in sorted(numbered, reverse=True)]


def _os_reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{name}: {text}" if name else text


class AuditFile:
    """The durable `AuditSink`: a JSON Lines file, one CloudEvent a line, fsynced before `emit` returns.

    `max_bytes` (64 MiB) is the size at which the file rotates: when a batch would take it past that, the file
    becomes `<path>.1` (older ones shift up to `<path>.<backups>`, the oldest is dropped) and the batch starts a
    new file. A batch larger than `max_bytes` still goes whole into a file of its own: a batch is never split.
    `fsync=False` skips the fsyncs (tests and the simulator, where durability does not matter).

    Opening an existing file whose last line is torn (a crash mid-write) cuts that line off before anything is
    appended; `repaired_bytes` counts what was cut and `repair_note` says so in words, for the loop to log.
    Opening raises ConfigError when the path cannot be used (a directory, no permission) and TransientError for
    other OS errors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = _DEFAULT_MAX_BYTES,
        backups: int = 5,
        fsync: bool = True,
    ) -> None:
        if max_bytes < 1:
            raise ConfigError(f"`max_bytes` ({max_bytes}) must be at least 1")
        if backups < 0:
            raise ConfigError(f"`backups` ({backups}) must be 0 or more")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self.repaired_bytes = 0
        """Bytes of torn last lines cut off when the file was opened (0: the file was whole)."""
        self.repair_note: str | None = None
        """What was cut off, in words, for the loop to log; None when nothing was."""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._ensure_open()
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise ConfigError(f"audit file {self.path} cannot be opened for appending: {_os_reason(exc)}") from exc
        except OSError as exc:
            raise TransientError(f"audit file {self.path} cannot be opened: {_os_reason(exc)}") from exc

    @property
    def size_bytes(self) -> int:
        """The size of the current file as this writer knows it."""
        return self._size

    def emit(self, events: Sequence[CloudEvent]) -> None:
        """Append `events` in order, with one write, and fsync; when this returns they are on disk.

        Raises TransientError naming the file and the OS error (ENOSPC, EIO, EACCES) when they could not be
        recorded; then none of them is in the file (the write is cut back) unless even that failed, which the
        message says. Raises DataQualityError, before writing anything, when an event cannot be serialized, and
        PermanentError after `close()`.
        """
        if not events:
            return
        # Serialize first: a bad event must fail the batch before any byte of it reaches the file.
        payload = "".join(serialize_event(event) + "\n" for event in events).encode("utf-8")
        with self._lock:
            if self._closed:
                raise PermanentError(f"audit file {self.path} is closed")
            try:
                fd = self._ensure_open()
                if self._size > 0 and self._size + len(payload) > self.max_bytes:
                    fd = self._rotate()
            except OSError as exc:
                raise TransientError(
                    f"audit file {self.path}: could not open or rotate it to record {len(events)} event(s): "
                    f"{_os_reason(exc)}"
                ) from exc
            self._append(fd, payload, len(events))

    def close(self) -> None:
        """Release the file; idempotent. Everything emitted is already durable, so there is nothing to flush."""
        with self._lock:
            self._closed = True
            self._close_fd()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditFile({str(self.path)!r}, max_bytes={self.max_bytes}, backups={self.backups})"

    # ── internals (called with the lock held) ──

    def _ensure_open(self) -> int:
        if self._fd is not None:
            return self._fd
        created = not self.path.exists()
        # O_RDWR, not O_WRONLY: the torn-tail check reads the end of the file. O_APPEND makes every write land at
        # the end whatever the offset, so a batch is one contiguous run of bytes.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._repair_torn_tail(fd)
            self._size = os.fstat(fd).st_size
            if created:
                self._sync_dir()  # the new name must survive a crash too, not only the bytes
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _repair_torn_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep = 0  # no newline anywhere: the whole file is one torn line
        end = size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK_BYTES)
            at = os.pread(fd, end - start, start).rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        head = os.pread(fd, min(size - keep, _NOTE_HEAD_BYTES), keep)
        os.ftruncate(fd, keep)
        if self.fsync:
            os.fsync(fd)
        dropped = size - keep
        self.repaired_bytes += dropped
        note = (
            f"audit file {self.path}: cut off a torn last line of {dropped} bytes at offset {keep} "
            f"(a write interrupted by a crash); it began {head.decode('utf-8', 'replace')!r}"
        )
        self.repair_note = note if self.repair_note is None else f"{self.repair_note}; {note}"

    def _append(self, fd: int, payload: bytes, count: int) -> None:
        before = self._size
        try:
            view = memoryview(payload)
            while view:
                # A regular file takes the whole buffer in one write unless it runs out of room; the loop only
                # finishes a short write, and a second failure then lands in the except below.
                written = os.write(fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "write returned no progress")
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            undo = self._cut_back(fd, before)
            raise TransientError(
                f"audit file {self.path}: could not record {count} event(s) ({len(payload)} bytes): "
                f"{_os_reason(exc)}; {undo}"
            ) from exc
        self._size = before + len(payload)

    def _cut_back(self, fd: int, size: int) -> str:
        """Remove what a failed write left after `size`. After a failed fsync the bytes may or may not be on disk,
        so they are removed too: the loop will not act on events it was told were not recorded."""
        try:
            os.ftruncate(fd, size)
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            # Reopen on the next emit: that checks the tail again and cuts a torn line off.
            self._close_fd()
            return f"and cutting the file back to {size} bytes failed too ({_os_reason(exc)}): part of it may remain"
        return "none of them was kept"

    def _rotate(self) -> int:
        self._close_fd()
        if self.backups == 0:
            os.unlink(self.path)
        else:
            for index in range(self.backups - 1, 0, -1):
                older = self._rotated(index)
                if older.exists():
                    os.replace(older, self._rotated(index + 1))  # the last one overwrites (drops) the oldest
            os.replace(self.path, self._rotated(1))
        self._sync_dir()
        return self._ensure_open()

    def _rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _sync_dir(self) -> None:
        if not self.fsync:
            return
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def read_audit(path: str | os.PathLike[str], *, include_rotated: bool = True) -> Iterator[CloudEvent]:
    """The events of the audit log at `path`, in the order they were written: the rotated files oldest first
    (`<path>.5` ... `<path>.1`), then `path`.

    Strict: a line that is not UTF-8, not JSON or not a valid event raises DataQualityError naming the file and the
    1-based line; so does a torn last line (a writer that crashed, or one writing that very line now). Raises
    NotFound when there is no file to read. Reading while the writer rotates may miss or repeat a file's events.
    """
    base = Path(path)
    files = rotated_paths(base) if include_rotated else []
    if base.exists() or not files:
        files.append(base)
    for file in files:
        try:
            handle = file.open("rb")
        except FileNotFoundError:
            raise NotFound(f"audit file {file} does not exist") from None
        except OSError as exc:
            raise DataQualityError(f"audit file {file} cannot be read: {_os_reason(exc)}") from exc
        with handle:
            for number, raw in enumerate(handle, start=1):
                where = f"{file}:{number}"
                if not raw.endswith(b"\n"):
                    try:
                        yield parse_event(raw.decode("utf-8"), where)
                    except (UnicodeDecodeError, DataQualityError):
                        raise DataQualityError(
                            f"{where}: torn last line ({len(raw)} bytes, no newline): a writer crashed or is "
                            "writing it now; opening the file with AuditFile cuts it off"
                        ) from None
                    continue
                try:
                    text = raw[:-1].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataQualityError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
                yield parse_event(text, where)


# ── the fake ─────────────────────────────────────────────────────────────────────────────────────────────────────


class MemoryAuditSink:
    """The in-memory fake of `AuditSink` (convention 13): `events` in order, `emit_calls` one tuple per call,
    `next_error` raised once by the next `emit` (which then records nothing), `reset()`.

    It serializes every event as the file sink would, so a test sees the same DataQualityError for NaN data.
    """

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.emit_calls: list[tuple[CloudEvent, ...]] = []
        self.next_error: Exception | None = None
        self.closed = False

    def emit(self, events: Sequence[CloudEvent]) -> None:
        if self.closed:
            raise PermanentError("MemoryAuditSink is closed")
        if self.next_error is not None:
            error, self.next_error = self.next_error, None
            raise error
        for event in events:
            serialize_event(event)
        self.emit_calls.append(tuple(events))
        self.events.extend(events)

    def close(self) -> None:
        self.closed = True

    def of_type(self, event_type: str) -> list[CloudEvent]:
        """The recorded events of one type (or, given a prefix ending in '.', of every type under it)."""
        if event_type.endswith("."):
            return [e for e in self.events if e.type.startswith(event_type)]
        return [e for e in self.events if e.type == event_type]

    def reset(self) -> None:
        self.events.clear()
        self.emit_calls.clear()
        self.next_error = None
        self.closed = False


class AuditTee:
    """The events to a durable sink first, then to forwarders.

    The durable sink (an `AuditFile`) decides whether the events are recorded: its errors are the tee's, so the
    loop applies nothing it could not record (safety rule 7). Forwarders (`adapters.cloudevents_http`) queue and
    count their own losses; an error from one is counted here (`forward_errors`) and never stops the tick. Without
    a durable sink the trail is only as good as the forwarders: best effort.
    """

    def __init__(self, durable: AuditSink | None, forwarders: Sequence[AuditSink]) -> None:
        self.durable = durable
        self.forwarders = tuple(forwarders)
        self.forward_errors = 0

    def emit(self, events: Sequence[CloudEvent]) -> None:
        if self.durable is not None:
            self.durable.emit(events)
        for forwarder in self.forwarders:
            try:
                forwarder.emit(events)
            except AutoscalerError:
                self.forward_errors += 1

    def close(self) -> None:
        for sink in (*self.forwarders, *((self.durable,) if self.durable is not None else ())):
            sink.close()
