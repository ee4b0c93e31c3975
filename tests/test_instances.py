"""One process per role and prefix, and none outliving its supervisor: the children of a `fh run`
killed by SIGKILL stop with it, and a second supervisor, venue worker, aggregator or sink of a prefix
refuses to start, naming the pid of the one running, instead of running beside it (duplicate
deliveries)."""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess

import psutil
import pytest

from shm.layout import State
from shm.segment import Segment
from tests.pipeline import FH, REPO, Pipeline, wait_for
from workers.process import InstanceLock, InstanceLockError, retire_lock

STARTUP_S = 300  # a cold numba cache compiles for minutes
VENUES = ("binance", "coinbase", "kraken")


def closed_port() -> int:
    """A loopback port nothing listens on: a sink pointed there runs, retrying its service."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sink_section(tmp_path) -> str:
    return f'\n[sinks.redis]\nurl = "redis://127.0.0.1:{closed_port()}"\nstate_dir = "{tmp_path / "sinks"}"\n'


def up(pipeline: Pipeline) -> bool:
    """Every venue worker and the aggregator hold their segments, and the sink runs."""
    if not all(pipeline.worker_pid(venue) for venue in VENUES) or not pipeline.worker_pid("nbbo"):
        return False
    return (pipeline.workdir / "sinks" / "redis.stats.json").exists()


def refusal(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(FH + argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=STARTUP_S)


@pytest.mark.slow
def test_the_children_of_a_killed_supervisor_stop_with_it(tmp_path):
    pipeline = Pipeline(tmp_path, f"fhorph{os.getpid()}", extra_config=sink_section(tmp_path), venues=VENUES)
    with pipeline.serving():
        wait_for(lambda: up(pipeline), STARTUP_S, "the workers, the aggregator and the sink up")
        children = psutil.Process(pipeline.run.pid).children()
        try:
            assert len(children) == 5, [child.name() for child in children]
            pipeline.run.send_signal(signal.SIGKILL)
            _, alive = psutil.wait_procs(children, timeout=120)
            assert not alive, f"still running after their supervisor was killed: {[c.name() for c in alive]}"
        finally:
            for child in children:  # the orphans, when they do not stop
                if child.is_running():
                    child.kill()
        for venue in VENUES:  # they stopped as on SIGTERM: each marked its segment closed
            with Segment(pipeline.prefix, venue) as segment:
                assert segment.state == State.CLOSED


@pytest.mark.slow
def test_a_second_supervisor_worker_or_aggregator_of_a_prefix_refuses_naming_the_pid(tmp_path):
    pipeline = Pipeline(tmp_path, f"fhtwice{os.getpid()}", extra_config=sink_section(tmp_path), venues=VENUES)
    with pipeline.serving():
        wait_for(lambda: up(pipeline), STARTUP_S, "the workers, the aggregator and the sink up")
        config = str(pipeline.config_path)
        running = {"run": pipeline.run.pid, "worker": pipeline.worker_pid("kraken"),
                   "aggregator": pipeline.worker_pid("nbbo")}
        for role, argv in (("run", ["run", "-c", config]), ("worker", ["worker", "kraken", "-c", config]),
                           ("aggregator", ["aggregator", "-c", config])):
            second = refusal(argv)
            assert second.returncode != 0, f"a second {role} ran: {second.stderr[-2000:]}"
            assert f"pid {running[role]}" in second.stderr, second.stderr[-2000:]
        assert {"worker": pipeline.worker_pid("kraken"), "aggregator": pipeline.worker_pid("nbbo")} == \
            {"worker": running["worker"], "aggregator": running["aggregator"]}, "the running ones were disturbed"


def test_a_second_sink_of_the_same_name_and_prefix_refuses_naming_the_pid(tmp_path, shm_prefix):
    config = tmp_path / "sink.toml"
    config.write_text(f'[run]\nprefix = "{shm_prefix}"\n[aggregator]\nenabled = false\n'
                      f'[venues.coinbase]\nsymbols = ["BTC-USD"]\n' + sink_section(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(FH + ["sink", "redis", "-c", str(config)], cwd=REPO, env=env,
                             stderr=open(tmp_path / "first.log", "w"))
    try:
        wait_for(lambda: (tmp_path / "sinks" / "redis.stats.json").exists() or first.poll() is not None, STARTUP_S,
                 "the first sink running")
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        second = refusal(["sink", "redis", "-c", str(config)])
        assert second.returncode != 0, "a second redis sink ran beside the first"
        assert f"pid {first.pid}" in second.stderr, second.stderr[-2000:]
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(60)


def test_an_instance_lock_is_held_once_until_released_and_names_its_holder(shm_prefix):
    lock = InstanceLock(shm_prefix, "sink-kafka")
    with pytest.raises(InstanceLockError, match=f"sink-kafka of prefix '{shm_prefix}' is already running "
                                                f"\\(pid {os.getpid()},"):
        InstanceLock(shm_prefix, "sink-kafka")
    InstanceLock(shm_prefix, "sink-redis").close()  # another role is another lock
    lock.close()
    InstanceLock(shm_prefix, "sink-kafka").close()
    assert os.stat(lock.path).st_mode & 0o777 == 0o600


def test_an_instance_lock_planted_as_a_symlink_is_refused(shm_prefix, tmp_path):
    target = tmp_path / "victim"
    target.write_text("untouched")
    os.symlink(target, f"/dev/shm/{shm_prefix}.lock.aggregator")
    with pytest.raises(InstanceLockError, match="cannot open the lock of aggregator"):
        InstanceLock(shm_prefix, "aggregator")
    assert target.read_text() == "untouched"


def test_a_lock_file_fh_clean_removes_between_open_and_lock_is_locked_again(shm_prefix, monkeypatch):
    """`fh clean` removes an instance lock nobody holds; a process that had opened the file but not yet
    locked it must not end up holding the removed file while the next one locks a new file beside it.
    (The interleaving is forced: fh clean runs inside the process's first flock call.)"""
    path = f"/dev/shm/{shm_prefix}.lock.run"
    InstanceLock(shm_prefix, "run").close()  # a run that ended: its lock file stays
    real_flock = fcntl.flock

    def cleaned_first(fd: int, operation: int) -> None:
        monkeypatch.setattr(fcntl, "flock", real_flock)
        retire_lock(path)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", cleaned_first)
    lock = InstanceLock(shm_prefix, "run")
    try:
        with pytest.raises(InstanceLockError, match=f"run of prefix '{shm_prefix}' is already running "
                                                    f"\\(pid {os.getpid()},"):
            InstanceLock(shm_prefix, "run")
    finally:
        lock.close()
