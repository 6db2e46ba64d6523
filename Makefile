# loanrisk — the two commands a new user needs are `make demo` and `make test`.
# Both build .venv from requirements.lock (versions + hashes) when it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME := $(VENV)/.runtime
DEMO_HOME ?= .loanrisk

.PHONY: airflow-dags help venv demo test test-fast lint lock bench clean airflow-venv airflow

help:
	@echo "make demo    install the runtime (requirements-image.lock) and run the demo on generated loans"
	@echo "make test    set up .venv and run the test suite (PostgreSQL tests need a server)"
	@echo "make lint    ruff + mypy"
	@echo "make bench   benchmarks (ingest into SQLite and PostgreSQL)"
	@echo "make airflow start Airflow standalone on airflow/dags (own venv: airflow/.venv)"
	@echo "make lock    re-resolve requirements.lock and airflow/requirements.lock (needs the registry)"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing loanrisk with its development tools: $$(grep -c '==' requirements.lock) pinned packages from requirements.lock (about 1.8 GB; a minute or two)"
	$(BIN)/python tools/install.py requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP) $(RUNTIME)

# What `make demo` needs: the runtime only, from requirements-image.lock (the image's lock:
# the same versions as requirements.lock, without the development tools). A venv that
# already has the full set has the runtime too.
$(RUNTIME): requirements-image.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing loanrisk: $$(grep -c '==' requirements-image.lock) pinned packages from requirements-image.lock (about 1.3 GB; a minute or two)"
	$(BIN)/python tools/install.py requirements-image.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(RUNTIME)

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

AIRFLOW_ENV = PATH=$(abspath $(AIRFLOW_VENV)/bin):$$PATH \
	AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(abspath airflow/dags) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	LOANRISK_BIN=$(abspath $(BIN)/loanrisk) \
	LOANRISK_HOME=$${LOANRISK_HOME:-$(abspath $(DEMO_HOME))}

# Airflow 3 lists a DAG only once it is serialized in its database: do it now, not at the
# DAG processor's first scan.
airflow-dags: $(STAMP) $(AIRFLOW_STAMP)  ## migrate Airflow's database and register the DAGs
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow db migrate > /dev/null
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow dags reserialize > /dev/null
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow dags list

airflow: airflow-dags  ## Airflow UI on http://localhost:8080 (login printed by standalone)
	$(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow standalone

demo: $(RUNTIME)
	$(BIN)/loanrisk --home $(DEMO_HOME) demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not postgres"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks airflow tools
	$(BIN)/ruff format --check src tests benchmarks airflow tools
	$(BIN)/mypy

bench: $(STAMP)  ## generate + ingest; also: benchmarks/train.py, serve.py, score.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/ingest.py

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --generate-hashes --python-version 3.11 \
		--no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra image --generate-hashes --python-version 3.11 \
		--no-header -o requirements-image.lock
	$(BIN)/uv pip compile airflow/requirements.in --generate-hashes --python-version 3.11 \
		--no-header -o airflow/requirements.lock

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache
