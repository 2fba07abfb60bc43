# batchml: two commands do everything on a fresh machine (Python 3.11+, Java 17).
#   make demo   set up .venv/ if missing, then run the pipeline on demo data, nightly runs through Airflow
#   make test   the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INFRA_VENV := .venv-infra

.PHONY: demo ui test test-e2e test-spark40 test-mwaa setup bench clean-state chromium redis package deploy

# Airflow demo (src/batchml/orchestration/demo.py); DEMO_ARGS e.g. "--nightly-days 8 --rows-per-day 20000".
demo: $(VENV)/.installed
	$(PY) -m batchml.orchestration.demo $(DEMO_ARGS)

# The Airflow UI (with its scheduler) and the MLflow UI on the demo's state; prints the URLs and the login.
ui: $(VENV)/.installed
	$(VENV)/bin/batchml --env demo ui

test: $(VENV)/.installed $(INFRA_VENV)/.installed chromium redis
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25
	$(MAKE) --no-print-directory test-spark40 test-mwaa

# Two CI legs in environments of their own (docs/deploy.md, "What CI checks"):
# - Spark 4.0.2, as AWS's emr-spark-8.0.0 runs it, in a venv outside the repository where batchml is
#   installed from its wheel: the installed-wheel test, the storage tests and one stage chain;
# - the DAG side as MWAA installs it: the pinned Airflow and providers, batchml[airflow], the DagBag.
# Each leg's venv is named by a hash of the files that define it, and kept under $(LEG_HOME) between runs:
# it is rebuilt (from PyPI, older ones removed) only when pyproject.toml, this file or MWAA's constraints change.
LEG_HOME ?= $(HOME)/.cache/batchml-ci
SPARK40_VENV := $(LEG_HOME)/venv-spark40-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
MWAA_VENV := $(LEG_HOME)/venv-mwaa-$(shell cat pyproject.toml Makefile infra/mwaa/constraints.txt | sha256sum | cut -c1-12)
MWAA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12) $(PYTHON))

test-spark40: $(SPARK40_VENV)/.installed
	rm -rf build $(LEG_HOME)/wheel
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(LEG_HOME)/wheel .
	rm -rf build
	$(SPARK40_VENV)/bin/pip install --quiet --no-deps --force-reinstall $(LEG_HOME)/wheel/batchml-*.whl
	$(SPARK40_VENV)/bin/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider \
	  tests/release/test_installed_wheel.py tests/storage tests/cluster/test_stage_chain.py

$(SPARK40_VENV)/.installed:
	rm -rf $(LEG_HOME)/venv-spark40* && mkdir -p $(LEG_HOME) && $(PYTHON) -m venv $(SPARK40_VENV)
	$(SPARK40_VENV)/bin/pip install --quiet '.[spark]' 'pyspark==4.0.2' 'pytest>=8,<10' 'pytest-xdist>=3.6,<4' \
	  'moto[server]>=5.0,<6' 'polars>=1.20,<2'
	rm -rf build
	touch $@

test-mwaa: $(MWAA_VENV)/.installed
	$(MWAA_VENV)/bin/pip install --quiet --no-deps --force-reinstall . && rm -rf build
	$(MWAA_VENV)/bin/python tests/mwaa/check_dag_side.py infra/mwaa/constraints.txt

$(MWAA_VENV)/.installed:
	rm -rf $(LEG_HOME)/venv-mwaa* && mkdir -p $(LEG_HOME) && $(MWAA_PYTHON) -m venv $(MWAA_VENV)
	$(MWAA_VENV)/bin/pip install --quiet --upgrade pip
	$(MWAA_VENV)/bin/pip install --quiet -c infra/mwaa/constraints.txt '.[airflow]'
	touch $@

# Only the Airflow end-to-end legs (also part of make test): two nightly dag.test() runs, a rerun, a backfill.
test-e2e: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m e2e tests/orchestration

# The Airflow UI test drives headless Chromium (Debian package `chromium`). Installed when missing and we
# are root with apt-get; otherwise that one test is skipped and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	    else echo "chromium is missing and cannot be installed here (not root or no apt-get): the UI test will skip"; fi; }

# The online store's Redis backend tests start a redis-server (Debian package `redis-server`) on loopback.
# Installed when missing and we are root with apt-get; otherwise those tests skip and say why.
redis:
	@command -v redis-server >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; \
	    else echo "redis-server is missing and cannot be installed here (not root or no apt-get): the Redis tests will skip"; fi; }

setup: $(VENV)/.installed $(INFRA_VENV)/.installed

# Everything a cluster needs, in $(DIST)/ (docs/deploy.md): the wheel, the driver's and executors' Python
# environment for $(TARGET_PYTHON) (emr-spark-8.0.0's interpreter), jobs/, conf/, sql/, dags/, MWAA's files.
DIST ?= dist
TARGET_PYTHON ?= /usr/bin/python3.11
package: $(VENV)/.installed
	$(PY) -m batchml.release.package --out $(DIST) --python $(TARGET_PYTHON)

bench: $(VENV)/.installed
	$(PY) bench/bench_storage.py

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "batchml needs Python 3.11+, found " + sys.version.split()[0]'
	@command -v java >/dev/null || [ -x "$$JAVA_HOME/bin/java" ] || { echo "batchml needs Java 17 or 21 for Spark: install it (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME" >&2; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# checkov pins many packages of its own, so it lives in a separate tool environment.
$(INFRA_VENV)/.installed: infra/terraform/requirements-checkov.txt
	test -d $(INFRA_VENV) || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet -r infra/terraform/requirements-checkov.txt
	touch $@

# Upload the release in dist/ (`make package`) to the stack in infra/terraform (`terraform output`):
# release files, DAGs, MWAA requirements/plugins/startup script, then the Airflow pool. docs/deploy.md.
ENV ?= prod
DEPLOY_ARGS ?=
deploy: $(VENV)/.installed
	$(PY) -m batchml.release.deploy --env $(ENV) --dist $(DIST) --terraform-dir infra/terraform $(DEPLOY_ARGS)

clean-state:
	rm -rf .batchml
