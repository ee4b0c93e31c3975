"""numba pieces every venue step shares: apply decoded levels, settle a changed book (truncate,
checksum, crossed check, publish), invalidate a book, publish decoded trades.

All compile without the numba runtime (they allocate nothing). Their arguments come in three
groups (namedtuples of arrays, which cost nothing inside numba):
`feed` (FeedArrays): the instrument table (`symbols` uint8, `tables` int64 (TABLE_ROWS,
instruments)), the decoder's outputs (`scratch` int64 (SCRATCH_ROWS, n), one row per level/trade
field; `header` int64, the per-frame fields; `events`, Coinbase's per-event rows) and the sync
machine (`sync`, sync.SY_WORDS per book; `conn_state`, sync.CS_WORDS per connection);
`books` (book_kernels.Books: levels, ladder, meta): the writer-private books;
`out` (publish.Output: the segment's blocks, ring, control and counters, and the writer's `latency`
rows, publish.VENUE_HOPS): where results go.

A venue step, the entry from Python once per frame, takes the three groups. The worker calls it
through its compiled entry (shm.jitcache.entry), not numba's dispatcher, which types every argument
on every call: grouped, through the entry, a call costs less than flat through the dispatcher
(docs/benchmarks-history.md).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from shm.clock import realtime_ns
from shm.layout import (BOOK_FUNDING_RATE, BOOK_FUNDING_TIME, BOOK_INDEX_PX, BOOK_MARK_PX, BOOK_OPEN_INTEREST,
                        BOOK_STATS_FIELDS, BOOK_STATS_TS, FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_OPEN_INTEREST,
                        FIELD_RATE, NO_BOOK, Counter, Kind, Reason, Side, Status)
from shm.ring import publish_status, publish_trade, publish_values
from shm.seqlock import write_begin, write_end

from .book_kernels import (ASK, BID, J_APPLY, J_CLEAR, J_LOAD, J_TRUNCATE, M_ABSENT_DELETES, M_OVERFLOW, apply_changes,
                           best_level, clear_book, is_crossed, journal_changes, journal_op, levels_through, load_book,
                           truncate_side)
from .checksum import kraken_checksum
from .jsonscan import NO_TRADE_ID
from .publish import publish, record_published
from .sync import LIVE, RESYNC, SY_CONN, SY_DEPTH, SY_PX_PAD, SY_QTY_PAD, SY_STATE, SY_TRADES, SY_UPDATE_ID

FeedArrays = namedtuple("FeedArrays", "symbols tables scratch header events sync conn_state")

# `tables` rows: the instrument table as the decoders read it
T_LENGTH = 0  # venue symbol length (the symbols themselves: uint8 `symbols`)
T_PX_DEC = 1
T_QTY_DEC = 2
TABLE_ROWS = 3

# scratch rows
ROW_SIDE = 0  # levels: BID/ASK; trades: aggressor +1/-1
ROW_PRICE = 1
ROW_QTY = 2
ROW_TIME = 3  # trades: exchange time ns
ROW_ID = 4  # trades: venue trade id or NO_TRADE_ID
ROW_BOOK = 5  # trades: instrument
ROW_WORK = 6  # kernels' own working space (checksum top levels)
SCRATCH_ROWS = 7

# Codes and flags these kernels pass on are numpy scalars, not Python ints and bools: numba types a
# Python constant as a literal of its value and compiles the kernel it is passed to once per value
# (invalidate, status, settle and what they call: 30 compiles, where one each serves).
NO_CHECKSUM = np.int64(-1)
VALID, INVALID = np.bool_(True), np.bool_(False)
NO_TIME = np.int64(0)
CHECK_NONE, CHECK_OK, CHECK_FAIL = np.int64(0), np.int64(1), np.int64(2)  # a checksum's verdict, for settle_checked

C_FRAMES = int(Counter.FRAMES)
C_BYTES = int(Counter.BYTES)
C_DECODE_ERRORS = int(Counter.DECODE_ERRORS)
C_BOOK_UPDATES = int(Counter.BOOK_UPDATES)
C_TRADES = int(Counter.TRADES)
C_GAPS = int(Counter.GAPS)
C_RESYNCS = int(Counter.RESYNCS)
C_CHECKSUM_OK = int(Counter.CHECKSUM_OK)
C_CHECKSUM_FAIL = int(Counter.CHECKSUM_FAIL)
C_CROSSED = int(Counter.CROSSED)
C_ABSENT_DELETES = int(Counter.ABSENT_DELETES)
C_BOOK_OVERFLOW = int(Counter.BOOK_OVERFLOW)
C_BBOS = int(Counter.BBOS)  # then FUNDINGS, OPEN_INTERESTS, LIQUIDATIONS: the kinds' order

KIND_BBO = np.int64(Kind.BBO)
KIND_FUNDING = np.int64(Kind.FUNDING)
KIND_OPEN_INTEREST = np.int64(Kind.OPEN_INTEREST)
KIND_LIQUIDATION = np.int64(Kind.LIQUIDATION)

ST_BOOK_VALID = np.int64(Status.BOOK_VALID)
ST_BOOK_INVALID = np.int64(Status.BOOK_INVALID)
ST_GAP = np.int64(Status.GAP)
R_SNAPSHOT = np.int64(Reason.SNAPSHOT)
R_SEQUENCE_GAP = np.int64(Reason.SEQUENCE_GAP)
R_CHECKSUM = np.int64(Reason.CHECKSUM)
R_CROSSED = np.int64(Reason.CROSSED)
R_DECODE_ERROR = np.int64(Reason.DECODE_ERROR)
BUY = int(Side.BUY)
SELL = int(Side.SELL)
MAX_SWEPT = 1024  # a trade priced absurdly far through the book is not walked further


@njit(nogil=True, cache=True, _nrt=False)
def count_frame(counters, nbytes):
    counters[-1, C_FRAMES] += 1
    counters[-1, C_BYTES] += nbytes


@njit(nogil=True, cache=True, _nrt=False)
def apply_levels(book, first, end, scratch, books, out):
    """Apply decoded levels [first, end) to a book; absent deletes and overflow are counted into shm."""
    _change(book, first, end, scratch, books, out, False)


@njit(nogil=True, cache=True, _nrt=False)
def load_snapshot(book, first, end, scratch, books, out):
    """Replace a book with the decoded snapshot levels [first, end): the same as applying them to an
    empty book (a repeated price keeps its last quantity). Venues send snapshots best first, which
    load_book builds in one pass a side: no sort, no allocation, so it runs inside the step."""
    _change(book, first, end, scratch, books, out, True)


@njit(inline="always", nogil=True)
def _change(book, first, end, scratch, books, out, snapshot):
    """Levels [first, end) applied to a book or, a `snapshot`, loaded into it emptied; journaled (see
    book_kernels), absent deletes and overflow counted into shm."""
    levels, ladder, meta, journal = books.levels, books.ladder, books.meta, books.journal
    sides, prices, qtys = scratch[ROW_SIDE, first:end], scratch[ROW_PRICE, first:end], scratch[ROW_QTY, first:end]
    before_absent = meta[book, M_ABSENT_DELETES]
    before_overflow = meta[book, M_OVERFLOW]
    if snapshot:
        journal_op(journal, J_CLEAR, book, 0, 0)
        journal_changes(journal, J_LOAD, book, sides, prices, qtys)
        load_book(levels, ladder, meta, book, sides, prices, qtys)
    else:
        journal_changes(journal, J_APPLY, book, sides, prices, qtys)
        apply_changes(levels, ladder, meta, book, sides, prices, qtys)
    out.counters[book, C_ABSENT_DELETES] += meta[book, M_ABSENT_DELETES] - before_absent
    out.counters[book, C_BOOK_OVERFLOW] += meta[book, M_OVERFLOW] - before_overflow


@njit(inline="always", nogil=True)
def _clear(book, books):
    journal_op(books.journal, J_CLEAR, book, 0, 0)
    clear_book(books.levels, books.ladder, books.meta, book)


@njit(nogil=True, cache=True, _nrt=False)
def status(book, code, reason, ts_recv, out):
    publish_status(out.ring, out.control, book, code, reason, 0, ts_recv, realtime_ns())


@njit(nogil=True, cache=True, _nrt=False)
def invalidate(book, reason, ts_recv, sync, books, out):
    """Mark one book invalid for every consumer (status record, invalid block) and empty it; it waits
    in RESYNC for a new snapshot while the venue's other books carry on."""
    sync[book, SY_STATE] = RESYNC
    _clear(book, books)
    out.counters[book, C_RESYNCS] += 1
    status(book, ST_BOOK_INVALID, reason, ts_recv, out)
    publish(books, book, out, sync[book, SY_UPDATE_ID], NO_TIME, ts_recv, INVALID)


@njit(nogil=True, cache=True, _nrt=False)
def report_gap(book, ts_recv, sync, books, out):
    """A sequence gap: counted, reported as a GAP status, and the book invalidated."""
    report_loss(book, R_SEQUENCE_GAP, ts_recv, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def report_loss(book, reason, ts_recv, sync, books, out):
    """Changes of a book may be lost (`reason`: a sequence gap, an undecodable frame): counted as a
    gap, reported as a GAP status to every consumer, and the book invalidated until it resyncs."""
    out.counters[book, C_GAPS] += 1
    status(book, ST_GAP, reason, ts_recv, out)
    invalidate(book, reason, ts_recv, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def report_connection_loss(conn, reason, ts_recv, sync, books, out):
    """Something on connection `conn` was lost: every live book it carries is reported as a gap."""
    for book in range(len(sync)):
        if sync[book, SY_CONN] == conn and sync[book, SY_STATE] == LIVE:
            report_loss(book, reason, ts_recv, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def truncate_to_depth(book, sync, books):
    """Cut a changed book to its subscribed depth (SY_DEPTH; 0: full depth), as the venue's view is."""
    depth = sync[book, SY_DEPTH]
    if depth > 0:
        for side in (BID, ASK):
            journal_op(books.journal, J_TRUNCATE, book, side, depth)
            truncate_side(books.levels, books.ladder, books.meta, book, side, depth)


@njit(nogil=True, cache=True, _nrt=False)
def settle(book, is_snapshot, checksum, ts_exchange, ts_recv, scratch, sync, books, out):
    """After a book changed: truncate to the subscribed depth, verify Kraken's checksum (when the
    message carried one), then `settle_checked`. Returns True when the book was published valid."""
    truncate_to_depth(book, sync, books)
    verdict = CHECK_NONE
    if checksum != NO_CHECKSUM:
        levels, ladder, meta = books.levels, books.ladder, books.meta
        computed = kraken_checksum(levels, ladder, meta, book, sync[book, SY_PX_PAD], sync[book, SY_QTY_PAD],
                                   scratch[ROW_WORK])
        verdict = CHECK_OK if computed == checksum else CHECK_FAIL
    return settle_checked(book, is_snapshot, verdict, ts_exchange, ts_recv, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def settle_checked(book, is_snapshot, verdict, ts_exchange, ts_recv, sync, books, out):
    """After a book changed and its checksum was judged (`verdict`: CHECK_NONE, CHECK_OK or
    CHECK_FAIL, counted): a failed checksum or a crossed book invalidates it; otherwise it is
    published valid, and a snapshot makes it LIVE (with a BOOK_VALID status). Returns True when the
    book was published valid."""
    if verdict == CHECK_FAIL:
        out.counters[book, C_CHECKSUM_FAIL] += 1
        invalidate(book, R_CHECKSUM, ts_recv, sync, books, out)
        return False
    if verdict == CHECK_OK:
        out.counters[book, C_CHECKSUM_OK] += 1
    if is_crossed(books.levels, books.ladder, books.meta, book):
        out.counters[book, C_CROSSED] += 1
        invalidate(book, R_CROSSED, ts_recv, sync, books, out)
        return False
    if is_snapshot:
        sync[book, SY_STATE] = LIVE
        status(book, ST_BOOK_VALID, R_SNAPSHOT, ts_recv, out)
    else:
        out.counters[book, C_BOOK_UPDATES] += 1
    publish(books, book, out, sync[book, SY_UPDATE_ID], ts_exchange, ts_recv, VALID)
    return True


@njit(nogil=True, cache=True, _nrt=False)
def publish_trades(count, ts_recv, scratch, sync, books, out):
    """Publish `count` decoded trades (scratch rows BOOK, ID, TIME, PRICE, QTY, SIDE = aggressor), each
    matched to its book as it stands before the trade (in feed order, so a replay matches the same):
    best bid/ask, and the levels of the side it hit at or through its price (the side from the
    aggressor, else from where the price lies). A trade without a venue id (NO_TRADE_ID) is numbered
    per book. A negative count is the trade decoders' verdict on a bad frame: a decode error."""
    levels, ladder, meta = books.levels, books.ladder, books.meta
    counters = out.counters
    if count < 0:
        counters[-1, C_DECODE_ERRORS] += 1
    for k in range(count):
        book = scratch[ROW_BOOK, k]
        trade_id = scratch[ROW_ID, k]
        if trade_id == NO_TRADE_ID:
            sync[book, SY_TRADES] += 1
            trade_id = sync[book, SY_TRADES]
        counters[book, C_TRADES] += 1
        price = scratch[ROW_PRICE, k]
        aggressor = scratch[ROW_SIDE, k]
        bid_px, bid_qty = best_level(levels, ladder, meta, book, BID)
        ask_px, ask_qty = best_level(levels, ladder, meta, book, ASK)
        swept = NO_BOOK
        if sync[book, SY_STATE] == LIVE:
            swept = 0
            if aggressor == BUY or (aggressor != SELL and ask_qty != 0 and price >= ask_px):
                swept = levels_through(levels, ladder, meta, book, ASK, price, MAX_SWEPT)
            elif aggressor == SELL or (bid_qty != 0 and price <= bid_px):
                swept = levels_through(levels, ladder, meta, book, BID, price, MAX_SWEPT)
        ts_publish = realtime_ns()
        publish_trade(out.ring, out.control, book, trade_id, scratch[ROW_TIME, k], ts_recv, ts_publish, price,
                      scratch[ROW_QTY, k], aggressor, bid_px, bid_qty, ask_px, ask_qty, swept, sync[book, SY_UPDATE_ID])
        record_published(out.latency, scratch[ROW_TIME, k], ts_recv, ts_publish)


@njit(nogil=True, cache=True, _nrt=False)
def publish_one_trade(book, trade_id, ts_exchange, price, qty, aggressor, ts_recv, scratch, sync, books, out):
    """Publish one trade a decoder left in its header."""
    scratch[ROW_BOOK, 0] = book
    scratch[ROW_ID, 0] = trade_id
    scratch[ROW_TIME, 0] = ts_exchange
    scratch[ROW_PRICE, 0] = price
    scratch[ROW_QTY, 0] = qty
    scratch[ROW_SIDE, 0] = aggressor
    publish_trades(1, ts_recv, scratch, sync, books, out)


@njit(inline="always", nogil=True)
def _stat(fields, field, value, block, word):
    """A stats value: the message's when it carried the field (and it is kept), else the last kept."""
    if fields & field:
        block[word] = value
    return block[word]


@njit(nogil=True, cache=True, _nrt=False)
def publish_stats(kind, book, record_id, ts_exchange, ts_recv, values, out):
    """Publish one market-data record a decoder made (Kind.BBO, FUNDING, OPEN_INTEREST, LIQUIDATION;
    `values`: five int64, its words 7-11), counted per kind. Funding and open interest are also the
    instrument's latest stats, kept in its block under the seqlock for readers; a funding message
    carries the fields its SLOT_FIELDS bits name (venues push partial updates), and the record takes
    the others from the last ones kept, so each funding record is the whole current state."""
    if kind == KIND_FUNDING or kind == KIND_OPEN_INTEREST:
        block = out.blocks[book]
        write_begin(block)
        if kind == KIND_FUNDING:
            fields = values[4]
            values = (_stat(fields, FIELD_RATE, values[0], block, BOOK_FUNDING_RATE),
                      _stat(fields, FIELD_FUNDING_TIME, values[1], block, BOOK_FUNDING_TIME),
                      _stat(fields, FIELD_MARK, values[2], block, BOOK_MARK_PX),
                      _stat(fields, FIELD_INDEX, values[3], block, BOOK_INDEX_PX), fields)
        else:
            fields = np.int64(FIELD_OPEN_INTEREST)
            block[BOOK_OPEN_INTEREST] = values[0]
        block[BOOK_STATS_FIELDS] |= fields
        block[BOOK_STATS_TS] = ts_exchange
        write_end(block)
    out.counters[book, C_BBOS + kind - KIND_BBO] += 1
    ts_publish = realtime_ns()
    publish_values(out.ring, out.control, kind, book, record_id, ts_exchange, ts_recv, ts_publish, values)
    record_published(out.latency, ts_exchange, ts_recv, ts_publish)
