"""`fh bench nbbo`: venue publish -> NBBO visible to a reader, across processes.

This process is the venue writer (a real segment) and the NBBO reader; the aggregator is the real
`fh aggregator` process. Each sample publishes a book record whose best bid moves (so the NBBO
changes), then spins on the NBBO ring until the aggregator's record appears: the time between is
the latency. The aggregator runs with the `spin` idle strategy (headline) and with `backoff`
(the default, which sleeps when idle: its latency includes the wake-up).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

from feedhandler.config import RunConfig, VenueConfig
from shm.clock import realtime_ns
from shm.layout import RING_CONTROL_WORDS, SLOT_WORDS, Status
from shm.ring import publish_book, publish_status, write_position
from shm.segment import InstrumentSpec, Segment, SegmentError, SegmentWriter

from ..warmup import load_kernels
from .stats import machine

ST_BOOK_VALID = int(Status.BOOK_VALID)


@njit(nogil=True, cache=True)
def _samples(ring, control, nbbo_control, first_id, out, timeout_ns):
    """Publish len(out) book changes, each waiting for the NBBO record it causes; out = latencies."""
    for k in range(len(out)):
        seen = write_position(nbbo_control)
        bid = 10_000_000 + (k & 1)  # the best bid alternates: every record changes the NBBO
        start = realtime_ns()
        publish_book(ring, control, 0, first_id + k, 0, start, start, bid, 100, 10_000_100, 100, 1, 1)
        while write_position(nbbo_control) == seen:
            if realtime_ns() - start > timeout_ns:
                return k
        out[k] = realtime_ns() - start
    return len(out)


def compile_kernels(prefix: str) -> None:
    """The sampling kernel, and the aggregator's for the one venue of the benchmark's run (its
    process then loads them from the cache; its log goes nowhere)."""
    from workers import aggregator
    aggregator.warm(RunConfig(venues={"binance": VenueConfig("binance", ("BTC-USDT",), "", "")}), prefix)
    ring, control = np.zeros((16, SLOT_WORDS), np.int64), np.zeros(RING_CONTROL_WORDS, np.int64)
    publish_status(ring, control, 0, ST_BOOK_VALID, 0, 0, 0, 0)
    nbbo_control = np.zeros(RING_CONTROL_WORDS, np.int64)
    nbbo_control.setflags(write=False)  # a reader's mapping
    _samples(ring, control, nbbo_control, 1, np.zeros(0, np.int64), 1)


def run_once(idle: str, samples: int) -> dict:
    directory = tempfile.mkdtemp(prefix="fhnbbo")
    prefix = f"fhnbbo{os.getpid()}"
    writer = SegmentWriter.create(prefix, "binance", [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 8, 16)], depth=4,
                                  ring_slots=1 << 16)
    config = os.path.join(directory, "nbbo.toml")
    with open(config, "w") as f:
        f.write(f'[run]\nprefix = "{prefix}"\n[aggregator]\nidle = "{idle}"\nstale_ms = 0\n'
                f'[venues.binance]\nsymbols = ["BTC-USDT"]\n')
    aggregator = subprocess.Popen([sys.executable, "-m", "tools.cli", "aggregator", "-c", config],
                                  stderr=subprocess.DEVNULL)
    latencies = np.zeros(samples, np.int64)
    try:
        nbbo = None
        deadline = time.monotonic() + 180
        while nbbo is None:
            writer.heartbeat()
            try:
                nbbo = Segment(prefix, "nbbo")
            except SegmentError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(0.5)  # attached: the aggregator follows the ring from its head
        now = time.time_ns()
        publish_status(writer.ring, writer.ring_control, 0, ST_BOOK_VALID, 0, now, now, now)
        done = 0
        while done < samples:  # chunks, with the heartbeat the aggregator checks in between
            writer.heartbeat()
            chunk = latencies[done:done + 1000]
            got = _samples(writer.ring, writer.ring_control, nbbo.ring_control, done + 1, chunk, 1_000_000_000)
            if got < len(chunk):
                raise RuntimeError(f"the aggregator did not publish within 1 s (sample {done + got})")
            done += got
        nbbo.close()
    finally:
        aggregator.terminate()
        aggregator.wait(30)
        writer.close(unlink=True)
        shutil.rmtree(directory, ignore_errors=True)
        if os.path.exists(f"/dev/shm/{prefix}.nbbo"):
            os.unlink(f"/dev/shm/{prefix}.nbbo")
    measured = latencies[samples // 10:]  # the first tenth warms caches and branch predictors
    p50, p99, p999 = np.percentile(measured, [50, 99, 99.9])
    return {"p50_ns": float(p50), "p99_ns": float(p99), "p999_ns": float(p999), "samples": len(measured)}


def run(samples: int = 100_000) -> dict:
    load_kernels("fh bench nbbo", compile_kernels)
    spin = run_once("spin", samples)
    backoff = run_once("backoff", max(1000, samples // 10))
    return {"p50_ns": spin["p50_ns"], "p99_ns": spin["p99_ns"], "spin": spin, "backoff": backoff,
            "machine": machine()}
