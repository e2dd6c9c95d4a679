"""`fleetscale run` (a replay through the loop, dry run) and `fleetscale explain` (the audit trail in sentences)."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner, Result

from autoscaler.audit import TYPE_DECISION_INTENT, TYPE_DECISION_OUTCOME, read_audit
from autoscaler.cli import app

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "configs/examples/code-assistant.yaml")
SCHEMA = ROOT / "tests/fixtures/cloudevents/cloudevents-1.0.schema.json"
SHAPE = r"H100-80GB(?:/3g\.40gb)?"  # the scenario's two shapes


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(app, args, env={"COLUMNS": "500"})


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1,200 requests (about 8 minutes) of the bundled Azure code trace."""
    lines = (ROOT / "configs/traces/AzureLLMInferenceTrace_code.csv").read_text().splitlines()[:1201]
    path = tmp_path_factory.mktemp("trace") / "code-head.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def replayed(head: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, Path]:
    where = tmp_path_factory.mktemp("run")
    audit, state = where / "audit.jsonl", where / "state.json"
    result = invoke(
        [
            "run", "--scenario", SCENARIO, "--metrics", "replay", "--trace", str(head), "--speed", "200",
            "--actuator", "log", "--mode", "apply", "--audit", str(audit), "--state", str(state),
        ]
    )  # fmt: skip
    return result, audit, state


def test_run_replays_the_trace_through_the_loop_and_ends_with_it(replayed: tuple[Result, Path, Path]) -> None:
    result, audit, state = replayed
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "code: code-head x1: 1,200 requests"
    assert lines[1] == ("run: code-assistant, mode apply, tick 15 s, speed x200, metrics replay, actuator log")
    # The replay runs on the real clock (x200), so how much of the trace the first tick sees varies: the first
    # decision may be whole GPUs or MIG slices.
    assert re.search(rf"^  set code {SHAPE}: 0 -> \d+ \(decision [0-9a-f]+-000001\)$", result.output, re.M)
    assert re.search(rf"^00:00:\d\d tick 1: code 0 -> \d+ x {SHAPE} \(scale_up", result.output, re.M)
    assert lines[-1].startswith("run: trace ended after ")
    assert lines[-1].endswith(f"; audit {audit}, state {state}")
    document = json.loads(state.read_text())
    assert document["format"] == "fleetscale.state" and document["policy"]["services"]["code"]["applied"]


def test_every_audit_line_is_a_valid_cloudevent_and_each_intent_has_its_outcome(
    replayed: tuple[Result, Path, Path],
) -> None:
    _, audit, _ = replayed
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    for line in audit.read_text().splitlines():
        validator.validate(json.loads(line))
    events = list(read_audit(audit))
    intents = [e.data["decision_id"] for e in events if e.type == TYPE_DECISION_INTENT]
    outcomes = [e.data["decision_id"] for e in events if e.type == TYPE_DECISION_OUTCOME]
    assert intents and intents == outcomes
    first = next(e for e in events if e.type == TYPE_DECISION_INTENT)
    assert first.subject == "code" and first.source == "/fleetscale/code-assistant"
    assert [s["stage"] for s in first.data["stages"]] == ["forecast", "size", "budget", "stabilize", "place"]
    [(shape, count)] = first.data["target"].items()
    assert first.data["actions"] == [{"shape": shape, "from": None, "to": count}]


def test_explain_tells_why_each_change_happened_and_what_it_cost(replayed: tuple[Result, Path, Path]) -> None:
    _, audit, _ = replayed
    result = invoke(["explain", "--audit", str(audit)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = lines[0]
    start = re.match(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC code: 0 -> (\d+) x ({SHAPE}) \(scale_up", first)
    assert start is not None, first
    n, shape = int(start[1]), start[2]
    price = {"H100-80GB": 6.88, "H100-80GB/3g.40gb": 3.44}[shape]
    assert "Demand observed " in first
    assert f"Cost $0.00/h -> ${price * n:.2f}/h (+${price * n:.2f}/h)." in first
    assert re.search(rf"Applied: {re.escape(shape)} {n} of {n} \(decision [0-9a-f]+-000001\)\.$", first)
    assert any("Demand p99 of burst_envelope forecast over 2.2 min" in line for line in lines)
    assert lines[-1].startswith(f"{len(list(read_audit(audit))) // 2} decisions from ")
    everything = invoke(["explain", "--audit", str(audit), "--all"])
    assert len(everything.output.splitlines()) > len(lines)
    recent = invoke(["explain", "--audit", str(audit), "--service", "code", "--since", "2m"])
    assert recent.exit_code == 0 and len(recent.output.splitlines()) < len(everything.output.splitlines())


def test_a_second_run_starts_from_the_saved_state(head: Path, replayed: tuple[Result, Path, Path]) -> None:
    _, audit, state = replayed
    ticks = json.loads(state.read_text())["ticks"]
    result = invoke(
        [
            "run", "--scenario", SCENARIO, "--trace", str(head), "--speed", "200", "--mode", "apply",
            "--audit", str(audit), "--state", str(state), "--ticks", "2",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"state: {state} from " in result.output and f", {ticks} ticks" in result.output
    assert json.loads(state.read_text())["ticks"] == ticks + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "graphite"], "--metrics graphite: unknown (known: replay, prometheus)"),
        (["--metrics", "prometheus"], "--metrics prometheus needs --prometheus-url (such as http://127.0.0.1:9090)"),
        (
            ["--metrics", "prometheus", "--prometheus-url", "http://127.0.0.1:9", "--speed", "10"],
            "--speed 10: a live metrics source runs in real time (only a replay can be sped up)",
        ),
        (
            ["--metrics", "prometheus", "--prometheus-url", "http://127.0.0.1:9"],
            "--trace is for --metrics replay; --metrics prometheus reads the live series",
        ),
        (
            ["--telemetry-address", "9464"],
            "--telemetry-address 9464: expected HOST:PORT (such as 127.0.0.1:9464), or off",
        ),
        (["--actuator", "kubernetes"], "--actuator kubernetes: unknown (known: log, rayserve)"),
        (["--actuator", "rayserve"], "--actuator rayserve needs --ray-dashboard-url (such as http://127.0.0.1:8265)"),
        (["--mode", "yolo"], "--mode yolo: unknown (known: observe, recommend, apply)"),
        (["--speed", "0"], "--speed 0: must be a number > 0 (1: real time)"),
    ],
)
def test_run_refuses_bad_flags_with_one_line(head: Path, args: list[str], message: str) -> None:
    result = invoke(["run", "--scenario", SCENARIO, "--trace", str(head), *args])
    assert result.exit_code == 2
    assert result.output.strip() == message


def test_run_refuses_a_state_file_it_cannot_read(head: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"format": "fleetscale.state", "version": 7}')
    result = invoke(["run", "--scenario", SCENARIO, "--trace", str(head), "--state", str(state), "--speed", "1000"])
    assert result.exit_code == 2
    assert "state format version 7 is not one this fleetscale reads" in result.output


def test_explain_names_a_bad_line(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"specversion": "1.0"}\n')
    result = invoke(["explain", "--audit", str(audit)])
    assert result.exit_code == 2
    assert f"{audit}:1" in result.output


@pytest.mark.integration
def test_the_audit_trail_is_also_posted_where_audit_url_says(head: Path, tmp_path: Path) -> None:
    received: list[tuple[str, dict[str, object]]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(202)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads what it received
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        audit = tmp_path / "audit.jsonl"
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        result = invoke(
            [
                "run", "--scenario", SCENARIO, "--trace", str(head), "--speed", "200", "--mode", "apply",
                "--audit", str(audit), "--audit-url", url, "--ticks", "6",
            ]
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    written = [e.id for e in read_audit(audit)]
    assert written and [event["id"] for _, event in received] == written  # the same events, in order, all sent
    assert {kind for kind, _ in received} == {"application/cloudevents+json; charset=UTF-8"}
