# fleetscale: `make demo` and `make test` work on a fresh machine with Python >= 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck imports unit bench native clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# The replay's hot path compiled with mypyc into build/native/ (about 3x faster replays; see autoscaler/native.py),
# used by the entry points that opt in (fleetscale, the replay benchmarks). Rebuilt when one of its sources changes;
# without a C compiler it records why and everything runs as plain Python.
NATIVE := build/native/native.json
$(NATIVE): $(STAMP) autoscaler/native.py autoscaler/perf.py autoscaler/sim/engine.py autoscaler/sim/fleet.py \
		autoscaler/sim/policies.py autoscaler/sim/oracle.py
	$(BIN)/python -c "import autoscaler.native as n; raise SystemExit(n.main())"

native: $(NATIVE)

demo: $(NATIVE)
	$(BIN)/fleetscale validate configs/examples/*.yaml
	$(BIN)/fleetscale whatif --scenario configs/examples/code-assistant.yaml \
		--trace configs/traces/AzureLLMInferenceTrace_code.csv --json reports/code-assistant/whatif.json \
		--report reports/code-assistant

test: check unit

unit: $(NATIVE)
	$(BIN)/python -m pytest

check: lint typecheck imports

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(NATIVE)
	$(BIN)/python benchmarks/decide_scale.py
	$(BIN)/python benchmarks/loop_tick.py
	$(BIN)/python benchmarks/perf_validation.py
	$(BIN)/python benchmarks/forecast_cost.py --series 40
	$(BIN)/python benchmarks/placement.py
	$(BIN)/python benchmarks/sim_speed.py
	$(BIN)/python benchmarks/replay_bounds.py --quick

# autoscaler/native.json and autoscaler/**/*.so: what builds before build/native/ left next to the sources.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build/native autoscaler/native.json
	find autoscaler -name '*.so' -delete
