"""The `fleetscale` command line: exit codes, one line per problem, and no traceback ever reaching the user.

Most tests call the Typer app in-process (`CliRunner`); a few run the installed console script in a subprocess,
the way a user does, to prove that errors end as messages and exit codes. Exit codes: 0 ok, 1 an invalid MIG
layout, 2 bad input.

Rich sizes its output to the terminal and wraps long lines at 80 columns when there is none. In-process tests pin
a wide terminal (COLUMNS) so that they check content; `test_validate_three_errors_subprocess` also runs with no
terminal at all, as in CI or a pipe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from autoscaler.catalog import load_catalog
from autoscaler.cli import app
from autoscaler.config import Scenario
from autoscaler.model import Reason

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs" / "examples").glob("*.yaml"))
THREE_ERRORS = "tests/fixtures/scenarios/invalid-three-errors.yaml"
YAML_SYNTAX = "tests/fixtures/scenarios/invalid-yaml-syntax.yaml"
WIDE = "500"  # columns: wider than any line the CLI prints, so Rich never wraps

THREE_ERROR_LINES = [
    f"{THREE_ERRORS}: fleet.pools[0].colour = 'blue': Extra inputs are not permitted",
    f"{THREE_ERRORS}: fleet.pools[1].gpu_price_usd_per_h = -0.8: Input should be greater than 0",
    f"{THREE_ERRORS}: services[0]: min_replicas (5) must be <= max_replicas (4)",
]


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in commands and messages are relative to the repository root, as in the README.
    monkeypatch.chdir(ROOT)


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": WIDE})


def _fleetscale_command() -> list[str]:
    """The installed console script next to this interpreter (or on PATH); else the same entry point via -c."""
    for candidate in (Path(sys.executable).with_name("fleetscale"), shutil.which("fleetscale")):
        if candidate is not None and Path(candidate).is_file():
            return [str(candidate)]
    return [sys.executable, "-c", "from autoscaler.cli import main; main()"]


def run_fleetscale(args: Sequence[str], columns: str | None = WIDE) -> subprocess.CompletedProcess[str]:
    """Run fleetscale as a user would; `columns=None` leaves no terminal width at all (a pipe, CI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [*_fleetscale_command(), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output
        assert 'File "' not in output


# ---------------------------------------------------------------------------------------------------------------
# validate


def test_validate_examples_passes() -> None:
    result = invoke(["validate", *EXAMPLES])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{path}: ok" for path in EXAMPLES]
    assert result.stderr == ""


def test_validate_examples_passes_subprocess() -> None:
    # `fleetscale validate configs/examples/*.yaml`, the glob expanded as a shell would.
    proc = run_fleetscale(["validate", *EXAMPLES])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{path}: ok" for path in EXAMPLES]
    _assert_no_traceback(proc.stdout, proc.stderr)


def test_validate_three_errors_one_line_each() -> None:
    result = invoke(["validate", THREE_ERRORS])
    assert result.exit_code == 2
    _assert_no_traceback(result.output)
    assert result.stdout == ""
    # One line per error, naming the field path and the value, then the summary: nothing else.
    assert result.stderr.splitlines() == [*THREE_ERROR_LINES, "3 problem(s) found"]


@pytest.mark.parametrize(
    "columns",
    [
        pytest.param(WIDE, id="wide-terminal"),
        # With no terminal Rich would wrap at 80 columns; the CLI's consoles soft-wrap, so a line stays a line.
        pytest.param(None, id="no-terminal"),
    ],
)
def test_validate_three_errors_subprocess(columns: str | None) -> None:
    proc = run_fleetscale(["validate", THREE_ERRORS], columns=columns)
    assert proc.returncode == 2
    _assert_no_traceback(proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [*THREE_ERROR_LINES, "3 problem(s) found"]


def test_validate_reports_every_file() -> None:
    # A good file, a bad one and a broken one: the good one is ok, the others each report, exit 2 overall.
    result = invoke(["validate", EXAMPLES[0], THREE_ERRORS, YAML_SYNTAX])
    assert result.exit_code == 2
    assert f"{EXAMPLES[0]}: ok" in result.stdout.splitlines()
    errors = result.stderr.splitlines()
    assert errors[:3] == THREE_ERROR_LINES
    assert errors[3].startswith(f"{YAML_SYNTAX}:8:")
    assert errors[4:] == ["4 problem(s) found"]


@pytest.mark.parametrize("command", ["validate", "decide"])
def test_yaml_syntax_error_names_file_and_line(command: str) -> None:
    result = invoke([command, YAML_SYNTAX])
    assert result.exit_code == 2
    _assert_no_traceback(result.output)
    assert re.search(
        rf"^{re.escape(YAML_SYNTAX)}:8:\d+: invalid YAML: mapping values are not allowed here$", result.stderr, re.M
    )


def test_yaml_syntax_error_subprocess() -> None:
    proc = run_fleetscale(["decide", YAML_SYNTAX])
    assert proc.returncode == 2
    _assert_no_traceback(proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"{YAML_SYNTAX}:8:")


def test_validate_missing_file_is_bad_input() -> None:
    result = invoke(["validate", "no/such/scenario.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("no/such/scenario.yaml: cannot read:")


# ---------------------------------------------------------------------------------------------------------------
# schema


def test_schema_prints_the_scenario_json_schema() -> None:
    result = invoke(["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"name", "description", "fleet", "services", "budget", "policy"} <= set(schema["properties"])
    assert schema == Scenario.model_json_schema()


# ---------------------------------------------------------------------------------------------------------------
# catalog show / mig-check


def test_catalog_show_lists_every_gpu() -> None:
    result = invoke(["catalog", "show"])
    assert result.exit_code == 0
    assert "GPU catalog" in result.stdout
    for name in load_catalog().gpus:
        assert re.search(rf"│ {re.escape(name)} +│", result.stdout), name


def test_catalog_show_one_gpu_by_alias() -> None:
    result = invoke(["catalog", "show", "H100"])
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("H100-80GB (aliases: H100, H100-SXM5-80GB, H100-SXM): 80 GB")
    assert "H100-80GB MIG profiles" in out
    gpu = load_catalog().gpu("H100-80GB")
    assert gpu.mig is not None
    for profile in gpu.mig.profiles:
        assert f"│ {profile} " in out
    for preset in gpu.mig.presets:
        assert f"│ {preset} " in out


def test_catalog_show_gpu_without_mig() -> None:
    result = invoke(["catalog", "show", "l4"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "  no MIG"


def test_catalog_show_unknown_gpu_lists_known_names() -> None:
    result = invoke(["catalog", "show", "H900"])
    assert result.exit_code == 2
    _assert_no_traceback(result.output)
    known = ", ".join(load_catalog().gpus)
    assert result.stderr.strip() == f"unknown GPU type 'H900' (known: {known})"


def _preset_params() -> list[object]:
    catalog = load_catalog()
    params: list[object] = []
    for gpu_name in ("H100-80GB", "A100-40GB"):
        mig = catalog.gpu(gpu_name).mig
        assert mig is not None
        params += [
            pytest.param(gpu_name, dict(layout), id=f"{gpu_name} {name}") for name, layout in mig.presets.items()
        ]
    return params


@pytest.mark.parametrize(("gpu", "layout"), _preset_params())
def test_mig_check_accepts_every_nvidia_preset(gpu: str, layout: dict[str, int]) -> None:
    args = [f"{count}x{profile}" if count > 1 else profile for profile, count in layout.items()]
    result = invoke(["catalog", "mig-check", gpu, *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"valid: {' + '.join(f'{n} x {p}' for p, n in layout.items())} on {gpu}"
    placed = [line for line in lines[1:] if re.match(r"^  [A-H]  ", line)]
    assert len(placed) == sum(layout.values())  # one line per instance, with its start slot
    assert re.match(r"^  memory slices: \[[A-H.]{8}\]  free: ", lines[-1])


@dataclass(frozen=True)
class MigRejectCase:
    name: str
    args: tuple[str, ...]
    want_line: str


MIG_REJECT_CASES = [
    MigRejectCase(
        "2x4g.40gb (one per GPU)",
        ("2x4g.40gb",),
        "invalid: 2 x 4g.40gb on H100-80GB: 2 x 4g.40gb: at most 1 per H100-80GB",
    ),
    MigRejectCase(
        "3x3g.40gb (two per GPU)",
        ("3x3g.40gb",),
        "invalid: 3 x 3g.40gb on H100-80GB: 3 x 3g.40gb: at most 2 per H100-80GB",
    ),
    MigRejectCase(
        "7g.80gb 1g.10gb (8 + 1 = 9 memory slices)",
        ("7g.80gb", "1g.10gb"),
        "invalid: 1 x 7g.80gb + 1 x 1g.10gb on H100-80GB: needs 9 memory slices; one H100-80GB has 8",
    ),
]


@pytest.mark.parametrize("case", MIG_REJECT_CASES, ids=lambda case: case.name)
def test_mig_check_rejects_with_reason(case: MigRejectCase) -> None:
    result = invoke(["catalog", "mig-check", "H100-80GB", *case.args])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [case.want_line]


def test_mig_check_count_syntaxes_and_alias() -> None:
    # `2x3g.40gb`, `2*3g.40gb` and a repeated name all mean two instances; `h100` is an alias.
    for args in (["2x3g.40gb"], ["2*3g.40gb"], ["3g.40gb", "3g.40gb"]):
        result = invoke(["catalog", "mig-check", "h100", *args])
        assert result.exit_code == 0, args
        assert result.stdout.splitlines()[0] == "valid: 2 x 3g.40gb on H100-80GB"


def test_mig_check_unknown_profile_is_rejected_with_reason() -> None:
    result = invoke(["catalog", "mig-check", "H100-80GB", "5g.50gb"])
    assert result.exit_code == 1
    assert "H100-80GB has no MIG profile '5g.50gb'" in result.stdout


def test_mig_check_unknown_gpu_is_bad_input() -> None:
    result = invoke(["catalog", "mig-check", "H900", "1g.10gb"])
    assert result.exit_code == 2
    assert result.stderr.startswith("unknown GPU type 'H900' (known: ")


def test_mig_check_zero_count_is_bad_input() -> None:
    result = invoke(["catalog", "mig-check", "H100-80GB", "0x3g.40gb"])
    assert result.exit_code == 2
    assert "count of at least 1" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# profile show / capacity


def test_profile_show_has_measured_and_derived_rows() -> None:
    result = invoke(["profile", "show", "Llama-3.1-8B", "--shape", "H100-80GB"])
    assert result.exit_code == 0, result.output
    rows = {m[1]: m[2] for m in re.finditer(r"^│ (\w+) +│ [^│]+│ (measured|derived) +│", result.stdout, re.M)}
    assert rows["decode_base_ms"] == "measured"  # TensorRT-LLM ITL 8 ms anchor
    assert rows["weights_gb_per_gpu"] == "derived"
    assert {"measured", "derived"} <= set(rows.values())


def test_profile_capacity_prints_a_rate() -> None:
    result = invoke(["profile", "capacity", "Llama-3.1-8B", "H100-80GB"])
    assert result.exit_code == 0, result.output
    match = re.match(r"^Llama-3\.1-8B on H100-80GB: ([0-9.]+) req/s at the SLO, bound by \w+", result.stdout)
    assert match is not None, result.stdout
    assert float(match[1]) > 0
    # Equal lengths miss less than spread ones, and each of several replicas behind one router sustains more.
    fixed = invoke(["profile", "capacity", "Llama-3.1-8B", "H100-80GB", "--lengths", "fixed"])
    pooled = invoke(["profile", "capacity", "Llama-3.1-8B", "H100-80GB", "--replicas", "4"])
    assert fixed.exit_code == 0 and pooled.exit_code == 0, fixed.output + pooled.output
    fixed_rps = re.match(r"^.*?: ([0-9.]+) req/s at the SLO", fixed.stdout)
    pooled_rps = re.match(r"^.*?: ([0-9.]+) req/s each of 4 replicas behind least_loaded routing", pooled.stdout)
    assert fixed_rps is not None and pooled_rps is not None, fixed.stdout + pooled.stdout
    assert float(fixed_rps[1]) > float(match[1]) and float(pooled_rps[1]) > float(match[1])
    # Behind a random pick, four replicas are four lone ones.
    blind = invoke(["profile", "capacity", "Llama-3.1-8B", "H100-80GB", "--replicas", "4", "--routing", "random"])
    blind_rps = re.match(r"^.*?: ([0-9.]+) req/s each of 4 replicas behind random routing", blind.stdout)
    assert blind_rps is not None and float(blind_rps[1]) == float(match[1]), blind.output


@pytest.mark.parametrize(
    ("args", "want"),
    [
        pytest.param(["profile", "show", "GPT-5"], "no performance profile for model 'GPT-5'", id="unknown model"),
        pytest.param(["profile", "show", "Llama-3.1-8B", "--shape", "H 100"], "is not a shape", id="bad shape"),
        pytest.param(["profile", "capacity", "Llama-3.1-70B", "L4"], "exceed the usable", id="shape too small"),
    ],
)
def test_profile_bad_input_exits_2(args: list[str], want: str) -> None:
    result = invoke(args)
    assert result.exit_code == 2
    _assert_no_traceback(result.output)
    assert want in result.stderr


# Regression: the M/D/1 tail once overflowed math.exp at the tiny probe load that capacity_at_slo starts from when
# the TTFT slack is many prefills long (short prompts), and the OverflowError reached the user as a traceback.
@pytest.mark.parametrize("command", ["profile capacity", "decide"])
def test_short_prompts_get_an_answer_not_a_traceback(command: str, tmp_path: Path) -> None:
    if command == "decide":
        # The example with a 50-token prompt for the classifier (it has 400): a valid scenario.
        data = yaml.safe_load((ROOT / "configs" / "examples" / "chat-fleet.yaml").read_text(encoding="utf-8"))
        data["services"][2]["mean_input_tokens"] = 50
        path = tmp_path / "short-prompts.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert invoke(["validate", str(path)]).exit_code == 0
        args = ["decide", str(path), "--ticks", "1"]
    else:
        args = ["profile", "capacity", "Llama-3.1-8B", "H100-80GB", "--input-tokens", "100"]
    result = invoke(args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
    assert re.search(r" [0-9.]+ req/s", result.stdout)


# ---------------------------------------------------------------------------------------------------------------
# decide


def test_decide_prints_the_table_and_reasons() -> None:
    result = invoke(["decide", "configs/examples/chat-fleet.yaml", "--ticks", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "t = 0 s: base demand" in out
    assert "t = 15 s: demand x3, tick 1 of the step" in out
    headings = ("service", "tier", "demand req/s", "current", "target", "reason", "binding", "$/h")
    assert re.search(r"^┃ " + r" +┃ ".join(map(re.escape, headings)) + r" +┃$", out, re.M)
    reasons = "|".join(r.value for r in Reason)
    for service in ("chat", "summarize", "classify"):
        rows = re.findall(rf"^│ {service} +│(?:[^│]*│){{4}} ({reasons}) +│", out, re.M)
        assert len(rows) == 2, service  # one row per printed tick, each with a reason
        assert re.search(rf"^  {service}: .+", out, re.M)  # and the sentence that explains it
    assert re.search(r"^  fleet cost \$[0-9.]+/h, budget \$200\.00/h", out, re.M)


def test_whatif_compares_the_policies_and_writes_the_json_contract(tmp_path: Path) -> None:
    # The first 1,200 requests (about 8 minutes) of the bundled Azure code trace.
    lines = (ROOT / "configs/traces/AzureLLMInferenceTrace_code.csv").read_text().splitlines()[:1201]
    trace = tmp_path / "code-head.csv"
    trace.write_text("\n".join(lines) + "\n")
    out, decisions, report = tmp_path / "whatif.json", tmp_path / "decisions.csv", tmp_path / "report"
    result = invoke(
        [
            "whatif", "--scenario", str(ROOT / "configs/examples/code-assistant.yaml"), "--trace", f"code={trace}",
            "--policy", "fleetscale", "--policy", "fleetscale_free", "--policy", "static", "--policy", "hpa",
            "--policy", "rayserve",
            "--tune-baselines", "0.9", "--json", str(out), "--decisions", str(decisions), "--report", str(report),
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "code: code-head x1: 1,200 requests" in result.output
    for name in ("fleetscale", "fleetscale_free", "static", "hpa", "rayserve", "oracle", "instant_start"):
        assert f"│ {name}" in result.output
    for name in ("static", "hpa", "rayserve"):
        assert f"tuned {name}: " in result.output
    data = json.loads(out.read_text())
    assert data["rate_scale"] == 1.0
    assert data["trace"]["code"]["requests"] == 1200
    assert set(data["policies"]) == {
        "fleetscale", "fleetscale_free", "static", "hpa", "rayserve", "oracle", "instant_start"
    }  # fmt: skip
    keys = {
        "requests",
        "slo_attainment",
        "ttft_p95_s",
        "tpot_p95_s",
        "gpu_hours",
        "cost_usd",
        "scale_events",
        "unserved",
    }
    for figures in data["policies"].values():
        assert keys <= set(figures)
        assert figures["requests"] == 1200
    assert data["policies"]["oracle"]["slo_attainment"] >= 0.999
    assert data["policies"]["oracle"]["cost_vs_oracle"] == 1.0
    assert data["policies"]["static"]["tuned"]["knob"] == "scale"
    assert data["policies"]["rayserve"]["tuned"]["knob"] == "target_ongoing_requests"
    # Tuned baselines that reach the target report at least that attainment.
    for name in ("static", "hpa", "rayserve"):
        if data["policies"][name]["tuned"]["reached"]:
            assert data["policies"][name]["slo_attainment"] >= 0.9
    # The cheapest policy at the target (the clairvoyant bounds left out), in the JSON and in one printed line.
    assert data["target_attainment"] == 0.9
    reaching = {
        name: figures["cost_usd"]
        for name, figures in data["policies"].items()
        if name not in ("oracle", "instant_start") and figures["slo_attainment"] >= 0.9
    }
    best = min(reaching, key=lambda name: reaching[name])
    assert data["cheapest_reaching_target"] == best
    assert f"cheapest at >= 90.00% attainment: {best} (${reaching[best]:,.2f})" in result.output
    rows = decisions.read_text().splitlines()
    assert rows[0] == "time_s,service,shape,current,target,reason,predicted_demand_rps,cost_usd_per_h"
    assert len(rows) > 30 and all(row.split(",")[1] == "code" for row in rows[1:])
    assert {p.name for p in report.iterdir()} == {"summary.md", "demand_capacity.png", "latency_cdf.png", "cost.png"}
    assert "| oracle |" in (report / "summary.md").read_text()
    assert f"cheapest at >= 90.00% attainment: {best}" in (report / "summary.md").read_text()
    assert (report / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_whatif_names_an_unknown_policy_and_a_missing_trace() -> None:
    scenario = str(ROOT / "configs/examples/code-assistant.yaml")
    result = invoke(["whatif", "--scenario", scenario, "--trace", "/nonexistent.csv", "--policy", "magic"])
    assert result.exit_code == 2
    assert "--policy magic: unknown (known: fleetscale, fleetscale_free, hpa, kpa, rayserve, static)" in result.output
    result = invoke(["whatif", "--scenario", scenario, "--trace", "/nonexistent.csv"])
    assert result.exit_code == 2
    assert "/nonexistent.csv" in result.output


def _code_head(tmp_path: Path, rows: int = 1200) -> Path:
    lines = (ROOT / "configs/traces/AzureLLMInferenceTrace_code.csv").read_text().splitlines()[: rows + 1]
    trace = tmp_path / "code-head.csv"
    trace.write_text("\n".join(lines) + "\n")
    return trace


def test_plan_finds_the_cheapest_fixed_fleet(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    scenario = str(ROOT / "configs/examples/code-assistant.yaml")
    result = invoke(
        [
            "plan",
            "--scenario",
            scenario,
            "--trace",
            str(_code_head(tmp_path)),
            "--attainment",
            "0.99",
            "--json",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    chosen = data["services"]["code"]
    assert chosen["attainment"] >= 0.99
    assert chosen["replicas"] >= 1
    assert data["nodes"] == {"h100": 1}
    assert "pool h100: 1 nodes of 8 H100-80GB" in result.output
    only_mig = invoke(["plan", "--scenario", scenario, "--trace", str(_code_head(tmp_path)), "--gpu-type", "L4"])
    assert only_mig.exit_code == 2
    assert "no allowed shape on the GPU types L4" in only_mig.output


@pytest.mark.integration
def test_plan_with_ray_evaluates_on_a_local_ray_and_agrees(tmp_path: Path) -> None:
    scenario = str(ROOT / "configs/examples/code-assistant.yaml")
    trace = str(_code_head(tmp_path, 600))
    local, remote = tmp_path / "local.json", tmp_path / "ray.json"
    assert invoke(["plan", "--scenario", scenario, "--trace", trace, "--json", str(local)]).exit_code == 0
    result = invoke(["plan", "--scenario", scenario, "--trace", trace, "--ray", "--json", str(remote)])
    assert result.exit_code == 0, result.output
    assert "Ray tasks on a local Ray" in result.output
    assert json.loads(remote.read_text()) == json.loads(local.read_text())


def test_whatif_windows_compresses_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = (ROOT / "configs/traces/AzureLLMInferenceTrace_code.csv").read_text().splitlines()[:801]
    lines.insert(5, "2023-11-16 18:15:46.6805900,not-a-number,12")
    trace = tmp_path / "code-bad.csv"
    trace.write_text("\n".join(lines) + "\n")
    scenario = str(ROOT / "configs/examples/code-assistant.yaml")
    strict = invoke(["whatif", "--scenario", scenario, "--trace", str(trace), "--policy", "static"])
    assert strict.exit_code == 2
    assert "code-bad.csv:6" in strict.output
    result = invoke(
        [
            "whatif", "--scenario", scenario, "--trace", str(trace), "--policy", "static", "--skip-bad-lines",
            "--window", "0s:2m", "--time-compression", "2",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 malformed rows skipped (lines 6)" in result.output
    bad_window = invoke(["whatif", "--scenario", scenario, "--trace", str(trace), "--window", "2m"])
    assert bad_window.exit_code == 2
    assert "--window 2m: write START:END" in bad_window.output
