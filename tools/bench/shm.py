"""`fh bench shm`: cross-process one-way latency of a ring publish and of a seqlock book publish,
and the records/s one numba writer puts through the ring.

Writer and reader run in separate processes pinned to different cores when there are two. The
writer stamps CLOCK_MONOTONIC into the record or block just before publishing it, paced so that
the reader is always waiting; the reader spins with acquire loads and subtracts on arrival.
"""
from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
from numba import njit

from feedhandler.book import BookStore
from feedhandler.publish import write_book_block
from shm.atomics import load_acquire
from shm.clock import monotonic_ns
from shm.layout import BOOK_SEQ, BOOK_TS_PUBLISH, SLOT_TS_PUBLISH, SLOT_WORDS
from shm.ring import READ_LAPPED, READ_OK, publish_book, read_record, write_position
from shm.segment import InstrumentSpec, Segment, SegmentWriter
from shm.seqlock import read_block

from ..warmup import load_kernels
from .stats import machine, percentiles

PACING_NS = 2_000
RING_SLOTS = 65536
SPIN_TIMEOUT_NS = 30_000_000_000


@njit(nogil=True, cache=True)
def _pace(next_ns):
    while monotonic_ns() < next_ns:
        pass


@njit(nogil=True, cache=True)
def _ring_writer(ring, control, count, pacing_ns):
    next_ns = monotonic_ns() + pacing_ns
    for k in range(count):
        _pace(next_ns)
        next_ns += pacing_ns
        publish_book(ring, control, 0, k, 0, 0, monotonic_ns(), 100, 1, 101, 1, 1, 1)


@njit(nogil=True, cache=True)
def _ring_reader(ring, control, out_ns):
    """Spin on the next position and time each record's arrival; returns (received, lapped)
    where lapped counts the records skipped after falling a whole ring behind."""
    row = np.empty(SLOT_WORDS, np.int64)
    deadline = monotonic_ns() + SPIN_TIMEOUT_NS
    position = 0
    received = 0
    lapped = 0
    while position < len(out_ns) and monotonic_ns() < deadline:
        status = read_record(ring, control, position, row)
        if status == READ_OK:
            out_ns[received] = monotonic_ns() - row[SLOT_TS_PUBLISH]
            received += 1
            position += 1
        elif status == READ_LAPPED:
            head = write_position(control)
            lapped += head - position
            position = head
    return received, lapped


@njit(nogil=True, cache=True)
def _seqlock_writer(levels, ladder, meta, block, count, pacing_ns):
    next_ns = monotonic_ns() + pacing_ns
    for k in range(count):
        _pace(next_ns)
        next_ns += pacing_ns
        write_book_block(levels, ladder, meta, 0, block, k, 0, 0, monotonic_ns(), True)


@njit(nogil=True, cache=True)
def _seqlock_reader(block, copy, out_ns):
    deadline = monotonic_ns() + SPIN_TIMEOUT_NS
    last = load_acquire(block, BOOK_SEQ)
    received = 0
    while received < len(out_ns) and monotonic_ns() < deadline:
        seq = load_acquire(block, BOOK_SEQ)
        if seq != last and not seq & 1 and read_block(block, copy, 1000) >= 0:
            out_ns[received] = monotonic_ns() - copy[BOOK_TS_PUBLISH]
            last = copy[BOOK_SEQ]
            received += 1
    return received


@njit(nogil=True, cache=True)
def _ring_flood(ring, control, count):
    start = monotonic_ns()
    for k in range(count):
        publish_book(ring, control, 0, k, 0, 0, k, 100, 1, 101, 1, 1, 1)
    return monotonic_ns() - start


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _cpus() -> tuple[int | None, int | None]:
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if len(cores) >= 2 else (None, None)


def _reader_process(prefix: str, kind: str, samples: int, cpu: int | None, ready, done, results) -> None:
    _pin(cpu)
    out = np.zeros(samples, np.int64)
    lapped = 0
    with Segment(prefix, "bench") as segment:
        if kind == "ring":
            _ring_reader(segment.ring, segment.ring_control, out[:0])  # compile before signalling
            ready.set()
            received, lapped = _ring_reader(segment.ring, segment.ring_control, out)
        else:
            copy = np.zeros(segment.geometry.block_words, np.int64)
            _seqlock_reader(segment.books[0], copy, out[:0])
            ready.set()
            received = _seqlock_reader(segment.books[0], copy, out)
    done.set()
    results.put((out[:received], lapped))


def hop(kind: str, samples: int) -> tuple[np.ndarray, int]:
    """One writer/reader run over a fresh segment; returns the reader's latencies (ns) and how
    many records it lost to laps (ring only)."""
    prefix = f"fhbench{os.getpid()}"
    spec = [InstrumentSpec("BENCH", "BEN-CH", 2, 8, 64)]
    writer_cpu, reader_cpu = _cpus()
    saved_affinity = os.sched_getaffinity(0)
    context = multiprocessing.get_context("spawn")
    with SegmentWriter.create(prefix, "bench", spec, depth=10, ring_slots=RING_SLOTS) as writer:
        try:
            ready, done, results = context.Event(), context.Event(), context.Queue()
            reader = context.Process(target=_reader_process,
                                     args=(prefix, kind, samples, reader_cpu, ready, done, results))
            reader.start()
            _pin(writer_cpu)
            books = BookStore([64])
            ladder = np.arange(1, 21)
            books.load(0, np.stack([1000 - ladder, ladder], 1), np.stack([1000 + ladder, ladder], 1))
            if kind == "ring":
                _ring_writer(writer.ring, writer.ring_control, 0, PACING_NS)
            else:
                _seqlock_writer(books.levels, books.ladder, books.meta, writer.books[0], 0, PACING_NS)
            while not ready.wait(0.5):
                if not reader.is_alive():
                    raise RuntimeError(f"benchmark reader process exited with code {reader.exitcode}")
            time.sleep(0.05)
            if kind == "ring":
                _ring_writer(writer.ring, writer.ring_control, samples, PACING_NS)
            else:
                # A seqlock reader only sees versions published while it watches: keep publishing
                # until it has its samples (a descheduled reader would otherwise miss the whole run).
                deadline = time.monotonic() + 60
                while not done.is_set() and time.monotonic() < deadline:
                    _seqlock_writer(books.levels, books.ladder, books.meta, writer.books[0], 1000, PACING_NS)
            latencies, lapped = results.get(timeout=120)
            reader.join(30)
        finally:
            os.sched_setaffinity(0, saved_affinity)
            writer.close(unlink=True)
    if len(latencies) < max(1, samples // 100):
        raise RuntimeError(f"{kind} reader saw only {len(latencies)} of {samples} publishes")
    return latencies, lapped


def compile_kernels(prefix: str) -> None:
    """Every kernel the benchmark calls, compiled (or loaded) on a small segment, the readers' on its
    read-only mapping as the reader process has it."""
    with SegmentWriter.create(prefix, "bench", [InstrumentSpec("BENCH", "BEN-CH", 2, 8, 64)], depth=10,
                              ring_slots=16) as writer:
        try:
            with Segment(prefix, "bench") as segment:
                nothing = np.zeros(0, np.int64)
                _ring_reader(segment.ring, segment.ring_control, nothing)
                _seqlock_reader(segment.books[0], np.zeros(segment.geometry.block_words, np.int64), nothing)
            books = BookStore([64])
            _ring_writer(writer.ring, writer.ring_control, 0, PACING_NS)
            _seqlock_writer(books.levels, books.ladder, books.meta, writer.books[0], 0, PACING_NS)
            _ring_flood(writer.ring, writer.ring_control, 0)
        finally:
            writer.close(unlink=True)


def run(samples: int = 200_000, records: int = 20_000_000) -> dict[str, object]:
    load_kernels("fh bench shm", compile_kernels)
    ring_ns, lapped = hop("ring", samples)
    seqlock_ns, _ = hop("seqlock", samples)
    spec = [InstrumentSpec("BENCH", "BEN-CH", 2, 8, 64)]
    prefix = f"fhbench{os.getpid()}"
    with SegmentWriter.create(prefix, "flood", spec, depth=10, ring_slots=RING_SLOTS) as writer:
        _ring_flood(writer.ring, writer.ring_control, 1000)
        elapsed_ns = _ring_flood(writer.ring, writer.ring_control, records)
        if write_position(writer.ring_control) != records + 1000:
            raise RuntimeError("ring flood published a wrong number of records")
        writer.close(unlink=True)
    result: dict[str, object] = {}
    result.update(percentiles(ring_ns, "ring_hop"))
    result.update(percentiles(seqlock_ns, "seqlock_hop"))
    result["ring_records_per_s"] = records / (elapsed_ns / 1e9)
    result["ring_samples"] = len(ring_ns)
    result["ring_reader_lapped"] = int(lapped)  # records a descheduled reader lost (never blocks the writer)
    result["seqlock_samples"] = len(seqlock_ns)  # a seqlock carries the latest book: a late reader skips versions
    result["pinned_cpus"] = list(_cpus()) if _cpus()[0] is not None else None
    result["machine"] = machine()
    return result
