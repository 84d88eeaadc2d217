# Seattle crime pipeline. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.DEFAULT_GOAL := help
.PHONY: help install install-dev browser bqemu run status demo serve server bench test lint format requirements clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned requirements into $(VENV) (about a minute the first time)"
	@$(BIN)/python -m pip install -qq --upgrade pip
	@$(BIN)/python -m pip install -qq -r requirements.txt
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	@echo "installing the pinned development and test requirements into $(VENV)"
	@$(BIN)/python -m pip install -qq -r requirements.txt -r requirements-dev.txt
	@touch $(DEV_STAMP)

install: $(STAMP) ## create .venv and install the pinned runtime requirements

install-dev: $(DEV_STAMP) ## add the pinned development and test requirements (pytest, linters, emulators)

browser: ## install Debian's chromium for the UI test (needs root or sudo)
	@command -v chromium >/dev/null || { \
	  echo "installing chromium for the Prefect UI test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP) ## load every missing month from the live SPD API into data/lake and data/warehouse.duckdb
	$(BIN)/python -m flows run $(ARGS)

status: $(STAMP) ## show the months in the lake and what is missing
	$(BIN)/python -m flows status $(ARGS)

demo: $(STAMP) ## the same pipeline offline, against the local Socrata-compatible server (data/demo/)
	$(BIN)/python -m tests.demo $(ARGS)

serve: $(STAMP) ## serve the monthly deployment (cron 8 am on the 1st, Seattle time) until Ctrl-C
	$(BIN)/python -m flows serve $(ARGS)

server: $(STAMP) ## start a local Prefect server with its UI on http://127.0.0.1:4200
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

bench: $(DEV_STAMP) ## run the benchmarks and write benchmarks/RESULTS.md (minutes; not part of test)
	$(BIN)/python -m benchmarks $(ARGS)

bqemu: ## the BigQuery emulator for the tests, in .venv-bqemu (about 45 s the first time)
	@bash tests/setup_bqemulator.sh

test: $(DEV_STAMP) browser bqemu lint ## lint, then the whole test suite (offline)
	$(BIN)/python -m pytest $(ARGS)

lint: $(DEV_STAMP) ## ruff, mypy and sqlfluff, as CI runs them (pre-commit runs the same)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sqlfluff lint dbt/models dbt/macros dbt/tests

format: $(DEV_STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

requirements: ## regenerate requirements.txt and requirements-dev.txt from the .in files (needs uv)
	uv pip compile requirements.in -o requirements.txt --python-version 3.11 --quiet --custom-compile-command "make requirements"
	uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 --quiet --custom-compile-command "make requirements"

clean: ## remove the virtual environments and dbt outputs (keeps data/)
	rm -rf $(VENV) .venv-bqemu dbt/target dbt/logs
