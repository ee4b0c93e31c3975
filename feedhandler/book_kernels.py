"""numba kernels for full-depth L2 books held in plain int64 arrays.

Each side is a hybrid of two stores, in key space where a larger key is a better level (bids:
key = price, asks: key = -price, so one code path serves both sides). Keys stay exact prices; the
book's `tick` (M_TICK, price units per slot: the instrument's tick, 1 where unknown) only decides
where a level is kept:

- a tick-indexed **ladder** of `window` slots, slot i holding the qty of key base + i * tick
  (base is a multiple of the tick): an update near the touch is one array store;
- a sorted **run** (`run_kernels`: blocks of 64 rows, a change costs a search and a shift inside a
  block at any depth) for every other level: those below the window (key < base) and off-grid
  ones (a price that is not a multiple of the tick: Binance keeps resting orders from before a tick
  change, e.g. NKNUSDT 0.25974 under a 0.0001 tick).

Every on-grid level with key >= base is in the ladder, so walking a side best first merges two
descending sequences, the ladder's (by occupancy bits) and the run's, which for the usual book
(no off-grid level above the window's base) is the ladder, then the run. The window re-anchors
(moving the occupied slots only) so the best sits at 3/4 of it when an on-grid level arrives above
it or the best falls into its bottom quarter, which gives hysteresis of half a window either way.
Prices far from the market are correct, just slower (they live in the run), and so is a wrong or
changed tick. Memory per book is fixed: 2 * (ladder_words(window) + 2 * run_rows(capacity)) * 8
bytes. A full run keeps its best levels and counts what it dropped (`M_OVERFLOW`).

Arrays: `levels` int64 (rows, 2) [key, qty] holds the runs, `ladder` int64 (slots,) the ladders,
`meta` int64 (books, NMETA) the per-side state at column SIDE_COLUMNS * side, then per-book
fields. Kernels keep a side's state in locals for a whole message and write it back once.

Compilation: kernels that allocate nothing are compiled without the numba runtime (`_nrt=False`):
helpers inlined into a loop otherwise bring reference-count calls into every iteration (that
cost 8 ns a level here). Only the small ladder path is inlined into `apply_changes`; the run's
changes and re-anchoring are ordinary calls, which keeps compile time to seconds.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from shm.intrinsics import leading_zeros, trailing_zeros

from .run_kernels import (R_HI, R_LO, R_N, RUN_ABSENT, RUN_DELETED, RUN_FULL, RUN_INSERTED, RUN_UPDATED, run_bottom,
                          run_clear, run_drop_bottom, run_set, run_spread_gathered, run_top, walk_next, walk_row,
                          walk_start)

BID = 0
ASK = 1

# The arrays as one argument of the kernels above this module (feed_kernels, publish); inside numba
# a namedtuple of arrays costs nothing, and fields read as `books.levels`. `journal`: see below.
Books = namedtuple("Books", "levels ladder meta journal")

# Per-side state, at column SIDE_COLUMNS * side.
S_OFFSET = 0  # first row of the run's slab in `levels`
S_LO = 1  # the run's non-empty blocks are [lo, hi)
S_HI = 2
S_LADDER = 3  # first slot of the ladder in `ladder`
S_BASE = 4  # key of ladder slot 0
S_TOP = 5  # best key in the ladder (meaningful when S_COUNT > 0)
S_COUNT = 6  # levels in the ladder
S_RUN = 7  # levels in the run
SIDE_COLUMNS = 8
# Per-book fields.
M_CAPACITY = 16  # rows of each side's run
M_WINDOW = 17  # slots of each side's ladder
M_ABSENT_DELETES = 18  # deletes of levels the book does not hold (normal on every venue)
M_OVERFLOW = 19  # levels dropped because a run was full
M_REJECTED = 20  # changes refused: price outside [0, MAX_PRICE] or negative qty
M_TICK = 21  # price units per ladder slot
M_BLOCKS = 22  # blocks of each side's run (run_kernels.run_blocks(capacity))
NMETA = 23

MAX_PRICE = 1 << 62  # with window * tick <= MAX_SPAN, keeps every key difference and window base inside int64
MAX_SPAN = 1 << 60
NO_LEVEL = -(1 << 63)  # below every key: the end of a walk

SET_UPDATED = RUN_UPDATED
SET_INSERTED = RUN_INSERTED
SET_DELETED = RUN_DELETED
SET_ABSENT = RUN_ABSENT
SET_OVERFLOW = RUN_FULL  # inserted and a worse level dropped, or refused as the worst


@njit(inline="always", nogil=True)
def side_key(side, price):
    """Key of a price on a side (bids: the price, asks: its negation); its own inverse."""
    return price if side == BID else -price


# ---------------------------------------------------------------- journal

# What a feed did to its books, in order, when asked to keep it (`fh bench book --capture` replays it
# through the book alone). Rows of JOURNAL_COLUMNS int64 words: op, book, side, price, qty (J_TRUNCATE:
# the depth in qty). One call's changes are a J_APPLY (or J_LOAD: a snapshot) row followed by J_MORE
# rows. Row 0 holds the rows used and the rows that did not fit; a journal of that row alone (every
# BookStore's unless asked) records nothing, for the cost of one length check per call.
J_APPLY, J_MORE, J_LOAD, J_CLEAR, J_TRUNCATE = 1, 2, 3, 4, 5
JOURNAL_COLUMNS = 5


@njit(inline="always", nogil=True)
def journal_changes(journal, op, book, sides, prices, qtys):
    """Record one call's level changes under `op` (J_APPLY or J_LOAD)."""
    if len(journal) == 1:
        return
    used = journal[0, 0]
    if used + 1 + len(prices) > len(journal):
        journal[0, 1] += len(prices)
        return
    for k in range(len(prices)):
        row = used + 1 + k
        journal[row, 0] = op if k == 0 else J_MORE
        journal[row, 1] = book
        journal[row, 2] = sides[k]
        journal[row, 3] = prices[k]
        journal[row, 4] = qtys[k]
    journal[0, 0] = used + len(prices)


@njit(inline="always", nogil=True)
def journal_op(journal, op, book, side, value):
    """Record one J_CLEAR or J_TRUNCATE (value: the depth)."""
    if len(journal) == 1:
        return
    used = journal[0, 0]
    if used + 2 > len(journal):
        journal[0, 1] += 1
        return
    journal[used + 1, 0] = op
    journal[used + 1, 1] = book
    journal[used + 1, 2] = side
    journal[used + 1, 3] = 0
    journal[used + 1, 4] = value
    journal[0, 0] = used + 1


# ---------------------------------------------------------------- ladder and window

@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def ladder_words(window):
    """int64 words one side's ladder takes: `window` quantities, then one occupancy bit per slot."""
    return window + (window + 63) // 64


@njit(inline="always", nogil=True)
def _slot_of(key, base, tick):
    """Ladder slot of `key` when it is on the tick grid at or above the window's base (it may be past
    the window's end), else -1: a key below the base or off the grid belongs to the run. The
    division is unsigned (no sign fix-up) and skipped for a tick of 1."""
    d = key - base
    if d < 0:
        return -1
    if tick == 1:
        return d
    q = np.int64(np.uint64(d) // np.uint64(tick))
    return q if q * tick == d else -1


@njit(inline="always", nogil=True)
def _mark(ladder, slot0, window, i):
    ladder[slot0 + window + (i >> 6)] |= np.int64(1) << (i & 63)


@njit(inline="always", nogil=True)
def _unmark(ladder, slot0, window, i):
    ladder[slot0 + window + (i >> 6)] &= ~(np.int64(1) << (i & 63))


@njit(inline="always", nogil=True)
def _held_at_or_below(ladder, slot0, window, i):
    """Highest occupied ladder slot <= i, or -1: a word of the occupancy bits covers 64 slots, so
    walking a sparse ladder (a thin book) costs words, not slots."""
    if i < 0:
        return -1
    bits0 = slot0 + window
    w = i >> 6
    word = ladder[bits0 + w]
    if (i & 63) != 63:
        word &= (np.int64(1) << ((i & 63) + 1)) - 1
    while word == 0:
        w -= 1
        if w < 0:
            return -1
        word = ladder[bits0 + w]
    return (w << 6) + 63 - leading_zeros(word)


@njit(inline="always", nogil=True)
def _held_at_or_above(ladder, slot0, window, i):
    """Lowest occupied ladder slot >= i, or -1."""
    bits0 = slot0 + window
    words = (window + 63) >> 6
    w = i >> 6
    if w >= words:
        return -1
    word = ladder[bits0 + w] & ~((np.int64(1) << (i & 63)) - 1)
    while word == 0:
        w += 1
        if w >= words:
            return -1
        word = ladder[bits0 + w]
    return (w << 6) + trailing_zeros(word)


@njit(inline="always", nogil=True)
def _pop_lowest(word):
    """(the lowest set bit of an occupancy word, the word without it)."""
    bit = trailing_zeros(word)
    return bit, word ^ (np.int64(1) << bit)


@njit(inline="always", nogil=True)
def _pop_highest(word):
    """(the highest set bit of an occupancy word, the word without it)."""
    bit = 63 - leading_zeros(word)
    return bit, word ^ (np.int64(1) << bit)


@njit(nogil=True, cache=True, _nrt=False)
def _anchor(levels, ladder, capacity, slot0, window, tick, run, base, count, new_base):
    """Move the window to start at `new_base` (on the grid, like `base`): levels leaving it go to the
    run, on-grid levels of the run now inside it come into the ladder (off-grid ones stay). Only
    occupied slots move, found by their occupancy bits, so the cost is the ladder's words and
    levels, not its slots. Returns (run, count, overflow).
    Callers only move it down when nothing would leave through the top."""
    overflow = 0
    shift = (new_base - base) // tick
    bits0 = slot0 + window
    if shift > 0:  # ascending: every slot a level moves to is below it, and already visited
        for w in range((window + 63) >> 6):
            word = ladder[bits0 + w]
            ladder[bits0 + w] = 0
            while word != 0:
                bit, word = _pop_lowest(word)
                i = (w << 6) + bit
                qty = ladder[slot0 + i]
                ladder[slot0 + i] = 0
                if i < shift:
                    run, status = run_set(levels, run, base + i * tick, qty, capacity)
                    overflow += status == RUN_FULL
                    count -= 1
                else:
                    ladder[slot0 + i - shift] = qty
                    _mark(ladder, slot0, window, i - shift)
    elif shift < 0:  # descending, for the same reason
        for w in range(((window + 63) >> 6) - 1, -1, -1):
            word = ladder[bits0 + w]
            ladder[bits0 + w] = 0
            while word != 0:
                bit, word = _pop_highest(word)
                i = (w << 6) + bit
                ladder[slot0 + i - shift] = ladder[slot0 + i]
                ladder[slot0 + i] = 0
                _mark(ladder, slot0, window, i - shift)
        block, index = walk_start(levels, run)  # the run's rows >= new_base, best first
        while run[R_N] > 0 and block >= run[R_LO]:
            row = walk_row(levels, run, block, index)
            key = levels[row, 0]
            if key < new_base:
                break
            slot = _slot_of(key, new_base, tick)
            if 0 <= slot < window:
                ladder[slot0 + slot] = levels[row, 1]
                _mark(ladder, slot0, window, slot)
                count += 1
                run, _ = run_set(levels, run, key, 0, capacity)
            block, index = walk_next(levels, run, block, index)
    return run, count, overflow


@njit(inline="always", nogil=True)
def _anchor_at(best, window, tick):
    """The base that puts `best` (or the grid point below it) at about 3/4 of the window."""
    return best - best % tick - (window - 1 - window // 4) * tick


@njit(inline="always", nogil=True)
def _side_best(levels, run, top, count):
    """The best key of a side: the ladder's top or the run's, whichever is higher (callers check
    that the side holds something)."""
    if count > 0 and (run[R_N] == 0 or top > levels[run_top(levels, run), 0]):
        return top
    return levels[run_top(levels, run), 0]


@njit(inline="always", nogil=True)
def side_set(levels, ladder, capacity, slot0, window, tick, run, base, top, count, key, qty):
    """Set `key` to `qty` (0 deletes) on one side; returns (run, base, top, count, status)."""
    overflow = 0
    slot = _slot_of(key, base, tick)
    if slot >= 0:
        if slot >= window:
            if qty == 0:
                return run, base, top, count, SET_ABSENT
            new_base = _anchor_at(key, window, tick)
            run, count, overflow = _anchor(levels, ladder, capacity, slot0, window, tick, run, base, count, new_base)
            base = new_base
            slot = (key - base) // tick
        old = ladder[slot0 + slot]
        ladder[slot0 + slot] = qty
        if qty != 0:
            if old != 0:
                return run, base, top, count, SET_UPDATED
            _mark(ladder, slot0, window, slot)
            if count == 0 or key > top:
                top = key
            count += 1
            return run, base, top, count, SET_OVERFLOW if overflow else SET_INSERTED
        if old == 0:
            return run, base, top, count, SET_ABSENT
        _unmark(ladder, slot0, window, slot)
        count -= 1
        if key != top:
            return run, base, top, count, SET_DELETED
        top = base + tick * _walk_ladder(ladder, slot0, window, slot, count)
        status = SET_DELETED
    else:
        run, status = run_set(levels, run, key, qty, capacity)
        if count > 0 or status == SET_UPDATED or status == SET_ABSENT:
            return run, base, top, count, status
    if count == 0 and run[R_N] == 0:
        return run, base, top, count, status
    # The best level moved down: re-anchor when it fell into the bottom quarter of the window.
    best = _side_best(levels, run, top, count)
    if best - base < window // 4 * tick:
        new_base = _anchor_at(best, window, tick)
        run, count, overflow = _anchor(levels, ladder, capacity, slot0, window, tick, run, base, count, new_base)
        base = new_base
        top = base + tick * _walk_ladder(ladder, slot0, window, window, count)
        if overflow:
            status = SET_OVERFLOW
    return run, base, top, count, status


# ---------------------------------------------------------------- whole-book kernels

@njit(inline="always", nogil=True)
def load_state(meta, book, side):
    """(run, ladder slot 0, base, top, count) of one side; run is run_kernels' state tuple."""
    c = SIDE_COLUMNS * side
    run = (meta[book, c + S_OFFSET], meta[book, M_BLOCKS], meta[book, c + S_LO], meta[book, c + S_HI],
           meta[book, c + S_RUN])
    return run, meta[book, c + S_LADDER], meta[book, c + S_BASE], meta[book, c + S_TOP], meta[book, c + S_COUNT]


@njit(inline="always", nogil=True)
def store_state(meta, book, side, run, base, top, count):
    c = SIDE_COLUMNS * side
    meta[book, c + S_LO] = run[R_LO]
    meta[book, c + S_HI] = run[R_HI]
    meta[book, c + S_RUN] = run[R_N]
    meta[book, c + S_BASE] = base
    meta[book, c + S_TOP] = top
    meta[book, c + S_COUNT] = count


@njit(nogil=True, cache=True, _nrt=False)
def apply_changes(levels, ladder, meta, book, sides, prices, qtys):
    """Apply absolute level changes (qty 0 deletes) in order, each on its side (BID/ASK); both
    sides' state stays in locals for the whole call. Returns how many were absent deletes."""
    capacity = meta[book, M_CAPACITY]
    window = meta[book, M_WINDOW]
    tick = meta[book, M_TICK]
    b_run, b_slot0, b_base, b_top, b_count = load_state(meta, book, BID)
    a_run, a_slot0, a_base, a_top, a_count = load_state(meta, book, ASK)
    absent = 0
    overflow = 0
    rejected = 0
    for k in range(len(prices)):
        if not (0 <= prices[k] <= MAX_PRICE and qtys[k] >= 0):
            rejected += 1
            continue
        if sides[k] == BID:
            b_run, b_base, b_top, b_count, status = side_set(
                levels, ladder, capacity, b_slot0, window, tick, b_run, b_base, b_top, b_count, prices[k], qtys[k])
        else:
            a_run, a_base, a_top, a_count, status = side_set(
                levels, ladder, capacity, a_slot0, window, tick, a_run, a_base, a_top, a_count, -prices[k], qtys[k])
        if status == SET_ABSENT:
            absent += 1
        elif status == SET_OVERFLOW:
            overflow += 1
    store_state(meta, book, BID, b_run, b_base, b_top, b_count)
    store_state(meta, book, ASK, a_run, a_base, a_top, a_count)
    meta[book, M_ABSENT_DELETES] += absent
    meta[book, M_OVERFLOW] += overflow
    meta[book, M_REJECTED] += rejected
    return absent


@njit(nogil=True, cache=True, _nrt=False)
def clear_side(levels, ladder, meta, book, side):
    """Empty one side: the occupied slots (found by their bits), the bits and the run's directory
    are zeroed."""
    run, slot0, base, top, count = load_state(meta, book, side)
    window = meta[book, M_WINDOW]
    bits0 = slot0 + window
    for w in range((window + 63) >> 6):
        word = ladder[bits0 + w]
        ladder[bits0 + w] = 0
        while word != 0:
            bit, word = _pop_lowest(word)
            ladder[slot0 + (w << 6) + bit] = 0
    store_state(meta, book, side, run_clear(levels, run), base, top, 0)


@njit(nogil=True, cache=True, _nrt=False)
def clear_book(levels, ladder, meta, book):
    clear_side(levels, ladder, meta, book, BID)
    clear_side(levels, ladder, meta, book, ASK)


@njit(nogil=True, cache=True, _nrt=False)
def load_book(levels, ladder, meta, book, sides, prices, qtys):
    """Replace a book with a snapshot: the same as applying the levels in order to an empty book.
    When each side's levels come best first, distinct and non-zero (every venue's snapshots do),
    each side is built in one pass: ladder slots stored, run rows gathered and dealt out to their
    blocks at once; otherwise the levels are applied one by one. Returns the absent deletes."""
    clear_book(levels, ladder, meta, book)
    b_ok, b_first, b_end = _best_first(sides, prices, qtys, BID)
    a_ok, a_first, a_end = _best_first(sides, prices, qtys, ASK)
    if b_ok and a_ok:
        _load_best_first(levels, ladder, meta, book, BID, sides[b_first:b_end], prices[b_first:b_end],
                         qtys[b_first:b_end])
        _load_best_first(levels, ladder, meta, book, ASK, sides[a_first:a_end], prices[a_first:a_end],
                         qtys[a_first:a_end])
        return 0
    return apply_changes(levels, ladder, meta, book, sides, prices, qtys)


@njit(inline="always", nogil=True)
def _best_first(sides, prices, qtys, side):
    """(are `side`'s levels valid, non-zero and strictly best first, the range [first, end) they
    lie in): venues send a side's levels together, so a side's passes are over its own range."""
    previous = MAX_PRICE + 1
    first = len(prices)
    end = 0
    for k in range(len(prices)):
        if sides[k] != side:
            continue
        if not (0 <= prices[k] <= MAX_PRICE and qtys[k] > 0):
            return False, 0, 0
        key = side_key(side, prices[k])
        if previous <= MAX_PRICE and key >= previous:
            return False, 0, 0
        previous = key
        first = min(first, k)
        end = k + 1
    return True, min(first, end), end


@njit(inline="always", nogil=True)
def _load_best_first(levels, ladder, meta, book, side, sides, prices, qtys):
    """One empty side from its best-first levels: the ladder anchored at the best, the rest (deeper
    or off the grid) written ascending from the run's first row, the best `capacity` of them kept.
    Returns how many the run could not take."""
    run, slot0, base, top, count = load_state(meta, book, side)
    capacity = meta[book, M_CAPACITY]
    window = meta[book, M_WINDOW]
    tick = meta[book, M_TICK]
    in_run = 0
    first = True
    for k in range(len(prices)):
        if sides[k] != side:
            continue
        key = side_key(side, prices[k])
        if first:
            base = _anchor_at(key, window, tick)
            first = False
        if _slot_of(key, base, tick) >= 0:
            if count == 0:
                top = key
            count += 1
        else:
            in_run += 1
    kept = min(in_run, capacity)
    at = run[0] + kept  # rows are written from the top of the kept range down: they come best first
    written = 0
    for k in range(len(prices)):
        if sides[k] != side:
            continue
        key = side_key(side, prices[k])
        slot = _slot_of(key, base, tick)
        if slot >= 0:
            ladder[slot0 + slot] = qtys[k]
            _mark(ladder, slot0, window, slot)
        elif written < kept:
            at -= 1
            levels[at, 0] = key
            levels[at, 1] = qtys[k]
            written += 1
    meta[book, M_OVERFLOW] += in_run - kept
    store_state(meta, book, side, run_spread_gathered(levels, run, kept), base, top, count)
    return in_run - kept


@njit(nogil=True, cache=True)
def load_side(levels, ladder, meta, book, side, prices, qtys, n):
    """Replace one side with a snapshot of `n` levels in any order; returns the levels held.

    Same result as applying the levels in order to an empty side: a repeated price keeps its last
    quantity and qty 0 leaves a price out. The run keeps its best `capacity` levels.
    """
    clear_side(levels, ladder, meta, book, side)
    keys = np.empty(n, np.int64)
    for k in range(n):
        keys[k] = side_key(side, prices[k])
    order = np.argsort(keys, kind="mergesort")
    kept = np.empty(n, np.int64)  # best first: the last of each repeated price, non-zero and valid
    held = 0
    rejected = 0
    for j in range(n - 1, -1, -1):
        k = order[j]
        if j + 1 < n and keys[order[j + 1]] == keys[k]:
            continue
        if not (0 <= prices[k] <= MAX_PRICE and qtys[k] >= 0):
            rejected += 1
        elif qtys[k] != 0:
            kept[held] = k
            held += 1
    meta[book, M_REJECTED] += rejected
    chosen = kept[:held]
    return held - _load_best_first(levels, ladder, meta, book, side, np.full(held, side, np.int64), prices[chosen],
                                   qtys[chosen])


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def side_count(meta, book, side):
    c = SIDE_COLUMNS * side
    return meta[book, c + S_COUNT] + meta[book, c + S_RUN]


@njit(nogil=True, cache=True, _nrt=False)
def best_level(levels, ladder, meta, book, side):
    """(price, qty) of the best level; qty 0 when the side is empty."""
    run, slot0, base, top, count = load_state(meta, book, side)
    if count > 0 and (run[R_N] == 0 or top > levels[run_top(levels, run), 0]):
        return side_key(side, top), ladder[slot0 + (top - base) // meta[book, M_TICK]]
    if run[R_N] > 0:
        row = run_top(levels, run)
        return side_key(side, levels[row, 0]), levels[row, 1]
    return 0, 0


@njit(inline="always", nogil=True)
def _walk_start(levels, meta, book, side):
    """A best-first walk of one side: (run, ladder slot 0, base, tick, window, next ladder slot or
    -1, the ladder levels left, next run block and index, that row's key or NO_LEVEL)."""
    run, slot0, base, top, count = load_state(meta, book, side)
    tick = meta[book, M_TICK]
    slot = (top - base) // tick if count > 0 else -1
    block, index = walk_start(levels, run)
    key = levels[walk_row(levels, run, block, index), 0] if run[R_N] > 0 else NO_LEVEL
    return run, slot0, base, tick, meta[book, M_WINDOW], slot, count, block, index, key


@njit(inline="always", nogil=True)
def _walk_ladder(ladder, slot0, window, slot, left):
    """The ladder's next occupied slot below `slot` (-1 after the last: `left` levels remain, so the
    walk never scans the words below the last level)."""
    return _held_at_or_below(ladder, slot0, window, slot - 1) if left > 0 else -1


@njit(inline="always", nogil=True)
def _walk_run(levels, run, block, index):
    """The run's next (block, index, key) best first; key NO_LEVEL at its end."""
    block, index = walk_next(levels, run, block, index)
    return block, index, levels[walk_row(levels, run, block, index), 0] if block >= run[R_LO] else NO_LEVEL


@njit(nogil=True, cache=True, _nrt=False)
def copy_top(levels, ladder, meta, book, side, out, at, depth):
    """Write up to `depth` best levels, best first, as price, qty pairs into the flat int64 `out`
    from index `at` (a shm book block or a caller's array); returns the count written."""
    run, slot0, base, tick, window, slot, left, block, index, key = _walk_start(levels, meta, book, side)
    written = 0
    while written < depth:
        if slot >= 0 and base + slot * tick > key:
            out[at + 2 * written] = side_key(side, base + slot * tick)
            out[at + 2 * written + 1] = ladder[slot0 + slot]
            left -= 1
            slot = _walk_ladder(ladder, slot0, window, slot, left)
        elif key != NO_LEVEL:
            out[at + 2 * written] = side_key(side, key)
            out[at + 2 * written + 1] = levels[walk_row(levels, run, block, index), 1]
            block, index, key = _walk_run(levels, run, block, index)
        else:
            break
        written += 1
    return written


@njit(nogil=True, cache=True, _nrt=False)
def levels_through(levels, ladder, meta, book, side, price, limit):
    """How many levels of `side`, best first, lie at or through `price` (asks at or below it, bids at
    or above it), counting at most `limit`: the depth a trade at that price swept."""
    run, slot0, base, tick, window, slot, left, block, index, key = _walk_start(levels, meta, book, side)
    bound = side_key(side, price)
    reached = 0
    while reached < limit:
        if slot >= 0 and base + slot * tick > key:
            if base + slot * tick < bound:
                break
            left -= 1
            slot = _walk_ladder(ladder, slot0, window, slot, left)
        elif key != NO_LEVEL:
            if key < bound:
                break
            block, index, key = _walk_run(levels, run, block, index)
        else:
            break
        reached += 1
    return reached


@njit(nogil=True, cache=True, _nrt=False)
def truncate_side(levels, ladder, meta, book, side, depth):
    """Keep only the best `depth` levels (Kraken drops out-of-scope levels without telling): the
    worst go first, the lower of the run's bottom row and the ladder's lowest slot each time."""
    run, slot0, base, top, count = load_state(meta, book, side)
    excess = count + run[R_N] - depth
    if excess <= 0:
        return
    window = meta[book, M_WINDOW]
    tick = meta[book, M_TICK]
    slot = -2  # the ladder's lowest slot, looked up only when the run's worst is not below the window
    for _ in range(excess):
        if run[R_N] > 0 and levels[run_bottom(levels, run), 0] < base:
            run = run_drop_bottom(levels, run, 1)
            continue
        if slot == -2:
            slot = _held_at_or_above(ladder, slot0, window, 0) if count > 0 else -1
        if slot >= 0 and (run[R_N] == 0 or base + slot * tick < levels[run_bottom(levels, run), 0]):
            ladder[slot0 + slot] = 0
            _unmark(ladder, slot0, window, slot)
            count -= 1
            slot = _held_at_or_above(ladder, slot0, window, slot + 1) if count > 0 else -1
        else:
            run = run_drop_bottom(levels, run, 1)
    store_state(meta, book, side, run, base, top, count)


@njit(nogil=True, cache=True, _nrt=False)
def is_crossed(levels, ladder, meta, book):
    """True when both sides hold levels and best bid >= best ask (locked counts: one venue's
    book can never be locked)."""
    bid_px, bid_qty = best_level(levels, ladder, meta, book, BID)
    ask_px, ask_qty = best_level(levels, ladder, meta, book, ASK)
    return bid_qty != 0 and ask_qty != 0 and bid_px >= ask_px
