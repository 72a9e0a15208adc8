# Everyday commands. Each uses the project's virtualenv (.venv), which `make install` creates.
# CI runs .ci/run, which starts the services and then calls these same targets.

PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TESTS := tests handlers_example/tests

.DEFAULT_GOAL := help
.PHONY: help install demo test chaos lint promtool fmt docs docs-check check-wheel bench bench-smoke all

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON_BIN) -m venv $(VENV)

install: $(PY)  ## create .venv and install taskrt, its dev tools and the example handlers (editable)
	$(PY) -m pip install -e '.[dev]' -e ./handlers_example

demo: install  ## the main command: a batch of example tasks on the embedded SQLite default
	$(VENV)/bin/taskrt demo

test:  ## run every test (needs PostgreSQL and Redis; see README)
	$(PY) -m pytest $(TESTS)

chaos:  ## only the fault-injection suite (private servers it restarts, kills, freezes, skews)
	$(PY) -m pytest tests/chaos

lint:  ## ruff (lint and format check), mypy and the import layers (lint-imports); runs all four, fails if any fails
	@status=0; \
	echo "$(PY) -m ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "$(PY) -m ruff format --check ."; $(PY) -m ruff format --check . || status=1; \
	echo "$(PY) -m mypy"; $(PY) -m mypy || status=1; \
	echo "$(VENV)/bin/lint-imports"; $(VENV)/bin/lint-imports --no-cache || status=1; \
	exit $$status

lint-deploy:  ## hadolint on the Dockerfile and `docker compose config` on docker-compose.yml
	@status=0; \
	echo "$(VENV)/bin/hadolint --failure-threshold style Dockerfile"; \
	$(VENV)/bin/hadolint --failure-threshold style Dockerfile || status=1; \
	echo "$(VENV)/bin/docker-compose -f docker-compose.yml config --quiet"; \
	$(VENV)/bin/docker-compose -f docker-compose.yml config --quiet || status=1; \
	exit $$status

promtool:  ## check the Prometheus alert rules and scrape config, run the rules' unit tests
	cd config/prometheus && promtool check rules alerts.yml && promtool check config prometheus.yml \
		&& promtool test rules tests/*.yml

fmt:  ## format the code and apply safe lint fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

docs:  ## regenerate docs/reference (settings, hooks, CLI) from the code
	$(PY) -m scripts.refdocs all

docs-check:  ## fail if docs/reference is stale
	$(PY) -m scripts.refdocs all --check

check-wheel:  ## build the wheel, install it into a fresh venv, import everything
	PYTHON=$(abspath $(PY)) scripts/check_wheel.sh

bench:  ## benchmark suite on PostgreSQL and Redis (minutes); JSON in bench/results/
	$(PY) -m bench

bench-smoke:  ## the benchmark suite at tiny sizes (about a minute; CI runs it)
	$(PY) -m bench --quick

all: lint promtool docs-check test check-wheel bench-smoke  ## everything CI checks
