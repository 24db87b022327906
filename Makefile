# One entry point for people and CI. `make test` is the command the README gives and .ci/run calls.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test unit e2e lint demo bench changelog clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# Unit tests, then the end-to-end suite against the local stack (daemon, registry, emulator).
test: venv lint
	$(PY) -m pytest -q tests

unit: venv
	$(PY) -m pytest -q tests -m "not e2e"

e2e: venv
	$(PY) -m pytest -q tests -m e2e

lint: venv
	$(VENV)/bin/ruff check .

# Brings up the stack, builds the image and runs the pipe's main job against the emulator.
demo: venv
	$(PY) -m tests.demo

bench: venv
	$(PY) -m bench

changelog: venv
	$(VENV)/bin/semversioner changelog > CHANGELOG.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
