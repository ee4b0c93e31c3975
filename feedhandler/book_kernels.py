"""numba kernels for full-depth L2 books held in plain int64 arrays.

Each side is a hybrid of two stores, in key space where a larger key is a better level (bids:
key = price, asks: key = -price, so one code path serves both sides). Keys stay exact prices; the
book's `tick` (M_TICK, price units per slot: the instrument's tick, 1 where unknown) only decides
where a level is kept:

- a tick-indexed **ladder** of `window` slots, slot i holding the qty of key base + i * tick
  (base is a multiple of the tick): an update near the touch is one array store;
- a sorted **run**, ascending, best at the high end, for every other level: those below the
  window (key < base) and off-grid ones (a price that is not a multiple of the tick: Binance keeps
  resting orders from before a tick change, e.g. NKNUSDT 0.25974 under a 0.0001 tick). It lives in
  a fixed slab of `capacity` rows with slack at both ends: a change shifts the shorter neighbouring
  run, and the run re-centres in its slab when an end runs out (rare).

Every on-grid level with key >= base is in the ladder, so walking a side best first merges two
descending sequences, the ladder's (by occupancy bits) and the run's, which for the usual book
(no off-grid level above the window's base) is the ladder, then the run. The window re-anchors
(O(window)) so the best sits at 3/4 of it when an on-grid level arrives above it or the best falls
into its bottom quarter, which gives hysteresis of half a window either way. Prices far from the
market are correct, just slower (they live in the run), and so is a wrong or changed tick. Memory
per book is fixed: 2 * (window * 8 + capacity * 16) bytes. A full run keeps its best levels and
counts what it dropped (`M_OVERFLOW`).

Arrays: `levels` int64 (rows, 2) [key, qty] holds the runs, `ladder` int64 (slots,) the ladders,
`meta` int64 (books, NMETA) the per-side state at column SIDE_COLUMNS * side, then per-book
fields. Kernels keep a side's state in locals for a whole message and write it back once.

Compilation: kernels that allocate nothing are compiled without the numba runtime (`_nrt=False`):
helpers inlined into a loop otherwise bring reference-count calls into every iteration (that
cost 8 ns a level here). Only the small ladder path is inlined into `apply_changes`; the run and
re-anchoring are ordinary calls, which keeps compile time to seconds.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from shm.intrinsics import leading_zeros, trailing_zeros

BID = 0
ASK = 1

# The arrays as one argument of the kernels above this module (feed_kernels, publish); inside numba
# a namedtuple of arrays costs nothing, and fields read as `books.levels`. `journal`: see below.
Books = namedtuple("Books", "levels ladder meta journal")

# Per-side state, at column SIDE_COLUMNS * side.
S_OFFSET = 0  # first row of the run's slab in `levels`
S_LO = 1  # the run occupies rows [lo, hi)
S_HI = 2
S_LADDER = 3  # first slot of the ladder in `ladder`
S_BASE = 4  # key of ladder slot 0
S_TOP = 5  # best key in the ladder (meaningful when S_COUNT > 0)
S_COUNT = 6  # levels in the ladder
SIDE_COLUMNS = 8
# Per-book fields.
M_CAPACITY = 16  # rows of each side's run
M_WINDOW = 17  # slots of each side's ladder
M_ABSENT_DELETES = 18  # deletes of levels the book does not hold (normal on every venue)
M_OVERFLOW = 19  # levels dropped because a run was full
M_REJECTED = 20  # changes refused: price outside [0, MAX_PRICE] or negative qty
M_TICK = 21  # price units per ladder slot
NMETA = 22

MAX_PRICE = 1 << 62  # with window * tick <= MAX_SPAN, keeps every key difference and window base inside int64
MAX_SPAN = 1 << 60

SET_UPDATED = 0
SET_INSERTED = 1
SET_DELETED = 2
SET_ABSENT = 3
SET_OVERFLOW = 4
SET_REJECTED = 5


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


# ---------------------------------------------------------------- sorted run (levels below the window)

@njit(inline="always", nogil=True)
def _find(levels, lo, hi, key):
    """First row in [lo, hi) whose key is >= `key`, galloping down from the best end; a key at or
    below the worst row is answered at once (snapshots arrive best first, each level the worst)."""
    if hi == lo or levels[hi - 1, 0] < key:
        return hi
    if levels[lo, 0] >= key:
        return lo
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


@njit(nogil=True, cache=True, _nrt=False)
def run_set(levels, offset, capacity, lo, hi, key, qty):
    """Set `key` to `qty` (0 deletes) in a sorted run; returns (lo, hi, SET_* status)."""
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


@njit(nogil=True, cache=True, _nrt=False)
def _anchor(levels, ladder, offset, capacity, slot0, window, tick, lo, hi, base, count, new_base):
    """Move the window to start at `new_base` (on the grid, like `base`): levels leaving it go to the
    run, on-grid levels of the run now inside it come into the ladder (off-grid ones stay, the run
    closing up behind them). Only occupied slots move, found by their occupancy bits, so the cost is
    the ladder's words and levels, not its slots. Returns (lo, hi, count, overflow).
    Callers only move it down when nothing would leave through the top."""
    overflow = 0
    shift = (new_base - base) // tick
    bits0 = slot0 + window
    if shift > 0:  # ascending: every slot a level moves to is below it, and already visited
        for w in range((window + 63) >> 6):
            word = ladder[bits0 + w]
            ladder[bits0 + w] = 0
            while word != 0:
                bit = trailing_zeros(word)
                word ^= np.int64(1) << bit
                i = (w << 6) + bit
                qty = ladder[slot0 + i]
                ladder[slot0 + i] = 0
                if i < shift:
                    lo, hi, status = run_set(levels, offset, capacity, lo, hi, base + i * tick, qty)
                    overflow += status == SET_OVERFLOW
                    count -= 1
                else:
                    ladder[slot0 + i - shift] = qty
                    _mark(ladder, slot0, window, i - shift)
    elif shift < 0:  # descending, for the same reason
        for w in range(((window + 63) >> 6) - 1, -1, -1):
            word = ladder[bits0 + w]
            ladder[bits0 + w] = 0
            while word != 0:
                bit = 63 - leading_zeros(word)
                word ^= np.int64(1) << bit
                i = (w << 6) + bit
                ladder[slot0 + i - shift] = ladder[slot0 + i]
                ladder[slot0 + i] = 0
                _mark(ladder, slot0, window, i - shift)
        kept = hi  # the run's rows >= new_base that stay (off-grid) gather at [kept, hi)
        row = hi - 1
        while row >= lo and levels[row, 0] >= new_base:
            slot = _slot_of(levels[row, 0], new_base, tick)
            if 0 <= slot < window:
                ladder[slot0 + slot] = levels[row, 1]
                _mark(ladder, slot0, window, slot)
                count += 1
            else:
                kept -= 1
                levels[kept, 0] = levels[row, 0]
                levels[kept, 1] = levels[row, 1]
            row -= 1
        _move_rows(levels, kept, hi, row + 1 - kept)
        hi = row + 1 + hi - kept
    return lo, hi, count, overflow


@njit(inline="always", nogil=True)
def _anchor_at(best, window, tick):
    """The base that puts `best` (or the grid point below it) at about 3/4 of the window."""
    return best - best % tick - (window - 1 - window // 4) * tick


@njit(inline="always", nogil=True)
def _side_best(levels, lo, hi, top, count):
    """The best key of a side: the ladder's top or the run's, whichever is higher (a side that
    holds nothing has no best: callers check count + hi - lo first)."""
    if count > 0 and (hi == lo or top > levels[hi - 1, 0]):
        return top
    return levels[hi - 1, 0]


@njit(inline="always", nogil=True)
def side_set(levels, ladder, offset, capacity, slot0, window, tick, lo, hi, base, top, count, key, qty):
    """Set `key` to `qty` (0 deletes) on one side; returns (lo, hi, base, top, count, status)."""
    overflow = 0
    slot = _slot_of(key, base, tick)
    if slot >= 0:
        if slot >= window:
            if qty == 0:
                return lo, hi, base, top, count, SET_ABSENT
            new_base = _anchor_at(key, window, tick)
            lo, hi, count, overflow = _anchor(levels, ladder, offset, capacity, slot0, window, tick, lo, hi, base,
                                              count, new_base)
            base = new_base
            slot = (key - base) // tick
        old = ladder[slot0 + slot]
        ladder[slot0 + slot] = qty
        if qty != 0:
            if old != 0:
                return lo, hi, base, top, count, SET_UPDATED
            _mark(ladder, slot0, window, slot)
            if count == 0 or key > top:
                top = key
            count += 1
            return lo, hi, base, top, count, SET_OVERFLOW if overflow else SET_INSERTED
        if old == 0:
            return lo, hi, base, top, count, SET_ABSENT
        _unmark(ladder, slot0, window, slot)
        count -= 1
        if key != top:
            return lo, hi, base, top, count, SET_DELETED
        top = base + tick * _held_at_or_below(ladder, slot0, window, slot - 1)
        status = SET_DELETED
    else:
        lo, hi, status = run_set(levels, offset, capacity, lo, hi, key, qty)
        if count > 0 or status == SET_UPDATED or status == SET_ABSENT:
            return lo, hi, base, top, count, status
    if count == 0 and hi == lo:
        return lo, hi, base, top, count, status
    # The best level moved down: re-anchor when it fell into the bottom quarter of the window.
    best = _side_best(levels, lo, hi, top, count)
    if best - base < window // 4 * tick:
        new_base = _anchor_at(best, window, tick)
        lo, hi, count, overflow = _anchor(levels, ladder, offset, capacity, slot0, window, tick, lo, hi, base,
                                          count, new_base)
        base = new_base
        top = base + tick * _held_at_or_below(ladder, slot0, window, window - 1)
        if overflow:
            status = SET_OVERFLOW
    return lo, hi, base, top, count, status


# ---------------------------------------------------------------- whole-book kernels

@njit(inline="always", nogil=True)
def load_state(meta, book, side):
    """(offset, lo, hi, ladder slot 0, base, top, count) of one side."""
    c = SIDE_COLUMNS * side
    return (meta[book, c + S_OFFSET], meta[book, c + S_LO], meta[book, c + S_HI], meta[book, c + S_LADDER],
            meta[book, c + S_BASE], meta[book, c + S_TOP], meta[book, c + S_COUNT])


@njit(inline="always", nogil=True)
def store_state(meta, book, side, lo, hi, base, top, count):
    c = SIDE_COLUMNS * side
    meta[book, c + S_LO] = lo
    meta[book, c + S_HI] = hi
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
    b_off, b_lo, b_hi, b_slot0, b_base, b_top, b_count = load_state(meta, book, BID)
    a_off, a_lo, a_hi, a_slot0, a_base, a_top, a_count = load_state(meta, book, ASK)
    absent = 0
    overflow = 0
    rejected = 0
    for k in range(len(prices)):
        if not (0 <= prices[k] <= MAX_PRICE and qtys[k] >= 0):
            rejected += 1
            continue
        if sides[k] == BID:
            b_lo, b_hi, b_base, b_top, b_count, status = side_set(
                levels, ladder, b_off, capacity, b_slot0, window, tick, b_lo, b_hi, b_base, b_top, b_count,
                prices[k], qtys[k])
        else:
            a_lo, a_hi, a_base, a_top, a_count, status = side_set(
                levels, ladder, a_off, capacity, a_slot0, window, tick, a_lo, a_hi, a_base, a_top, a_count,
                -prices[k], qtys[k])
        if status == SET_ABSENT:
            absent += 1
        elif status == SET_OVERFLOW:
            overflow += 1
    store_state(meta, book, BID, b_lo, b_hi, b_base, b_top, b_count)
    store_state(meta, book, ASK, a_lo, a_hi, a_base, a_top, a_count)
    meta[book, M_ABSENT_DELETES] += absent
    meta[book, M_OVERFLOW] += overflow
    meta[book, M_REJECTED] += rejected
    return absent


@njit(nogil=True, cache=True, _nrt=False)
def clear_side(ladder, meta, book, side):
    """Empty one side: the occupied slots (found by their bits) and the bits are zeroed."""
    offset, lo, hi, slot0, base, top, count = load_state(meta, book, side)
    window = meta[book, M_WINDOW]
    bits0 = slot0 + window
    for w in range((window + 63) >> 6):
        word = ladder[bits0 + w]
        ladder[bits0 + w] = 0
        while word != 0:
            bit = trailing_zeros(word)
            word ^= np.int64(1) << bit
            ladder[slot0 + (w << 6) + bit] = 0
    middle = offset + meta[book, M_CAPACITY] // 2
    store_state(meta, book, side, middle, middle, base, top, 0)


@njit(nogil=True, cache=True, _nrt=False)
def clear_book(ladder, meta, book):
    clear_side(ladder, meta, book, BID)
    clear_side(ladder, meta, book, ASK)


@njit(nogil=True, cache=True)
def load_side(levels, ladder, meta, book, side, prices, qtys, n):
    """Replace one side with a snapshot of `n` levels in any order; returns the levels held.

    Same result as applying the levels in order to an empty side: a repeated price keeps its last
    quantity and qty 0 leaves a price out. The run keeps its best `capacity` levels.
    """
    clear_side(ladder, meta, book, side)
    offset, lo, hi, slot0, base, top, count = load_state(meta, book, side)
    capacity = meta[book, M_CAPACITY]
    window = meta[book, M_WINDOW]
    tick = meta[book, M_TICK]
    keys = np.empty(n, np.int64)
    for k in range(n):
        keys[k] = side_key(side, prices[k])
    order = np.argsort(keys, kind="mergesort")
    kept = np.empty(n, np.int64)
    held = 0
    rejected = 0
    for j in range(n):
        k = order[j]
        if j + 1 < n and keys[order[j + 1]] == keys[k]:
            continue
        if not (0 <= prices[k] <= MAX_PRICE and qtys[k] >= 0):
            rejected += 1
        elif qtys[k] != 0:
            kept[held] = k
            held += 1
    meta[book, M_REJECTED] += rejected
    if held == 0:
        return 0
    top = keys[kept[held - 1]]
    base = _anchor_at(top, window, tick)
    in_run = 0  # kept, ascending, compacted to the levels the run takes
    count = 0
    for j in range(held):
        k = kept[j]
        slot = _slot_of(keys[k], base, tick)
        if slot >= 0:
            ladder[slot0 + slot] = qtys[k]
            _mark(ladder, slot0, window, slot)
            count += 1
            top = keys[k]
        else:
            kept[in_run] = k
            in_run += 1
    first = max(0, in_run - capacity)
    meta[book, M_OVERFLOW] += first
    lo = offset + (capacity - (in_run - first)) // 2
    for j in range(first, in_run):
        k = kept[j]
        levels[lo + j - first, 0] = keys[k]
        levels[lo + j - first, 1] = qtys[k]
    store_state(meta, book, side, lo, lo + in_run - first, base, top, count)
    return held - first


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def side_count(meta, book, side):
    c = SIDE_COLUMNS * side
    return meta[book, c + S_COUNT] + meta[book, c + S_HI] - meta[book, c + S_LO]


@njit(nogil=True, cache=True, _nrt=False)
def best_level(levels, ladder, meta, book, side):
    """(price, qty) of the best level; qty 0 when the side is empty."""
    offset, lo, hi, slot0, base, top, count = load_state(meta, book, side)
    if count > 0 and (hi == lo or top > levels[hi - 1, 0]):
        return side_key(side, top), ladder[slot0 + (top - base) // meta[book, M_TICK]]
    if hi > lo:
        return side_key(side, levels[hi - 1, 0]), levels[hi - 1, 1]
    return 0, 0


@njit(inline="always", nogil=True)
def _walk_start(meta, book, side):
    """A best-first walk of one side: (state..., tick, window, next ladder slot or -1, next run row)."""
    offset, lo, hi, slot0, base, top, count = load_state(meta, book, side)
    tick = meta[book, M_TICK]
    slot = (top - base) // tick if count > 0 else -1
    return lo, slot0, base, tick, meta[book, M_WINDOW], slot, hi - 1


@njit(nogil=True, cache=True, _nrt=False)
def copy_top(levels, ladder, meta, book, side, out, at, depth):
    """Write up to `depth` best levels, best first, as price, qty pairs into the flat int64 `out`
    from index `at` (a shm book block or a caller's array); returns the count written."""
    lo, slot0, base, tick, window, slot, row = _walk_start(meta, book, side)
    written = 0
    while written < depth:
        if slot >= 0 and (row < lo or base + slot * tick > levels[row, 0]):
            out[at + 2 * written] = side_key(side, base + slot * tick)
            out[at + 2 * written + 1] = ladder[slot0 + slot]
            slot = _held_at_or_below(ladder, slot0, window, slot - 1)
        elif row >= lo:
            out[at + 2 * written] = side_key(side, levels[row, 0])
            out[at + 2 * written + 1] = levels[row, 1]
            row -= 1
        else:
            break
        written += 1
    return written


@njit(nogil=True, cache=True, _nrt=False)
def levels_through(levels, ladder, meta, book, side, price, limit):
    """How many levels of `side`, best first, lie at or through `price` (asks at or below it, bids at
    or above it), counting at most `limit`: the depth a trade at that price swept."""
    lo, slot0, base, tick, window, slot, row = _walk_start(meta, book, side)
    bound = side_key(side, price)
    reached = 0
    while reached < limit:
        if slot >= 0 and (row < lo or base + slot * tick > levels[row, 0]):
            if base + slot * tick < bound:
                break
            slot = _held_at_or_below(ladder, slot0, window, slot - 1)
        elif row >= lo:
            if levels[row, 0] < bound:
                break
            row -= 1
        else:
            break
        reached += 1
    return reached


@njit(nogil=True, cache=True, _nrt=False)
def truncate_side(levels, ladder, meta, book, side, depth):
    """Keep only the best `depth` levels (Kraken drops out-of-scope levels without telling): the
    worst go first, the lower of the run's bottom row and the ladder's lowest slot each time."""
    offset, lo, hi, slot0, base, top, count = load_state(meta, book, side)
    excess = count + hi - lo - depth
    if excess <= 0:
        return
    window = meta[book, M_WINDOW]
    tick = meta[book, M_TICK]
    slot = _held_at_or_above(ladder, slot0, window, 0) if count > 0 else -1
    for _ in range(excess):
        if slot >= 0 and (lo == hi or base + slot * tick < levels[lo, 0]):
            ladder[slot0 + slot] = 0
            _unmark(ladder, slot0, window, slot)
            count -= 1
            slot = _held_at_or_above(ladder, slot0, window, slot + 1) if count > 0 else -1
        else:
            lo += 1
    store_state(meta, book, side, lo, hi, base, top, count)


@njit(nogil=True, cache=True, _nrt=False)
def is_crossed(levels, ladder, meta, book):
    """True when both sides hold levels and best bid >= best ask (locked counts: one venue's
    book can never be locked)."""
    bid_px, bid_qty = best_level(levels, ladder, meta, book, BID)
    ask_px, ask_qty = best_level(levels, ladder, meta, book, ASK)
    return bid_qty != 0 and ask_qty != 0 and bid_px >= ask_px
