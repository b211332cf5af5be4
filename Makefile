# ssmd-fast: every set-up step lives here, so a fresh clone needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
PYX    := $(shell find ssmd_fast -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi')

.DEFAULT_GOAL := help
.PHONY: help install build test test-compiled test-python test-faults lint bench bench-long demo clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The stamp depends on the packaging files only: a second `make test` does not reinstall.
$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(VENV)/.built $@

install: $(VENV)/.installed ## create .venv with the project (editable) and its test extra

# Rebuild the extensions in place when a .pyx/.pxd changed since the last build.
$(VENV)/.built: $(VENV)/.installed $(PYX)
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: $(VENV)/.built ## (re)build the Cython extensions in place

test: build ## run the tests: compiled extensions, then the pure-Python twins
	$(PYTEST) -q -m "not fault"
	SSMD_FAST_NO_EXTENSIONS=1 $(PYTEST) -q -m "twin and not fault"

test-faults: build ## run the fault drills (also run by CI)
	$(PYTEST) -q -m fault -s

lint: install ## ruff over the sources, tests and benchmarks
	$(PY) -m ruff check ssmd_fast tests benchmarks setup.py

bench: build ## benchmarks: micro (pytest-benchmark) and end to end, ratios checked against thresholds
	$(PY) -m benchmarks

bench-long: build ## long run: RSS over 10 M messages (not run in CI)
	$(PY) -m benchmarks --long

demo: build ## run the whole pipeline against the local exchange and an embedded nats-server
	$(VENV)/bin/ssmd-fast demo

clean: ## remove build outputs and the virtualenv
	rm -rf build dist *.egg-info $(VENV) .pytest_cache .hypothesis .ruff_cache .benchmarks
	find ssmd_fast -name '*.so' -delete -o -name '*.c' -delete -o -name '*.html' -delete
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
