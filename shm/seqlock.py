"""Seqlock protocol over one book block (a 1-D int64 row): one writer, any number of readers.

Writer: SEQ goes odd, data, SEQ goes even (release). Reader: SEQ even (acquire), copy, fence,
SEQ unchanged, else retry. Readers never block the writer; a reader gives up after `max_spins`
tries (a writer killed mid-write leaves SEQ odd forever) and reports that instead of hanging.
"""
from __future__ import annotations

from numba import njit

from .atomics import fence_acquire, fence_release, load_acquire, prefetch_for_write, store_release
from .layout import (BOOK_DEPTH_ASKS, BOOK_DEPTH_BIDS, BOOK_LEVELS, BOOK_MAX_DEPTH, BOOK_SEQ, BOOK_UPDATE_ID,
                     BOOK_VALID, asks_at)


@njit(inline="always", nogil=True)
def block_depth(block):
    """Levels per side the block holds, bounded by its length whatever the word says."""
    return max(0, min(block[BOOK_MAX_DEPTH], (len(block) - BOOK_LEVELS) // 4))


@njit(inline="always", nogil=True)
def write_begin(block):
    """Enter the write section: SEQ becomes odd before any data store is visible. Ownership of
    every line of the block is requested up front: readers hold them shared since the last publish,
    and x86 commits stores in order, so asking one line at a time costs a cross-core trip each."""
    for word in range(0, len(block), 8):
        prefetch_for_write(block, word)
    store_release(block, BOOK_SEQ, block[BOOK_SEQ] + 1)
    fence_release()


@njit(inline="always", nogil=True)
def write_end(block):
    """Leave the write section: every data store is visible before SEQ becomes even."""
    store_release(block, BOOK_SEQ, block[BOOK_SEQ] + 1)


@njit(nogil=True, cache=True)
def read_block(block, out, max_spins):
    """Copy a consistent image of `block` into `out`; returns its (even) SEQ, or -1 after
    `max_spins` failed tries."""
    for _ in range(max_spins):
        seq = load_acquire(block, BOOK_SEQ)
        if seq & 1:
            continue
        for k in range(1, len(block)):
            out[k] = block[k]
        fence_acquire()
        if load_acquire(block, BOOK_SEQ) == seq:
            out[BOOK_SEQ] = seq
            return seq
    return -1


@njit(nogil=True, cache=True)
def read_top(block, depth, bids_out, asks_out, max_spins):
    """Copy the best `depth` levels of each side (capped by what is published and by the outputs)
    consistently; returns (update_id, valid, n_bids, n_asks), or n_bids = -1 after `max_spins`."""
    book_depth = block_depth(block)
    for _ in range(max_spins):
        seq = load_acquire(block, BOOK_SEQ)
        if seq & 1:
            continue
        update_id = block[BOOK_UPDATE_ID]
        valid = block[BOOK_VALID]
        n_bids = min(depth, block[BOOK_DEPTH_BIDS], len(bids_out), book_depth)
        n_asks = min(depth, block[BOOK_DEPTH_ASKS], len(asks_out), book_depth)
        for j in range(n_bids):
            bids_out[j, 0] = block[BOOK_LEVELS + 2 * j]
            bids_out[j, 1] = block[BOOK_LEVELS + 2 * j + 1]
        first_ask = asks_at(book_depth)
        for j in range(n_asks):
            asks_out[j, 0] = block[first_ask + 2 * j]
            asks_out[j, 1] = block[first_ask + 2 * j + 1]
        fence_acquire()
        if load_acquire(block, BOOK_SEQ) == seq:
            return update_id, valid, n_bids, n_asks
    return 0, 0, -1, -1


@njit(nogil=True, cache=True)
def read_best(block, out, max_spins):
    """out[:4] = best bid px, qty, best ask px, qty (qty 0 when a side is empty), out[4] = update
    id; returns True for a consistent read of a valid book."""
    first_ask = asks_at(block_depth(block))
    for _ in range(max_spins):
        seq = load_acquire(block, BOOK_SEQ)
        if seq & 1:
            continue
        has_bid = block[BOOK_DEPTH_BIDS] > 0 and first_ask > BOOK_LEVELS
        has_ask = block[BOOK_DEPTH_ASKS] > 0 and first_ask > BOOK_LEVELS
        out[0] = block[BOOK_LEVELS] if has_bid else 0
        out[1] = block[BOOK_LEVELS + 1] if has_bid else 0
        out[2] = block[first_ask] if has_ask else 0
        out[3] = block[first_ask + 1] if has_ask else 0
        out[4] = block[BOOK_UPDATE_ID]
        valid = block[BOOK_VALID] != 0
        fence_acquire()
        if load_acquire(block, BOOK_SEQ) == seq:
            return valid
    return False
