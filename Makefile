# The two commands of the README: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
VENV := .venv
PYTEST_ARGS ?=

.PHONY: setup demo test bench lint format clean

setup:
	@bash ops/setup.sh

demo: setup
	@bash ops/demo.sh

test: setup
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	@$(VENV)/bin/python benchmarks/run_all.py

lint: setup
	@$(VENV)/bin/ruff check archive plugins tests benchmarks
	@$(VENV)/bin/ruff format --check archive plugins tests benchmarks

format: setup
	@$(VENV)/bin/ruff format archive plugins tests benchmarks

clean:
	rm -rf var/ .pytest_cache
