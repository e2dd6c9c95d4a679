"""The state's file format and the file store: round trips, refusals, atomic replacement."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoscaler.capacity import TokenMix
from autoscaler.errors import DataQualityError, TransientError
from autoscaler.model import PolicyState, ServiceState
from autoscaler.ports import StoredState
from autoscaler.shapes import parse_shape
from autoscaler.state_store import VERSION, FileStateStore, decode_state, encode_state
from autoscaler.token_mix import MixEstimate

SAVED = datetime(2026, 1, 5, 9, 0, 15, tzinfo=UTC)
SHAPES = ["H100-80GB", "4xH100-80GB", "H100-80GB/3g.40gb", "0.25xL4", "2x8xH100-80GB"]


def _state() -> StoredState:
    counts = {parse_shape(s): i + 1 for i, s in enumerate(SHAPES)}
    chat = ServiceState(
        first_seen_s=1.7e9,
        recommendations=((1.7e9 + 15, 4), (1.7e9 + 30, 6)),
        last_scale_down_s=1.7e9 + 45,
        applied=counts,
        requested={**counts, parse_shape("H100-80GB"): 9},
        mix=MixEstimate(TokenMix(2048.0, 28.0), 1234.5, 1.7e9 + 30),
    )
    idle = ServiceState(first_seen_s=1.7e9)
    forecasters = {"chat": {"step_s": 15.0, "end_s": 1.7e9 + 30, "values": [1.0, None, 3.0], "model": "x"}}
    return StoredState(PolicyState({"chat": chat, "idle": idle}), forecasters, SAVED, ticks=42)


def test_the_state_round_trips_through_its_document() -> None:
    state = _state()
    document = json.loads(json.dumps(encode_state(state)))
    assert document["version"] == VERSION and document["saved_at"] == "2026-01-05T09:00:15Z"
    back = decode_state(document, "test")
    assert back == state


def test_a_state_of_another_version_is_refused_not_reset(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    document = encode_state(_state())
    document["version"] = 99
    path.write_text(json.dumps(document))
    with pytest.raises(
        DataQualityError, match=r"state format version 99 is not one this fleetscale reads \(it reads 1\)"
    ):
        FileStateStore(path).load()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"format": "fleetscale.state", "version": 1', "line 1: not valid JSON"),
        ('{"hello": 1}', "not a fleetscale state document"),
        ('{"format": "fleetscale.state", "version": 1, "saved_at": "2026-01-05T09:00:15Z"}', "malformed state"),
        (
            '{"format": "fleetscale.state", "version": 1, "saved_at": "2026-01-05T09:00:15",'
            ' "policy": {"services": {}}, "forecasters": {}}',
            "naive datetime",
        ),
    ],
    ids=["truncated", "foreign", "incomplete", "naive time"],
)
def test_a_corrupt_state_file_is_an_error_naming_it(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(DataQualityError, match=why) as caught:
        FileStateStore(path).load()
    assert str(path) in str(caught.value)


def test_no_file_is_no_state(tmp_path: Path) -> None:
    assert FileStateStore(tmp_path / "absent.json").load() is None


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    store = FileStateStore(path)
    store.save(_state())
    assert store.load() == _state()
    assert os.listdir(path.parent) == ["state.json"]


def test_a_failed_save_keeps_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    store = FileStateStore(path)
    store.save(_state())
    before = path.read_bytes()

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(TransientError, match="No space left on device"):
        store.save(StoredState(PolicyState(), {}, SAVED, ticks=43))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]
