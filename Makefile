# Two commands matter: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
PIP_VERSION := 26.3
VENV := .venv
WORKLOAD_VENV := .venv-workload
CHECKOV_VENV := .venv-checkov
OPENLINEAGE_VENV := .venv-openlineage
PY := $(VENV)/bin/python
FAULT ?=
# run parameters for `make demo`, a JSON object merged over the demo's defaults: CONF='{"vm_count": 2}'
CONF ?=
export CONF
PYTEST_ARGS ?=

CLUSTER_TEST_ARGS ?=

.PHONY: help install test demo sandbox preflight airflow ui-test ui-screenshots browser lint bench clean cluster-deps cluster cluster-test

help:
	@echo "make demo     run the whole pipeline once on the local sandbox (FAULT=<name> to inject a fault,"
	@echo "              CONF='{\"vm_count\": 2}' to set run parameters)"
	@echo "make test     run the test suite"
	@echo "make sandbox  start the local IBM Cloud sandbox in the foreground"
	@echo "make preflight  check your IBM Cloud account before the first paid run (docs/first-run.md;"
	@echo "              SANDBOX=1 checks a local sandbox, CONF='{...}' the run parameters)"
	@echo "make airflow  the sandbox and a local Airflow UI in the foreground (prints URL and login)"
	@echo "make ui-test  browser tests of the Airflow UI (Playwright driving Debian's chromium)"
	@echo "make ui-screenshots  regenerate docs/images/*.png from a real UI session"
	@echo "make lint     ruff (with Airflow rules), shellcheck, checkov on terraform/"
	@echo "make bench    benchmarks against same-run baselines -> bench/results.json"
	@echo "make install  create .venv (orchestrator) and .venv-workload (training job)"
	@echo "make cluster  Airflow as docker-compose runs it (Celery, PostgreSQL, Redis), on loopback, with the sandbox"
	@echo "make cluster-test  the cluster through worker, scheduler and triggerer crashes and a backfill"

# ibm-schematics 1.1.0 ships only an sdist whose build needs setuptools<72; a recent pip
# applies that limit to the isolated build environment alone (--build-constraint).
# The IBM Cloud provider (plugins/pyproject.toml: ibm_cloud_airflow only) is installed editable, so
# `airflow providers list` shows it and the UI offers its connection types; the code stays in plugins/.
PROVIDER := plugins/pyproject.toml
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt build-constraints.txt $(PROVIDER)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(PY) -m pip install --quiet -r requirements-dev.txt -e ./plugins -c constraints.txt \
	  --build-constraint build-constraints.txt
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

# The OpenLineage provider registers a listener as soon as it is installed (and Airflow then refuses
# triggerer endings), so it gets an environment of its own for tests/openlineage/: .venv's packages
# (a .pth file adds .venv's site-packages behind its own) plus requirements-openlineage.txt.
$(OPENLINEAGE_VENV)/.installed: $(VENV)/.installed requirements-openlineage.txt constraints.txt
	test -x $(OPENLINEAGE_VENV)/bin/python || $(PYTHON) -m venv --without-pip $(OPENLINEAGE_VENV)
	$(OPENLINEAGE_VENV)/bin/python -c 'import pathlib, sys, sysconfig; \
	  pathlib.Path(sysconfig.get_path("purelib"), "venv-base.pth").write_text(f"import site; site.addsitedir({sys.argv[1]!r})\n")' \
	  "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	$(OPENLINEAGE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -r requirements-openlineage.txt -c constraints.txt
	$(OPENLINEAGE_VENV)/bin/python -m pip check
	touch $@

install: $(VENV)/.installed $(WORKLOAD_VENV)/.installed

# tests/ui (a browser, a whole Airflow, five pipeline runs) is `make ui-test`: see README, Development.
# tests/openlineage runs in .venv-openlineage (the provider installed), the rest in .venv (without it).
test: install $(CHECKOV_VENV)/.installed $(OPENLINEAGE_VENV)/.installed
	$(PY) -m pytest tests/ibm_cloud_airflow -p tests.without_gpu_pipeline $(PYTEST_ARGS)
	$(PY) -m pytest --ignore=tests/ui --ignore=tests/openlineage --ignore=tests/ibm_cloud_airflow $(PYTEST_ARGS)
	$(OPENLINEAGE_VENV)/bin/python -m pytest tests/openlineage $(PYTEST_ARGS)

demo: install
	$(PY) -m scripts.demo $(if $(FAULT),--fault $(FAULT),) --conf "$$CONF"

sandbox: install
	$(PY) -m sandbox

# Read-only checks of the account the DAG's connections point at, plus one plan-only workspace
# that it deletes (docs/first-run.md). SANDBOX=1: against a local sandbox instead.
SANDBOX ?=
preflight: install
	$(PY) -m scripts.preflight $(if $(SANDBOX),--sandbox,) --conf "$$CONF"

airflow: install
	$(PY) -m scripts.airflow_ui

# Playwright cannot download its own browser here: it drives Debian's chromium (apt, as root in CI).
CHROMIUM := /usr/bin/chromium
browser: $(CHROMIUM)
$(CHROMIUM):
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

ui-test: install browser
	$(PY) -m pytest tests/ui -p no:cacheprovider $(PYTEST_ARGS)

# The screenshots in docs/images/ and the README come from the same browser session as the tests.
ui-screenshots: install browser
	UI_SCREENSHOTS_DIR=docs/images $(PY) -m pytest tests/ui -p no:cacheprovider $(PYTEST_ARGS)

lint: install $(CHECKOV_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/shellcheck workload/*.sh .ci/run
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download -d terraform --framework terraform

# The cluster's Airflow runs from the runtime requirements alone, as in the Docker image:
# requirements.txt plus the packages the official image ships for Celery, PostgreSQL and FAB,
# plus the IBM Cloud provider (editable, as in .venv; the image installs it as a wheel).
CLUSTER_VENV := .venv-cluster
$(CLUSTER_VENV)/.installed: requirements.txt requirements-cluster.txt constraints.txt build-constraints.txt $(PROVIDER)
	test -x $(CLUSTER_VENV)/bin/python || $(PYTHON) -m venv $(CLUSTER_VENV)
	$(CLUSTER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(CLUSTER_VENV)/bin/python -m pip install --quiet -r requirements.txt -r requirements-cluster.txt \
	  -e ./plugins -c constraints.txt --build-constraint build-constraints.txt
	$(CLUSTER_VENV)/bin/python -m pip check
	touch $@

# PostgreSQL and Redis from Debian's packages (bookworm: PostgreSQL 15, Redis 7.0).
.cluster-deps.installed: $(CLUSTER_VENV)/.installed
	test -x /usr/lib/postgresql/15/bin/postgres -a -x /usr/bin/redis-server || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    'postgresql-15' 'redis-server=5:7.0.*'; }
	touch $@

cluster-deps: .cluster-deps.installed

cluster: install cluster-deps
	$(PY) -m scripts.cluster

cluster-test: install cluster-deps
	$(PY) -m scripts.cluster_test $(CLUSTER_TEST_ARGS)

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(WORKLOAD_VENV) $(CHECKOV_VENV) $(OPENLINEAGE_VENV) .sandbox .airflow demo-output bench/results.json \
	  .cluster-deps.installed $(CLUSTER_VENV) plugins/build plugins/*.egg-info
