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

The market-data records (derivatives-protocols.md §1.4, §1.7), each one feed_kernels.publish_stats call:
- `bookTicker` -> BBO: b/B/a/A, record id the book update id `u`, at the transaction time `T`.
- `markPriceUpdate` -> FUNDING at the event time `E` (its `T` is the next funding time, not a trade
  time): mark `p`, index `i`, rate `r`, next funding time `T`, each marked (FIELD_*) only when carried.
  A COIN-M delivery contract sends `"r":""` and `"T":0`: no rate and no funding time, not a rate of 0.
- the polled REST open interest (`decode_open_interest`: futures have no stream of it) -> OPEN_INTEREST.
- `forceOrder` -> LIQUIDATION at the trade time `o.T`: side = venue side = `o.S`, the liquidation
  order's side (SELL: a long was liquidated). Price and quantity are the fills, the average price
  `o.ap` and the filled quantity `o.z`: what the liquidation traded in the market, which liquidation
  volume sums; the order's `p` is only its limit (the bankruptcy bound) and its `q` includes what an
  IOC order left unfilled.
Binance prints these prices to 8 decimals, and an index or an average fill price is finer than the
tick: they are kept at the stats decimals (shm.layout.stats_px_dec: at least 8), exactly.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK, parse_decimal
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, RATE_DEC, Side, stats_px_dec

from ...feed_kernels import (KIND_BBO, KIND_FUNDING, KIND_LIQUIDATION, ROW_PRICE, ROW_QTY, ROW_SIDE, T_LENGTH,
                             T_PX_DEC, T_QTY_DEC, count_frame, publish_stats, report_gap)
from ...jsonscan import (ERR_SYNTAX, decimal_string, equals, find_value, find_value_after, key, looks_like_object,
                         parse_int, string_span)
from ...publish import mark_decoded
from ...sync import BRIDGING, BUFFERING, CS_TIME_UNIT, LIVE, SY_CONN, SY_STATE, SY_UPDATE_ID
from ..binance.decoder import (ACTION_BUFFER, ACTION_DONE, ACTION_GAP, FRAME_DEPTH, FRAME_ERROR, FRAME_IGNORED,
                               FRAME_TICKER, H_ASK_PRICE, H_ASK_QTY, H_ERROR, H_EVENT_TIME, H_FIELDS, H_FIRST_ID,
                               H_FUNDING_TIME, H_INSTRUMENT, H_LAST_ID, H_PREV_ID, H_PRICE, H_QTY, H_RATE, H_SIDE,
                               apply_diff, depth_levels, locate, other_frame, ticker_fields, trade_fields)

PROTOCOL_ID = 3  # this decoder's branch in venues.dispatch

_U_FIRST = key("U")
_U_LAST = key("u")
_PU = key("pu")
_TRANSACTION_TIME = key("T")
_AGG_ID = key("a")
_EVENT_TIME = key("E")
_MARK = key("p")
_INDEX = key("i")
_RATE = key("r")
_ORDER = key("o")
_SIDE = key("S")
_AVERAGE_PRICE = key("ap")
_FILLED_QTY = key("z")
_OPEN_INTEREST = key("openInterest")
_TIME = key("time")
_DEPTH_UPDATE = np.frombuffer(b"depthUpdate", np.uint8)
_AGG_TRADE = np.frombuffer(b"aggTrade", np.uint8)
_BOOK_TICKER = np.frombuffer(b"bookTicker", np.uint8)
_MARK_PRICE_UPDATE = np.frombuffer(b"markPriceUpdate", np.uint8)
_FORCE_ORDER = np.frombuffer(b"forceOrder", np.uint8)
_BUY = np.frombuffer(b"BUY", np.uint8)
_SELL = np.frombuffer(b"SELL", np.uint8)
FRAME_FUNDING = 6  # after the spot decoder's FRAME_* codes
FRAME_LIQUIDATION = 7
_BUY_SIDE, _SELL_SIDE = int(Side.BUY), int(Side.SELL)


@njit(inline="always", nogil=True)
def price_at(buf, pos, n, px_dec):
    """(mantissa, error) of a quoted mark, index or average price at the stats decimals, exactly."""
    value, _, err = decimal_string(buf, pos, n, stats_px_dec(px_dec))
    return value, err


@njit(inline="always", nogil=True)
def mark_price_fields(buf, event, n, px_dec, header):
    """A markPriceUpdate: each of mark, index, rate and next funding time that the message carries, its
    FIELD_* bit in H_FIELDS; FRAME_FUNDING, or FRAME_ERROR for a value that is there and malformed."""
    header[H_EVENT_TIME], p0 = parse_int(buf, find_value_after(buf, event, n, _EVENT_TIME), n)
    err = OK if p0 >= 0 else ERR_SYNTAX
    fields = 0
    at = find_value_after(buf, event, n, _MARK)
    if at >= 0:
        header[H_PRICE], e = price_at(buf, at, n, px_dec)
        err, fields = max(err, e), fields | FIELD_MARK
    at = find_value_after(buf, event, n, _INDEX)
    if at >= 0:
        header[H_ASK_PRICE], e = price_at(buf, at, n, px_dec)
        err, fields = max(err, e), fields | FIELD_INDEX
    at = find_value_after(buf, event, n, _RATE)
    if at >= 0:
        first, stop = string_span(buf, at, n)
        if first < 0:
            err = max(err, ERR_SYNTAX)  # a rate that is not a string
        elif stop > first:  # "" (a delivery contract): no rate, not a rate of 0
            header[H_RATE], e = parse_decimal(buf, first, stop, RATE_DEC, True)
            err, fields = max(err, e), fields | FIELD_RATE
    at = find_value_after(buf, event, n, _TRANSACTION_TIME)
    if at >= 0:
        header[H_FUNDING_TIME], p1 = parse_int(buf, at, n)
        if p1 < 0:
            err = max(err, ERR_SYNTAX)
        elif header[H_FUNDING_TIME] > 0:  # 0: a delivery contract, no funding
            fields |= FIELD_FUNDING_TIME
    header[H_FIELDS] = fields
    header[H_ERROR] = err
    return FRAME_FUNDING if err == OK else FRAME_ERROR


@njit(inline="always", nogil=True)
def force_order_fields(buf, event, n, px_dec, qty_dec, header):
    """A forceOrder's order `o`: its side S, average price ap, filled quantity z and trade time T;
    FRAME_LIQUIDATION, or FRAME_ERROR with its code in the header."""
    order = find_value_after(buf, event, n, _ORDER)
    if order < 0 or buf[order] != 123:  # "o" must be the order object
        header[H_ERROR] = ERR_SYNTAX
        return FRAME_ERROR
    first, stop = string_span(buf, find_value(buf, order, n, _SIDE), n)
    header[H_SIDE] = _BUY_SIDE if equals(buf, first, stop, _BUY) else (
        _SELL_SIDE if equals(buf, first, stop, _SELL) else 0)
    header[H_PRICE], e1 = price_at(buf, find_value(buf, order, n, _AVERAGE_PRICE), n, px_dec)
    header[H_QTY], _, e2 = decimal_string(buf, find_value(buf, order, n, _FILLED_QTY), n, qty_dec)
    header[H_EVENT_TIME], p = parse_int(buf, find_value(buf, order, n, _TRANSACTION_TIME), n)
    header[H_ERROR] = max(max(e1, e2), ERR_SYNTAX if (p < 0 or header[H_SIDE] == 0) else OK)
    return FRAME_LIQUIDATION if header[H_ERROR] == OK else FRAME_ERROR


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
    if equals(buf, event_first, event_stop, _BOOK_TICKER):
        kind = ticker_fields(buf, n, px_decs[instrument], qty_decs[instrument], header)
        header[H_EVENT_TIME], pos = parse_int(buf, find_value_after(buf, event, n, _TRANSACTION_TIME), n)
        if kind == FRAME_TICKER and pos < 0:
            header[H_ERROR] = ERR_SYNTAX
            return FRAME_ERROR
        return kind
    if equals(buf, event_first, event_stop, _MARK_PRICE_UPDATE):
        return mark_price_fields(buf, event, n, px_decs[instrument], header)
    if equals(buf, event_first, event_stop, _FORCE_ORDER):
        return force_order_fields(buf, event, n, px_decs[instrument], qty_decs[instrument], header)
    return FRAME_IGNORED


@njit(nogil=True, cache=True)
def decode_open_interest(buf, n, qty_dec):
    """GET /fapi/v1/openInterest (or /dapi/v1/openInterest) body, {"openInterest":"10659.509",
    "symbol":"BTCUSDT","time":1589437530011} (§1.6) -> (open interest at qty_dec, its time in ms, error)."""
    if not looks_like_object(buf, n):
        return 0, 0, ERR_SYNTAX
    value, _, err = decimal_string(buf, find_value(buf, 0, n, _OPEN_INTEREST), n, qty_dec)
    when, pos = parse_int(buf, find_value(buf, 0, n, _TIME), n)
    return value, when, err if pos >= 0 else max(err, ERR_SYNTAX)


@njit(inline="always", nogil=True)
def market_record(kind, ts_recv, unit_ns, header, out):
    """A decoded bookTicker, markPriceUpdate or forceOrder, published as its record (module docstring)."""
    book = header[H_INSTRUMENT]
    none = np.int64(0)
    if kind == FRAME_TICKER:
        publish_stats(KIND_BBO, book, header[H_FIRST_ID], header[H_EVENT_TIME] * unit_ns, ts_recv,
                      (header[H_PRICE], header[H_QTY], header[H_ASK_PRICE], header[H_ASK_QTY], none), out)
    elif kind == FRAME_FUNDING:
        publish_stats(KIND_FUNDING, book, none, header[H_EVENT_TIME] * unit_ns, ts_recv,
                      (header[H_RATE], header[H_FUNDING_TIME] * unit_ns, header[H_PRICE], header[H_ASK_PRICE],
                       header[H_FIELDS]), out)
    else:
        publish_stats(KIND_LIQUIDATION, book, none, header[H_EVENT_TIME] * unit_ns, ts_recv,
                      (header[H_PRICE], header[H_QTY], header[H_SIDE], header[H_SIDE], none), out)


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame, start to end (as the spot step), with the futures sequence rule and the
    market-data records. A book is
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
    if kind == FRAME_TICKER or kind == FRAME_FUNDING or kind == FRAME_LIQUIDATION:
        market_record(kind, ts_recv, unit_ns, header, out)
        return ACTION_DONE
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
