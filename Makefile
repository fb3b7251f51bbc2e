# vaeok developer targets. Every target creates .venv and installs the project if needed.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SPEC    ?= sweeps/tpe.yaml
ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help setup run sweep test test-fast lint bench ui clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { command -v $(PY) >/dev/null 2>&1 && $(PY) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install vaeok with its test/lint tools (torch pinned in pyproject.toml: the CPU wheel on disk)

run: $(STAMP)  ## one experiment with the paper's Table 1 config (ARGS="model.hidden=32 ...")
	$(BIN)/vaeok run $(ARGS)

sweep: $(STAMP)  ## the main job: an Optuna sweep on the embedded data, logged to mlruns/
	$(BIN)/vaeok sweep --spec $(SPEC) $(ARGS)

test: $(STAMP)  ## all tests, including the slow end-to-end ones
	$(BIN)/python -m pytest -q -m "slow or not slow"

test-fast: $(STAMP)  ## fast tests only
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)  ## benchmarks (ratios against bare references)
	$(BIN)/python benchmarks/run_all.py

ui: $(STAMP)  ## MLflow UI on 127.0.0.1:5000 against mlruns/
	$(BIN)/vaeok ui

clean:  ## remove the venv and caches (keeps mlruns/)
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
