"""`fh clean`: what processes that are gone left under a prefix goes, what a live process holds stays,
and files fh did not make are reported and left alone. Each test works in a shared-memory directory of
its own ($FH_SHM_DIR), so no other test's or deployment's files are in reach."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from shm.latency import LatencyWriter
from shm.segment import InstrumentSpec, Segment, SegmentWriter
from workers.process import InstanceLock

FH = [sys.executable, "-m", "tools.cli"]
SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 64)]
NOBODY = 65534

# A venue worker, an aggregator and a sink that die holding their files, as a killed process does.
DEAD_WRITERS = """
import os, sys
from shm.latency import LatencyWriter
from shm.segment import InstrumentSpec, SegmentWriter
from workers.process import InstanceLock
prefix = sys.argv[1]
SegmentWriter.create(prefix, "kraken", [InstrumentSpec("XBT/USD", "BTC-USD", 1, 8, 64)], depth=5, ring_slots=64)
LatencyWriter(prefix, "kraken", [("publish", "kraken")])
InstanceLock(prefix, "aggregator")
print(os.getpid(), flush=True)
os._exit(0)
"""


@pytest.fixture
def shm_dir(tmp_path, monkeypatch):
    directory = tmp_path / "shm"
    directory.mkdir()
    monkeypatch.setenv("FH_SHM_DIR", str(directory))
    return directory


def dead_writers(prefix: str) -> int:
    """The files of processes that are gone under `prefix`; the pid they had."""
    done = subprocess.run([sys.executable, "-c", DEAD_WRITERS, prefix], cwd=REPO, capture_output=True, text=True,
                          check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    return int(done.stdout)


def clean(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FH, "clean", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_clean_removes_what_dead_processes_left_and_keeps_what_live_ones_hold(shm_dir):
    gone = dead_writers("fhc")
    (shm_dir / f"fhc.latency.coinbase.{gone}.new").write_bytes(b"half written")  # a crashed writer's temporary
    segment = SegmentWriter.create("fhc", "binance", SPEC, depth=5, ring_slots=64)
    latency = LatencyWriter("fhc", "binance", [("publish", "binance")])
    lock = InstanceLock("fhc", "run")
    try:
        result = clean("--prefix", "fhc")
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(shm_dir)) == ["fhc.binance", "fhc.latency.binance", "fhc.lock.run"]
        with Segment("fhc", "binance") as still:
            assert still.writer_alive()
    finally:
        segment.close(unlink=True)
        latency.close(unlink=True)
        lock.close()
    pid = os.getpid()
    assert result.stdout.splitlines() == [
        f"removed  {shm_dir}/fhc.kraken  (segment: no live writer)",
        f"removed  {shm_dir}/fhc.latency.coinbase.{gone}.new  (temporary of pid {gone}, gone)",
        f"removed  {shm_dir}/fhc.latency.kraken  (latency file: no live writer)",
        f"removed  {shm_dir}/fhc.lock.aggregator  (instance lock: no process holds it)",
        f"kept     {shm_dir}/fhc.binance  (segment: is owned by a live writer (pid {pid}); stop it first)",
        f"kept     {shm_dir}/fhc.latency.binance  (latency file: its writer (pid {pid}) is alive)",
        f"kept     {shm_dir}/fhc.lock.run  (instance lock: held by a running process (pid {pid}))",
        "4 removed, 3 kept",
    ]


def test_files_fh_did_not_make_are_reported_and_left_alone(shm_dir, tmp_path):
    (shm_dir / "fhc.notes").write_text("someone's notes")
    (tmp_path / "target").write_text("untouched")
    os.symlink(tmp_path / "target", shm_dir / "fhc.binance")
    (shm_dir / "fhc.lock.run").write_text("not a pid")
    result = clean("--prefix", "fhc")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(shm_dir)) == ["fhc.binance", "fhc.lock.run", "fhc.notes"]
    assert (tmp_path / "target").read_text() == "untouched"
    odd = "(not an fh file (no fh name and content, or not a regular file): left alone)"
    assert result.stdout.splitlines() == [f"kept     {shm_dir}/fhc.{name}  {odd}"
                                          for name in ("binance", "lock.run", "notes")] + ["0 removed, 3 kept"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's file needs root (chown)")
def test_another_users_files_are_never_removed_even_when_no_writer_holds_them(shm_dir):
    dead_writers("fhc")
    for name in os.listdir(shm_dir):
        os.chown(shm_dir / name, NOBODY, -1, follow_symlinks=False)
    result = clean("--prefix", "fhc")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(shm_dir)) == ["fhc.kraken", "fhc.latency.kraken", "fhc.lock.aggregator"]
    assert all(line.startswith("kept") and f"owned by uid {NOBODY}, not by this user: never touched" in line
               for line in result.stdout.splitlines()[:-1])


def test_clean_all_covers_every_fh_prefix_and_nothing_else(shm_dir):
    dead_writers("fha")
    dead_writers("fhb")
    (shm_dir / "other.thing").write_text("not fh's")
    result = clean("--all")
    assert result.returncode == 0, result.stderr
    assert os.listdir(shm_dir) == ["other.thing"]
    assert result.stdout.splitlines()[-1] == "6 removed, 0 kept" and "other.thing" not in result.stdout


def test_clean_of_a_prefix_with_nothing_names_the_prefixes_there(shm_dir):
    dead_writers("fha")
    result = clean("--prefix", "fhz")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"nothing to clean under {shm_dir}/fhz.*; prefixes there: fha (1 segment, 1 latency "
                             f"file); choose one with --prefix P\n")
