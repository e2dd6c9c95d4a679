"""What survives a restart, on disk: the versioned JSON form of `StoredState`, and a file store that replaces it
atomically.

The document (format version 1):

    {"format": "fleetscale.state", "version": 1, "saved_at": "2026-01-05T09:00:15Z", "ticks": 42,
     "policy": {"services": {"chat": {"first_seen_s": ..., "recommendations": [[t, n], ...],
                "last_scale_down_s": null, "applied": {"H100-80GB": 4}, "requested": {"H100-80GB": 4},
                "mix": {"mean_input_tokens": ..., "mean_output_tokens": ..., "requests": ..., "at_s": ...},
                "corrections": {"H100-80GB": {"factor": 0.82, "log_ttft_ratio": ..., "log_tpot_ratio": ...,
                                "updated_s": ...}}}}},
     "forecasters": {"chat": {...}}}

Keys added since version 1 (`corrections`, `policy.efficiency`) are optional: a document without them reads as before.
A document of another version is refused (`DataQualityError` naming the file and the version), never read as an
empty state: a silent reset would restart every scale-down window and forget what fleetscale applied, which the
next tick would then take for another writer. `FileStateStore.save` writes a temporary file beside the target,
fsyncs it, renames it over the target and fsyncs the directory, so a crash at any point leaves the old document or
the new one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from autoscaler.capacity import TokenMix
from autoscaler.efficiency import Ledger
from autoscaler.errors import DataQualityError, TransientError
from autoscaler.model import CapacityCorrection, PolicyState, ServiceState, require_aware
from autoscaler.ports import StoredState
from autoscaler.shapes import Shape, parse_shape
from autoscaler.token_mix import MixEstimate

FORMAT = "fleetscale.state"
VERSION = 1


def encode_state(state: StoredState) -> dict[str, Any]:
    """The JSON document of `state` (see the module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": state.saved_at.isoformat().replace("+00:00", "Z"),
        "ticks": state.ticks,
        "policy": {
            "services": {name: _encode_service(s) for name, s in state.policy.services.items()},
            "efficiency": {
                name: {"fine": [list(b) for b in ledger.fine], "coarse": [list(b) for b in ledger.coarse]}
                for name, ledger in state.policy.efficiency.items()
            },
        },
        "forecasters": {name: dict(doc) for name, doc in state.forecasters.items()},
    }


def decode_state(document: Any, where: str) -> StoredState:
    """`StoredState` from a document; `DataQualityError` naming `where` when it is not one of this version."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DataQualityError(f'{where}: not a fleetscale state document (no "format": "{FORMAT}")')
    version = document.get("version")
    if version != VERSION:
        raise DataQualityError(
            f"{where}: state format version {version!r} is not one this fleetscale reads (it reads {VERSION}); "
            "refusing to start from an empty state, which would reset every scale-down window. Use the fleetscale "
            "that wrote it, or move the file aside to start afresh on purpose."
        )
    try:
        saved_at = require_aware(datetime.fromisoformat(document["saved_at"]), "saved_at")
        services = {str(name): _decode_service(value) for name, value in document["policy"]["services"].items()}
        efficiency = {
            str(name): Ledger(
                tuple((float(t), int(g), int(b)) for t, g, b in value.get("fine", [])),
                tuple((float(t), int(g), int(b)) for t, g, b in value.get("coarse", [])),
            )
            for name, value in document["policy"].get("efficiency", {}).items()
        }
        forecasters = {str(name): dict(value) for name, value in document["forecasters"].items()}
        ticks = int(document.get("ticks", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataQualityError(f"{where}: malformed state document ({type(exc).__name__}: {exc})") from None
    return StoredState(PolicyState(services, efficiency), forecasters, saved_at, ticks)


def _encode_counts(counts: Mapping[Shape, int]) -> dict[str, int]:
    return {str(shape): n for shape, n in counts.items()}


def _decode_counts(counts: Mapping[str, Any]) -> dict[Shape, int]:
    return {parse_shape(text): int(n) for text, n in counts.items()}


def _encode_service(state: ServiceState) -> dict[str, Any]:
    mix = state.mix
    return {
        "first_seen_s": state.first_seen_s,
        "recommendations": [[t, n] for t, n in state.recommendations],
        "last_scale_down_s": state.last_scale_down_s,
        "applied": _encode_counts(state.applied),
        "requested": _encode_counts(state.requested),
        "mix": None
        if mix is None
        else {
            "mean_input_tokens": mix.mix.mean_input_tokens,
            "mean_output_tokens": mix.mix.mean_output_tokens,
            "requests": mix.requests,
            "at_s": mix.at_s,
        },
        "corrections": {
            str(shape): {
                "factor": c.factor,
                "log_ttft_ratio": c.log_ttft_ratio,
                "log_tpot_ratio": c.log_tpot_ratio,
                "updated_s": c.updated_s,
                "replicas": c.replicas,
                "replicas_since_s": c.replicas_since_s,
            }
            for shape, c in state.corrections.items()
        },
    }


def _decode_service(value: Mapping[str, Any]) -> ServiceState:
    mix = value.get("mix")
    last = value.get("last_scale_down_s")
    return ServiceState(
        first_seen_s=float(value["first_seen_s"]),
        recommendations=tuple((float(t), int(n)) for t, n in value.get("recommendations", [])),
        last_scale_down_s=None if last is None else float(last),
        applied=_decode_counts(value.get("applied", {})),
        requested=_decode_counts(value.get("requested", {})),
        mix=None
        if mix is None
        else MixEstimate(
            TokenMix(float(mix["mean_input_tokens"]), float(mix["mean_output_tokens"])),
            float(mix["requests"]),
            float(mix["at_s"]),
        ),
        corrections={
            parse_shape(text): CapacityCorrection(
                factor=float(c["factor"]),
                log_ttft_ratio=float(c["log_ttft_ratio"]),
                log_tpot_ratio=float(c["log_tpot_ratio"]),
                updated_s=None if c.get("updated_s") is None else float(c["updated_s"]),
                replicas=int(c.get("replicas", 0)),
                replicas_since_s=None if c.get("replicas_since_s") is None else float(c["replicas_since_s"]),
            )
            for text, c in value.get("corrections", {}).items()
        },
    )


class FileStateStore:
    """The state in one JSON file, replaced atomically (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> StoredState | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientError(f"state file {self.path}: cannot read it ({exc.strerror or exc})") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataQualityError(
                f"state file {self.path}: line {exc.lineno}: not valid JSON ({exc.msg}); move it aside to start afresh"
            ) from None
        return decode_state(document, f"state file {self.path}")

    def save(self, state: StoredState) -> None:
        document = encode_state(state)
        try:
            # allow_nan=False: JSON has no NaN; a non-finite number in the state is a bug to see, not to write.
            text = json.dumps(document, allow_nan=False, separators=(",", ":"))
        except ValueError as exc:
            raise DataQualityError(f"state file {self.path}: the state is not JSON ({exc})") from None
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                data = memoryview(text.encode("utf-8"))
                while data:  # os.write may write less than it is given
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            # The rename is durable only once the directory entry is: fsync the directory too.
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransientError(f"state file {self.path}: cannot write it ({exc.strerror or exc})") from exc


def json_number(value: float) -> float | None:
    """A float as JSON can hold it: NaN and infinities (missing data, in a forecaster's history) become null."""
    return value if math.isfinite(value) else None
