# One entry point for people and CI. `make test` is the command the README gives and .ci/run calls.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: deps venv node test unit e2e lint demo bench changelog clean

# Docker, the registry and debootstrap from Debian, when missing (needs root).
deps:
	scripts/install-system-deps

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# Node's google-auth-library, from the lockfile, for the client interoperability tests (without Node they are skipped and reported).
node:
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund; fi

# Unit tests, then the end-to-end suite against the local stack (daemon, registry, emulator).
test: deps venv node lint
	$(PY) -m pytest -q tests

unit: venv
	$(PY) -m pytest -q tests -m "not e2e"

e2e: deps venv node
	$(PY) -m pytest -q tests -m e2e

lint: venv
	$(VENV)/bin/ruff check .

# Brings up the stack, builds the image and runs the pipe's main job against the emulator.
demo: deps venv
	$(PY) -m tests.support.demo

bench: deps venv
	$(PY) -m bench

changelog: venv
	$(PY) scripts/changelog.py > CHANGELOG.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
