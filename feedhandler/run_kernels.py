"""numba kernels for a book side's sorted run: the levels its ladder does not hold, in blocks.

A run is an ascending sequence of [key, qty] rows (best at the high end) kept in a slab of
`blocks` blocks of RUN_BLOCK rows, the blocks in key order, each holding a sorted stretch of rows
somewhere inside it (free rows at either end). A change costs a binary search over the blocks'
first keys, one inside a block and a shift of the shorter side of the stretch, whatever the depth
of the book: Coinbase's full-depth books hold tens of thousands of levels, and a change deep in
them cost a shift of thousands of rows in the one sorted array this replaced. Dropping the worst
row (a truncation) or adding a new best or worst is a store. A full block lends a row to a
neighbour with room; when none is near, the run is dealt out again, three quarters of a block
each, in the slab's middle (O(levels), rare: the slab has a third more rows than the run can hold,
so a spread always leaves a quarter of each block free).

Layout, per side, from row `offset` of `levels` (int64 (rows, 2)): blocks * RUN_BLOCK rows of
levels, then one directory row per block, [start * 256 + rows held, first key] (inside [lo, hi)
the first key of an empty block is the next block's, so the column ascends there for the search).
The state a kernel carries is a tuple `run` = (offset, blocks, lo, hi, n): the non-empty blocks lie
in [lo, hi) (lo == hi when empty; every block outside holds nothing) and the run holds n levels.
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


# ---------------------------------------------------------------- blocks and their directory rows

@njit(inline="always", nogil=True)
def _dir(run, block):
    return run[R_OFFSET] + run[R_BLOCKS] * RUN_BLOCK + block


@njit(inline="always", nogil=True)
def block_len(levels, run, block):
    return levels[_dir(run, block), 0] & 255


@njit(inline="always", nogil=True)
def _start(levels, run, block):
    return levels[_dir(run, block), 0] >> 8


@njit(inline="always", nogil=True)
def _first(levels, run, block):
    """The row of the block's first (lowest) level."""
    return run[R_OFFSET] + block * RUN_BLOCK + _start(levels, run, block)


@njit(inline="always", nogil=True)
def _set(levels, run, block, start, length):
    levels[_dir(run, block), 0] = (start << 8) | length


@njit(inline="always", nogil=True)
def _copy(levels, dst, src):
    levels[dst, 0] = levels[src, 0]
    levels[dst, 1] = levels[src, 1]


@njit(inline="always", nogil=True)
def _set_first_key(levels, run, block):
    """Block `block`'s first key changed (or it emptied): its directory key, and those of the empty
    blocks below it in [lo, hi) that borrow it (outside, a block's key is set when it fills)."""
    if block_len(levels, run, block) > 0:
        key = levels[_first(levels, run, block), 0]
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
    """First index in a stretch of rows [first, first + length) whose key is >= `key`."""
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
def _put(levels, run, block, p, key, qty):
    """Insert a row at index p of a block's stretch, which has a free row on at least one side:
    the shorter side moves (the lower part down, or the upper part up)."""
    start = _start(levels, run, block)
    length = block_len(levels, run, block)
    base = run[R_OFFSET] + block * RUN_BLOCK
    room_after = start + length < RUN_BLOCK
    if start > 0 and (p < length - p or not room_after):
        for r in range(start, start + p):
            _copy(levels, base + r - 1, base + r)
        start -= 1
    else:
        for r in range(start + length - 1, start + p - 1, -1):
            _copy(levels, base + r + 1, base + r)
    levels[base + start + p, 0] = key
    levels[base + start + p, 1] = qty
    _set(levels, run, block, start, length + 1)
    if p == 0:
        _set_first_key(levels, run, block)


@njit(inline="always", nogil=True)
def _take(levels, run, block, p):
    """Remove the row at index p of a block's stretch, moving its shorter side."""
    start = _start(levels, run, block)
    length = block_len(levels, run, block)
    base = run[R_OFFSET] + block * RUN_BLOCK
    if p < length - 1 - p:
        for r in range(start + p - 1, start - 1, -1):
            _copy(levels, base + r + 1, base + r)
        start += 1
    else:
        for r in range(start + p + 1, start + length):
            _copy(levels, base + r - 1, base + r)
    _set(levels, run, block, start if length > 1 else 0, length - 1)
    if p == 0:
        _set_first_key(levels, run, block)


# ---------------------------------------------------------------- the run

@njit(nogil=True, cache=True, _nrt=False)
def run_clear(levels, run):
    """The run emptied: its blocks' stretches emptied (blocks outside [lo, hi) are empty already)."""
    for b in range(run[R_LO], run[R_HI]):
        _set(levels, run, b, 0, 0)
    middle = run[R_BLOCKS] // 2
    return (run[R_OFFSET], run[R_BLOCKS], middle, middle, 0)


@njit(inline="always", nogil=True)
def run_top(levels, run):
    """The run's best row (callers check n > 0 first)."""
    hi = run[R_HI] - 1
    return _first(levels, run, hi) + block_len(levels, run, hi) - 1


@njit(inline="always", nogil=True)
def run_bottom(levels, run):
    """The run's worst row (callers check n > 0 first)."""
    return _first(levels, run, run[R_LO])


@njit(nogil=True, cache=True, _nrt=False)
def run_set(levels, run, key, qty, capacity):
    """Set `key` to `qty` (0 deletes) in the run; returns (run, RUN_* status). A new level in a run
    that holds `capacity` levels replaces the worst, or is refused (RUN_FULL) when it is the worst."""
    n = run[R_N]
    if n > 0:
        block = _block_of(levels, run, key)
        first = _first(levels, run, block)
        p = _position(levels, first, block_len(levels, run, block), key)
        if p < block_len(levels, run, block) and levels[first + p, 0] == key:
            if qty != 0:
                levels[first + p, 1] = qty
                return run, RUN_UPDATED
            _take(levels, run, block, p)
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
    blocks = run[R_BLOCKS]
    if run[R_N] == 0:
        block = blocks // 2
        _set(levels, run, block, RUN_BLOCK // 2, 0)
        run = (run[R_OFFSET], blocks, block, block + 1, 0)
        _put(levels, run, block, 0, key, qty)
        return (run[R_OFFSET], blocks, block, block + 1, 1)
    lo, hi = run[R_LO], run[R_HI]
    block = _block_of(levels, run, key)
    length = block_len(levels, run, block)
    # growing at an end: open the next block once the end block holds APPEND_FILL rows
    if block == hi - 1 and length >= APPEND_FILL and hi < blocks and key > levels[run_top(levels, run), 0]:
        block = hi
        hi += 1
        _set(levels, run, block, 0, 0)  # rows will be appended above this one
    elif block == lo and length >= APPEND_FILL and lo > 0 and key < levels[run_bottom(levels, run), 0]:
        block = lo - 1
        lo -= 1
        _set(levels, run, block, RUN_BLOCK, 0)  # rows will be prepended below this one
    run = (run[R_OFFSET], blocks, lo, hi, run[R_N])
    if block_len(levels, run, block) == RUN_BLOCK:
        run, block = _make_room(levels, run, block, key)
    p = _position(levels, _first(levels, run, block), block_len(levels, run, block), key)
    _put(levels, run, block, p, key, qty)
    return (run[R_OFFSET], blocks, min(run[R_LO], block), max(run[R_HI], block + 1), run[R_N] + 1)


@njit(nogil=True, cache=True, _nrt=False)
def _make_room(levels, run, block, key):
    """Block `block` is full and `key` belongs in it: pass one row per block towards the nearest
    block with room (NEAR_BLOCKS away at most), or spread the run over the slab. Returns the state
    and the block that now takes `key`, which has room for it. (A key below a full bottom block
    never comes here when a block below is free: _insert grows the run downwards first.)"""
    blocks = run[R_BLOCKS]
    for distance in range(1, NEAR_BLOCKS + 1):
        up = block + distance
        if up < blocks and block_len(levels, run, up) < RUN_BLOCK:
            if up >= run[R_HI]:
                _set(levels, run, up, 0, 0)
            for b in range(up - 1, block, -1):  # each block's last row becomes the next one's first
                _move_last_up(levels, run, b)
            run = (run[R_OFFSET], blocks, run[R_LO], max(run[R_HI], up + 1), run[R_N])
            if key > levels[_first(levels, run, block) + RUN_BLOCK - 1, 0]:
                return run, block + 1  # the key itself is the row that goes up
            _move_last_up(levels, run, block)
            return run, block
        down = block - distance
        if down >= 0 and block_len(levels, run, down) < RUN_BLOCK:
            if down < run[R_LO]:
                _set(levels, run, down, RUN_BLOCK, 0)
            for b in range(down + 1, block):  # each block's first row becomes the previous one's last
                _move_first_down(levels, run, b)
            run = (run[R_OFFSET], blocks, min(run[R_LO], down), run[R_HI], run[R_N])
            _move_first_down(levels, run, block)  # the key is not below the block (that is a growth)
            return run, block
    run = run_spread(levels, run)
    return run, _block_of(levels, run, key)


@njit(inline="always", nogil=True)
def _move_last_up(levels, run, block):
    """The full block's last row becomes the next block's first (which has room)."""
    last = _first(levels, run, block) + RUN_BLOCK - 1
    _put(levels, run, block + 1, 0, levels[last, 0], levels[last, 1])
    _set(levels, run, block, 0, RUN_BLOCK - 1)


@njit(inline="always", nogil=True)
def _move_first_down(levels, run, block):
    """The full block's first row becomes the previous block's last (which has room)."""
    first = _first(levels, run, block)
    prev = block - 1
    _put(levels, run, prev, block_len(levels, run, prev), levels[first, 0], levels[first, 1])
    _take(levels, run, block, 0)


@njit(nogil=True, cache=True, _nrt=False)
def run_spread(levels, run):
    """Deal the run's rows out again (O(levels)); returns the state."""
    at = run[R_OFFSET]  # first, gather the rows at the slab's start (each row moves down or stays)
    for b in range(run[R_LO], run[R_HI]):
        first = _first(levels, run, b)
        for i in range(block_len(levels, run, b)):
            _copy(levels, at, first + i)
            at += 1
    return run_spread_gathered(levels, run, run[R_N])


@njit(nogil=True, cache=True, _nrt=False)
def run_spread_gathered(levels, run, n):
    """The run's `n` rows lie ascending from the slab's first row (its blocks [lo, hi) as they were
    before, their stretches stale): deal them out APPEND_FILL a block to blocks in the slab's
    middle, or evenly to all blocks when that is too few, each stretch centred in its block;
    returns the state. Each row moves up or stays, so the rows are dealt from the top."""
    blocks = run[R_BLOCKS]
    used = min(blocks, max(1, (n + APPEND_FILL - 1) // APPEND_FILL))
    first = (blocks - used) // 2
    for b in range(run[R_LO], run[R_HI]):
        _set(levels, run, b, 0, 0)
    per, extra = n // used, n % used
    src = run[R_OFFSET] + n - 1
    for b in range(first + used - 1, first - 1, -1):
        length = per + (1 if b - first < extra else 0)
        start = (RUN_BLOCK - length) // 2
        for i in range(length - 1, -1, -1):
            _copy(levels, run[R_OFFSET] + b * RUN_BLOCK + start + i, src)
            src -= 1
        _set(levels, run, b, start, length)
    run = _with_bounds(levels, run, first, first + used, n)
    for b in range(run[R_HI] - 1, run[R_LO] - 1, -1):
        levels[_dir(run, b), 1] = (levels[_first(levels, run, b), 0] if block_len(levels, run, b) > 0
                                   else levels[_dir(run, b + 1), 1])
    return run


@njit(nogil=True, cache=True, _nrt=False)
def run_drop_bottom(levels, run, count):
    """Remove the `count` worst rows (each block's stretch shortened from below: no row moves);
    returns the state."""
    lo = run[R_LO]
    left = min(count, run[R_N])
    n = run[R_N] - left
    while left > 0:
        length = block_len(levels, run, lo)
        taken = min(length, left)
        _set(levels, run, lo, _start(levels, run, lo) + taken if taken < length else 0, length - taken)
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
def walk_row(levels, run, block, index):
    return _first(levels, run, block) + index
