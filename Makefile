# Set-up and everyday tasks. `make demo` and `make test` are the README's two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench proto clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,services,orchestrator]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/rsir run --data synthetic --iterations 2 --out runs/demo

test: setup
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .

proto: setup
	$(PY) -m services.common.protogen

bench: setup
	$(PY) bench/accuracy.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
