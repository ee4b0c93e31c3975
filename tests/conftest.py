import glob
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
_prefixes = itertools.count()

# Timings are never pass/fail here: a first example that compiles numba kernels takes seconds.
settings.register_profile("fh", deadline=None)
settings.load_profile("fh")


@pytest.fixture
def shm_prefix():
    """A segment prefix no other test or deployment uses; its segments are removed afterwards."""
    prefix = f"fhtest{os.getpid()}n{next(_prefixes)}"
    yield prefix
    for path in glob.glob(f"/dev/shm/{prefix}.*"):
        os.unlink(path)


@pytest.fixture
def captures() -> Path:
    """The real venue recordings in ../shared/captures (or $FH_CAPTURES); skip when absent."""
    path = Path(os.environ.get("FH_CAPTURES", REPO.parent / "shared" / "captures"))
    if not path.is_dir():
        pytest.skip(f"real recordings not found at {path} (set FH_CAPTURES); skipping the check on real data")
    return path


@pytest.fixture
def service(tmp_path):
    """start(name, **options) -> a private real service (redis, kafka, clickhouse) on a free loopback
    port, stopped afterwards. A missing server binary fails the test: `make test` installs them."""
    from tools import services
    started = []

    def start(name: str, **options):
        started.append(services.start(name, tmp_path / "services", **options))
        return started[-1]
    yield start
    for running in started:
        running.stop()


@pytest.fixture
def coinbase(captures, tmp_path, shm_prefix):
    """The Coinbase 2021 recording replayed into `<shm_prefix>.coinbase` (tests/sinks.py), left in
    place: (prefix, venue, reference records of its ring)."""
    from tests.sinks import Reference, replayed
    venue = replayed(captures, tmp_path, shm_prefix)
    return shm_prefix, venue, Reference(shm_prefix, venue)


@pytest.fixture
def chdb(coinbase, tmp_path):
    """The replay delivered into chDB by the ClickHouse sink, then that sink's store reopened here
    (chDB allows one owner per path, which is now this test): (sink, venue, reference)."""
    from tests.sinks import at_heads, run_config, run_sink_until, sink_settings
    prefix, venue, ref = coinbase
    run = run_config(prefix, [venue], {"clickhouse": sink_settings(tmp_path, url=f"chdb://{tmp_path / 'ch'}")})
    sink = run_sink_until(run, "clickhouse", at_heads(ref)).sink
    sink.open()
    yield sink, venue, ref
    sink.close()
