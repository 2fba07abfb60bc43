# batchml: two commands do everything on a fresh machine (Python 3.11+, Java 17).
#   make demo   set up .venv/ if missing, then run the main job on embedded defaults
#   make test   the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INFRA_VENV := .venv-infra

.PHONY: demo test setup bench clean-state

demo: $(VENV)/.installed
	$(VENV)/bin/batchml demo

test: $(VENV)/.installed $(INFRA_VENV)/.installed
	$(PY) -m pytest -q

setup: $(VENV)/.installed $(INFRA_VENV)/.installed

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

clean-state:
	rm -rf .batchml
