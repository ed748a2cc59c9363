# Quick start: `make serve` starts the service, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per set of extras (pyproject.toml): `make serve` installs the runtime alone, `make test` what tests need.
RUNTIME := $(VENV)/.installed-runtime
BENCH := $(VENV)/.installed-bench
DEV := $(VENV)/.installed-dev
# jemalloc, when this machine has it (Debian/Ubuntu: apt-get install libjemalloc2): with glibc's malloc
# the service's RSS keeps growing under load (docs/performance.md). The Docker image always preloads it.
JEMALLOC := $(firstword $(wildcard /usr/lib/*/libjemalloc.so.2 /usr/lib/libjemalloc.so.2))
# Where torch and torchvision come from (docs/install.md). Empty: PyPI, the CUDA build (several GB of CUDA
# libraries, used on a GPU, idle on a CPU). `TORCH_INDEX=cpu`: PyTorch's CPU-only wheels
# (https://download.pytorch.org/whl/cpu), or any index URL; installed first, at pyproject.toml's pins, then the rest
# from PyPI. Takes effect when the venv is created (`make clean` first), e.g. `make serve TORCH_INDEX=cpu`.
TORCH_INDEX ?=
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),https://download.pytorch.org/whl/cpu,$(TORCH_INDEX))
TORCH_PINS := $(shell grep -oE '"torch(vision)?==[^"]+"' pyproject.toml | tr -d '"')
TORCH_FIRST := $(if $(TORCH_INDEX_URL),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX_URL) $(TORCH_PINS))

.PHONY: install browser serve test test-slow fuzz mutation lint bench bench-load gpu-check clean test-container clean-container image image-cpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(TORCH_FIRST)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(TORCH_FIRST)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(TORCH_FIRST)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(DEV)

serve: $(RUNTIME)
	$(if $(JEMALLOC),LD_PRELOAD=$(JEMALLOC) )$(BIN)/scgan-serve

# The page's browser tests (tests/web) drive Debian's Chromium: installed here when we are root with apt-get.
browser:
	@command -v chromium >/dev/null || { \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update && apt-get install -y --no-install-recommends chromium; \
		else echo "chromium is missing and cannot be installed here (needs root and apt-get): tests/web will skip"; fi; }

test: $(DEV) browser
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(DEV)
	$(BIN)/python -m pytest -m slow -q

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml): mutmut, then the report with
# per-module scores and every survivor (benchmarks/results/mutation.md; docs/testing.md). mutants/ holds
# mutmut's state, so a second run only retests what changed.
mutation: $(DEV)
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 || true
	$(BIN)/python tests/mutation/report.py

# The property tests with fresh random examples (not CI's fixed ones), round after round for FUZZ_SECONDS;
# the first failing round prints its seed and the command that replays it (tests/fuzz.py).
FUZZ_SECONDS ?= 300
fuzz: $(DEV)
	$(BIN)/python tests/fuzz.py --seconds $(FUZZ_SECONDS)

# Style and types: `ruff check` over the tree, `ruff format --check` over the files already formatted (the
# others are listed in pyproject.toml's [tool.ruff.format] exclude, until parallel branches merge), mypy over
# cli/, model/, service/, training/ and benchmarks/load/ ([tool.mypy] files).
lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(RUNTIME)
	$(BIN)/python benchmarks/model_forward.py

# Service (batched with default workers and with 1, unbatched), a naive FastAPI server and the raw model (the
# plain compile) under a concurrency sweep, plus a memory soak; ~13 min on 2 cores, run it on a quiet machine.
# Tables and plot in benchmarks/results/.
# BENCH_LOAD_ARGS=--quick for a smoke run, "--preset bar" for the bar (8 clients, 1 worker vs default, CPU
# per image); e.g. BENCH_LOAD_ARGS="--checkpoint my.pt --duration 20".
bench-load: $(BENCH)
	$(BIN)/python -m benchmarks.load $(if $(JEMALLOC),--malloc $(JEMALLOC)) $(BENCH_LOAD_ARGS)

# On a CUDA machine (PyTorch preinstalled, no internet): `pip install --no-deps -e .` into $(PYTHON), the
# imports checked, then the CUDA tests, the forward benchmark and a one-minute load run, 8 min at most;
# results in benchmarks/results/gpu/ (docs/performance.md). E.g. `make gpu-check PYTHON=/opt/conda/bin/python`.
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

# -- deployment (docs/deployment.md) ------------------------------------------------------------
CONTAINER_ENGINE ?= docker
IMAGE ?= scgan-colorize:0.1.0

image:
	$(CONTAINER_ENGINE) build -t $(IMAGE) .

image-cpu:
	$(CONTAINER_ENGINE) build -t $(IMAGE)-cpu --build-arg BASE_IMAGE=ubuntu:24.04 \
		--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
		--build-arg RUNTIME_APT_PACKAGES="g++ python3-dev" .

# Builds the Dockerfile with podman against a bootstrapped Debian base, runs and checks the
# container and the compose file on 127.0.0.1 (slow: tens of minutes; needs root and apt).
test-container: $(DEV)
	bash tests/deploy/container_check.sh

clean-container:
	rm -rf .deploy
