# fleetscale: `make demo` and `make test` work on a fresh machine with Python >= 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck imports unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fleetscale validate configs/examples/*.yaml
	$(BIN)/fleetscale whatif --scenario configs/examples/code-assistant.yaml \
		--trace configs/traces/AzureLLMInferenceTrace_code.csv --json reports/code-assistant/whatif.json \
		--report reports/code-assistant

test: check unit

unit: $(STAMP)
	$(BIN)/python -m pytest

check: lint typecheck imports

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/decide_scale.py
	$(BIN)/python benchmarks/perf_validation.py
	$(BIN)/python benchmarks/forecast_cost.py --series 40
	$(BIN)/python benchmarks/placement.py
	$(BIN)/python benchmarks/sim_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
