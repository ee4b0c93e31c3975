"""A capture that cannot be written never stops the feed. A Binance worker runs against `fh sim`
under `prlimit --fsize`, so every write that would take its capture file past the limit fails with
EFBIG (what a full disk does with ENOSPC; Python ignores SIGXFSZ, so the write returns the error).
Under `capture_on_error = "drop"` decoding and liveness go on, the failure is counted and reported,
and capturing resumes in a new file; under "fail" the worker exits non-zero for its supervisor.
Each test owns its simulator and worker."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feedhandler.capture import CaptureReader, FrameKind
from shm.layout import Reason, Status
from shm.reader import StatusEvent, VenueReader
from shm.segment import SegmentError

from pipeline import FH, REPO, VENUE_SYMBOLS, free_base_port, wait_for, warm_kernels

STARTUP_S = 240  # a cold numba cache compiles for minutes on a 2-core box
FSIZE = 1 << 20  # above the segment (1024 ring slots) and every other file; a capture outgrows it
_runs = itertools.count()


class Worker:
    """`fh sim` serving Binance and one `fh worker binance`, optionally under a file-size limit."""

    def __init__(self, workdir: Path, run_options: str, rate: float, fsize: int | None):
        self.workdir = workdir
        self.prefix = f"fhcapf{os.getpid()}n{next(_runs)}"
        self.base = free_base_port()
        self.captures = workdir / "captures"
        self.config = workdir / "worker.toml"
        self.config.write_text(
            f'[run]\nprefix = "{self.prefix}"\ncapture_dir = "{self.captures}"\n'
            f'instrument_cache = "{workdir / "instruments"}"\n{run_options}\n'
            f'[venues.binance]\nsymbols = {json.dumps(VENUE_SYMBOLS["binance"])}\n'
            f'ws_url = "ws://127.0.0.1:{self.base}"\nrest_url = "http://127.0.0.1:{self.base + 1}"\n'
            f'stale_after_s = 2.0\nring_slots = 1024\n')
        self.rate = rate
        self.limit = ["prlimit", f"--fsize={fsize}", "--"] if fsize else []
        self.log = workdir / "worker.log"
        self.sim = self.process = None

    def start(self) -> None:
        warm_kernels()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.sim = subprocess.Popen(FH + ["sim", "--venues", "binance", "--port", str(self.base),
                                          "--rate", str(self.rate)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=open(self.workdir / "sim.log", "w"))
        self.sim.stdout.readline()  # listening
        self.process = subprocess.Popen(self.limit + FH + ["worker", "binance", "-c", str(self.config)], cwd=REPO,
                                        env=env, stderr=open(self.log, "w"))

    def reader(self) -> VenueReader:
        def attached():
            try:
                return VenueReader("binance", prefix=self.prefix)
            except SegmentError:
                return None
        return wait_for(attached, STARTUP_S, "the worker's segment")

    def fault(self, kind: str) -> None:
        import urllib.request
        urllib.request.urlopen(f"http://127.0.0.1:{self.base + 1}/_sim/fault?kind={kind}", timeout=5).read()

    def stop(self) -> int:
        """SIGTERM the worker (if it still runs) and the simulator; the worker's exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.sim.send_signal(signal.SIGTERM)
        self.sim.wait(timeout=10)
        return code

    def files(self) -> list[Path]:
        return sorted(self.captures.glob("binance-*.fhcap"))


@contextmanager
def worker(tmp_path: Path, run_options: str = "", rate: float = 200.0, fsize: int | None = FSIZE) -> Iterator[Worker]:
    running = Worker(tmp_path, run_options, rate, fsize)
    running.start()
    try:
        yield running
    except AssertionError:
        print(running.log.read_text()[-6000:])
        raise
    finally:
        if running.process.poll() is None or running.sim.poll() is None:
            running.stop()
        for path in Path("/dev/shm").glob(f"{running.prefix}.*"):
            path.unlink()


def all_valid(reader: VenueReader) -> bool:
    return all(reader.book(i.index).valid for i in reader.instruments)


def test_a_full_capture_disk_never_freezes_the_feed_and_capturing_resumes_in_a_new_file(tmp_path):
    with worker(tmp_path, 'capture_on_error = "drop"') as running:
        reader = running.reader()
        wait_for(lambda: all_valid(reader), STARTUP_S, "binance books valid")
        cursor, seen = reader.events(), []

        def venue_statuses():
            seen.extend(e for e in cursor.poll() if isinstance(e, StatusEvent) and e.instrument is None)
            return [(e.status, e.reason) for e in seen]

        wait_for(lambda: (Status.CAPTURE_STOPPED, Reason.CAPTURE_ERROR) in venue_statuses(), 180,
                 "a CAPTURE_STOPPED status record (a capture write failed with EFBIG)")
        assert reader.totals()["capture_errors"] >= 1
        frames = reader.totals()["frames"]
        wait_for(lambda: reader.totals()["frames"] > frames + 100, 60, "frames decoded after the failure")
        assert all_valid(reader)  # decoding went on: the books moved, in sequence
        running.fault("disconnect")  # liveness too: a dropped connection invalidates, the reconnect resyncs
        wait_for(lambda: (Status.DISCONNECT, Reason.DISCONNECTED) in venue_statuses(), 30, "the disconnect reported")
        wait_for(lambda: all_valid(reader), 60, "books valid again after the reconnect")
        wait_for(lambda: (Status.CAPTURE_RESUMED, Reason.NONE) in venue_statuses() and len(running.files()) >= 2,
                 60, "capturing resumed in a new file")
        reader.close()
        assert running.stop() == 0
    log = running.log.read_text()
    assert "capture write failed (EFBIG" in log
    for path in running.files():  # every file reads back: whole blocks, at most a torn tail
        capture = CaptureReader(path)
        assert capture.verify()["bad_blocks"] == 0
        assert all("torn tail" in problem for problem in capture.problems), capture.problems
        assert capture.header["venue"] == "binance"


def test_capture_on_error_fail_stops_the_worker_loudly(tmp_path):
    with worker(tmp_path, 'capture_on_error = "fail"') as running:
        reader = running.reader()
        code = running.process.wait(timeout=STARTUP_S + 180)
        assert code == 3
        assert reader.status()["state"] == "closed" and not any(
            reader.book(i.index).valid for i in reader.instruments)
        reader.close()
        running.stop()
    log = running.log.read_text()
    assert 'capture write failed (EFBIG' in log and 'capture_on_error = "fail"' in log and "exiting with status 3" in log


def test_a_quiet_feed_is_on_disk_within_the_flush_interval_not_at_256_kib(tmp_path):
    with worker(tmp_path, rate=2.0, fsize=None) as running:
        reader = running.reader()
        wait_for(lambda: all_valid(reader), STARTUP_S, "binance books valid")
        reader.close()

        def received_on_disk():
            return sum(frame.kind == FrameKind.WS_RECV for path in running.files()
                       for frame in CaptureReader(path).frames())
        wait_for(lambda: received_on_disk() >= 10, 30, "received frames in the capture file while the worker runs")
        assert running.process.poll() is None
