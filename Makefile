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
# OpenMP threads (scikit-learn's gradient boosting) sleep instead of spinning while they
# wait: the same results, and no collapse when other processes share the 2 cores
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help setup key data run shell test test-slow test-chaos lint bench clean

help: ## show every target with a one-line description
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

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
	@echo "Results (start at reports/index.html, which links every report below):"
	@echo "  lakehouse tables   $${HORTUS_LAKEHOUSE:-lakehouse/} (hortus catalog list; hortus catalog show silver.events)"
	@echo "  daily KPIs         gold.kpi_daily (reports/kpis.json; dvc metrics show)"
	@echo "  ingest report      reports/ingest.json, reports/silver.json (hortus quarantine)"
	@echo "  data dictionary    reports/data_dictionary.md"
	@echo "  features           gold.fs_* tables, lakehouse/online/features.sqlite (reports/features.json)"
	@echo "  model              reports/train/recommender/train.ipynb (executed notebook), dvc metrics show, dvc plots show"
	@echo "  gate               reports/gate/recommender/v1.md (hortus gate 1); promotion needs four eyes:"
	@echo "                     HORTUS_USER=paula hortus models approve 1; HORTUS_USER=mia hortus models promote 1"
	@echo "  registry           hortus models list; hortus models show challenger"
	@echo "  recommendations    gold.recommendations (reports/score.json); hortus reproduce 1"
	@echo "  model report       reports/models/recommender/<version>/model_report.html (model card, checklist)"
	@echo "  monitoring         reports/monitor.json, reports/alerts.jsonl; make app-monitor"
	@echo "  docs               reports/docs/ (architecture, data dictionary, parameters, models)"
	@echo
	@echo "hortus and dvc live in .venv: in a new shell run the line below first (or: make shell)"
	@echo "source .venv/bin/activate"

shell: setup ## open a shell with .venv activated: hortus and dvc on the PATH (exit leaves)
	@echo "hortus and dvc are on the PATH in this shell (.venv activated); exit to leave"
	@VIRTUAL_ENV=$(CURDIR)/$(VENV) $${SHELL:-/bin/bash} -i

# two workers (2 cores) of one OpenMP thread each; whole files per worker, so module
# fixtures are built once
test: setup browser redis ## run the test suite (unit, data and integration with real DVC)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile

test-slow: setup browser redis ## run the slow tests too (large data)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -m "slow or not slow"

test-chaos: setup ## fault suite: kill -9 in ingest, silver and watch; two writers; hostile files
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m chaos tests/test_chaos.py

lint: setup ## ruff lint and format check
	$(BIN)/ruff check lib tests benchmarks
	$(BIN)/ruff format --check lib tests benchmarks

bench: setup ## run the benchmarks (prints figures; see benchmarks/README.md)
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_drift.py
	$(BIN)/python benchmarks/bench_gate.py
	$(BIN)/python benchmarks/bench_bootstrap.py
	$(BIN)/python benchmarks/bench_champion.py
	$(BIN)/python benchmarks/bench_contracts.py
	$(BIN)/python benchmarks/bench_drift_floor.py
	$(BIN)/python benchmarks/bench_hostile_ingest.py

# The drift benchmark's peers live in their own environments, never in the project's:
# .bench-peers/ (Evidently + hortus itself, editable) and .bench-peers-deepchecks/
# (deepchecks 0.19.1 needs NumPy < 2, hortus NumPy 2). Pins: benchmarks/peers/*.txt.
# DO_NOT_TRACK=1 keeps Evidently's telemetry off. Options: BENCH_ARGS="--rows 1000000".
PEERS_PYTHON ?= 3.11
BENCH_ARGS ?=
.PHONY: bench-peers

bench-peers: | $(UV) ## drift vs Evidently and Deepchecks, 1M and 5M rows (own envs .bench-peers*)
	@test -x .bench-peers/bin/python || $(UV) venv .bench-peers --python $(PEERS_PYTHON)
	$(UV) pip install --quiet --python .bench-peers/bin/python \
	  -r benchmarks/peers/requirements.txt -e .
	@test -x .bench-peers-deepchecks/bin/python || \
	  $(UV) venv .bench-peers-deepchecks --python $(PEERS_PYTHON)
	$(UV) pip install --quiet --python .bench-peers-deepchecks/bin/python \
	  -r benchmarks/peers/requirements-deepchecks.txt
	DO_NOT_TRACK=1 .bench-peers/bin/python benchmarks/bench_drift_peers.py \
	  --deepchecks-python .bench-peers-deepchecks/bin/python $(BENCH_ARGS)

# hortus serve under load vs floors and MLflow's model server (own env .bench-peers-mlflow,
# pins: benchmarks/peers/requirements-mlflow.txt). Options: BENCH_ARGS="--seconds 20".
.PHONY: bench-serve-peers
bench-serve-peers: | $(UV) ## serving load benchmark incl. MLflow's model server (own env)
	@test -x .bench-peers-mlflow/bin/python || $(UV) venv .bench-peers-mlflow --python $(PEERS_PYTHON)
	$(UV) pip install --quiet --python .bench-peers-mlflow/bin/python \
	  -r benchmarks/peers/requirements-mlflow.txt
	cd benchmarks && OMP_NUM_THREADS=1 ../.venv/bin/python bench_serve.py \
	  --mlflow-python ../.bench-peers-mlflow/bin/python $(BENCH_ARGS)

clean: ## remove build outputs (not data/, not the operations plane's history)
	rm -rf lakehouse/silver lakehouse/gold lakehouse/restricted reports .pytest_cache

# The notebooks as apps: `hortus app NAME` serves notebooks/NAME.py on 127.0.0.1 with
# token auth always on (token: HORTUS_APP_TOKEN, else .hortus/secrets/app_token, made
# on first use) as HORTUS_USER, else the app's persona (monitor: mia, explore and train:
# sam, model_report: olivia); it prints the URL with ?access_token= once.
PORT ?= 2718
NB ?=
.PHONY: app-monitor app-explore app-train app-report edit browser redis

app-monitor: setup ## serve notebooks/monitor.py as an app on 127.0.0.1:PORT (2718), token auth
	@hortus app monitor --port $(PORT)

app-explore: setup ## serve notebooks/explore.py as an app on 127.0.0.1:PORT (2718), token auth
	@hortus app explore --port $(PORT)

app-train: setup ## serve notebooks/train.py as an app on 127.0.0.1:PORT (2718), token auth
	@hortus app train --port $(PORT)

app-report: setup ## serve notebooks/model_report.py as an app on 127.0.0.1:PORT, token auth
	@hortus app model_report --port $(PORT)

edit: setup ## open a notebook in the marimo editor: make edit NB=monitor (127.0.0.1, token)
	@test -n "$(NB)" || { echo "usage: make edit NB=NAME (monitor, explore, train, model_report)"; exit 2; }
	@hortus app $(NB) --edit --port $(PORT)

# The online scoring service: `hortus serve` answers /v1/models/NAME/predict and /recommend
# for the champion of every model of hortus.yaml on 127.0.0.1:SERVE_PORT (after `make run`),
# with bearer tokens of access_policy.yaml users (hashes in .hortus/secrets/serve_tokens.yaml)
SERVE_PORT ?= 8765
.PHONY: serve
serve: setup ## serve the champion model(s) over HTTP on 127.0.0.1:SERVE_PORT (8765), bearer tokens
	@echo "hortus serve: http://127.0.0.1:$(SERVE_PORT)  (docs: http://127.0.0.1:$(SERVE_PORT)/docs)"
	@echo "get a token:  TOKEN=\$$(hortus serve token --user shop-web)   (printed once; hash kept)"
	@echo "then:         curl -s -H \"Authorization: Bearer \$$TOKEN\" -d '{\"entity\": {\"user_id\": \"u000001\"}, \"k\": 5}' http://127.0.0.1:$(SERVE_PORT)/v1/models/recommender/recommend"
	@hortus serve --port $(SERVE_PORT)

# A local S3-compatible server (moto, a dev dependency) on 127.0.0.1 for trying the lakehouse
# on object storage (docs/object-storage.md). Its pid and log live in .hortus/s3/; moto keeps
# the objects in memory, so `make s3-down` discards them. cluster-up/down start it too.
S3_PORT ?= 9000
S3_BUCKET ?= hortus
S3_DIR := .hortus/s3
# the local server's endpoint and (dummy) credentials, as AWS clients read them
S3_ENV = AWS_ENDPOINT_URL=http://127.0.0.1:$(S3_PORT) AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
.PHONY: s3-up s3-down cluster-up cluster-down

s3-up: setup ## start a local S3 server (moto) on 127.0.0.1:S3_PORT (9000), bucket S3_BUCKET
	@mkdir -p $(S3_DIR)
	@if [ -f $(S3_DIR)/pid ] && kill -0 "$$(cat $(S3_DIR)/pid)" 2>/dev/null; then \
	  echo "s3: already running (pid $$(cat $(S3_DIR)/pid))"; else \
	  nohup $(BIN)/python -m moto.server -H 127.0.0.1 -p $(S3_PORT) >$(S3_DIR)/server.log 2>&1 & \
	  echo $$! >$(S3_DIR)/pid; fi
	@for i in $$(seq 100); do $(BIN)/python -c "import urllib.request as u; \
	  u.urlopen('http://127.0.0.1:$(S3_PORT)/moto-api/', timeout=1)" 2>/dev/null && exit 0; \
	  sleep 0.3; done; echo "s3: the server did not start, see $(S3_DIR)/server.log"; exit 1
	@$(BIN)/python -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$(S3_PORT)', \
	  aws_access_key_id='local', aws_secret_access_key='local', region_name='us-east-1').create_bucket(Bucket='$(S3_BUCKET)')"
	@echo "s3: http://127.0.0.1:$(S3_PORT), bucket $(S3_BUCKET) (log $(S3_DIR)/server.log). To use it:"
	@echo "  export $(S3_ENV)"
	@echo "  export HORTUS_LAKEHOUSE=s3://$(S3_BUCKET)/lakehouse"

s3-down: ## stop the local S3 server of s3-up (its objects are discarded)
	@if [ -f $(S3_DIR)/pid ] && kill -0 "$$(cat $(S3_DIR)/pid)" 2>/dev/null; then \
	  kill "$$(cat $(S3_DIR)/pid)" && echo "s3: stopped (pid $$(cat $(S3_DIR)/pid))"; \
	  else echo "s3: not running"; fi
	@rm -f $(S3_DIR)/pid

# A local two-node Ray cluster (docs/scale-out.md): a head and one worker node of 1 CPU and
# RAY_OBJECT_STORE bytes of object store each, session files and spills under .hortus/ray,
# no dashboard, no usage statistics, token authentication (.hortus/ray/auth_token, made
# once). ray-down stops only the Ray processes of this project's .hortus/ray.
RAY_PORT ?= 6380
RAY_OBJECT_STORE ?= 1000000000
RAY_DIR := $(CURDIR)/.hortus/ray
# RAY_NODE_ENV: more environment for the nodes' workers (cluster-up: the local S3 server's
# AWS_* variables, so tasks read the lakehouse in the bucket; ray-up alone: the caller's)
RAY_NODE_ENV ?=
RAY_ENV = RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$(RAY_DIR)/auth_token $(RAY_NODE_ENV)
RAY_NODE := --node-ip-address 127.0.0.1 --num-cpus 1 --object-store-memory $(RAY_OBJECT_STORE) \
  --temp-dir $(RAY_DIR) --disable-usage-stats
.PHONY: ray-up ray-down

ray-up: setup ## start a local Ray head + 1 worker node (1 CPU, ~1 GB object store each)
	@mkdir -p $(RAY_DIR)
	@test -s $(RAY_DIR)/auth_token || (umask 077; $(BIN)/python -c \
	  "import secrets; print(secrets.token_hex(32))" > $(RAY_DIR)/auth_token)
	@if pgrep -f -- "[g]cs_server.*$(RAY_DIR)/" >/dev/null; then \
	  echo "ray: already running (make ray-down first to restart it)"; else \
	  $(RAY_ENV) $(BIN)/ray start --head --port $(RAY_PORT) --include-dashboard false $(RAY_NODE) && \
	  $(RAY_ENV) $(BIN)/ray start --address 127.0.0.1:$(RAY_PORT) $(RAY_NODE); fi
	@echo "ray: 2 nodes at 127.0.0.1:$(RAY_PORT) (logs $(RAY_DIR)/session_latest/logs). To use it:"
	@echo "  export HORTUS_EXECUTOR=ray HORTUS_RAY_ADDRESS=127.0.0.1:$(RAY_PORT)   (every stage: make run, dvc repro)"
	@echo "  hortus silver --executor ray --address 127.0.0.1:$(RAY_PORT)   (one stage)"
	@echo "  (or params.yaml executor: {kind: ray, address: 127.0.0.1:$(RAY_PORT)})"

ray-down: ## stop the local Ray cluster of ray-up (only the Ray processes under .hortus/ray)
	@pids=$$(pgrep -f -- "$(CURDIR)/[.]hortus/ray/" || true); \
	if [ -z "$$pids" ]; then echo "ray: not running"; exit 0; fi; \
	all="$$pids $$(for p in $$pids; do pgrep -P $$p; done)"; kill $$all 2>/dev/null; \
	for i in $$(seq 50); do alive=; for p in $$all; do \
	  ps -o stat= -p $$p 2>/dev/null | grep -qv Z && alive="$$alive $$p"; done; \
	  [ -z "$$alive" ] && break; sleep 0.2; done; \
	if [ -n "$$alive" ]; then kill -9 $$alive 2>/dev/null; fi; echo "ray: stopped"

# In-process vs a two-node local Ray cluster (started and stopped by the script itself) on
# one simulated landing: landing -> silver, training set, batch scoring; the same results
# checked, then a MODELLED projection on N machines. SCALEOUT_ARGS="--events 1000000".
SCALEOUT_ARGS ?=
.PHONY: bench-scaleout
bench-scaleout: setup ## local vs two-node Ray: landing->silver, training set, scoring (10M events)
	OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python benchmarks/bench_scaleout.py $(SCALEOUT_ARGS)

cluster-up: s3-up ray-up ## start the local scale-out stack: the S3 server and a Ray cluster
# the Ray nodes' workers get the local S3 server's AWS_* variables (the driver's come from
# the shell: the export lines s3-up prints)
cluster-up: RAY_NODE_ENV = $(S3_ENV)

cluster-down: s3-down ray-down ## stop the local scale-out stack

# Debian's chromium for the browser tests (tests/test_browser.py); never a downloaded build
browser: ## install Debian's chromium (/usr/bin/chromium) for the browser tests if missing
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "no apt-get here: install chromium as /usr/bin/chromium yourself, else the browser tests skip"; \
	  exit 0; fi; \
	SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	$$SUDO apt-get update && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# Debian's redis-server for the Redis online store tests (tests/test_online_redis.py start
# their own on a free 127.0.0.1 port and FAIL, not skip, without it)
redis: ## install Debian's redis-server (the Redis online store tests need it) if missing
	@if command -v redis-server >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "no apt-get here: install redis-server yourself (the Redis tests fail without it)"; \
	  exit 1; fi; \
	SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	$$SUDO apt-get update && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
