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

# The main job: the exchange simulator and the whole pipeline against it for $(DURATION) s, live NBBO on
# stderr, then one JSON summary as the last line of stdout.
DURATION ?= 30

run: $(STAMP)
	@mkdir -p .fh
	$(BIN)/fh warmup >&2
	@rm -f .fh/sim.urls; $(BIN)/fh sim > .fh/sim.urls 2> .fh/sim.log & sim=$$!; \
	trap 'kill $$sim 2>/dev/null; wait $$sim' EXIT; \
	until [ -s .fh/sim.urls ]; do kill -0 $$sim || { cat .fh/sim.log >&2; exit 1; }; sleep 0.1; done; \
	$(BIN)/fh run -c configs/sim.toml --duration $(DURATION) --json

bench: $(STAMP)
	$(BIN)/fh bench book
	$(BIN)/fh bench shm
	$(BIN)/fh bench decode
	$(BIN)/fh bench wire
	$(BIN)/fh bench nbbo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .fh
	find . -name __pycache__ -prune -exec rm -rf {} +
