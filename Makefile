# The two README commands: `make demo` and `make test`, each one command on a fresh clone.
# Installs come in layers, each a stamp file in .venv:
#   install        deepgrad + what the demo needs (plots, bundled datasets, progress bar)
#   install-tables + pandas, to train on your own CSV/TSV tables
#   install-test   + everything the test suite needs (torch CPU, MPI, pytest, ...)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
DEMO_STAMP := $(VENV)/.installed-demo
TABLES_STAMP := $(VENV)/.installed-tables
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-tables install-test demo test lint bench-train bench-gradcheck \
	bench-distributed clean

install: $(DEMO_STAMP)
install-tables: $(TABLES_STAMP)
install-test: $(TEST_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[demo]"
	touch $@

$(TABLES_STAMP): $(DEMO_STAMP)
	$(PIP) -e ".[demo,tables]"
	touch $@

$(TEST_STAMP): $(DEMO_STAMP)
	$(PIP) -e ".[all,test]"
	$(PIP) -e ".[mpi]"
	$(PIP) "torch==2.13.0"  # the torch backend's tests (CPU is enough)
	touch $@

demo: install
	$(VENV)/bin/deepgrad demo --out out

test: install-test
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran"; exit 1; fi; exit $$rc

lint: install-test
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench-distributed: install-test
	$(PY) bench/distributed.py

bench-gradcheck: install
	$(PY) bench/gradcheck.py

# Training throughput by configuration, deepgrad vs PyTorch eager on the CPU (docs/training.md)
bench-train: install
	$(PIP) -e ".[bench]"
	$(PY) bench/train_engines.py --json docs/bench_train_engines.json
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/course_size.py --json docs/bench_course_size.json
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/compiled_crossover.py --json docs/bench_compiled_crossover.json

clean:
	rm -rf $(VENV) out build dist src/*.egg-info
