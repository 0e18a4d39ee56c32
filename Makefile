# Two commands for a newcomer: `make run` (bridge on embedded Valkey) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format check-config demo bench bench-cluster clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Listens on 127.0.0.1 unless BRIDGE_HOST says otherwise (the container image sets 0.0.0.0).
run: $(STAMP)
	BRIDGE_HOST=$${BRIDGE_HOST:-127.0.0.1} $(BIN)/bridge serve

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format bridge tests bench

check-config: $(STAMP)
	$(BIN)/bridge check-config

demo: $(STAMP)
	$(BIN)/python -m bench.demo

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-cluster: $(STAMP)
	$(BIN)/python -m bench.cluster

clean:
	rm -rf $(VENV) .bridge-data .pytest_cache .ruff_cache bench-results
