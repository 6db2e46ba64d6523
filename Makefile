# loanrisk — the two commands a new user needs are `make demo` and `make test`.
# Both build .venv from requirements.lock (versions + hashes) when it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= .loanrisk

.PHONY: help venv demo test test-fast lint lock bench clean

help:
	@echo "make demo    set up .venv and run the data layer end to end on generated loans"
	@echo "make test    set up .venv and run the test suite (PostgreSQL tests need a server)"
	@echo "make lint    ruff + mypy"
	@echo "make bench   benchmarks (ingest into SQLite and PostgreSQL)"
	@echo "make lock    re-resolve requirements.lock from pyproject.toml (needs the registry)"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/loanrisk --home $(DEMO_HOME) demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not postgres"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)  ## generate + ingest; also: benchmarks/train.py, serve.py, score.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/ingest.py

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--no-header -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
