"""Cross-venue NBBO kernels: venue rings in, NBBO blocks and an NBBO ring out, one call per poll.

A venue's quote for a symbol is its book's top as published in its ring (rescaled to the symbol's
decimals). It counts toward the NBBO while the book is valid (BOOK_INVALID / BOOK_VALID status
records), not older than the staleness limit, and the venue process is up (decided in Python from
the segment heartbeat). A quote's age runs on CLOCK_MONOTONIC from the moment it was applied, less
its wall-clock age then (receive stamp to now, never below zero), so a wall-clock step neither
excludes every venue nor keeps a quote stamped ahead of the clock fresh forever. Each change of inclusion is a VENUE_EXCLUDED / VENUE_RESTORED status record
with the reason; each change of the NBBO an NBBO record. A lapped venue ring is recovered by
re-reading that venue's book blocks.

Kernels take their arrays in three groups (namedtuples, which cost nothing inside numba):
`venues` (VenueInputs): per venue, its ring, ring control and book blocks (tuples indexed by
venue, which may be longer than the venues: the caller pads them) and its read cursor (one row per
venue: their number); `route[v, instrument]` (the NBBO symbol, -1: none) and `scales[v,
instrument]` (price and size factors to the symbol's decimals); `rows` and `scratch`, where ring
records and blocks are read into. `state` (NbboState): the private state below. `out` (NbboOutput):
the NBBO segment's blocks, ring and ring control, and the aggregator's latency rows.

Private state, per symbol and venue: `quotes[s, v]` holds the NBBO_VENUE_WORDS row of the published
block (VQ_*) plus the book's validity, the reason it went invalid and its receive time on
CLOCK_MONOTONIC; `last[s]` the NBBO last published. Kernels take `mono` (CLOCK_MONOTONIC, for ages)
and stamp records with CLOCK_REALTIME.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from shm.clock import monotonic_ns, realtime_ns
from shm.histogram import record
from shm.layout import (BOOK_LEVELS, BOOK_TS_EXCHANGE, BOOK_TS_PUBLISH, BOOK_TS_RECV, BOOK_UPDATE_ID, BOOK_VALID,
                        BOOK_DEPTH_ASKS, BOOK_DEPTH_BIDS, NBBO_ASK_PX, NBBO_ASK_QTY, NBBO_ASK_VENUES, NBBO_BID_PX,
                        NBBO_BID_QTY, NBBO_BID_VENUES, NBBO_CROSSED, NBBO_FLAGS, NBBO_INCLUDED, NBBO_LOCKED,
                        NBBO_VENUE_WORDS, SLOT_ASK_PX, SLOT_ASK_QTY, SLOT_BID_PX, SLOT_BID_QTY, SLOT_ID,
                        SLOT_INSTRUMENT, SLOT_KIND, SLOT_STATUS, SLOT_TS_PUBLISH, SLOT_TS_RECV,
                        VQ_ASK_PX, VQ_ASK_QTY, VQ_BID_PX, VQ_BID_QTY, VQ_STATE, VQ_TS_PUBLISH, VQ_TS_RECV,
                        VQ_UPDATE_ID, Kind, Reason, Status, asks_at)
from shm.ring import poll, publish_nbbo, publish_venue_status
from shm.seqlock import block_depth, read_block, write_begin, write_end

# quotes[s, v] words past the published row
Q_VALID = NBBO_VENUE_WORDS  # the venue's book is valid
Q_REASON = NBBO_VENUE_WORDS + 1  # why it went invalid
Q_RECV_MONO = NBBO_VENUE_WORDS + 2  # when its book was received, on CLOCK_MONOTONIC (as told above)
Q_WORDS = NBBO_VENUE_WORDS + 3
# last[s] words
L_BID_PX, L_BID_QTY, L_ASK_PX, L_ASK_QTY, L_BID_VENUES, L_ASK_VENUES, L_FLAGS, L_INCLUDED, L_CHANGES = range(9)
L_WORDS = 9
# venue_state[v] words
V_UP = 0  # the venue process is alive (Python decides from the heartbeat)
V_REASON = 1
V_WORDS = 2

KIND_BOOK, KIND_STATUS, KIND_READER_GAP = int(Kind.BOOK), int(Kind.STATUS), int(Kind.READER_GAP)
AGGREGATOR_HOPS = ("aggregator", "nbbo")  # latency rows per venue, in this order
ST_BOOK_VALID, ST_BOOK_INVALID = int(Status.BOOK_VALID), int(Status.BOOK_INVALID)
ST_EXCLUDED, ST_RESTORED = int(Status.VENUE_EXCLUDED), int(Status.VENUE_RESTORED)
R_STALE, R_NO_QUOTE, R_NONE = int(Reason.STALE), int(Reason.NO_QUOTE), int(Reason.NONE)
INT64_MAX = np.iinfo(np.int64).max
# passed to other kernels as numpy scalars: numba compiles a kernel once per literal value it is given
NO_SOURCE = np.int64(-1)  # recompute: no venue's quote changed
READ_SPINS = np.int64(1_000_000)


VenueInputs = namedtuple("VenueInputs", "rings controls books cursors route scales rows scratch")
NbboState = namedtuple("NbboState", "quotes last venue_state")
NbboOutput = namedtuple("NbboOutput", "blocks ring control latency")


def new_state(n_symbols: int, n_venues: int) -> NbboState:
    """The private state of an aggregator of these many symbols and venues, every venue up."""
    quotes = np.zeros((n_symbols, n_venues, Q_WORDS), np.int64)
    last = np.zeros((n_symbols, L_WORDS), np.int64)
    venue_state = np.zeros((n_venues, V_WORDS), np.int64)
    venue_state[:, V_UP] = 1
    return NbboState(quotes, last, venue_state)


@njit(inline="always", nogil=True)
def _scaled(value, scale):
    """value * scale, or -1 when it would not fit an int64 (a hostile price never wraps)."""
    if value > INT64_MAX // scale:
        return -1
    return value * scale


@njit(inline="always", nogil=True)
def _received_mono(ts_recv, wall, mono):
    """`ts_recv` (CLOCK_REALTIME) on CLOCK_MONOTONIC, by its age at `wall` / `mono` (read together)."""
    return mono - max(0, wall - ts_recv)


@njit(nogil=True, cache=True)
def _set_quote(quote, bid_px, bid_qty, ask_px, ask_qty, px_scale, qty_scale, ts_recv, update_id, ts_publish,
               recv_mono):
    quote[Q_RECV_MONO] = recv_mono
    quote[VQ_BID_PX] = _scaled(bid_px, px_scale)
    quote[VQ_BID_QTY] = _scaled(bid_qty, qty_scale)
    quote[VQ_ASK_PX] = _scaled(ask_px, px_scale)
    quote[VQ_ASK_QTY] = _scaled(ask_qty, qty_scale)
    quote[VQ_TS_RECV] = ts_recv
    quote[VQ_UPDATE_ID] = update_id
    quote[VQ_TS_PUBLISH] = ts_publish
    if min(quote[VQ_BID_PX], quote[VQ_BID_QTY], quote[VQ_ASK_PX], quote[VQ_ASK_QTY]) < 0:
        quote[Q_VALID] = 0  # overflowed rescale: treated as an invalid book
        quote[Q_REASON] = R_NO_QUOTE


@njit(inline="always", nogil=True)
def _exclusion(quote, venue_state, mono, stale_ns):
    """0 when the quote counts toward the NBBO at `mono`, else the Reason it does not."""
    if venue_state[V_UP] == 0:
        return venue_state[V_REASON]
    if quote[Q_VALID] == 0:
        return quote[Q_REASON] if quote[Q_REASON] != R_NONE else R_NO_QUOTE
    if stale_ns > 0 and mono - quote[Q_RECV_MONO] > stale_ns:
        return R_STALE
    if quote[VQ_BID_QTY] == 0 and quote[VQ_ASK_QTY] == 0:
        return R_NO_QUOTE
    return 0


@njit(nogil=True, cache=True)
def recompute(symbol, source, mono, stale_ns, state, out):
    """The NBBO of one symbol from its venues' quotes: publish its block, an NBBO record when it
    changed, and a status record for every venue whose inclusion changed. `source` is the venue
    whose update caused it (-1: a timer or a status)."""
    quotes, last, venue_state = state
    blocks, ring, control = out.blocks, out.ring, out.control
    n_venues = quotes.shape[1]
    bid_px, ask_px, bid_qty, ask_qty = -1, INT64_MAX, 0, 0
    bid_venues, ask_venues, included = 0, 0, 0
    published = last[symbol]
    ts_publish = realtime_ns()
    for v in range(n_venues):
        quote = quotes[symbol, v]
        reason = _exclusion(quote, venue_state[v], mono, stale_ns)
        was_in = (published[L_INCLUDED] >> v) & 1
        if reason != 0:
            quote[VQ_STATE] = -reason if quote[VQ_TS_RECV] != 0 or quote[Q_VALID] != 0 else 0
            if was_in:
                publish_venue_status(ring, control, symbol, ST_EXCLUDED, reason, v, quote[VQ_TS_RECV], ts_publish)
            continue
        quote[VQ_STATE] = 1
        if not was_in:
            publish_venue_status(ring, control, symbol, ST_RESTORED, R_NONE, v, quote[VQ_TS_RECV], ts_publish)
        included |= 1 << v
        if quote[VQ_BID_QTY] > 0:
            if quote[VQ_BID_PX] > bid_px:
                bid_px, bid_qty, bid_venues = quote[VQ_BID_PX], quote[VQ_BID_QTY], 1 << v
            elif quote[VQ_BID_PX] == bid_px:
                bid_qty += quote[VQ_BID_QTY]
                bid_venues |= 1 << v
        if quote[VQ_ASK_QTY] > 0:
            if quote[VQ_ASK_PX] < ask_px:
                ask_px, ask_qty, ask_venues = quote[VQ_ASK_PX], quote[VQ_ASK_QTY], 1 << v
            elif quote[VQ_ASK_PX] == ask_px:
                ask_qty += quote[VQ_ASK_QTY]
                ask_venues |= 1 << v
    if bid_venues == 0:
        bid_px = 0
    if ask_venues == 0:
        ask_px = 0
    flags = 0
    if bid_venues != 0 and ask_venues != 0:
        if bid_px == ask_px:
            flags = NBBO_LOCKED
        elif bid_px > ask_px:
            flags = NBBO_CROSSED
    changed = (bid_px != published[L_BID_PX] or bid_qty != published[L_BID_QTY] or ask_px != published[L_ASK_PX]
               or ask_qty != published[L_ASK_QTY] or bid_venues != published[L_BID_VENUES]
               or ask_venues != published[L_ASK_VENUES] or flags != published[L_FLAGS])
    published[L_INCLUDED] = included
    ts_recv = quotes[symbol, source, VQ_TS_RECV] if source >= 0 else ts_publish
    source_ts = quotes[symbol, source, VQ_TS_PUBLISH] if source >= 0 else ts_publish
    if changed:
        published[L_BID_PX], published[L_BID_QTY] = bid_px, bid_qty
        published[L_ASK_PX], published[L_ASK_QTY] = ask_px, ask_qty
        published[L_BID_VENUES], published[L_ASK_VENUES], published[L_FLAGS] = bid_venues, ask_venues, flags
        published[L_CHANGES] += 1
    block = blocks[symbol]
    write_begin(block)
    block[BOOK_UPDATE_ID] = published[L_CHANGES]
    block[BOOK_TS_EXCHANGE] = 0
    block[BOOK_TS_RECV] = ts_recv
    block[BOOK_TS_PUBLISH] = ts_publish
    block[BOOK_VALID] = 1 if bid_venues != 0 and ask_venues != 0 else 0
    block[NBBO_BID_PX], block[NBBO_BID_QTY], block[NBBO_ASK_PX], block[NBBO_ASK_QTY] = bid_px, bid_qty, ask_px, ask_qty
    block[NBBO_BID_VENUES], block[NBBO_ASK_VENUES], block[NBBO_FLAGS] = bid_venues, ask_venues, flags
    block[NBBO_INCLUDED] = included
    for v in range(n_venues):
        row = BOOK_LEVELS + v * NBBO_VENUE_WORDS
        for k in range(NBBO_VENUE_WORDS):
            block[row + k] = quotes[symbol, v, k]
    write_end(block)
    if changed:
        publish_nbbo(ring, control, symbol, published[L_CHANGES], 0, ts_recv, ts_publish, bid_px, bid_qty, ask_px,
                     ask_qty, bid_venues, ask_venues, flags, source_ts, source)
    return changed


@njit(nogil=True, cache=True)
def resync_venue(v, stale_ns, venues, state, out):
    """Re-read every book of venue `v` from its blocks (after a lapped ring or a new writer)."""
    venue_books, route, scales, scratch = venues.books[v], venues.route, venues.scales, venues.scratch
    quotes = state.quotes
    wall, mono = realtime_ns(), monotonic_ns()
    for instrument in range(venue_books.shape[0]):
        symbol = route[v, instrument]
        if symbol < 0:
            continue
        block = venue_books[instrument]
        quote = quotes[symbol, v]
        if read_block(block, scratch, READ_SPINS) < 0:
            quote[Q_VALID] = 0
        else:
            first_ask = asks_at(block_depth(block))
            has_bid = scratch[BOOK_DEPTH_BIDS] > 0
            has_ask = scratch[BOOK_DEPTH_ASKS] > 0
            _set_quote(quote, scratch[BOOK_LEVELS] if has_bid else 0, scratch[BOOK_LEVELS + 1] if has_bid else 0,
                       scratch[first_ask] if has_ask else 0, scratch[first_ask + 1] if has_ask else 0,
                       scales[v, instrument, 0], scales[v, instrument, 1], scratch[BOOK_TS_RECV],
                       scratch[BOOK_UPDATE_ID], scratch[BOOK_TS_PUBLISH], _received_mono(scratch[BOOK_TS_RECV], wall, mono))
            quote[Q_VALID] = scratch[BOOK_VALID]
        recompute(symbol, v, mono, stale_ns, state, out)


@njit(nogil=True, cache=True)
def _apply(v, row, now, mono, stale_ns, route, scales, state, out):
    """One venue ring record, applied at `now` (CLOCK_REALTIME) / `mono`; returns True when it changed
    an NBBO (an NBBO record was published). Per record: it takes only the venue arrays it reads."""
    quotes = state.quotes
    instrument = row[SLOT_INSTRUMENT]
    if instrument < 0 or instrument >= route.shape[1]:
        return False
    symbol = route[v, instrument]
    if symbol < 0:
        return False
    quote = quotes[symbol, v]
    kind = row[SLOT_KIND]
    if kind == KIND_BOOK:
        _set_quote(quote, row[SLOT_BID_PX], row[SLOT_BID_QTY], row[SLOT_ASK_PX], row[SLOT_ASK_QTY],
                   scales[v, instrument, 0], scales[v, instrument, 1], row[SLOT_TS_RECV], row[SLOT_ID],
                   row[SLOT_TS_PUBLISH], _received_mono(row[SLOT_TS_RECV], now, mono))
    elif kind == KIND_STATUS and row[SLOT_STATUS] == ST_BOOK_INVALID:
        quote[Q_VALID] = 0
        quote[Q_REASON] = row[SLOT_ID]
    elif kind == KIND_STATUS and row[SLOT_STATUS] == ST_BOOK_VALID:
        quote[Q_VALID] = 1
        quote[Q_REASON] = R_NONE
        return False  # its book record follows
    else:
        return False
    return recompute(symbol, v, mono, stale_ns, state, out)


@njit(nogil=True, cache=True)
def sweep(mono, stale_ns, state, out):
    """Recompute every symbol whose inclusion would change at `mono` (staleness, venue up/down)."""
    quotes, last, venue_state = state
    for symbol in range(quotes.shape[0]):
        included = 0
        for v in range(quotes.shape[1]):
            if _exclusion(quotes[symbol, v], venue_state[v], mono, stale_ns) == 0:
                included |= 1 << v
        if included != last[symbol, L_INCLUDED]:
            recompute(symbol, NO_SOURCE, mono, stale_ns, state, out)


@njit(nogil=True, cache=True)
def aggregate(venues, state, out, stale_ns, budget_ns):
    """Poll every venue ring, apply what arrived, publish NBBO changes; keeps polling for `budget_ns`
    (0: one pass), so a spinning aggregator returns to Python about once per budget, not once per
    record. Latency rows per venue v (AGGREGATOR_HOPS): 2v published -> seen here, 2v + 1 published ->
    the NBBO change it caused published. Returns the number of venue records consumed."""
    rings, controls, cursors, rows, latency = venues.rings, venues.controls, venues.cursors, venues.rows, out.latency
    consumed = 0
    started = realtime_ns()
    attempt = 0
    while attempt == 0 or budget_ns > 0:
        attempt += 1
        if attempt % 64 == 0 and realtime_ns() - started >= budget_ns:
            break
        for v in range(len(cursors)):
            filled = poll(rings[v], controls[v], cursors[v], rows)
            if filled == 0:
                continue
            now, mono = realtime_ns(), monotonic_ns()
            for k in range(filled):
                row = rows[k]
                if row[SLOT_KIND] == KIND_READER_GAP:
                    resync_venue(v, stale_ns, venues, state, out)
                else:
                    record(latency[2 * v], now - row[SLOT_TS_PUBLISH])
                    if _apply(v, row, now, mono, stale_ns, venues.route, venues.scales, state, out):
                        record(latency[2 * v + 1], realtime_ns() - row[SLOT_TS_PUBLISH])
            consumed += filled
    sweep(monotonic_ns(), stale_ns, state, out)
    return consumed
