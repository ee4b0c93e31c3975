"""Publishing a book from the writer-private BookStore arrays into a shared-memory segment."""
from __future__ import annotations

from numba import njit

from shm.clock import realtime_ns
from shm.layout import (BOOK_DEPTH_ASKS, BOOK_DEPTH_BIDS, BOOK_LEVELS, BOOK_N_ASKS, BOOK_N_BIDS,
                        BOOK_TS_EXCHANGE, BOOK_TS_PUBLISH, BOOK_TS_RECV, BOOK_UPDATE_ID, BOOK_VALID, asks_at)
from shm.ring import publish_book
from shm.seqlock import block_depth, write_begin, write_end

from .book_kernels import ASK, BID, best_level, copy_top, side_count


@njit(nogil=True, cache=True)
def write_book_block(levels, ladder, meta, book, block, update_id, ts_exchange, ts_recv, ts_publish, valid):
    """Copy the top levels of `book` into its shm block under the seqlock (one write section)."""
    depth = block_depth(block)
    write_begin(block)
    block[BOOK_UPDATE_ID] = update_id
    block[BOOK_TS_EXCHANGE] = ts_exchange
    block[BOOK_TS_RECV] = ts_recv
    block[BOOK_TS_PUBLISH] = ts_publish
    block[BOOK_VALID] = 1 if valid else 0
    block[BOOK_N_BIDS] = side_count(meta, book, BID)
    block[BOOK_N_ASKS] = side_count(meta, book, ASK)
    block[BOOK_DEPTH_BIDS] = copy_top(levels, ladder, meta, book, BID, block, BOOK_LEVELS, depth)
    block[BOOK_DEPTH_ASKS] = copy_top(levels, ladder, meta, book, ASK, block, asks_at(depth), depth)
    write_end(block)


@njit(nogil=True, cache=True)
def publish(levels, ladder, meta, book, blocks, ring, control, update_id, ts_exchange, ts_recv, valid):
    """Publish one frame's result: the book block, then a book-change record in the ring.
    Returns the ring position of the record."""
    ts_publish = realtime_ns()
    write_book_block(levels, ladder, meta, book, blocks[book], update_id, ts_exchange, ts_recv, ts_publish, valid)
    bid_px, bid_qty = best_level(levels, ladder, meta, book, BID)
    ask_px, ask_qty = best_level(levels, ladder, meta, book, ASK)
    return publish_book(ring, control, book, update_id, ts_exchange, ts_recv, ts_publish, bid_px, bid_qty,
                        ask_px, ask_qty, side_count(meta, book, BID), side_count(meta, book, ASK))
