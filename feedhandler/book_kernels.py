"""numba kernels for full-depth L2 books held in plain int64 arrays.

Layout: `levels` is an int64 (rows, 2) pool of [key, qty]. Each side of each book owns `capacity`
consecutive rows from its offset and keeps its levels in rows [lo, hi), ascending by key, best
level at hi-1. Bids store key = price and asks key = -price, so one code path serves both sides.
An insert or delete shifts the shorter neighbouring run (near the touch that is a few rows); when
the end it needs is reached the run is re-centred in its slab, O(n) and rare. A side never grows:
the memory bound is 2 * capacity * 16 bytes per book. A full side keeps its best `capacity` levels
and counts what it had to drop (`M_OVERFLOW`).

`meta` is int64 (books, NMETA): per side [offset, lo, hi] at column 3*side, then the capacity and
counters. Callers keep lo/hi in locals across a message and write them back once.
"""
from __future__ import annotations

import numpy as np
from numba import njit

BID = 0
ASK = 1

M_OFFSET = 0
M_LO = 1
M_HI = 2
M_CAPACITY = 6
M_ABSENT_DELETES = 7  # deletes of levels the book does not hold (normal on every venue)
M_OVERFLOW = 8  # levels dropped or evicted because a side was full
NMETA = 9

SET_UPDATED = 0
SET_INSERTED = 1
SET_DELETED = 2
SET_ABSENT = 3
SET_OVERFLOW = 4


@njit(inline="always", nogil=True)
def side_key(side, price):
    return price if side == BID else -price


@njit(inline="always", nogil=True)
def _find(levels, lo, hi, key):
    """First row in [lo, hi) whose key is >= `key`, galloping down from the best end."""
    if hi == lo or levels[hi - 1, 0] < key:
        return hi
    upper = hi - 1
    lower = lo - 1
    step = 1
    while True:
        probe = upper - step
        if probe < lo:
            break
        if levels[probe, 0] < key:
            lower = probe
            break
        upper = probe
        step <<= 1
    while upper - lower > 1:
        mid = (lower + upper) >> 1
        if levels[mid, 0] < key:
            lower = mid
        else:
            upper = mid
    return upper


@njit(inline="always", nogil=True)
def _move_rows(levels, first, last, shift):
    """Move rows [first, last) by `shift` rows (overlap-safe)."""
    if shift > 0:
        for r in range(last - 1, first - 1, -1):
            levels[r + shift, 0] = levels[r, 0]
            levels[r + shift, 1] = levels[r, 1]
    elif shift < 0:
        for r in range(first, last):
            levels[r + shift, 0] = levels[r, 0]
            levels[r + shift, 1] = levels[r, 1]


@njit(inline="always", nogil=True)
def side_set(levels, offset, capacity, lo, hi, key, qty):
    """Set the level at `key` to `qty` (0 deletes) on one side; returns (lo, hi, SET_* status)."""
    p = _find(levels, lo, hi, key)
    found = p < hi and levels[p, 0] == key
    if qty == 0:
        if not found:
            return lo, hi, SET_ABSENT
        if p - lo < hi - 1 - p:
            _move_rows(levels, lo, p, 1)
            lo += 1
        else:
            _move_rows(levels, p + 1, hi, -1)
            hi -= 1
        return lo, hi, SET_DELETED
    if found:
        levels[p, 1] = qty
        return lo, hi, SET_UPDATED
    status = SET_INSERTED
    if hi - lo == capacity:
        if p == lo:
            return lo, hi, SET_OVERFLOW
        lo += 1
        status = SET_OVERFLOW
    shift_down = p - lo <= hi - p
    if (shift_down and lo == offset) or (not shift_down and hi == offset + capacity):
        if capacity - (hi - lo) >= 2:
            centred = offset + (capacity - (hi - lo)) // 2
            _move_rows(levels, lo, hi, centred - lo)
            p += centred - lo
            hi += centred - lo
            lo = centred
        else:
            shift_down = not shift_down
    if shift_down:
        _move_rows(levels, lo, p, -1)
        lo -= 1
        p -= 1
    else:
        _move_rows(levels, p, hi, 1)
        hi += 1
    levels[p, 0] = key
    levels[p, 1] = qty
    return lo, hi, status


@njit(nogil=True, cache=True)
def apply_levels(levels, meta, book, side, prices, qtys, n):
    """Apply `n` absolute level changes in order to one side; returns how many were absent deletes."""
    column = 3 * side
    offset = meta[book, column + M_OFFSET]
    lo = meta[book, column + M_LO]
    hi = meta[book, column + M_HI]
    capacity = meta[book, M_CAPACITY]
    absent = 0
    overflow = 0
    for k in range(n):
        lo, hi, status = side_set(levels, offset, capacity, lo, hi, side_key(side, prices[k]), qtys[k])
        if status == SET_ABSENT:
            absent += 1
        elif status == SET_OVERFLOW:
            overflow += 1
    meta[book, column + M_LO] = lo
    meta[book, column + M_HI] = hi
    meta[book, M_ABSENT_DELETES] += absent
    meta[book, M_OVERFLOW] += overflow
    return absent


@njit(nogil=True, cache=True)
def load_side(levels, meta, book, side, prices, qtys, n):
    """Replace one side with a snapshot of `n` levels in any order; returns the levels held.

    Same result as applying the levels in order to an empty side: a repeated price keeps its last
    quantity, qty 0 leaves a price out, and only the best `capacity` levels are kept.
    """
    column = 3 * side
    offset = meta[book, column + M_OFFSET]
    capacity = meta[book, M_CAPACITY]
    keys = np.empty(n, np.int64)
    for k in range(n):
        keys[k] = side_key(side, prices[k])
    order = np.argsort(keys, kind="mergesort")
    kept = np.empty(n, np.int64)
    held = 0
    for j in range(n):
        k = order[j]
        if j + 1 < n and keys[order[j + 1]] == keys[k]:
            continue
        if qtys[k] != 0:
            kept[held] = k
            held += 1
    first = 0
    if held > capacity:
        first = held - capacity
        meta[book, M_OVERFLOW] += first
    count = held - first
    lo = offset + (capacity - count) // 2
    for j in range(count):
        k = kept[first + j]
        levels[lo + j, 0] = keys[k]
        levels[lo + j, 1] = qtys[k]
    meta[book, column + M_LO] = lo
    meta[book, column + M_HI] = lo + count
    return count


@njit(nogil=True, cache=True)
def clear_side(meta, book, side):
    column = 3 * side
    middle = meta[book, column + M_OFFSET] + meta[book, M_CAPACITY] // 2
    meta[book, column + M_LO] = middle
    meta[book, column + M_HI] = middle


@njit(inline="always", nogil=True)
def side_count(meta, book, side):
    return meta[book, 3 * side + M_HI] - meta[book, 3 * side + M_LO]


@njit(nogil=True, cache=True)
def truncate_side(meta, book, side, depth):
    """Keep only the best `depth` levels (Kraken drops out-of-scope levels without telling)."""
    column = 3 * side
    if meta[book, column + M_HI] - meta[book, column + M_LO] > depth:
        meta[book, column + M_LO] = meta[book, column + M_HI] - depth


@njit(nogil=True, cache=True)
def best_level(levels, meta, book, side):
    """(price, qty) of the best level; qty 0 when the side is empty."""
    hi = meta[book, 3 * side + M_HI]
    if hi == meta[book, 3 * side + M_LO]:
        return 0, 0
    return side_key(side, levels[hi - 1, 0]), levels[hi - 1, 1]


@njit(nogil=True, cache=True)
def copy_top(levels, meta, book, side, out, at, depth):
    """Write up to `depth` best levels, best first, as price, qty pairs into the flat int64 `out`
    from index `at` (a shm book block or a caller's array); returns the count written."""
    lo = meta[book, 3 * side + M_LO]
    hi = meta[book, 3 * side + M_HI]
    count = min(depth, hi - lo)
    for j in range(count):
        out[at + 2 * j] = side_key(side, levels[hi - 1 - j, 0])
        out[at + 2 * j + 1] = levels[hi - 1 - j, 1]
    return count


@njit(nogil=True, cache=True)
def is_crossed(levels, meta, book):
    """True when both sides hold levels and best bid >= best ask (locked counts: one venue's
    book can never be locked)."""
    bid_px, bid_qty = best_level(levels, meta, book, BID)
    ask_px, ask_qty = best_level(levels, meta, book, ASK)
    return bid_qty != 0 and ask_qty != 0 and bid_px >= ask_px
