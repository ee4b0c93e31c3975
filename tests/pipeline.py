"""A running pipeline for tests: `fh sim` on free loopback ports and `fh run` (the supervisor, its venue
workers and the aggregator) against it, as separate processes, with helpers to inject faults and
wait for what readers see."""
from __future__ import annotations

import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shm.reader import VenueReader
from shm.segment import Segment, SegmentError
from tools.sim.server import DEFAULT_INSTRUMENTS, DEFAULT_VENUES, PORT_ORDER, WS_PATHS

REPO = Path(__file__).resolve().parent.parent
FH = [sys.executable, "-m", "tools.cli"]
# what `fh sim` serves unless told otherwise
VENUE_SYMBOLS = {venue: [i.symbol for i in DEFAULT_INSTRUMENTS[venue]] for venue in DEFAULT_VENUES}
# The venues of the tests of the pipeline's own machinery (supervision, sinks, chaos, startup and stop): three
# spot venues of three protocols, not all seven (fewer processes on CI's two cores)
SPOT_VENUES = ("binance", "coinbase", "kraken")


def warm_kernels() -> None:
    """`fh warmup` before a test starts processes that would otherwise compile for minutes; a
    failure shows what fh warmup said (its stderr names the group and its error)."""
    result = subprocess.run(FH + ["warmup"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"fh warmup exited {result.returncode}:\n{result.stderr}"


def free_base_port() -> int:
    """A base port with the two ports of every simulated venue free after it on loopback."""
    for _ in range(100):
        base = random.randrange(20_000, 60_000, 16)
        sockets = []
        try:
            for port in range(base, base + 2 * len(PORT_ORDER)):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def last_books(prefix: str, venue: str) -> dict:
    """A stopped worker's last books (its segment stays, CLOSED), as exact text."""
    with VenueReader(venue, prefix=prefix) as venue_reader:
        return {f"{venue}:{i.venue_symbol}": (venue_reader.book(i.index, depth=10).levels_text("bids"),
                                               venue_reader.book(i.index, depth=10).levels_text("asks"))
                for i in venue_reader.instruments}


class Pipeline:
    def __init__(self, workdir: Path, prefix: str, rate: float = 20.0, stale_after_s: float = 2.0,
                 stale_ms: float = 1500.0, extra_config: str = "", ring_slots: int = 1 << 16,
                 venue_options: dict[str, str] | None = None, sim_args: tuple[str, ...] = (),
                 venues: tuple[str, ...] = DEFAULT_VENUES):
        """`venue_options`: TOML lines added to a venue's section; `sim_args`: extra `fh sim` flags;
        `venues`: the venues simulated and run (by default what `fh sim` serves)."""
        self.workdir = workdir
        self.prefix = prefix
        self.base = free_base_port()
        self.rate = rate
        self.config_path = workdir / "pipeline.toml"
        self.ring_slots = ring_slots
        self.venue_options = venue_options or {}
        self.venues = venues
        self.sim_args = sim_args if venues == DEFAULT_VENUES else ("--venues", ",".join(venues), *sim_args)
        self.config_path.write_text(self._config(stale_after_s, stale_ms) + extra_config)
        self.sim: subprocess.Popen | None = None
        self.run: subprocess.Popen | None = None

    def _config(self, stale_after_s: float, stale_ms: float) -> str:
        lines = [f'[run]\nprefix = "{self.prefix}"\ncapture_dir = "{self.workdir / "captures"}"\n'
                 f'instrument_cache = "{self.workdir / "instruments"}"\n',
                 f'[aggregator]\nstale_ms = {stale_ms}\nidle = "backoff"\n']
        for k, venue in enumerate(PORT_ORDER):
            if venue not in self.venues:
                continue
            path = WS_PATHS.get(venue, "")
            symbols = [i.symbol for i in DEFAULT_INSTRUMENTS[venue]]
            lines.append(f'[venues.{venue}]\nsymbols = {json.dumps(symbols)}\n'
                         f'ws_url = "ws://127.0.0.1:{self.base + 2 * k}{path}"\n'
                         f'rest_url = "http://127.0.0.1:{self.base + 2 * k + 1}"\nstale_after_s = {stale_after_s}\n'
                         f'ring_slots = {self.ring_slots}\n{self.venue_options.get(venue, "")}\n')
        return "\n".join(lines)

    def rest_port(self, venue: str) -> int:
        return self.base + 2 * PORT_ORDER.index(venue) + 1

    def start_sim(self) -> None:
        """`fh sim` alone, listening when this returns."""
        self.sim = subprocess.Popen(FH + ["sim", "--port", str(self.base), "--rate", str(self.rate), *self.sim_args],
                                    cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                    stderr=open(self.workdir / "sim.log", "w"))
        self.sim.stdout.readline()  # the URLs: it is listening

    def start(self, duration_s: float | None = None, sim: bool = True) -> None:
        """`fh sim` (unless `sim` is False: started already) and `fh run`."""
        if sim:
            self.start_sim()
        self.start_run(duration_s)

    def start_run(self, duration_s: float | None = None) -> None:
        """`fh run` against the simulator (again, after the last one died: its log is appended to)."""
        argv = FH + ["run", "-c", str(self.config_path), "--json"]
        if duration_s:
            argv += ["--duration", str(duration_s)]
        self.run = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                    stdout=subprocess.PIPE, stderr=open(self.workdir / "run.log", "a"), text=True)

    @contextmanager
    def serving(self) -> Iterator[Pipeline]:
        """Kernels compiled, the simulator and `fh run` started; the logs printed if the body fails an
        assertion; everything stopped afterwards."""
        warm_kernels()
        self.start()
        try:
            yield self
        except AssertionError:
            print(self.logs())
            raise
        finally:
            self.stop()

    def fault(self, venue: str, kind: str, **arguments) -> dict:
        query = "&".join(f"{k}={v}" for k, v in {"kind": kind, **arguments}.items())
        url = f"http://127.0.0.1:{self.rest_port(venue)}/_sim/fault?{query}"
        with urllib.request.urlopen(url, timeout=30) as r:  # a bursting simulator on a loaded box answers late
            return json.loads(r.read())

    def sim_stats(self, venue: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port(venue)}/_sim/stats", timeout=5) as r:
            return json.loads(r.read())

    def worker_pid(self, venue: str) -> int:
        """The pid of the venue's worker, from its segment header (0 when there is no live one)."""
        try:
            with Segment(self.prefix, venue) as segment:
                return segment.writer_pid if segment.writer_alive() else 0
        except SegmentError:
            return 0

    def stop(self, unlink: bool = True) -> str:
        """SIGTERM the supervisor (it stops its children), then the simulator; the run's stdout. The
        segments are removed unless `unlink` is False (the workers' last books stay readable)."""
        output = ""
        if self.run is not None:
            if self.run.poll() is None:
                self.run.send_signal(signal.SIGTERM)
            output, _ = self.run.communicate(timeout=30)
        if self.sim is not None:
            self.sim.send_signal(signal.SIGTERM)
            self.sim.wait(timeout=10)
        if unlink:
            for path in glob.glob(f"/dev/shm/{self.prefix}.*"):
                os.unlink(path)
        return output

    def logs(self) -> str:
        return "\n".join((self.workdir / name).read_text()[-4000:] for name in ("run.log", "sim.log"))
