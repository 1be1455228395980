# Two commands matter: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
PIP_VERSION := 26.3
VENV := .venv
WORKLOAD_VENV := .venv-workload
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
FAULT ?=
# run parameters for `make demo`, a JSON object merged over the demo's defaults: CONF='{"vm_count": 2}'
CONF ?=
export CONF
PYTEST_ARGS ?=

CLUSTER_TEST_ARGS ?=

.PHONY: help install test demo sandbox lint bench clean cluster-deps cluster cluster-test

help:
	@echo "make demo     run the whole pipeline once on the local sandbox (FAULT=<name> to inject a fault,"
	@echo "              CONF='{\"vm_count\": 2}' to set run parameters)"
	@echo "make test     run the test suite"
	@echo "make sandbox  start the local IBM Cloud sandbox in the foreground"
	@echo "make lint     ruff (with Airflow rules), shellcheck, checkov on terraform/"
	@echo "make bench    benchmarks against same-run baselines -> bench/results.json"
	@echo "make install  create .venv (orchestrator) and .venv-workload (training job)"
	@echo "make cluster  Airflow as docker-compose runs it (Celery, PostgreSQL, Redis), on loopback, with the sandbox"
	@echo "make cluster-test  the cluster through worker, scheduler and triggerer crashes and a backfill"

# ibm-schematics 1.1.0 ships only an sdist whose build needs setuptools<72; a recent pip
# applies that limit to the isolated build environment alone (--build-constraint).
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt build-constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt --build-constraint build-constraints.txt
	$(PY) -m pip check
	touch $@

$(WORKLOAD_VENV)/.installed: workload/requirements.txt workload/requirements-cpu.txt workload/constraints-cpu.txt
	test -x $(WORKLOAD_VENV)/bin/python || $(PYTHON) -m venv $(WORKLOAD_VENV)
	$(WORKLOAD_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(WORKLOAD_VENV)/bin/python -m pip install --quiet -r workload/requirements-cpu.txt -c workload/constraints-cpu.txt
	$(WORKLOAD_VENV)/bin/python -m pip check
	touch $@

# checkov pins packages that conflict with Airflow 3.3, so it gets an environment of its own.
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"
	touch $@

install: $(VENV)/.installed $(WORKLOAD_VENV)/.installed

test: install $(CHECKOV_VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m scripts.demo $(if $(FAULT),--fault $(FAULT),) --conf "$$CONF"

sandbox: install
	$(PY) -m sandbox

lint: install $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/shellcheck workload/*.sh .ci/run
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download -d terraform --framework terraform

# PostgreSQL and Redis from Debian's packages (bookworm: PostgreSQL 15, Redis 7.0), and the Airflow
# packages the official image ships for Celery, PostgreSQL and FAB.
.cluster-deps.installed: requirements-cluster.txt constraints.txt | $(VENV)/.installed
	test -x /usr/lib/postgresql/15/bin/postgres -a -x /usr/bin/redis-server || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    'postgresql-15' 'redis-server=5:7.0.*'; }
	$(PY) -m pip install --quiet -r requirements-cluster.txt -c constraints.txt
	$(PY) -m pip check
	touch $@

cluster-deps: .cluster-deps.installed

cluster: install cluster-deps
	$(PY) -m scripts.cluster

cluster-test: install cluster-deps
	$(PY) -m scripts.cluster_test $(CLUSTER_TEST_ARGS)

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(WORKLOAD_VENV) $(CHECKOV_VENV) .sandbox .airflow demo-output bench/results.json \
	  .cluster-deps.installed
