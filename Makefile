# Set-up and everyday tasks. `make up` and `make test` are the README's two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup up demo test lint bench proto clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,services,orchestrator]'
	touch $(STAMP)

setup: $(STAMP)

up: setup  # the local stack (trainer, generator, orchestrator) and the demo run (submitted once); Ctrl-C stops it
	$(VENV)/bin/rsir up --demo

demo: setup  # the same demo in this process, no services: built-in data, recipe demo, results in runs/demo
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) examples/demo.py --out runs/demo  # one thread: a small model, shared cores

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
