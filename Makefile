# Set-up is part of every target: a fresh clone needs only `make test` (or `make serve`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-dev

.PHONY: test lint serve artifacts

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# serve the shipped evaluation graph on 127.0.0.1:8000 (FOCAL_* variables change settings)
serve: $(INSTALLED)
	$(BIN)/focal serve

# regenerate the default graphs shipped in the package (tests prove they equal a fresh export)
artifacts: $(INSTALLED)
	$(BIN)/python -m export --out service/artifacts --formats onnx
