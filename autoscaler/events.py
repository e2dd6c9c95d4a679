"""CloudEvents 1.0 events, the value every audit record is: the event, its JSON form, and one-line (de)serialization.

A pure value module of the core (no I/O): the `AuditSink` port takes these events, and adapters that forward them
(`adapters/cloudevents_http`) import this module, not the file sinks of `autoscaler/audit.py`.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from autoscaler.errors import DataQualityError

__all__ = [
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "TYPE_APPROVAL_PREFIX",
    "TYPE_DECISION_INTENT",
    "TYPE_DECISION_OUTCOME",
    "CloudEvent",
    "parse_event",
    "serialize_event",
    "source_for_scenario",
]

SPECVERSION: Final = "1.0"
TYPE_DECISION_INTENT: Final = "dev.fleetscale.decision.intent"
"""Written before a decision is applied: what the loop is about to do and why (the stage trace)."""
TYPE_DECISION_OUTCOME: Final = "dev.fleetscale.decision.outcome"
"""Written after: what the actuator answered (applied counts, notes, errors)."""
TYPE_APPROVAL_PREFIX: Final = "dev.fleetscale.approval."
"""Prefix of the governance events (`dev.fleetscale.approval.requested`, `...granted`, ...)."""
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=UTF-8"
"""The media type of one event in the JSON format (structured mode of the HTTP binding)."""

# RFC 3339 `date-time`: fromisoformat alone would also take a bare date or ISO 8601's basic format, which the
# CloudEvents Timestamp type does not allow, so the shape is checked first.
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# Whitespace and control characters are never part of a URI-reference (RFC 3986 section 2).
_NOT_IN_URI: Final = re.compile(r"[\x00-\x20\x7f]")


def source_for_scenario(scenario: str) -> str:
    """The `source` of a scenario's events, `/fleetscale/<name>`, with the name percent-encoded so that any
    scenario name makes a valid URI-reference (`"eu west"` -> `/fleetscale/eu%20west`)."""
    return "/fleetscale/" + quote(scenario, safe="")


def _is_json_media_type(value: str) -> bool:
    """True for `*/json` and `*/*+json` (parameters ignored), the types whose `data` is a JSON value."""
    media = value.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


def _plain_json(value: Any, path: str) -> Any:
    """`value` as plain JSON values (dicts, lists, str, int, float, bool, None), or DataQualityError naming the first
    part that JSON cannot hold (a datetime, a set, NaN). NaN and Infinity are refused here, with their path, rather
    than by `json.dumps` (whose "Out of range float values are not JSON compliant" names neither event nor field)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, numbers.Real):
        # Numbers of other kinds (numpy's int64 and float32, which the sizing stages may leave in a trace, a
        # Fraction) are written as the plain int or float they equal.
        if isinstance(value, numbers.Integral):
            return int(value)
        number = float(value)
        if not math.isfinite(number):
            raise DataQualityError(f"{path} is {number!r}, which JSON cannot represent (no NaN or Infinity in JSON)")
        return number
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DataQualityError(f"{path} has the key {key!r}; JSON object keys are strings")
            plain[key] = _plain_json(item, f"{path}.{key}")
        return plain
    if isinstance(value, list | tuple):
        return [_plain_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise DataQualityError(f"{path} is a {type(value).__name__}, not a JSON value")


def _format_time(value: datetime) -> str:
    # Always six fractional digits and a 'Z': fixed-width stamps sort as text, and nothing of the datetime is lost.
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    """One CloudEvents 1.0 event whose `data` is a JSON object.

    `source` is a URI-reference naming the producer (`source_for_scenario(name)`), `type` a reverse-DNS name
    (`TYPE_DECISION_INTENT`, ...), `subject` the service the event is about (None for fleet-wide events), `id`
    unique within `source` (the loop uses the decision id plus a suffix). `time` must be aware; it is kept in UTC.

    The dataclass is frozen but `data` is the caller's mapping: do not change it after building the event.
    Extension attributes are not modelled: `to_json` writes only the spec's attribute names, and `from_json`
    ignores extensions it meets.
    """

    id: str
    source: str
    type: str
    time: datetime
    data: Mapping[str, Any]
    subject: str | None = None
    specversion: str = SPECVERSION
    datacontenttype: str = "application/json"

    def __post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"CloudEvent.{name} ({value!r}) must be a non-empty string")
        if _NOT_IN_URI.search(self.source):
            raise ValueError(
                f"CloudEvent.source ({self.source!r}) must be a URI-reference: no spaces or control characters "
                "(source_for_scenario() encodes a scenario name)"
            )
        if self.subject is not None and (not isinstance(self.subject, str) or not self.subject):
            raise ValueError(f"CloudEvent.subject ({self.subject!r}) must be None or a non-empty string")
        if not isinstance(self.time, datetime):
            raise ValueError(f"CloudEvent.time ({self.time!r}) must be a datetime")
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            # A naive time would be read in whatever zone the reader's machine is in.
            raise ValueError(f"CloudEvent.time ({self.time.isoformat()}) is a naive datetime: pass an aware one (UTC)")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        if self.specversion != SPECVERSION:
            raise ValueError(f"CloudEvent.specversion ({self.specversion!r}) must be {SPECVERSION!r}")
        if not isinstance(self.datacontenttype, str) or not _is_json_media_type(self.datacontenttype):
            raise ValueError(
                f"CloudEvent.datacontenttype ({self.datacontenttype!r}) must be a JSON media type "
                "(application/json or */*+json): data is a JSON object"
            )
        if not isinstance(self.data, Mapping):
            raise ValueError(f"CloudEvent.data must be a mapping (a JSON object), not {type(self.data).__name__}")

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object of the CloudEvents JSON format (only the spec's attribute names; `subject`
        left out when None). Raises DataQualityError when `data` holds something JSON cannot (NaN, a datetime)."""
        obj: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            obj["subject"] = self.subject
        obj["time"] = _format_time(self.time)
        obj["datacontenttype"] = self.datacontenttype
        try:
            obj["data"] = _plain_json(self.data, "data")
        except DataQualityError as exc:
            raise DataQualityError(f"event {self.id} ({self.type}): {exc}") from None
        return obj

    @classmethod
    def from_json(cls, obj: object, where: str = "event") -> CloudEvent:
        """The event in `obj` (a decoded JSON object), validated. Raises DataQualityError naming `where` and every
        attribute that is missing or of the wrong type.

        Per the JSON format, a `null` attribute counts as absent, a missing `datacontenttype` means
        application/json, and a missing `data` is read as an empty object. fleetscale's events always carry `time`,
        so it is required here although the spec makes it optional.
        """
        if not isinstance(obj, Mapping):
            raise DataQualityError(f"{where}: a CloudEvent is a JSON object, not {_json_kind(obj)}")
        problems: list[str] = []

        def text(name: str, *, required: bool) -> str | None:
            value = obj.get(name)
            if value is None:
                if required:
                    problems.append(f"`{name}` is missing")
                return None
            if not isinstance(value, str):
                problems.append(f"`{name}` must be a string, not {_json_kind(value)}")
                return None
            if not value:
                problems.append(f"`{name}` must not be empty")
                return None
            return value

        specversion = text("specversion", required=True)
        if specversion is not None and specversion != SPECVERSION:
            problems.append(f"`specversion` is {specversion!r}; only {SPECVERSION!r} is supported")
        event_id = text("id", required=True)
        source = text("source", required=True)
        event_type = text("type", required=True)
        subject = text("subject", required=False)
        datacontenttype = text("datacontenttype", required=False) or "application/json"
        raw_time = text("time", required=True)
        time: datetime | None = None
        if raw_time is not None:
            time = _parse_time(raw_time, problems)
        if obj.get("data_base64") is not None:
            problems.append("`data_base64` (binary data) is not supported: fleetscale's events carry JSON `data`")
        data = obj.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, Mapping):
            problems.append(f"`data` must be a JSON object, not {_json_kind(data)}")
        if problems or event_id is None or source is None or event_type is None or time is None:
            raise DataQualityError(f"{where}: not a valid CloudEvent: {'; '.join(problems)}")
        try:
            return cls(
                id=event_id,
                source=source,
                type=event_type,
                time=time,
                subject=subject,
                data=data,
                datacontenttype=datacontenttype,
            )
        except ValueError as exc:
            raise DataQualityError(f"{where}: not a valid CloudEvent: {exc}") from None


def _parse_time(raw: str, problems: list[str]) -> datetime | None:
    if _RFC3339.fullmatch(raw) is None:
        problems.append(f"`time` ({raw!r}) is not an RFC 3339 timestamp with an offset (2024-05-01T12:00:00Z)")
        return None
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError as exc:  # the shape is right but a field is out of range (month 13)
        problems.append(f"`time` ({raw!r}) is not a valid timestamp: {exc}")
        return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def serialize_event(event: CloudEvent) -> str:
    """The event as one line of compact JSON (no newline at the end; non-ASCII kept as UTF-8 text, newlines inside
    strings escaped, so the line holds no raw newline). Raises DataQualityError when `data` holds NaN, Infinity or
    anything else JSON cannot represent, naming the event and the field."""
    return json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_event(line: str, where: str = "event") -> CloudEvent:
    """The event in one line of JSON; DataQualityError naming `where` when it is not JSON or not a valid event."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataQualityError(f"{where}: not valid JSON: {exc.msg} at column {exc.colno}") from None
    return CloudEvent.from_json(obj, where)
