# Hortus: `make run` sets up and runs the whole pipeline, `make test` runs the tests.
# Needs only python3 (3.11+), git and make; everything else is installed here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

# Offline by default: no analytics, no update checks, no downloads of Python itself.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export UV_PYTHON_DOWNLOADS := never
export MARIMO_SKIP_UPDATE_CHECK := 1

.PHONY: help setup key data run test test-slow lint bench clean

help: ## show every target with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced ## install uv and the locked environment (uv.lock) into .venv
	@test -d .dvc || { echo "not a DVC repository (.dvc/ missing)"; exit 1; }

key: setup ## write the demo-only PII and audit keys to .hortus/secrets/ unless keys exist
	@hortus key

data: setup ## obtain the pinned landing snapshot data/ and verify it against data.dvc
	@hortus data restore

run: setup key data ## run the whole pipeline on the default data (dvc repro), then say where to look
	dvc repro
	@echo
	@echo "Results:"
	@echo "  lakehouse tables   lakehouse/ (hortus catalog list; hortus catalog show silver.events)"
	@echo "  daily KPIs         gold.kpi_daily (reports/kpis.json; dvc metrics show)"
	@echo "  ingest report      reports/ingest.json, reports/silver.json (hortus quarantine)"
	@echo "  data dictionary    reports/data_dictionary.md"
	@echo "  features           gold.fs_* tables, lakehouse/online/features.sqlite (reports/features.json)"
	@echo "  model              reports/train/train.ipynb (executed notebook), dvc metrics show, dvc plots show"
	@echo "  gate               reports/gate/v1.md (hortus gate 1); promotion needs four eyes:"
	@echo "                     HORTUS_USER=paula hortus models approve 1; HORTUS_USER=mia hortus models promote 1"
	@echo "  registry           hortus models list; hortus models show challenger"
	@echo "  recommendations    gold.recommendations (reports/score.json); hortus reproduce 1"

test: setup ## run the test suite (unit, data and integration with real DVC)
	$(BIN)/python -m pytest

test-slow: setup ## run the slow tests too (large data)
	$(BIN)/python -m pytest -m "slow or not slow"

lint: setup ## ruff lint and format check
	$(BIN)/ruff check lib tests benchmarks
	$(BIN)/ruff format --check lib tests benchmarks

bench: setup ## run the benchmarks (prints figures; see benchmarks/README.md)
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_gate.py

clean: ## remove build outputs (not data/, not the operations plane's history)
	rm -rf lakehouse/silver lakehouse/gold lakehouse/restricted reports .pytest_cache
