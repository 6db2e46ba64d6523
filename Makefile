# loanrisk — the two commands a new user needs are `make demo` and `make test`.
# Both build .venv from requirements.lock (versions + hashes) when it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= .loanrisk

.PHONY: help venv demo test test-fast lint lock bench clean airflow-venv airflow

help:
	@echo "make demo    set up .venv and run the data layer end to end on generated loans"
	@echo "make test    set up .venv and run the test suite (PostgreSQL tests need a server)"
	@echo "make lint    ruff + mypy"
	@echo "make bench   benchmarks (ingest into SQLite and PostgreSQL)"
	@echo "make airflow start Airflow standalone on airflow/dags (own venv: airflow/.venv)"
	@echo "make lock    re-resolve requirements.lock and airflow/requirements.lock (needs the registry)"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

# Airflow has pins of its own: a separate venv from its own lock. The DAGs call our CLI.
AIRFLOW_VENV  := airflow/.venv
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_HOME  ?= $(abspath airflow/.home)

$(AIRFLOW_STAMP): airflow/requirements.lock
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r airflow/requirements.lock
	@touch $(AIRFLOW_STAMP)

airflow-venv: $(AIRFLOW_STAMP)

airflow: $(STAMP) $(AIRFLOW_STAMP)  ## Airflow UI on http://localhost:8080 (login printed by standalone)
	PATH=$(abspath $(AIRFLOW_VENV)/bin):$$PATH \
	AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(abspath airflow/dags) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	LOANRISK_BIN=$(abspath $(BIN)/loanrisk) \
	LOANRISK_HOME=$${LOANRISK_HOME:-$(abspath $(DEMO_HOME))} \
	$(AIRFLOW_VENV)/bin/airflow standalone

demo: $(STAMP)
	$(BIN)/loanrisk --home $(DEMO_HOME) demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not postgres"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks airflow
	$(BIN)/ruff format --check src tests benchmarks airflow
	$(BIN)/mypy

bench: $(STAMP)  ## generate + ingest; also: benchmarks/train.py, serve.py, score.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/ingest.py

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra image --generate-hashes --python-version 3.11 \
		--no-header -o requirements-image.lock
	$(BIN)/uv pip compile airflow/requirements.in --generate-hashes --python-version 3.11 \
		--no-header -o airflow/requirements.lock

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache
