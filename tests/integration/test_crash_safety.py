"""Crash safety of the control loop, process by process: what a SIGTERM and a SIGKILL leave on disk.

DESIGN.md safety rule 7 and the loop's module docstring promise that:

- SIGTERM ends `fleetscale run` after the tick in progress, whose intents all have their outcomes and whose state
  is saved (exit 0);
- an intent is durable before anything is applied, and in apply mode so is the count about to be asked for, so
  that a process killed (SIGKILL) in the middle of actuation leaves an audit trail that parses, an intent without
  its outcome, and a state file that loads; and a restart on those files continues the story (tick numbers, first
  seen), never takes its own interrupted request for another writer (`hold_conflict`), and reaches its target.

Each test starts real processes: `python -m autoscaler run` on a trace replay, or `loop_child.py` (a
`ControlLoop` over real files whose actuator blocks on a chosen tick). Every process is stopped by PID when the
test ends, pass or fail (the `processes` fixture), and every file lives under `tmp_path`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# No stubs for jsonschema in the dev extras (mypy's config covers the packages, not tests); should
# types-jsonschema arrive, the ignore is simply unused.
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest

from autoscaler.audit import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, CloudEvent, read_audit
from autoscaler.shapes import parse_shape
from autoscaler.state_store import FileStateStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("loop_child.py")
SCENARIO = ROOT / "configs" / "examples" / "code-assistant.yaml"
TRACE = ROOT / "configs" / "traces" / "AzureLLMInferenceTrace_code.csv"
SCHEMA = ROOT / "tests" / "fixtures" / "cloudevents" / "cloudevents-1.0.schema.json"
H100 = parse_shape("H100-80GB")

# Deadlines, generous on purpose: they bound a failure, not a pass (a pass takes a few seconds; importing
# fleetscale alone takes 2-4 s of that).
START_TIMEOUT_S = 60.0  # until a child has done its first work (the intents, the marker)
EXIT_TIMEOUT_S = 30.0  # from a signal, or from a finite run's start, to its exit
POLL_S = 0.02

# The child's demand: at 200 req/s the code service wants 14 H100s, which the scale-up rate limit (x2 or +4 a tick)
# reaches in three ticks, 0 -> 4 -> 8 -> 14; tick 2 is thus a scale-up from a count fleetscale already applied.
CHILD_RATE_RPS = 200.0
BLOCK_TICK = 2
CONTINUE_TICKS = 5

T = TypeVar("T")


# ── processes ────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Child:
    """One started process, its stdout and stderr in files (a pipe nobody reads could block it)."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """What to show when a test fails because of this child."""
        rc = self.popen.poll()
        err = self.stderr.read_text(encoding="utf-8", errors="replace")
        return (
            f"{self.name} (pid {self.pid}, {'running' if rc is None else f'exit {rc}'})\n"
            f"--- stdout (last 3000 chars) ---\n{self.output()[-3000:]}\n"
            f"--- stderr (last 3000 chars) ---\n{err[-3000:]}"
        )

    def wait(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """The exit status; a child still running after `timeout_s` is killed and the test fails."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=EXIT_TIMEOUT_S)
            pytest.fail(f"{self.name} did not exit within {timeout_s:g} s (killed):\n{self.describe()}")

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.pid, signum)


@dataclass
class Processes:
    """Starts children; `stop_all` (the fixture's teardown) kills by PID and reaps every one still running."""

    where: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Child:
        env = dict(os.environ)
        # The child imports the same fleetscale as this test (the checkout), and writes no bytecode anywhere.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["COLUMNS"] = "500"
        stdout, stderr = self.where / f"{name}.stdout", self.where / f"{name}.stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        child = Child(name, popen, stdout, stderr)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            if child.popen.poll() is None:
                child.popen.kill()  # SIGKILL to child.pid
            child.popen.wait(timeout=EXIT_TIMEOUT_S)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Processes(logs)
    try:
        yield started
    finally:
        started.stop_all()


def wait_for(condition: Callable[[], T | None], what: str, child: Child, timeout_s: float = START_TIMEOUT_S) -> T:
    """Poll `condition` until it returns something truthy; fail when `child` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if child.popen.poll() is not None:
            value = condition()  # it may have done it just before exiting
            if value:
                return value
            pytest.fail(f"{child.name} exited before {what}:\n{child.describe()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:g} s:\n{child.describe()}")
        time.sleep(POLL_S)


# ── the audit trail ──────────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def intents_written(audit: Path) -> int:
    """How many intents the log holds now, counting whole lines only (the writer may be appending one)."""
    if not audit.exists():
        return 0
    lines = audit.read_bytes().split(b"\n")[:-1]  # what follows the last newline is not a line yet
    return sum(json.loads(line)["type"] == TYPE_DECISION_INTENT for line in lines)


def key(event: CloudEvent) -> tuple[str, str | None]:
    return str(event.data["decision_id"]), event.subject


def assert_valid_cloudevents(audit: Path, validator: jsonschema.Draft7Validator) -> None:
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert lines
    for number, line in enumerate(lines, start=1):
        errors = [e.message for e in validator.iter_errors(json.loads(line))]
        assert not errors, f"{audit}:{number}: {errors}"


def assert_each_intent_has_its_outcome(events: list[CloudEvent]) -> None:
    """Every intent is followed, later in the log, by the outcome of the same decision and service, and every
    outcome has its intent before it."""
    pending: set[tuple[str, str | None]] = set()
    for event in events:
        if event.type == TYPE_DECISION_INTENT:
            assert key(event) not in pending, f"intent {event.id} recorded twice"
            pending.add(key(event))
        elif event.type == TYPE_DECISION_OUTCOME:
            assert key(event) in pending, f"outcome {event.id} without an intent before it"
            pending.remove(key(event))
    assert not pending, f"intents without an outcome: {sorted(pending, key=str)}"


# ── 1. SIGTERM ───────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def code_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1,200 requests (about 8 minutes) of the bundled Azure code trace: some 35 ticks, 2-3 s at x200. A
    whole run records about 10 intents, the third near tick 8 (0.6 s in), so a run stopped after three intents is
    stopped well before its trace ends."""
    lines = TRACE.read_text(encoding="utf-8").splitlines()[:1201]
    path = tmp_path_factory.mktemp("trace") / "code-head.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_sigterm_mid_run_leaves_the_state_and_the_audit_trail_complete(
    processes: Processes, tmp_path: Path, code_head: Path, validator: jsonschema.Draft7Validator
) -> None:
    audit, state = tmp_path / "audit.jsonl", tmp_path / "state.json"
    run = processes.start(
        "fleetscale-run",
        [
            sys.executable, "-m", "autoscaler", "run", "--scenario", str(SCENARIO), "--trace", str(code_head),
            "--mode", "apply", "--speed", "200", "--audit", str(audit), "--state", str(state),
        ],
    )  # fmt: skip
    # A few decisions in (x200: a 15 s tick every 75 ms), the run is told to stop.
    wait_for(lambda: intents_written(audit) >= 3, "3 intents in the audit log", run)
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.describe()

    last = run.output().splitlines()[-1]
    kept = re.escape(f"; audit {audit}, state {state}")
    stopped = re.fullmatch(rf"run: stopped after (\d+) ticks, \d+ changes{kept}", last)
    assert stopped is not None, run.describe()
    ticks = int(stopped[1])
    # The state is a whole state document, saved by the last tick the run made.
    stored = FileStateStore(state).load()
    assert stored is not None and stored.ticks == ticks
    assert "code" in stored.policy.services
    # Every line of the log parses; the tick in progress when SIGTERM came completed: each intent has its outcome.
    events = list(read_audit(audit))
    assert sum(e.type == TYPE_DECISION_INTENT for e in events) >= 3
    assert_each_intent_has_its_outcome(events)
    assert max(int(e.data["tick"]) for e in events) <= ticks
    assert_valid_cloudevents(audit, validator)


# ── 2. SIGKILL during actuation, and the restart ─────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ChildFiles:
    state: Path
    audit: Path
    fleet: Path
    marker: Path

    @classmethod
    def under(cls, where: Path) -> ChildFiles:
        return cls(where / "state.json", where / "audit.jsonl", where / "fleet.json", where / "blocked.json")


def child_argv(files: ChildFiles, run_id: str, ticks: int, block: str | None = None) -> list[str]:
    argv = [
        sys.executable, str(CHILD), "--scenario", str(SCENARIO), "--state", str(files.state),
        "--audit", str(files.audit), "--fleet", str(files.fleet), "--marker", str(files.marker),
        "--run-id", run_id, "--rate", f"{CHILD_RATE_RPS:g}", "--ticks", str(ticks),
    ]  # fmt: skip
    if block is not None:
        argv += ["--block-tick", str(BLOCK_TICK), "--block-when", block]
    return argv


def child_lines(child: Child) -> list[dict[str, Any]]:
    return [json.loads(line) for line in child.output().splitlines() if line.strip()]


def fleet_specs(files: ChildFiles) -> dict[str, int]:
    document: dict[str, dict[str, int]] = json.loads(files.fleet.read_text(encoding="utf-8"))
    return document["code"]


@pytest.mark.parametrize(
    "block",
    [
        pytest.param("before", id="killed-before-the-platform-applied"),
        pytest.param("after", id="killed-after-the-platform-applied"),
    ],
)
def test_sigkill_during_actuation_then_a_restart_continues_without_a_conflict(
    processes: Processes, tmp_path: Path, validator: jsonschema.Draft7Validator, block: str
) -> None:
    files = ChildFiles.under(tmp_path)

    # Run 1: tick 1 scales up and applies; tick 2's call blocks (before or after the platform applied it) and the
    # process is killed there.
    first = processes.start("first", child_argv(files, "first", ticks=20, block=block))
    marker = wait_for(
        lambda: json.loads(files.marker.read_text(encoding="utf-8")) if files.marker.exists() else None,
        "the blocked set_replicas call's marker",
        first,
    )
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL, first.describe()
    interrupted = f"first-{BLOCK_TICK:06d}"
    assert marker["decision_id"] == interrupted and marker["when"] == block

    # What the kill left: a log that parses, tick 2's intent without its outcome, a state file that loads.
    events = list(read_audit(files.audit))
    intents = [e for e in events if e.type == TYPE_DECISION_INTENT and e.data["decision_id"] == interrupted]
    outcomes = [e for e in events if e.type == TYPE_DECISION_OUTCOME and e.data["decision_id"] == interrupted]
    assert [e.subject for e in intents] == ["code"] and outcomes == []
    assert intents[0].data["actions"] == [{"shape": str(H100), "from": marker["from"], "to": marker["replicas"]}]
    assert_each_intent_has_its_outcome([e for e in events if e.data["decision_id"] != interrupted])
    saved = FileStateStore(files.state).load()
    assert saved is not None and saved.ticks == BLOCK_TICK  # the write-ahead save of tick 2, before actuation
    before = saved.policy.services["code"]
    previous, asked = marker["from"], marker["replicas"]
    # The story needs tick 2 to scale up from a count tick 1 applied: then the conflict check has something to
    # compare (with nothing applied yet there is no other writer to suspect).
    assert isinstance(previous, int) and 0 < previous < asked, marker
    assert before.applied == {H100: previous} and before.requested == {H100: asked}
    # The platform: the interrupted call never arrived (before), or arrived and was applied (after).
    on_platform = previous if block == "before" else asked
    assert fleet_specs(files) == {str(H100): on_platform}

    # Run 2, on the same files, blocking nothing.
    second = processes.start("second", child_argv(files, "second", ticks=CONTINUE_TICKS))
    assert second.wait() == 0, second.describe()
    lines = child_lines(second)
    assert lines[0] == {"start": {"loaded": True, "ticks": BLOCK_TICK}}
    ticks = [line for line in lines[1:] if "tick" in line]
    assert [t["tick"] for t in ticks] == list(range(BLOCK_TICK + 1, BLOCK_TICK + 1 + CONTINUE_TICKS))
    # The count asked for before the kill (saved ahead of actuation) is fleetscale's own, whether the platform
    # holds it or the one before: no tick holds for a conflict, none reports a problem.
    for tick in ticks:
        code = tick["services"]["code"]
        assert code["reason"] != "hold_conflict" and not code["hold"], tick
        assert tick["problems"] == [], tick
    events = list(read_audit(files.audit))
    restarted = [e for e in events if str(e.data["decision_id"]).startswith("second-")]
    assert restarted and all(e.data["tick"] > BLOCK_TICK for e in restarted)
    assert [e.data["reason"] for e in restarted if e.type == TYPE_DECISION_INTENT].count("hold_conflict") == 0
    assert_each_intent_has_its_outcome(restarted)
    # The restart started from what the platform holds.
    first_intent = next(e for e in restarted if e.type == TYPE_DECISION_INTENT)
    assert first_intent.data["current"] == {str(H100): on_platform}
    # It remembered the service (its windows did not restart) and went on counting ticks.
    after = FileStateStore(files.state).load()
    assert after is not None and after.ticks == BLOCK_TICK + CONTINUE_TICKS
    assert after.policy.services["code"].first_seen_s == before.first_seen_s
    # And it reached its target: the last decision wants no more than it targets, and the platform holds that.
    final = ticks[-1]["services"]["code"]
    assert final["target"] == final["desired"]
    assert fleet_specs(files) == final["target"]
    assert after.policy.services["code"].applied == {H100: final["target"][str(H100)]}

    # 3. Both runs' events are CloudEvents 1.0.
    assert_valid_cloudevents(files.audit, validator)
