"""`fh bench book`: level changes and 40-level diffs applied to a 5,000-level-per-side book.

The flow imitates a busy Binance book: a mean-reverting mid; changes concentrated near the touch
(exponential depth, mean 12 levels) with 5% spread over the whole book; 25% deletes; a mid move
deletes the level it crosses, so the book stays uncrossed and deep as a real one does. Changes
come in 40-level diffs laid out as Binance sends them: bids best first, then asks best first.
"""
from __future__ import annotations

import time

import numpy as np
from numba import njit

from feedhandler.book import BookStore
from feedhandler.book_kernels import ASK, BID, apply_changes
from shm.clock import monotonic_ns

from ..warmup import load_kernels
from .stats import machine, percentiles

SNAPSHOT_LEVELS = 5000
CAPACITY = 8192
MID = 10_000_000
DIFF_LEVELS = 40


@njit(cache=True)
def _flow(seed, count):
    """(sides, prices, qtys) of `count` level changes; generated outside any timed region."""
    np.random.seed(seed)
    sides = np.empty(count, np.int64)
    prices = np.empty(count, np.int64)
    qtys = np.empty(count, np.int64)
    mid = MID
    for k in range(count):
        if np.random.random() < 0.05:
            step = 1 if np.random.random() < 0.5 - (mid - MID) / 400 else -1
            mid += step
            sides[k] = ASK if step > 0 else BID  # the level now at the mid is gone
            prices[k] = mid
            qtys[k] = 0
            continue
        if np.random.random() < 0.95:
            depth = int(np.random.exponential(12.0))
        else:
            depth = np.random.randint(0, SNAPSHOT_LEVELS)
        side = BID if np.random.random() < 0.5 else ASK
        sides[k] = side
        prices[k] = mid - 1 - depth if side == BID else mid + 1 + depth
        qtys[k] = 0 if np.random.random() < 0.25 else np.random.randint(1, 100_000_000)
    for first in range(0, count - DIFF_LEVELS + 1, DIFF_LEVELS):
        _as_binance_diff(sides[first:first + DIFF_LEVELS], prices[first:first + DIFF_LEVELS],
                         qtys[first:first + DIFF_LEVELS])
    return sides, prices, qtys


@njit(cache=True)
def _as_binance_diff(sides, prices, qtys):
    """Reorder one diff in place: bids best first, then asks best first (a price appears once per
    diff on Binance, so the order inside a diff does not change the resulting book)."""
    keys = np.where(sides == BID, -prices, (1 << 62) + prices)
    order = np.argsort(keys, kind="mergesort")
    sides[:] = sides[order]
    prices[:] = prices[order]
    qtys[:] = qtys[order]


@njit(nogil=True, cache=True)
def _apply_stream(levels, ladder, meta, sides, prices, qtys):
    """All changes in one kernel call: the per-level cost. Returns elapsed ns."""
    start = monotonic_ns()
    apply_changes(levels, ladder, meta, 0, sides, prices, qtys)
    return monotonic_ns() - start


@njit(nogil=True, cache=True)
def _apply_diffs(levels, ladder, meta, sides, prices, qtys, out_ns):
    """One kernel call per DIFF_LEVELS-level diff, as a decoder makes per frame, each timed."""
    for d in range(len(out_ns)):
        first = d * DIFF_LEVELS
        last = first + DIFF_LEVELS
        start = monotonic_ns()
        apply_changes(levels, ladder, meta, 0, sides[first:last], prices[first:last], qtys[first:last])
        out_ns[d] = monotonic_ns() - start


def _snapshot(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ticks = np.arange(1, SNAPSHOT_LEVELS + 1)
    qty = rng.integers(1, 10**8, SNAPSHOT_LEVELS)
    return np.stack([MID - ticks, qty], 1), np.stack([MID + ticks, qty], 1)


def _loaded_book(snapshot: tuple[np.ndarray, np.ndarray]) -> BookStore:
    books = BookStore([CAPACITY])
    books.load(0, *snapshot)
    return books


def compile_kernels(prefix: str) -> None:
    """Every kernel the benchmark calls, compiled (or loaded) on a small flow and book."""
    books = _loaded_book(_snapshot(1))
    sides, prices, qtys = _flow(1, DIFF_LEVELS)
    _apply_stream(books.levels, books.ladder, books.meta, sides, prices, qtys)
    _apply_diffs(books.levels, books.ladder, books.meta, sides, prices, qtys, np.zeros(1, np.int64))
    books.count(0, BID)
    books.crossed(0)


def run(levels: int = 5_000_000, diffs: int = 100_000, seed: int = 1) -> dict[str, object]:
    load_kernels("fh bench book", compile_kernels)
    snapshot = _snapshot(seed)
    sides, prices, qtys = _flow(seed, max(levels, diffs * DIFF_LEVELS))
    timings = np.empty(diffs, np.int64)

    books = _loaded_book(snapshot)  # compile and warm both kernels on a throwaway book
    _apply_stream(books.levels, books.ladder, books.meta, sides[:1000], prices[:1000], qtys[:1000])
    _apply_diffs(books.levels, books.ladder, books.meta, sides, prices, qtys, timings[:10])

    books = _loaded_book(snapshot)
    elapsed_ns = _apply_stream(books.levels, books.ladder, books.meta, sides[:levels], prices[:levels],
                               qtys[:levels])

    books = _loaded_book(snapshot)
    started = time.perf_counter()
    _apply_diffs(books.levels, books.ladder, books.meta, sides, prices, qtys, timings)
    wall_s = time.perf_counter() - started
    held = books.count(0, BID) + books.count(0, ASK)
    crossed = books.crossed(0)

    started = time.perf_counter()
    books.load(0, *snapshot)
    load_s = time.perf_counter() - started

    result: dict[str, object] = {"ns_per_level": elapsed_ns / levels, "levels_per_s": levels / (elapsed_ns / 1e9)}
    result.update(percentiles(timings, "diff40"))
    result["diffs_per_s"] = diffs / wall_s
    result["levels_held_after_diffs"] = int(held)
    result["crossed_after_diffs"] = bool(crossed)
    result["snapshot_load_10k_levels_us"] = load_s * 1e6
    result["machine"] = machine()
    return result
