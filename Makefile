# The two commands of the README: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
VENV := .venv
PYTEST_ARGS ?=
# The suite runs in parallel workers, each test file whole on one worker (module
# fixtures start one archive per file); each worker takes its own slice of ports
# (tests/harness.py). `make test WORKERS=0` runs it in one process.
WORKERS ?= 2

.PHONY: setup demo test bench lint format clean

setup:
	@bash ops/setup.sh

demo: setup
	@bash ops/demo.sh

test: setup
	@$(VENV)/bin/python -m pytest $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile) $(PYTEST_ARGS)

bench: setup
	@$(VENV)/bin/python benchmarks/run_all.py

lint: setup
	@$(VENV)/bin/ruff check archive plugins tests benchmarks
	@$(VENV)/bin/ruff format --check archive plugins tests benchmarks

format: setup
	@$(VENV)/bin/ruff format archive plugins tests benchmarks

clean:
	rm -rf var/ .pytest_cache
