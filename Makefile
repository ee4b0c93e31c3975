# `make test` and `make run` set everything up from nothing: a venv, the project, its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test run bench clean

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fh needs Python >= 3.11, set PYTHON="'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Until the venue pipeline lands (issue 4), the main job measures the core: books and shared memory.
run: bench

bench: $(STAMP)
	$(BIN)/fh bench book
	$(BIN)/fh bench shm

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
