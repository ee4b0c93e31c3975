"""SIGTERM while a process is still starting (here: waiting for the venues' instrument metadata, which
the simulator answers slowly): it stops within the supervisor's grace period instead of finishing
its start first, exits 0 (a requested stop), leaves no child behind and no segment OPEN."""
from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
from collections.abc import Iterator

import psutil
import pytest

from shm.layout import State
from shm.segment import Segment, SegmentError
from tests.pipeline import FH, REPO, SPOT_VENUES, Pipeline, wait_for
from workers.supervisor import STOP_GRACE_S

STARTUP_S = 300  # a cold numba cache compiles for minutes
SLOW_REST_S = 300  # the metadata answer comes long after every check here


def asking_for_metadata(pid: int, port: int) -> bool:
    """The process holds an open connection to the venue's REST port: its metadata request is pending."""
    try:
        return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
                   for c in psutil.Process(pid).net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def segments(prefix: str) -> dict[str, State]:
    """The segments of `prefix` and their states."""
    found = {}
    for path in glob.glob(f"/dev/shm/{prefix}.*"):
        name = path.rsplit("/", 1)[1][len(prefix) + 1:]
        try:
            with Segment(prefix, name) as segment:
                found[name] = segment.state
        except SegmentError:
            continue  # a lock or latency file
    return found


@contextlib.contextmanager
def started(argv: list[str], log, **env: str) -> Iterator[subprocess.Popen]:
    """`fh ARGV` with its stderr in `log`; killed afterwards if it is still running."""
    process = subprocess.Popen(FH + argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env},
                               stderr=open(log, "w"))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def slow_venues(tmp_path):
    """The simulator with every venue's next REST answers held for SLOW_REST_S."""
    pipeline = Pipeline(tmp_path, f"fhss{os.getpid()}", venues=SPOT_VENUES)
    pipeline.start_sim()
    for venue in SPOT_VENUES:
        pipeline.fault(venue, "slow_rest", seconds=SLOW_REST_S, count=10)
    yield pipeline
    pipeline.stop()


@pytest.mark.slow
def test_a_worker_stopped_while_starting_exits_at_once_and_cleanly(slow_venues):
    pipeline = slow_venues
    log = pipeline.workdir / "worker.log"
    with started(["worker", "binance", "-c", str(pipeline.config_path)], log) as worker:
        wait_for(lambda: asking_for_metadata(worker.pid, pipeline.rest_port("binance")), STARTUP_S,
                 "the worker asking for its instruments")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(STOP_GRACE_S) == 0, log.read_text()
    assert "stopped while starting" in log.read_text()
    assert State.OPEN not in segments(pipeline.prefix).values()


@pytest.mark.slow
def test_fh_run_stopped_while_its_children_start_stops_them_all_and_leaves_no_open_segment(slow_venues):
    pipeline = slow_venues
    pipeline.start(sim=False)
    supervisor = psutil.Process(pipeline.run.pid)
    ports = [pipeline.rest_port(venue) for venue in ("binance", "coinbase", "kraken")]
    run_log = pipeline.workdir / "run.log"
    wait_for(lambda: all(any(asking_for_metadata(c.pid, port) for c in supervisor.children()) for port in ports)
             and "aggregator: kernels ready" in run_log.read_text(),
             STARTUP_S, "every worker asking for its instruments, the aggregator waiting for their segments")
    children = supervisor.children()
    pipeline.run.send_signal(signal.SIGTERM)
    assert pipeline.run.wait(2 * STOP_GRACE_S) == 0
    log = run_log.read_text()
    assert "did not stop" not in log, log  # none needed the SIGKILL after the grace period
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # no venue got its instruments, so no segment was made: not even an NBBO one over no venues
    assert not segments(pipeline.prefix), segments(pipeline.prefix)
    assert log.count("stopped while starting") == 4, log  # each venue worker and the aggregator


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


@pytest.mark.slow
@pytest.mark.parametrize("role", [["worker", "binance"], ["aggregator"]], ids=["venue worker", "aggregator"])
def test_a_process_stopped_while_its_kernels_compile_cold_exits_at_once_and_leaves_nothing(tmp_path, role):
    pipeline = Pipeline(tmp_path, f"fhsc{os.getpid()}", venues=SPOT_VENUES)  # its config only: no venue is asked
    log = tmp_path / "process.log"
    with started([*role, "-c", str(pipeline.config_path)], log, NUMBA_CACHE_DIR=str(tmp_path / "cold")) as worker:
        wait_for(lambda: "loading kernels" in log.read_text(), STARTUP_S, "the process loading its kernels")
        wait_for(lambda: cpu_seconds(worker.pid) > 3.0, STARTUP_S, "the process compiling for a while")
        assert worker.poll() is None, log.read_text()  # still compiling: cold, that takes minutes
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(STOP_GRACE_S) == 0, log.read_text()
    assert "stopped while compiling kernels" in log.read_text()
    left = glob.glob(f"/dev/shm/{pipeline.prefix}.*") + glob.glob(f"/dev/shm/fhwarm{worker.pid}.*")
    assert [path for path in left if ".lock." not in path] == []  # an instance lock's file stays, as after any run
