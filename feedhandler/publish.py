"""Publishing a book from the writer-private BookStore arrays into a shared-memory segment, and the
venue writer's latency histograms (one row per hop, shm.latency) updated on the way."""
from __future__ import annotations

from collections import namedtuple

from numba import njit

from shm.clock import realtime_ns
from shm.histogram import H_MARK, record
from shm.layout import (BOOK_DEPTH_ASKS, BOOK_DEPTH_BIDS, BOOK_LEVELS, BOOK_N_ASKS, BOOK_N_BIDS,
                        BOOK_TS_EXCHANGE, BOOK_TS_PUBLISH, BOOK_TS_RECV, BOOK_UPDATE_ID, BOOK_VALID, asks_at)
from shm.ring import publish_book
from shm.seqlock import block_depth, write_begin, write_end

from .book_kernels import ASK, BID, best_level, copy_top, side_count

# latency rows of a venue writer, in this order (shm.latency.HOPS names them)
VENUE_HOPS = ("exchange", "decode", "publish")
LAT_EXCHANGE = 0
LAT_DECODE = 1  # its H_MARK word holds when the frame being handled was decoded
LAT_PUBLISH = 2

# Where a venue writer's results go, as one kernel argument: the segment's book blocks, ring, ring
# control and counters (shm.segment.SegmentWriter), and the latency rows above.
Output = namedtuple("Output", "blocks ring control counters latency")


def output_of(writer, latency) -> Output:
    """The Output of a SegmentWriter and its latency rows."""
    return Output(writer.books, writer.ring, writer.ring_control, writer.counters, latency)


@njit(nogil=True, cache=True, _nrt=False)
def mark_decoded(latency, ts_recv, fresh):
    """The frame received at ts_recv is decoded: count the receive -> decoded hop (not for a frame
    handled again, e.g. a buffered diff after its snapshot) and note when, for the publish hop."""
    now = realtime_ns()
    if fresh:
        record(latency[LAT_DECODE], now - ts_recv)
    latency[LAT_DECODE, H_MARK] = now


@njit(inline="always", nogil=True)
def record_published(latency, ts_exchange, ts_recv, ts_publish):
    """Exchange -> receive (when the venue stamped the event) and decoded -> published."""
    if ts_exchange > 0:
        record(latency[LAT_EXCHANGE], ts_recv - ts_exchange)
    record(latency[LAT_PUBLISH], ts_publish - latency[LAT_DECODE, H_MARK])


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
def publish(books, book, out, update_id, ts_exchange, ts_recv, valid):
    """Publish one frame's result: the book block, then a book-change record in the ring.
    Returns the ring position of the record."""
    levels, ladder, meta = books.levels, books.ladder, books.meta
    ts_publish = realtime_ns()
    write_book_block(levels, ladder, meta, book, out.blocks[book], update_id, ts_exchange, ts_recv, ts_publish, valid)
    bid_px, bid_qty = best_level(levels, ladder, meta, book, BID)
    ask_px, ask_qty = best_level(levels, ladder, meta, book, ASK)
    if valid:  # an invalidation may come from Python (a disconnect), long after the last frame decoded
        record_published(out.latency, ts_exchange, ts_recv, ts_publish)
    return publish_book(out.ring, out.control, book, update_id, ts_exchange, ts_recv, ts_publish, bid_px, bid_qty,
                        ask_px, ask_qty, side_count(meta, book, BID), side_count(meta, book, ASK))
