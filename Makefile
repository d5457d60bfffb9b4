# The two README commands: `make demo` and `make test`. Both call `make install`,
# which creates .venv if it is missing and installs deepgrad with what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench-train bench-gradcheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,test]"
	$(PY) -m pip install -q -e ".[mpi]"
	$(PY) -m pip install -q "torch==2.13.0"  # the torch backend's tests (no-op when present)
	touch $(STAMP)

demo: install
	$(VENV)/bin/deepgrad demo --out out

test: install
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran"; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

.PHONY: bench-distributed
bench-distributed: install
	$(PY) bench/distributed.py

clean:
	rm -rf $(VENV) out build dist src/*.egg-info

bench-gradcheck: install
	$(PY) bench/gradcheck.py

# Training throughput by configuration, deepgrad vs PyTorch eager on the CPU (docs/training.md)
bench-train: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/train_engines.py --json docs/bench_train_engines.json
