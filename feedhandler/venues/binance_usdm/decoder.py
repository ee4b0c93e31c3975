"""Binance futures (USD-M and COIN-M): the combined-stream decoder (numba) and the official futures
book procedure (derivatives-protocols.md §1.5), on the spot decoder's pieces.

What differs from spot: a depthUpdate carries `pu`, the previous event's `u` on the stream, and the
futures update ids come from a counter shared across symbols, so `U == previous u + 1` never holds.
After the REST snapshot (lastUpdateId L), diffs with u < L are dropped; the first applied diff must
straddle it (U <= L <= u); every later one must chain on (pu == previous u). Anything else is a gap:
invalidate and resync. A rotation's new connection joins a live book the way a first diff joins a
snapshot, by straddling the book's id (quantities are absolute, so the overlap is exact), and
chains on from there. Exchange time is the transaction time `T` (`E` is when it was pushed);
trades come from `aggTrade` (id `a`, time `T`, `m` true: the buyer was the maker, a sell aggressor).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...feed_kernels import ROW_PRICE, ROW_QTY, ROW_SIDE, T_LENGTH, T_PX_DEC, T_QTY_DEC, count_frame, report_gap
from ...jsonscan import ERR_SYNTAX, equals, find_value_after, key, parse_int, string_span
from ...publish import mark_decoded
from ...sync import BRIDGING, BUFFERING, CS_TIME_UNIT, LIVE, SY_CONN, SY_STATE, SY_UPDATE_ID
from ..binance.decoder import (ACTION_BUFFER, ACTION_DONE, ACTION_GAP, FRAME_DEPTH, FRAME_ERROR, FRAME_IGNORED,
                               H_ERROR, H_EVENT_TIME, H_FIRST_ID, H_INSTRUMENT, H_LAST_ID, H_PREV_ID, apply_diff,
                               depth_levels, locate, other_frame, trade_fields)

PROTOCOL_ID = 3  # this decoder's branch in venues.dispatch

_U_FIRST = key("U")
_U_LAST = key("u")
_PU = key("pu")
_TRANSACTION_TIME = key("T")
_AGG_ID = key("a")
_DEPTH_UPDATE = np.frombuffer(b"depthUpdate", np.uint8)
_AGG_TRADE = np.frombuffer(b"aggTrade", np.uint8)


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one combined-stream frame; returns the spot decoder's FRAME_*, details in `header`
    (H_PREV_ID: a diff's pu), depth levels in sides/prices/qtys (bids first, then asks)."""
    early, event, symbol_stop = locate(buf, n, symbols, lengths, header)
    if early >= 0:
        return early
    instrument = header[H_INSTRUMENT]
    event_first, event_stop = string_span(buf, event, n)
    if equals(buf, event_first, event_stop, _DEPTH_UPDATE):
        header[H_EVENT_TIME], p0 = parse_int(buf, find_value_after(buf, event, n, _TRANSACTION_TIME), n)
        header[H_FIRST_ID], p1 = parse_int(buf, find_value_after(buf, symbol_stop, n, _U_FIRST), n)
        header[H_LAST_ID], p2 = parse_int(buf, find_value_after(buf, p1, n, _U_LAST), n)
        header[H_PREV_ID], p3 = parse_int(buf, find_value_after(buf, p2, n, _PU), n)
        if p0 < 0 or p1 < 0 or p2 < 0 or p3 < 0 or header[H_FIRST_ID] > header[H_LAST_ID]:
            header[H_ERROR] = ERR_SYNTAX
            return FRAME_ERROR
        return depth_levels(buf, p3, n, px_decs[instrument], qty_decs[instrument], sides, prices, qtys, header)
    if equals(buf, event_first, event_stop, _AGG_TRADE):
        return trade_fields(buf, n, _AGG_ID, px_decs[instrument], qty_decs[instrument], header)
    return FRAME_IGNORED


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame, start to end (as the spot step), with the futures sequence rule. A book is
    BRIDGING from its snapshot until a diff straddles the snapshot's id, LIVE after: its owner
    connection's diffs must then chain on by pu."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    kind = decode(frame, n, symbols, tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC], scratch[ROW_SIDE],
                  scratch[ROW_PRICE], scratch[ROW_QTY], header)
    mark_decoded(out.latency, ts_recv, fresh)
    unit_ns = conn_state[conn, CS_TIME_UNIT]
    if kind != FRAME_DEPTH:
        other_frame(kind, ts_recv, unit_ns, scratch, header, sync, books, out)
        return ACTION_DONE
    book = header[H_INSTRUMENT]
    state = sync[book, SY_STATE]
    if state != LIVE and state != BRIDGING:
        sync[book, SY_CONN] = conn
        return ACTION_BUFFER
    last = sync[book, SY_UPDATE_ID]
    if header[H_LAST_ID] < last or (header[H_LAST_ID] == last and state == LIVE):
        return ACTION_DONE  # already in the book (the snapshot, or a diff applied before)
    chained = state == LIVE and sync[book, SY_CONN] == conn
    # the owner's next diff chains on (pu); a first diff straddles the snapshot's or the book's id
    lined_up = header[H_PREV_ID] == last if chained else header[H_FIRST_ID] <= last
    if not lined_up:
        if state == LIVE and not chained:
            return ACTION_DONE  # a rotation's new connection ahead of the owner: the owner decides
        report_gap(book, ts_recv, sync, books, out)
        sync[book, SY_STATE] = BUFFERING
        return ACTION_GAP
    apply_diff(book, conn, ts_recv, unit_ns, scratch, header, sync, books, out)
    if not chained:
        sync[book, SY_CONN] = conn  # this connection carries the book from now: its diffs chain on
        sync[book, SY_STATE] = LIVE
    return ACTION_DONE
