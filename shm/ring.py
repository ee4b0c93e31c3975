"""Single-writer broadcast ring of fixed-size records in shared memory.

The writer never waits: it marks a slot busy, writes the record, then stores the slot's sequence
(position + 1) and the published count with release. A reader at position r copies slot r % size
only while its sequence reads r + 1 before and after the copy; anything else, with the writer
already past r, means the reader was lapped: it reports how many records it skipped and moves to
the live head (the consumer then resyncs from the book blocks).
"""
from __future__ import annotations

from numba import njit

from .atomics import fence_acquire, fence_release, load_acquire, prefetch_for_write, store_release
from .layout import (
    RING_WRITE_POS, SLOT_ASK_PX, SLOT_ASK_QTY, SLOT_BID_PX, SLOT_BID_QTY, SLOT_ID, SLOT_INSTRUMENT,
    SLOT_KIND, SLOT_MISSED, SLOT_N_ASKS, SLOT_N_BIDS, SLOT_NBBO_ASK_VENUES, SLOT_NBBO_BID_VENUES, SLOT_NBBO_FLAGS,
    SLOT_NBBO_SOURCE_TS, SLOT_NBBO_SOURCE_VENUE, SLOT_SEQ, SLOT_STATUS, SLOT_TRADE_ASK_PX, SLOT_TRADE_ASK_QTY,
    SLOT_TRADE_BID_PX, SLOT_TRADE_BID_QTY, SLOT_TRADE_BOOK_ID, SLOT_TRADE_PX, SLOT_TRADE_QTY, SLOT_TRADE_SIDE,
    SLOT_TRADE_SWEPT, SLOT_TS_EXCHANGE, SLOT_TS_PUBLISH, SLOT_TS_RECV, SLOT_VENUE, SLOT_WORDS, Kind,
)

READ_OK = 0
READ_EMPTY = 1
READ_LAPPED = 2

KIND_BOOK = int(Kind.BOOK)
KIND_TRADE = int(Kind.TRADE)
KIND_STATUS = int(Kind.STATUS)
KIND_READER_GAP = int(Kind.READER_GAP)
KIND_NBBO = int(Kind.NBBO)
_BUSY = -1


@njit(inline="always", nogil=True)
def _begin(ring, control, kind, instrument, record_id, ts_exchange, ts_recv, ts_publish):
    position = control[RING_WRITE_POS]
    slot = ring[position & (len(ring) - 1)]
    prefetch_for_write(slot, SLOT_WORDS - 1)  # the second line's ownership request overlaps the first's
    store_release(slot, SLOT_SEQ, _BUSY)
    fence_release()
    slot[SLOT_KIND] = kind
    slot[SLOT_INSTRUMENT] = instrument
    slot[SLOT_ID] = record_id
    slot[SLOT_TS_EXCHANGE] = ts_exchange
    slot[SLOT_TS_RECV] = ts_recv
    slot[SLOT_TS_PUBLISH] = ts_publish
    return position, slot


@njit(inline="always", nogil=True)
def _commit(control, position, slot):
    store_release(slot, SLOT_SEQ, position + 1)
    store_release(control, RING_WRITE_POS, position + 1)
    return position


@njit(nogil=True, cache=True)
def publish_book(ring, control, instrument, update_id, ts_exchange, ts_recv, ts_publish,
                 bid_px, bid_qty, ask_px, ask_qty, n_bids, n_asks):
    """Append a book-change record (top of book and level counts); returns its position."""
    position, slot = _begin(ring, control, KIND_BOOK, instrument, update_id, ts_exchange, ts_recv, ts_publish)
    slot[SLOT_BID_PX] = bid_px
    slot[SLOT_BID_QTY] = bid_qty
    slot[SLOT_ASK_PX] = ask_px
    slot[SLOT_ASK_QTY] = ask_qty
    slot[SLOT_N_BIDS] = n_bids
    slot[SLOT_N_ASKS] = n_asks
    return _commit(control, position, slot)


@njit(nogil=True, cache=True)
def publish_trade(ring, control, instrument, trade_id, ts_exchange, ts_recv, ts_publish, price, qty, side,
                  bid_px, bid_qty, ask_px, ask_qty, swept, book_id):
    """Append a trade record; `side` is the aggressor (Side.BUY, Side.SELL or Side.UNKNOWN), then the
    venue's book just before it: best bid/ask, levels swept (NO_BOOK: not valid), book update id."""
    position, slot = _begin(ring, control, KIND_TRADE, instrument, trade_id, ts_exchange, ts_recv, ts_publish)
    slot[SLOT_TRADE_PX] = price
    slot[SLOT_TRADE_QTY] = qty
    slot[SLOT_TRADE_SIDE] = side
    slot[SLOT_TRADE_BID_PX] = bid_px
    slot[SLOT_TRADE_BID_QTY] = bid_qty
    slot[SLOT_TRADE_ASK_PX] = ask_px
    slot[SLOT_TRADE_ASK_QTY] = ask_qty
    slot[SLOT_TRADE_SWEPT] = swept
    slot[SLOT_TRADE_BOOK_ID] = book_id
    return _commit(control, position, slot)


@njit(nogil=True, cache=True)
def publish_values(ring, control, kind, instrument, record_id, ts_exchange, ts_recv, ts_publish, values):
    """Append a venue market-data record (Kind.BBO, FUNDING, OPEN_INTEREST, LIQUIDATION): `values`, a
    tuple of five int64, are its words 7-11 as shm.layout names them for that kind."""
    position, slot = _begin(ring, control, kind, instrument, record_id, ts_exchange, ts_recv, ts_publish)
    for k in range(5):
        slot[7 + k] = values[k]
    return _commit(control, position, slot)


@njit(nogil=True, cache=True)
def publish_status(ring, control, instrument, status, reason, ts_exchange, ts_recv, ts_publish):
    """Append a status record (Status code, Reason code); instrument -1 means the whole venue."""
    position, slot = _begin(ring, control, KIND_STATUS, instrument, reason, ts_exchange, ts_recv, ts_publish)
    slot[SLOT_STATUS] = status
    return _commit(control, position, slot)


@njit(nogil=True, cache=True)
def publish_nbbo(ring, control, symbol, change, ts_exchange, ts_recv, ts_publish, bid_px, bid_qty, ask_px, ask_qty,
                 bid_venues, ask_venues, flags, source_ts, source_venue):
    """Append an NBBO-change record (venue bit masks at each best, locked/crossed flags, and the
    venue record that caused it)."""
    position, slot = _begin(ring, control, KIND_NBBO, symbol, change, ts_exchange, ts_recv, ts_publish)
    slot[SLOT_BID_PX] = bid_px
    slot[SLOT_BID_QTY] = bid_qty
    slot[SLOT_ASK_PX] = ask_px
    slot[SLOT_ASK_QTY] = ask_qty
    slot[SLOT_NBBO_BID_VENUES] = bid_venues
    slot[SLOT_NBBO_ASK_VENUES] = ask_venues
    slot[SLOT_NBBO_FLAGS] = flags
    slot[SLOT_NBBO_SOURCE_TS] = source_ts
    slot[SLOT_NBBO_SOURCE_VENUE] = source_venue
    return _commit(control, position, slot)


@njit(nogil=True, cache=True)
def publish_venue_status(ring, control, symbol, status, reason, venue, ts_recv, ts_publish):
    """Append a status record about one venue of a symbol (NBBO rings: excluded / restored)."""
    position, slot = _begin(ring, control, KIND_STATUS, symbol, reason, 0, ts_recv, ts_publish)
    slot[SLOT_STATUS] = status
    slot[SLOT_VENUE] = venue
    return _commit(control, position, slot)


@njit(inline="always", nogil=True, cache=True)  # also called from Python: cached
def write_position(control):
    """How many records the writer has published (acquire)."""
    return load_acquire(control, RING_WRITE_POS)


@njit(nogil=True, cache=True)
def read_record(ring, control, position, out):
    """Copy the record at `position` into `out`: READ_OK, READ_EMPTY (not written yet) or READ_LAPPED.

    The slot is intact while the writer has not started position + len(ring), i.e. while the
    published count is below it; a busy or older slot with the count past `position` is a record
    committed between our two loads, so it is read again rather than reported as lost (once is
    enough with a sound writer; the bound only keeps a corrupt segment from trapping the reader).
    """
    slot = ring[position & (len(ring) - 1)]
    expected = position + 1
    for _ in range(3):
        if load_acquire(slot, SLOT_SEQ) == expected:
            for k in range(1, SLOT_WORDS):
                out[k] = slot[k]
            fence_acquire()
            if load_acquire(slot, SLOT_SEQ) == expected:
                out[SLOT_SEQ] = expected
                return READ_OK
            return READ_LAPPED
        published = load_acquire(control, RING_WRITE_POS)
        if published <= position:
            return READ_EMPTY
        if published - position >= len(ring):
            return READ_LAPPED
    return READ_LAPPED


@njit(nogil=True, cache=True)
def poll(ring, control, cursor, out):
    """Copy up to len(out) records from cursor[0] on; returns how many rows of `out` were filled.

    A lap shows up in-line as a READER_GAP row whose SLOT_MISSED holds the records skipped; the
    cursor then continues from the writer's head, and cursor[1] accumulates all records missed.
    `cursor` is int64 [next position, records missed so far], owned by one reader.
    """
    filled = 0
    while filled < len(out):
        status = read_record(ring, control, cursor[0], out[filled])
        if status == READ_EMPTY:
            break
        if status == READ_LAPPED:
            head = load_acquire(control, RING_WRITE_POS)
            row = out[filled]
            for k in range(SLOT_WORDS):
                row[k] = 0
            row[SLOT_SEQ] = head + 1  # the position reading resumes from, + 1 like any slot
            row[SLOT_KIND] = KIND_READER_GAP
            row[SLOT_INSTRUMENT] = -1
            row[SLOT_MISSED] = head - cursor[0]
            cursor[1] += head - cursor[0]
            cursor[0] = head
        else:
            cursor[0] += 1
        filled += 1
    return filled
