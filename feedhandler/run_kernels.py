"""numba kernels for a book side's sorted run: the levels its ladder does not hold, in blocks.

A run is an ascending sequence of [key, qty] rows (best at the high end) kept in a slab of
`blocks` blocks of RUN_BLOCK rows, each block sorted and filled from its first row, the blocks in
key order. A change costs a binary search over the blocks' first keys, one inside a block and a
shift of at most a block's rows, whatever the depth of the book: Coinbase's full-depth books hold
tens of thousands of levels, and a change deep in them cost a shift of thousands of rows in the
one sorted array this replaced. A full block lends a row to a neighbour with room; when none is
near, the run is dealt out again, three quarters of a block each, in the slab's middle (O(levels),
rare: the slab has a third more rows than the run can hold, so a spread always leaves a quarter of
each block free).

Layout, per side, from row `offset` of `levels` (int64 (rows, 2)): blocks * RUN_BLOCK rows of
levels, then one directory row per block, [rows held, first key] (inside [lo, hi) the first key of
an empty block is the next block's, so the column ascends there for the search). The state a kernel carries is a tuple `run` = (offset, blocks, lo, hi, n): the non-empty
blocks lie in [lo, hi) (lo == hi when empty) and the run holds n levels.
"""
from __future__ import annotations

from numba import njit

RUN_BLOCK = 64
APPEND_FILL = 48  # a run growing at an end opens the next block when the end block holds this many
NEAR_BLOCKS = 4  # a full block borrows room this many blocks away at most, else the run spreads
NO_KEY = (1 << 63) - 1
R_OFFSET, R_BLOCKS, R_LO, R_HI, R_N = 0, 1, 2, 3, 4

RUN_UPDATED = 0
RUN_INSERTED = 1
RUN_DELETED = 2
RUN_ABSENT = 3
RUN_FULL = 4


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def run_blocks(capacity):
    """Blocks a run of up to `capacity` levels takes: a third more rows than it holds, and two
    blocks of slack at the ends."""
    return (capacity + capacity // 3 + RUN_BLOCK - 1) // RUN_BLOCK + 2


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def run_rows(capacity):
    """Rows of `levels` one side's run takes: its blocks and their directory."""
    return run_blocks(capacity) * (RUN_BLOCK + 1)


@njit(inline="always", nogil=True)
def _dir(run, block):
    return run[R_OFFSET] + run[R_BLOCKS] * RUN_BLOCK + block


@njit(inline="always", nogil=True)
def _row(run, block, i):
    return run[R_OFFSET] + block * RUN_BLOCK + i


@njit(inline="always", nogil=True)
def block_len(levels, run, block):
    return levels[_dir(run, block), 0]


@njit(nogil=True, cache=True, _nrt=False)
def run_clear(levels, run):
    """The run emptied: its blocks' lengths zeroed (blocks outside [lo, hi) are empty already)."""
    for b in range(run[R_LO], run[R_HI]):
        levels[_dir(run, b), 0] = 0
    middle = run[R_BLOCKS] // 2
    return (run[R_OFFSET], run[R_BLOCKS], middle, middle, 0)


@njit(inline="always", nogil=True)
def run_top(levels, run):
    """The run's best row (callers check n > 0 first)."""
    hi = run[R_HI] - 1
    return _row(run, hi, block_len(levels, run, hi) - 1)


@njit(inline="always", nogil=True)
def run_bottom(levels, run):
    """The run's worst row (callers check n > 0 first)."""
    return _row(run, run[R_LO], 0)


# ---------------------------------------------------------------- directory upkeep

@njit(inline="always", nogil=True)
def _set_first_key(levels, run, block):
    """Block `block`'s first key changed (or it emptied): its directory key, and those of the empty
    blocks below it in [lo, hi) that borrow it (outside, a block's key is set when it fills)."""
    length = block_len(levels, run, block)
    if length > 0:
        key = levels[_row(run, block, 0), 0]
    elif block + 1 < run[R_BLOCKS]:
        key = levels[_dir(run, block + 1), 1]
    else:
        key = NO_KEY
    levels[_dir(run, block), 1] = key
    b = block - 1
    while b >= run[R_LO] and block_len(levels, run, b) == 0:
        levels[_dir(run, b), 1] = key
        b -= 1


@njit(inline="always", nogil=True)
def _with_bounds(levels, run, lo, hi, n):
    """The state with [lo, hi) narrowed past empty blocks at either end."""
    while lo < hi and block_len(levels, run, lo) == 0:
        lo += 1
    while hi > lo and block_len(levels, run, hi - 1) == 0:
        hi -= 1
    if lo == hi:
        lo = hi = run[R_BLOCKS] // 2
    return (run[R_OFFSET], run[R_BLOCKS], lo, hi, n)


@njit(inline="always", nogil=True)
def _block_of(levels, run, key):
    """The block in [lo, hi) that holds `key` or would: the last whose first key is <= key, lo when
    none is (an empty block's key is the next one's, so the answer is never an empty block)."""
    d0 = _dir(run, 0)
    lower = run[R_LO]
    upper = run[R_HI]
    while lower < upper:  # the first block whose first key is > key
        mid = (lower + upper) >> 1
        if levels[d0 + mid, 1] <= key:
            lower = mid + 1
        else:
            upper = mid
    return max(lower - 1, run[R_LO])


@njit(inline="always", nogil=True)
def _position(levels, first, length, key):
    """First index in a block's rows [first, first + length) whose key is >= `key`."""
    lower = 0
    upper = length
    while lower < upper:
        mid = (lower + upper) >> 1
        if levels[first + mid, 0] < key:
            lower = mid + 1
        else:
            upper = mid
    return lower


@njit(inline="always", nogil=True)
def _shift_block(levels, first, start, end, shift):
    """Move a block's rows [start, end) by `shift` (+1 or -1) rows inside it (overlap-safe)."""
    if shift > 0:
        for r in range(end - 1, start - 1, -1):
            levels[first + r + 1, 0] = levels[first + r, 0]
            levels[first + r + 1, 1] = levels[first + r, 1]
    else:
        for r in range(start, end):
            levels[first + r - 1, 0] = levels[first + r, 0]
            levels[first + r - 1, 1] = levels[first + r, 1]


# ---------------------------------------------------------------- changes

@njit(nogil=True, cache=True, _nrt=False)
def run_set(levels, run, key, qty, capacity):
    """Set `key` to `qty` (0 deletes) in the run; returns (run, RUN_* status). A new level in a run
    that holds `capacity` levels replaces the worst, or is refused (RUN_FULL) when it is the worst."""
    n = run[R_N]
    if n == 0:
        if qty == 0:
            return run, RUN_ABSENT
        return _insert(levels, run, key, qty), RUN_INSERTED
    block = _block_of(levels, run, key)
    first = _row(run, block, 0)
    length = block_len(levels, run, block)
    p = _position(levels, first, length, key)
    if p < length and levels[first + p, 0] == key:
        if qty != 0:
            levels[first + p, 1] = qty
            return run, RUN_UPDATED
        _shift_block(levels, first, p + 1, length, -1)
        levels[_dir(run, block), 0] = length - 1
        if p == 0:
            _set_first_key(levels, run, block)
        return _with_bounds(levels, run, run[R_LO], run[R_HI], n - 1), RUN_DELETED
    if qty == 0:
        return run, RUN_ABSENT
    if n >= capacity:
        if key < levels[run_bottom(levels, run), 0]:
            return run, RUN_FULL
        return _insert(levels, run_drop_bottom(levels, run, 1), key, qty), RUN_FULL
    return _insert(levels, run, key, qty), RUN_INSERTED


@njit(inline="always", nogil=True)
def _insert(levels, run, key, qty):
    """Insert a key the run does not hold; returns the state."""
    lo, hi = run[R_LO], run[R_HI]
    if run[R_N] == 0:
        lo = hi = run[R_BLOCKS] // 2
        first = _row(run, lo, 0)
        levels[first, 0] = key
        levels[first, 1] = qty
        levels[_dir(run, lo), 0] = 1
        run = (run[R_OFFSET], run[R_BLOCKS], lo, lo + 1, 1)
        _set_first_key(levels, run, lo)
        return run
    blocks = run[R_BLOCKS]
    block = _block_of(levels, run, key)
    length = block_len(levels, run, block)
    # growing at an end: open the next block once the end block holds APPEND_FILL rows
    if block == hi - 1 and length >= APPEND_FILL and hi < blocks and key > levels[_row(run, block, length - 1), 0]:
        block = hi
        hi += 1
        length = 0
    elif block == lo and length >= APPEND_FILL and lo > 0 and key < levels[_row(run, block, 0), 0]:
        block = lo - 1
        lo -= 1
        length = block_len(levels, run, block)
    run = (run[R_OFFSET], blocks, lo, hi, run[R_N])
    if length == RUN_BLOCK:
        run, block = _make_room(levels, run, block, key)
        length = block_len(levels, run, block)
    first = _row(run, block, 0)
    p = _position(levels, first, length, key)
    _shift_block(levels, first, p, length, 1)
    levels[first + p, 0] = key
    levels[first + p, 1] = qty
    levels[_dir(run, block), 0] = length + 1
    if p == 0:
        _set_first_key(levels, run, block)
    return (run[R_OFFSET], blocks, min(run[R_LO], block), max(run[R_HI], block + 1), run[R_N] + 1)


@njit(nogil=True, cache=True, _nrt=False)
def _make_room(levels, run, block, key):
    """Block `block` is full and `key` belongs in it: pass one row per block towards the nearest
    block with room (NEAR_BLOCKS away at most), or spread the run over the slab. Returns the state
    and the block that now takes `key`, which has room for it."""
    blocks = run[R_BLOCKS]
    length = block_len(levels, run, block)
    for distance in range(1, NEAR_BLOCKS + 1):
        up = block + distance
        if up < blocks and block_len(levels, run, up) < RUN_BLOCK:
            for b in range(up - 1, block, -1):  # each block's last row becomes the next one's first
                _move_last_up(levels, run, b)
            run = (run[R_OFFSET], blocks, run[R_LO], max(run[R_HI], up + 1), run[R_N])
            if key > levels[_row(run, block, length - 1), 0]:
                return run, block + 1  # the key itself is the row that goes up
            _move_last_up(levels, run, block)
            return run, block
        down = block - distance
        if down >= 0 and block_len(levels, run, down) < RUN_BLOCK:
            for b in range(down + 1, block):  # each block's first row becomes the previous one's last
                _move_first_down(levels, run, b)
            run = (run[R_OFFSET], blocks, min(run[R_LO], down), run[R_HI], run[R_N])
            if key < levels[_row(run, block, 0), 0]:
                return run, block - 1  # the key itself is the row that goes down
            _move_first_down(levels, run, block)
            return run, block
    run = run_spread(levels, run)
    return run, _block_of(levels, run, key)


@njit(inline="always", nogil=True)
def _move_last_up(levels, run, block):
    length = block_len(levels, run, block)
    nxt = block + 1
    next_length = block_len(levels, run, nxt)
    first = _row(run, nxt, 0)
    _shift_block(levels, first, 0, next_length, 1)
    levels[first, 0] = levels[_row(run, block, length - 1), 0]
    levels[first, 1] = levels[_row(run, block, length - 1), 1]
    levels[_dir(run, nxt), 0] = next_length + 1
    levels[_dir(run, block), 0] = length - 1
    _set_first_key(levels, run, nxt)
    if length == 1:
        _set_first_key(levels, run, block)


@njit(inline="always", nogil=True)
def _move_first_down(levels, run, block):
    length = block_len(levels, run, block)
    prev = block - 1
    prev_length = block_len(levels, run, prev)
    first = _row(run, block, 0)
    levels[_row(run, prev, prev_length), 0] = levels[first, 0]
    levels[_row(run, prev, prev_length), 1] = levels[first, 1]
    levels[_dir(run, prev), 0] = prev_length + 1
    _shift_block(levels, first, 1, length, -1)
    levels[_dir(run, block), 0] = length - 1
    _set_first_key(levels, run, block)
    if prev_length == 0:
        _set_first_key(levels, run, prev)


@njit(nogil=True, cache=True, _nrt=False)
def run_spread(levels, run):
    """Spread the run's rows evenly over every block of the slab (O(levels)); returns the state."""
    n = run[R_N]
    at = run[R_OFFSET]  # first, gather the rows at the slab's start (each row moves down or stays)
    for b in range(run[R_LO], run[R_HI]):
        for i in range(block_len(levels, run, b)):
            src = _row(run, b, i)
            levels[at, 0] = levels[src, 0]
            levels[at, 1] = levels[src, 1]
            at += 1
    return run_spread_gathered(levels, run, n)


@njit(nogil=True, cache=True, _nrt=False)
def run_spread_gathered(levels, run, n):
    """The run's `n` rows lie ascending from the slab's first row (its blocks [lo, hi) as they were
    before, lengths stale): deal them out APPEND_FILL a block to blocks in the slab's middle, or
    evenly to all blocks when that is too few; returns the state. Each row moves up or stays, so
    the rows are dealt from the top."""
    blocks = run[R_BLOCKS]
    used = min(blocks, max(1, (n + APPEND_FILL - 1) // APPEND_FILL))
    first = (blocks - used) // 2
    for b in range(run[R_LO], run[R_HI]):
        levels[_dir(run, b), 0] = 0
    per, extra = n // used, n % used
    src = run[R_OFFSET] + n - 1
    for b in range(first + used - 1, first - 1, -1):
        length = per + (1 if b - first < extra else 0)
        for i in range(length - 1, -1, -1):
            dst = _row(run, b, i)
            levels[dst, 0] = levels[src, 0]
            levels[dst, 1] = levels[src, 1]
            src -= 1
        levels[_dir(run, b), 0] = length
    run = _with_bounds(levels, run, first, first + used, n)
    for b in range(run[R_HI] - 1, run[R_LO] - 1, -1):
        levels[_dir(run, b), 1] = (levels[_row(run, b, 0), 0] if block_len(levels, run, b) > 0
                                   else levels[_dir(run, b + 1), 1])
    return run


@njit(nogil=True, cache=True, _nrt=False)
def run_load(levels, run, keys, qtys, order, count, capacity):
    """Replace the run with rows keys[order[j]], qtys[order[j]] for j < count, ascending keys,
    keeping the best `capacity`; returns (state, rows dropped)."""
    dropped = max(0, count - capacity)
    at = run[R_OFFSET]
    for j in range(dropped, count):
        levels[at, 0] = keys[order[j]]
        levels[at, 1] = qtys[order[j]]
        at += 1
    return run_spread_gathered(levels, run, count - dropped), dropped


@njit(nogil=True, cache=True, _nrt=False)
def run_drop_bottom(levels, run, count):
    """Remove the `count` worst rows; returns the state."""
    lo = run[R_LO]
    left = min(count, run[R_N])
    n = run[R_N] - left
    while left > 0:
        length = block_len(levels, run, lo)
        taken = min(length, left)
        first = _row(run, lo, 0)
        for i in range(taken, length):
            levels[first + i - taken, 0] = levels[first + i, 0]
            levels[first + i - taken, 1] = levels[first + i, 1]
        levels[_dir(run, lo), 0] = length - taken
        _set_first_key(levels, run, lo)
        left -= taken
        if taken == length:
            lo += 1
    return _with_bounds(levels, run, lo, run[R_HI], n)


# ---------------------------------------------------------------- walking best first

@njit(inline="always", nogil=True)
def walk_start(levels, run):
    """(block, index) of the best row, or block lo - 1 when the run is empty."""
    if run[R_N] == 0:
        return run[R_LO] - 1, -1
    block = run[R_HI] - 1
    return block, block_len(levels, run, block) - 1


@njit(inline="always", nogil=True)
def walk_next(levels, run, block, index):
    """The (block, index) after (block, index), best first; block < lo at the end."""
    index -= 1
    while index < 0:
        block -= 1
        if block < run[R_LO]:
            return block, -1
        index = block_len(levels, run, block) - 1
    return block, index


@njit(inline="always", nogil=True)
def walk_row(run, block, index):
    return _row(run, block, index)
