"""The audit trail (autoscaler/audit.py): the CloudEvent value and its JSON form, the write-ahead file sink with
rotation and crash repair, the strict reader, and the in-memory fake."""

from __future__ import annotations

import errno
import json
import math
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from autoscaler.audit import (
    TYPE_APPROVAL_PREFIX,
    TYPE_DECISION_INTENT,
    TYPE_DECISION_OUTCOME,
    AuditFile,
    CloudEvent,
    MemoryAuditSink,
    parse_event,
    read_audit,
    rotated_paths,
    serialize_event,
    source_for_scenario,
)
from autoscaler.errors import ConfigError, DataQualityError, NotFound, PermanentError, TransientError
from autoscaler.ports import AuditSink

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "cloudevents" / "cloudevents-1.0.schema.json"
T0 = datetime(2000, 1, 1, tzinfo=UTC)


def event(n: int = 0, **overrides: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "id": f"d-{n:04d}-intent",
        "source": source_for_scenario("unit"),
        "type": TYPE_DECISION_INTENT,
        "time": T0 + timedelta(seconds=15 * n),
        "subject": "chat",
        "data": {"decision_id": f"d-{n:04d}", "target": {"H100-80GB": 3}, "stages": [{"stage": "size", "value": 2.5}]},
    }
    fields.update(overrides)
    return CloudEvent(**fields)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "decisions.jsonl"


@pytest.fixture
def audit_file(log_path: Path) -> Iterator[AuditFile]:
    sink = AuditFile(log_path)
    yield sink
    sink.close()


def lines_of(path: Path) -> list[str]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "every line, the last included, ends with a newline"
    return raw.decode("utf-8").splitlines()


# ── the event and its JSON form ──────────────────────────────────────────────────────────────────────────────────


def test_round_trip_through_json_keeps_every_attribute() -> None:
    original = event(3)
    line = serialize_event(original)
    assert "\n" not in line
    assert parse_event(line) == original
    assert CloudEvent.from_json(json.loads(line)) == original


def test_to_json_uses_only_the_spec_attribute_names_and_utc_z_time() -> None:
    obj = event(1, time=datetime(2000, 1, 1, 2, 0, 15, tzinfo=timezone(timedelta(hours=2)))).to_json()
    assert obj == {
        "specversion": "1.0",
        "id": "d-0001-intent",
        "source": "/fleetscale/unit",
        "type": "dev.fleetscale.decision.intent",
        "subject": "chat",
        "time": "2000-01-01T00:00:15.000000Z",  # 02:00:15+02:00 is 00:00:15 UTC
        "datacontenttype": "application/json",
        "data": {"decision_id": "d-0001", "target": {"H100-80GB": 3}, "stages": [{"stage": "size", "value": 2.5}]},
    }


def test_subject_is_left_out_when_none() -> None:
    obj = event(subject=None).to_json()
    assert "subject" not in obj
    assert CloudEvent.from_json(obj).subject is None


def test_serialized_line_is_compact_and_keeps_non_ascii_as_utf8() -> None:
    line = serialize_event(event(data={"note": "quota allows 4 of 8 — région eu\nsecond line"}))
    assert ", " not in line and '": ' not in line
    assert "région" in line and "\\n" in line  # the newline inside the string is escaped: one event, one line


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        event(time=datetime(2000, 1, 1))  # naive: no tzinfo


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": ""}, r"CloudEvent\.id .* non-empty"),
        ({"source": "/fleetscale/eu west"}, "URI-reference"),
        ({"type": ""}, r"CloudEvent\.type"),
        ({"subject": ""}, r"CloudEvent\.subject"),
        ({"specversion": "0.3"}, "specversion"),
        ({"datacontenttype": ""}, "JSON media type"),
        ({"datacontenttype": "text/xml"}, "JSON media type"),
        ({"data": ["not", "an", "object"]}, "mapping"),
    ],
    ids=["empty-id", "space-in-source", "empty-type", "empty-subject", "old-spec", "empty-content-type", "xml", "list"],
)
def test_invalid_attributes_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event(**overrides)


def test_source_for_scenario_encodes_any_name() -> None:
    assert source_for_scenario("eu west/prod") == "/fleetscale/eu%20west%2Fprod"
    assert event(source=source_for_scenario("eu west/prod")).source == "/fleetscale/eu%20west%2Fprod"


def test_a_json_media_type_with_a_suffix_or_parameters_is_accepted() -> None:
    assert event(datacontenttype="application/vnd.fleetscale+json; charset=utf-8").datacontenttype.endswith("utf-8")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_with_the_field_named(bad: float) -> None:
    with pytest.raises(DataQualityError, match=r"event d-0000-intent .*data\.stages\[0\]\.value .*JSON cannot"):
        serialize_event(event(data={"stages": [{"value": bad}]}))


def test_numbers_of_other_kinds_are_written_as_plain_numbers() -> None:
    data = {"replicas": np.int64(3), "ratio": np.float32(0.5), "share": Fraction(1, 4), "flag": True}
    assert json.loads(serialize_event(event(data=data)))["data"] == {
        "replicas": 3,
        "ratio": 0.5,
        "share": 0.25,
        "flag": True,
    }
    with pytest.raises(DataQualityError, match=r"data\.x is nan"):
        serialize_event(event(data={"x": np.float64("nan")}))


def test_values_json_has_no_form_for_are_refused() -> None:
    with pytest.raises(DataQualityError, match=r"data\.at is a datetime, not a JSON value"):
        serialize_event(event(data={"at": T0}))
    with pytest.raises(DataQualityError, match="key 3"):
        serialize_event(event(data={3: "x"}))


def valid_obj(**changes: Any) -> dict[str, Any]:
    obj = event().to_json()
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (valid_obj(id=...), "`id` is missing"),
        (valid_obj(source=None), "`source` is missing"),  # null counts as absent
        (valid_obj(type=7), "`type` must be a string, not a number"),
        (valid_obj(specversion="0.3"), "only '1.0' is supported"),
        (valid_obj(time=...), "`time` is missing"),
        (valid_obj(time="2000-01-01T00:00:00"), "RFC 3339 timestamp with an offset"),
        (valid_obj(time="2000-01-01"), "RFC 3339"),
        (valid_obj(time="2000-13-01T00:00:00Z"), "not a valid timestamp"),
        (valid_obj(subject=["chat"]), "`subject` must be a string, not an array"),
        (valid_obj(data="text"), "`data` must be a JSON object, not a string"),
        (valid_obj(data_base64="Zm9vYg=="), "data_base64"),
        (valid_obj(source="/a b"), "URI-reference"),
        ([1, 2], "a CloudEvent is a JSON object, not an array"),
    ],
    ids=[
        "no-id",
        "null-source",
        "numeric-type",
        "old-spec",
        "no-time",
        "naive-time",
        "date-only",
        "month-13",
        "list-subject",
        "string-data",
        "binary-data",
        "space-in-source",
        "array",
    ],
)
def test_from_json_names_what_is_wrong(obj: object, message: str) -> None:
    with pytest.raises(DataQualityError, match=message):
        CloudEvent.from_json(obj, where="fixture")


def test_from_json_reports_every_problem_at_once() -> None:
    with pytest.raises(DataQualityError) as info:
        CloudEvent.from_json(valid_obj(id=..., type=..., time="soon"), where="x.jsonl:4")
    text = str(info.value)
    assert text.startswith("x.jsonl:4: ")
    assert "`id` is missing" in text and "`type` is missing" in text and "`time` ('soon')" in text


def test_from_json_reads_the_spec_defaults_and_ignores_extensions() -> None:
    obj = valid_obj(datacontenttype=..., data=..., subject=None)
    obj["comexampleextension"] = "value"
    parsed = CloudEvent.from_json(obj)
    assert parsed.datacontenttype == "application/json"
    assert parsed.data == {} and parsed.subject is None


def test_lowercase_t_and_z_and_offsets_are_read_as_utc() -> None:
    parsed = CloudEvent.from_json(valid_obj(time="2000-01-01t01:00:00.5+01:00"))
    assert parsed.time == datetime(2000, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert parsed.time.tzinfo is UTC


# ── the official schema ──────────────────────────────────────────────────────────────────────────────────────────


def test_the_schema_format_checks_are_live(validator: jsonschema.Draft7Validator) -> None:
    """Without rfc3339-validator / rfc3986-validator, jsonschema skips `format` silently; make that a failure."""
    assert not validator.is_valid(valid_obj(time="not a time"))
    assert not validator.is_valid(valid_obj(source="a b"))
    assert not validator.is_valid(valid_obj(id=""))


def test_every_line_written_is_a_valid_cloudevent(audit_file: AuditFile, validator: jsonschema.Draft7Validator) -> None:
    audit_file.emit(
        [
            event(0),
            event(1, type=TYPE_DECISION_OUTCOME, id="d-0001-outcome", data={"applied": {"H100-80GB": 3}}),
            event(2, type=TYPE_APPROVAL_PREFIX + "requested", subject=None, data={}),
            event(3, data={"note": "ünïcode", "nested": {"list": [1, 2.5, None, True]}}),
        ]
    )
    lines = lines_of(audit_file.path)
    assert len(lines) == 4
    for number, line in enumerate(lines, start=1):
        errors = [e.message for e in validator.iter_errors(json.loads(line))]
        assert not errors, f"line {number}: {errors}"


# ── the file sink ────────────────────────────────────────────────────────────────────────────────────────────────


def test_audit_file_and_fake_implement_the_port(audit_file: AuditFile) -> None:
    assert isinstance(audit_file, AuditSink)
    assert isinstance(MemoryAuditSink(), AuditSink)


def test_write_ahead_a_second_reader_sees_the_lines_once_emit_returns(
    audit_file: AuditFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    audit_file.emit([event(0), event(1)])
    assert synced, "emit fsyncs before it returns"
    # A separate reader, while the writer is still open: the events are there.
    assert [e.id for e in read_audit(audit_file.path)] == ["d-0000-intent", "d-0001-intent"]
    audit_file.emit([event(2)])
    assert [e.id for e in read_audit(audit_file.path)][-1] == "d-0002-intent"


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "audit.jsonl"
    with AuditFile(path, fsync=False) as sink:
        sink.emit([event()])
    assert path.exists()


def test_one_batch_is_one_write(audit_file: AuditFile, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    audit_file.emit([event(n) for n in range(5)])
    assert len(writes) == 1
    assert writes[0] == audit_file.path.stat().st_size


def test_empty_batch_writes_nothing(audit_file: AuditFile) -> None:
    audit_file.emit([])
    assert audit_file.path.stat().st_size == 0


def test_rotation_keeps_backups_drops_the_oldest_and_never_splits_a_batch(log_path: Path) -> None:
    batch_bytes = len("".join(serialize_event(e) + "\n" for e in (event(0), event(1))).encode())
    # Room for two batches per file: the third batch rotates.
    sink = AuditFile(log_path, max_bytes=2 * batch_bytes + 10, backups=2, fsync=False)
    batches = [[event(2 * b), event(2 * b + 1)] for b in range(7)]
    try:
        for batch in batches:
            sink.emit(batch)
    finally:
        sink.close()
    # 7 batches, 2 per file: files hold batches 0-1 (dropped), 2-3 (.2), 4-5 (.1), 6 (current).
    assert rotated_paths(log_path) == [log_path.with_name("decisions.jsonl.2"), log_path.with_name("decisions.jsonl.1")]
    assert not log_path.with_name("decisions.jsonl.3").exists()
    per_file = [[json.loads(line)["id"] for line in lines_of(p)] for p in [*rotated_paths(log_path), log_path]]
    assert per_file == [
        [e.id for b in batches[2:4] for e in b],
        [e.id for b in batches[4:6] for e in b],
        [e.id for e in batches[6]],
    ]
    assert [e.id for e in read_audit(log_path)] == [e.id for b in batches[2:] for e in b]
    assert [e.id for e in read_audit(log_path, include_rotated=False)] == [e.id for e in batches[6]]


def test_a_batch_larger_than_max_bytes_goes_whole_into_its_own_file(log_path: Path) -> None:
    with AuditFile(log_path, max_bytes=50, backups=3, fsync=False) as sink:
        sink.emit([event(0)])  # already past 50 bytes: written anyway, into the empty file
        sink.emit([event(1), event(2)])
    assert [json.loads(line)["id"] for line in lines_of(log_path)] == ["d-0001-intent", "d-0002-intent"]
    assert [e.id for e in read_audit(log_path)] == ["d-0000-intent", "d-0001-intent", "d-0002-intent"]


def test_rotation_with_no_backups_starts_over(log_path: Path) -> None:
    with AuditFile(log_path, max_bytes=50, backups=0, fsync=False) as sink:
        sink.emit([event(0)])
        sink.emit([event(1)])
    assert rotated_paths(log_path) == []
    assert [e.id for e in read_audit(log_path)] == ["d-0001-intent"]


def test_torn_tail_is_cut_off_on_open_and_reported(log_path: Path) -> None:
    whole = serialize_event(event(0)) + "\n" + serialize_event(event(1)) + "\n"
    torn = serialize_event(event(2))[:37]  # a crash mid-write
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes((whole + torn).encode())
    with AuditFile(log_path) as sink:
        assert sink.repaired_bytes == len(torn.encode())
        assert sink.repair_note is not None
        assert f"torn last line of {len(torn)} bytes" in sink.repair_note and str(log_path) in sink.repair_note
        sink.emit([event(3)])
    assert [e.id for e in read_audit(log_path)] == ["d-0000-intent", "d-0001-intent", "d-0003-intent"]


def test_a_file_that_is_all_torn_line_is_emptied(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"specversion":"1.0","id":')
    with AuditFile(log_path) as sink:
        assert sink.repaired_bytes == 26
        assert sink.size_bytes == 0
        sink.emit([event(0)])
    assert [e.id for e in read_audit(log_path)] == ["d-0000-intent"]


def test_a_whole_file_is_left_alone(log_path: Path) -> None:
    with AuditFile(log_path) as sink:
        sink.emit([event(0)])
    with AuditFile(log_path) as sink:
        assert sink.repaired_bytes == 0 and sink.repair_note is None
        sink.emit([event(1)])
    assert len(lines_of(log_path)) == 2


def test_a_failed_write_raises_transient_and_leaves_no_partial_line(
    audit_file: AuditFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_file.emit([event(0)])
    size_before = audit_file.path.stat().st_size
    real_write = os.write
    calls = 0

    def disk_fills_up(fd: int, data: Any) -> int:
        # The first call gets half the batch on disk, then the disk is full: a short write, then ENOSPC.
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(TransientError, match=r"decisions\.jsonl: could not record 2 event\(s\).*ENOSPC") as info:
        audit_file.emit([event(1), event(2)])
    assert "none of them was kept" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert audit_file.path.stat().st_size == size_before
    monkeypatch.setattr(os, "write", real_write)
    audit_file.emit([event(3)])  # the disk has room again: the sink goes on
    assert [e.id for e in read_audit(audit_file.path)] == ["d-0000-intent", "d-0003-intent"]


def test_a_failed_fsync_raises_transient_and_removes_the_batch(
    audit_file: AuditFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_file.emit([event(0)])
    real_fsync = os.fsync
    failures = iter([OSError(errno.EIO, os.strerror(errno.EIO))])

    def fsync_fails_once(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_once)
    with pytest.raises(TransientError, match="EIO"):
        audit_file.emit([event(1)])
    assert [e.id for e in read_audit(audit_file.path)] == ["d-0000-intent"]


def test_when_even_the_cut_back_fails_the_next_open_repairs(
    audit_file: AuditFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_file.emit([event(0)])
    real_write, real_ftruncate = os.write, os.ftruncate

    def half_then_eio(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", half_then_eio)
    monkeypatch.setattr(os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(TransientError, match="part of it may remain"):
        audit_file.emit([event(1)])
    monkeypatch.setattr(os, "write", real_write)
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    audit_file.emit([event(2)])  # reopens: the 10 torn bytes are cut off first
    assert audit_file.repaired_bytes == 10
    assert [e.id for e in read_audit(audit_file.path)] == ["d-0000-intent", "d-0002-intent"]


def test_a_bad_event_fails_the_batch_before_any_byte_is_written(audit_file: AuditFile) -> None:
    with pytest.raises(DataQualityError, match=r"data\.x is nan"):
        audit_file.emit([event(0), event(1, data={"x": math.nan})])
    assert audit_file.path.stat().st_size == 0


def test_close_is_idempotent_and_emit_after_close_is_refused(log_path: Path) -> None:
    sink = AuditFile(log_path, fsync=False)
    sink.close()
    sink.close()
    with pytest.raises(PermanentError, match="closed"):
        sink.emit([event()])


def test_a_directory_in_the_way_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    with pytest.raises(ConfigError, match="cannot be opened"):
        AuditFile(tmp_path / "audit.jsonl")


@pytest.mark.parametrize(("kwargs", "message"), [({"max_bytes": 0}, "max_bytes"), ({"backups": -1}, "backups")])
def test_bounds_are_checked(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditFile(tmp_path / "a.jsonl", **kwargs)


# ── the reader ───────────────────────────────────────────────────────────────────────────────────────────────────


def test_a_bad_line_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(serialize_event(event(0)) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(DataQualityError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        list(read_audit(path))


def test_a_valid_json_line_that_is_no_event_names_file_line_and_attribute(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(serialize_event(event(0)) + "\n" + json.dumps(valid_obj(id=...)) + "\n", encoding="utf-8")
    events = read_audit(path)
    assert next(events).id == "d-0000-intent"  # lazily: the good line comes before the error
    with pytest.raises(DataQualityError, match=rf"{re.escape(str(path))}:2: not a valid CloudEvent: `id` is missing"):
        next(events)


def test_an_error_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(serialize_event(event(1)) + "\n", encoding="utf-8")
    path.with_name("audit.jsonl.1").write_bytes(b"\xff\xfe\n")
    with pytest.raises(DataQualityError, match=r"audit\.jsonl\.1:1: not UTF-8"):
        list(read_audit(path))


def test_a_torn_last_line_is_reported_by_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text(serialize_event(event(0)) + "\n" + serialize_event(event(1))[:20], encoding="utf-8")
    with pytest.raises(DataQualityError, match=rf"{re.escape(str(path))}:2: torn last line"):
        list(read_audit(path))


def test_a_missing_log_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        list(read_audit(tmp_path / "nothing.jsonl"))


def test_rotated_paths_ignores_names_that_only_look_numbered(tmp_path: Path) -> None:
    base = tmp_path / "audit.jsonl"
    for name in ("audit.jsonl.1", "audit.jsonl.10", "audit.jsonl.01", "audit.jsonl.x", "audit.jsonl.2.tmp"):
        (tmp_path / name).write_text("")
    assert [p.name for p in rotated_paths(base)] == ["audit.jsonl.10", "audit.jsonl.1"]


# ── the fake ─────────────────────────────────────────────────────────────────────────────────────────────────────


def test_memory_sink_records_injects_one_error_and_resets() -> None:
    sink = MemoryAuditSink()
    sink.emit([event(0), event(1, type=TYPE_DECISION_OUTCOME)])
    sink.next_error = TransientError("disk full")
    with pytest.raises(TransientError, match="disk full"):
        sink.emit([event(2)])
    sink.emit([event(3, type=TYPE_APPROVAL_PREFIX + "granted")])  # one-shot: the next call succeeds
    assert [e.id for e in sink.events] == ["d-0000-intent", "d-0001-intent", "d-0003-intent"]
    assert len(sink.emit_calls) == 2
    assert [e.id for e in sink.of_type(TYPE_DECISION_INTENT)] == ["d-0000-intent"]
    assert len(sink.of_type(TYPE_APPROVAL_PREFIX)) == 1
    with pytest.raises(DataQualityError):
        sink.emit([event(4, data={"x": math.inf})])
    sink.close()
    sink.close()
    with pytest.raises(PermanentError, match="closed"):
        sink.emit([event(5)])
    sink.reset()
    assert sink.events == [] and sink.emit_calls == [] and not sink.closed
