# Set-up is part of every target: a fresh clone needs only `make test` (or `make serve`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-dev
SERVER_INSTALLED := $(VENV)/.installed-server

.PHONY: test lint serve artifacts bench profile

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# everything, torch pinned to the CPU build the tests use (constraints.txt)
$(INSTALLED): pyproject.toml setup.py $(wildcard service/kernel/*.cc service/kernel/*.h) constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(SERVER_INSTALLED)

# the server alone: no torch, no test tools
$(SERVER_INSTALLED): pyproject.toml setup.py $(wildcard service/kernel/*.cc service/kernel/*.h) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# serve the shipped evaluation graph on 127.0.0.1:8000 (FOCAL_* variables change settings)
serve: $(SERVER_INSTALLED)
	$(BIN)/focal serve

# regenerate the default graphs shipped in the package (tests prove they equal a fresh export)
artifacts: $(INSTALLED)
	$(BIN)/python -m focal_eval.export --out service/artifacts --formats onnx

# side-by-side benchmarks: paired ratios against their targets, never pass / fail
# (10-22 minutes by machine; `make bench BENCH_ARGS=--quick` takes under one)
bench: $(INSTALLED)
	$(BIN)/python -m bench $(BENCH_ARGS)

# where time and memory go: py-spy on a live server (needs ptrace), stage timings, graph nodes
profile: $(INSTALLED)
	$(BIN)/python -m bench.profile
