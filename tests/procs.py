"""Code that tests run in separate processes (spawned, so importable by module name)."""
import os
import signal
import time

import numpy as np
from numba import njit

from shm.clock import monotonic_ns
from shm.layout import BOOK_LEVELS, BOOK_UPDATE_ID, SLOT_ID, SLOT_SEQ, SLOT_WORDS
from shm.ring import READ_EMPTY, READ_OK, publish_book, read_record
from shm.segment import InstrumentSpec, Segment, SegmentWriter
from shm.seqlock import write_begin, write_end


@njit(nogil=True)
def follow_ring(ring, control, expected, timeout_ns):
    """Spin on the ring from position 0 until `expected` records were read; returns
    (records read, positions out of order or lapped, sum of ids)."""
    row = np.zeros(SLOT_WORDS, np.int64)
    position = 0
    bad = 0
    total = 0
    deadline = monotonic_ns() + timeout_ns
    while position < expected and monotonic_ns() < deadline:
        status = read_record(ring, control, position, row)
        if status == READ_EMPTY:
            continue
        if status != READ_OK or row[SLOT_SEQ] != position + 1 or row[SLOT_ID] != position:
            bad += 1
        total += row[SLOT_ID]
        position += 1
    return position, bad, total


def ring_follower(prefix, name, expected, ready, results):
    with Segment(prefix, name) as segment:
        ready.set()
        results.put(follow_ring(segment.ring, segment.ring_control, expected, 20_000_000_000))


@njit(nogil=True)
def hammer_block(block, rounds):
    """Rewrite every level word of a block with the round number, under the seqlock."""
    for k in range(1, rounds + 1):
        write_begin(block)
        block[BOOK_UPDATE_ID] = k
        for w in range(BOOK_LEVELS, len(block)):
            block[w] = k
        write_end(block)


def seqlock_writer(prefix, name, rounds, ready, enough):
    """Hammer the block in bursts of `rounds` until the reader has seen `enough` (or 60 s pass)."""
    spec = InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 100)
    with SegmentWriter.create(prefix, name, [spec], depth=200, ring_slots=16) as writer:
        ready.set()
        deadline = time.monotonic() + 60
        while not enough.is_set() and time.monotonic() < deadline:
            hammer_block(writer.books[0], rounds)


def writer_that_waits(prefix, name, ready):
    """Create a segment and keep it alive until killed (a writer that dies without cleaning up)."""
    writer = SegmentWriter.create(prefix, name, [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 8)], 4, 16)
    ready.set()
    while True:
        writer.heartbeat()
        time.sleep(0.2)


def writer_killed_mid_publish(prefix, name, changes):
    """Publish `changes` book changes, then die by SIGKILL inside the next publish of the book."""
    writer = SegmentWriter.create(prefix, name, [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 8)], 4, 16)
    for update in range(1, changes + 1):
        publish_book(writer.ring, writer.ring_control, 0, update, 0, 0, 0, 100, 1, 101, 1, 1, 1)
    write_begin(writer.books[0])
    os.kill(os.getpid(), signal.SIGKILL)


def attach_and_exit(prefix, name):
    Segment(prefix, name).close()


def book_torn_words(block_copy):
    """Words of a consistent block copy that disagree with its update id (0 for an untorn copy)."""
    levels = block_copy[BOOK_LEVELS:]
    return int(np.count_nonzero(levels != block_copy[BOOK_UPDATE_ID]))


@njit(nogil=True)
def publish_ids(ring, control, count):
    """Publish `count` book records as fast as possible, each with id = its position."""
    for k in range(count):
        publish_book(ring, control, 0, k, 0, 0, 0, 100, 1, 101, 1, 1, 1)


def capture_forever(path):
    """Append numbered frames in small blocks until killed."""
    from feedhandler.capture import CaptureWriter, FrameKind

    writer = CaptureWriter(path, "binance", block_bytes=512)
    k = 0
    while True:
        writer.append(FrameKind.WS_RECV, 1, k, b'{"n":%d}' % k)
        k += 1


def recorder_past_a_file_size_limit(directory, limit, results):
    """A Recorder whose files may not grow past `limit` bytes (RLIMIT_FSIZE: writes past it fail
    with EFBIG): append until a write fails, go on appending, then retry; report what it saw."""
    import logging
    import resource
    import time

    from feedhandler.capture import FrameKind, RotatingCaptureWriter
    from workers.recorder import Recorder

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    recorder = Recorder(RotatingCaptureWriter(directory, "kraken", compress=False, block_bytes=1024), "drop",
                        logging.getLogger("recorder"))
    appended = 0
    while recorder.recording:
        recorder.append(FrameKind.WS_RECV, 1, appended, b"%08d" % appended + b"x" * 500)
        appended += 1
    stopped_at = appended
    for _ in range(100):  # dropped without a word to the caller
        recorder.append(FrameKind.WS_RECV, 1, appended, b"%08d" % appended)
        appended += 1
    recorder.tick(time.monotonic())  # too early for the retry
    retried_early = recorder.recording
    recorder.tick(time.monotonic() + 120)
    resumed = recorder.recording
    recorder.append(FrameKind.WS_RECV, 1, appended, b"after")
    recorder.close()
    results.put({"stopped_at": stopped_at, "errors": recorder.errors, "retried_early": retried_early,
                 "resumed": resumed, "paths": recorder.writer.paths})
