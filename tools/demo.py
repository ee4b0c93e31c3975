"""`fh demo`: a writer that publishes synthetic books into a segment, so a strategy written
against the reader API can be run before any venue is connected."""
from __future__ import annotations

import time

import numpy as np

from feedhandler.book import BookStore
from feedhandler.book_kernels import ASK, BID, apply_changes
from feedhandler.feed_kernels import SCRATCH_ROWS, publish_one_trade
from feedhandler.publish import VENUE_HOPS, Output, mark_decoded, output_of, publish
from feedhandler.sync import LIVE, SY_STATE, new_sync
from shm.histogram import HIST_WORDS
from shm.latency import LatencyWriter
from shm.layout import BOOK_MAX_DEPTH, RING_CONTROL_WORDS, N_COUNTERS, SLOT_WORDS, Counter, Side, block_words
from shm.segment import InstrumentSpec, SegmentWriter

INSTRUMENTS = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 4096), InstrumentSpec("ETHUSDT", "ETH-USDT", 2, 4, 4096)]
START_MID = [6_500_000, 350_000]  # 65000.00 and 3500.00
DEPTH = 20


def _compile(books: BookStore) -> None:
    """Run every kernel the loop uses once, on private arrays shaped like the segment's."""
    blocks = np.zeros((len(INSTRUMENTS), block_words(10)), np.int64)
    blocks[:, BOOK_MAX_DEPTH] = 10
    ring, control = np.zeros((16, SLOT_WORDS), np.int64), np.zeros(RING_CONTROL_WORDS, np.int64)
    scratch = BookStore(books.capacities, window=books.window)
    apply_changes(scratch.levels, scratch.ladder, scratch.meta, 0, np.zeros(1, np.int64), np.ones(1, np.int64),
                  np.ones(1, np.int64))
    latency = np.zeros((len(VENUE_HOPS), HIST_WORDS), np.int64)
    mark_decoded(latency, 0, True)
    out = Output(blocks, ring, control, np.zeros((len(INSTRUMENTS) + 1, N_COUNTERS), np.int64), latency)
    publish(scratch.arrays, 0, out, 0, 0, 0, True)
    publish_one_trade(0, 0, 0, 1, 1, 1, 0, np.zeros((SCRATCH_ROWS, 1), np.int64), new_sync(len(INSTRUMENTS)),
                      scratch.arrays, out)


def _books(rng: np.random.Generator) -> tuple[BookStore, list[int]]:
    """The demo's books, loaded with DEPTH levels a side around the start mids, and the mids."""
    books = BookStore([spec.capacity for spec in INSTRUMENTS], window=1024)
    mids = list(START_MID)
    ticks = np.arange(1, DEPTH + 1)
    for i, mid in enumerate(mids):
        sizes = rng.integers(1, 10**6, DEPTH)
        books.load(i, np.stack([mid - ticks, sizes], 1), np.stack([mid + ticks, sizes], 1))
    return books, mids


def compile_kernels(prefix: str) -> None:
    """Every kernel `run` calls, compiled (or loaded from numba's cache) on private arrays."""
    _compile(_books(np.random.default_rng(0))[0])


def run(prefix: str = "fh", venue: str = "demo", duration_s: float = 30.0, rate: float = 200.0,
        seed: int = 7, ring_slots: int = 4096, changes: int = 0) -> dict[str, int]:
    """Publish `rate` book changes per second (spread over the instruments) for `duration_s`, or until
    `changes` were published (0: no limit)."""
    from .warmup import load_kernels
    load_kernels("fh demo", compile_kernels)  # before the segment exists: readers must not wait on it
    rng = np.random.default_rng(seed)
    books, mids = _books(rng)
    sync = new_sync(len(INSTRUMENTS))
    sync[:, SY_STATE] = LIVE
    trade_scratch = np.zeros((SCRATCH_ROWS, 1), np.int64)
    published = trades = 0
    with SegmentWriter.create(prefix, venue, INSTRUMENTS, depth=10, ring_slots=ring_slots) as writer:
        latency = LatencyWriter(prefix, venue, [(hop, venue) for hop in VENUE_HOPS])  # fh latency shows it too
        rows = latency.hists
        out = output_of(writer, rows)
        started = time.monotonic()
        next_at = started
        while time.monotonic() - started < duration_s and (not changes or published < changes):
            i = int(rng.integers(len(INSTRUMENTS)))
            step = int(rng.integers(-1, 2))
            mids[i] += step
            now = time.time_ns()
            mark_decoded(rows, now, True)  # the demo's "frame" is decoded the moment it is made up
            if step:  # a trade at the new mid, matched to the book it moves
                aggressor = Side.BUY if step > 0 else Side.SELL
                publish_one_trade(i, trades, now, mids[i], int(rng.integers(1, 10**5)), int(aggressor), now,
                                  trade_scratch, sync, books.arrays, out)
                trades += 1
            side = rng.integers(0, 2, 4)
            depth = rng.integers(0, DEPTH, 4)
            prices = np.where(side == BID, mids[i] - 1 - depth, mids[i] + 1 + depth).astype(np.int64)
            qtys = np.where(rng.random(4) < 0.3, 0, rng.integers(1, 10**6, 4))
            crossing = np.array([BID if step < 0 else ASK], np.int64)  # the level the mid moved onto
            sides = np.concatenate([crossing, side.astype(np.int64)])
            apply_changes(books.levels, books.ladder, books.meta, i, sides,
                          np.concatenate([[mids[i]], prices]).astype(np.int64), np.concatenate([[0], qtys]))
            publish(books.arrays, i, out, published, now, now, True)
            writer.counters[i, Counter.BOOK_UPDATES] += 1
            published += 1
            writer.heartbeat()
            next_at += 1.0 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        latency.close()
    return {"book_updates": published, "trades": trades}
