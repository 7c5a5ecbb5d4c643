# Two commands for a fresh machine: `make run` (the pipeline) and `make test` (the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

export DO_NOT_TRACK := 1
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: venv run test test-unit test-integration test-faults lint format stack-up stack-down status docs airflow bench lock manifest clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

stack-up: venv
	$(BIN)/weatherpipe stack up

stack-down: venv
	$(BIN)/weatherpipe stack down

manifest: venv  ## dbt manifest for Cosmos (LoadMode.DBT_MANIFEST)
	$(BIN)/python -m weatherpipe.gold parse

run: stack-up manifest
	$(BIN)/weatherpipe run

status: venv
	$(BIN)/weatherpipe status

# The suite starts its own durable brokers where it tests durability; the shared one can be the faster memory broker.
test test-integration test-faults: export WEATHERPIPE_STACK__KAFKA_STORAGE ?= memory

test: stack-up manifest  ## every layer on the real local stack, then the 15 slowest tests
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

test-unit: venv  ## the unit layer: no service, no Spark, no subprocess (nothing is started)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: stack-up manifest
	$(BIN)/pytest tests/integration --durations=15 $(PYTEST_ARGS)

test-faults: stack-up manifest  ## kills, outages, full disks
	$(BIN)/pytest tests/faults --durations=15 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .
	cd dbt_project && ../$(BIN)/sqlfluff lint models snapshots tests

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: venv
	$(BIN)/weatherpipe docs

airflow: stack-up manifest
	$(BIN)/weatherpipe airflow

bench: stack-up  ## Spark's JDBC writer is one reference: Debian's libpostgresql-jdbc-java provides its jar
	@test -f /usr/share/java/postgresql.jar || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpostgresql-jdbc-java) \
	  >/dev/null 2>&1; } || echo "no PostgreSQL JDBC jar: the JDBC reference is skipped" >&2
	$(BIN)/python -m bench

lock: ## re-resolve requirements.in into the exact lock requirements.txt
	rm -rf /tmp/weatherpipe-lock && $(PYTHON) -m venv /tmp/weatherpipe-lock
	/tmp/weatherpipe-lock/bin/pip install --quiet --upgrade pip
	/tmp/weatherpipe-lock/bin/pip install --quiet -r requirements.in
	(echo "# Exact lock of the environment (python 3.11). Direct dependencies: requirements.in. Regenerate: make lock"; \
	 /tmp/weatherpipe-lock/bin/pip freeze) > requirements.txt

clean: stack-down
	rm -rf .stack dbt_project/target dbt_project/logs
