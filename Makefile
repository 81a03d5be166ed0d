# bridgedfast developer entry points. Every target creates/reuses .venv/ at the repo root.
#   make demo    set up, build, and run the demo on embedded defaults (offline)
#   make test    set up, build, run pytest and the CMake (ctest) kernel tests
#   make bench   run benchmarks/ (pytest-benchmark JSON and printed tables under benchmarks/results/)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
CMAKE_BUILD := build/cmake
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)
BENCH_THREADS ?= 2

.PHONY: all setup build test test-python test-cpp demo bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

# Dependencies: torch first (the extension builds against it), then the package's deps and
# test extras. Re-runs only when pyproject.toml changes.
$(VENV)/.deps-stamp: pyproject.toml | $(PY)
	$(PIP) install $(TORCH_PINS)
	$(PIP) install ninja $$($(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(' '.join(p['dependencies'] + p['optional-dependencies']['test']))")
	touch $@

# The editable install builds bridgedfast._C (with CUDA kernels where nvcc exists).
$(VENV)/.build-stamp: $(VENV)/.deps-stamp $(SOURCES)
	$(PIP) install --no-build-isolation --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, bridgedfast._C" || { echo "bridgedfast._C failed to build: run '$(PIP) install --no-build-isolation --no-deps -e . -v'"; exit 1; }
	touch $@

setup: $(VENV)/.deps-stamp
build: $(VENV)/.build-stamp

test-python: build
	$(BIN)/bridgedfast info
	$(PY) -m pytest tests

test-cpp:
	mkdir -p build
	cmake -S . -B $(CMAKE_BUILD) -DCMAKE_BUILD_TYPE=Release > $(CMAKE_BUILD).log 2>&1 || { cat $(CMAKE_BUILD).log; exit 1; }
	grep "bridgedfast:" $(CMAKE_BUILD).log
	cmake --build $(CMAKE_BUILD) -j 2
	ctest --test-dir $(CMAKE_BUILD) --output-on-failure

test: test-python test-cpp

# The whole pipeline offline on embedded defaults; writes demo-out/report.md and report.html.
demo: build
	$(BIN)/bridgedfast demo --out demo-out

bench: build
	mkdir -p benchmarks/results
	BRIDGEDFAST_BENCH_THREADS=$(BENCH_THREADS) $(PY) -m pytest benchmarks -o python_files='bench_*.py' -p no:cacheprovider \
	  --benchmark-only --benchmark-json=benchmarks/results/pytest-benchmark.json
	$(BIN)/bridgedfast bench --threads $(BENCH_THREADS)

clean:
	rm -rf build $(CMAKE_BUILD) *.egg-info bridgedfast/_C*.so
