# fleetscale: `make demo` and `make test` work on a fresh machine with Python >= 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck imports unit bench native prometheus clean

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

# A real Prometheus and promtool for the integration tests (tests/integration/prometheus_server.py), unpacked from
# Debian's `prometheus` package into build/prometheus/ rather than installed: `apt-get install` pulls 377 MB of
# web-console dependencies and starts a service on :9090, while the unpacked binaries run standalone. `apt-get
# update` runs only when the package lists have no candidate (a fresh container has none). Without apt-get, the
# binaries already on PATH are linked in. The stamp holds `prometheus --version`, which also proves the binary runs.
# As root, `apt-get download` warns "Download is performed unsandboxed as root" (build/ is not _apt's): harmless.
PROM_DIR := build/prometheus
PROM_STAMP := $(PROM_DIR)/.installed
$(PROM_STAMP):
	rm -rf $(PROM_DIR)
	mkdir -p $(PROM_DIR)/usr/bin
	@if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then \
		set -e; \
		if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [^(]'; then \
			echo "apt-get update (no candidate for prometheus in the package lists)"; \
			apt-get update -qq; \
		fi; \
		(cd $(PROM_DIR) && apt-get download -q prometheus); \
		dpkg-deb -x $(PROM_DIR)/prometheus_*.deb $(PROM_DIR); \
		rm -f $(PROM_DIR)/prometheus_*.deb; \
	elif command -v prometheus >/dev/null && command -v promtool >/dev/null; then \
		ln -sf "$$(command -v prometheus)" $(PROM_DIR)/usr/bin/prometheus; \
		ln -sf "$$(command -v promtool)" $(PROM_DIR)/usr/bin/promtool; \
	else \
		echo "make prometheus: needs apt-get and dpkg-deb (Debian's prometheus package), or prometheus and" \
			"promtool on PATH; found neither" >&2; \
		exit 1; \
	fi
	$(PROM_DIR)/usr/bin/promtool --version >/dev/null
	$(PROM_DIR)/usr/bin/prometheus --version > $@.tmp
	mv $@.tmp $@

prometheus: $(PROM_STAMP)

demo: $(NATIVE)
	$(BIN)/fleetscale validate configs/examples/*.yaml
	$(BIN)/fleetscale whatif --scenario configs/examples/code-assistant.yaml \
		--trace configs/traces/AzureLLMInferenceTrace_code.csv --json reports/code-assistant/whatif.json \
		--report reports/code-assistant

test: check unit

unit: $(NATIVE) $(PROM_STAMP)
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build/native build/prometheus autoscaler/native.json
	find autoscaler -name '*.so' -delete
