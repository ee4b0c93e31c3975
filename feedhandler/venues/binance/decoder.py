"""Binance spot: the combined-stream decoder (numba) and the official diff-depth bridging procedure.

Bridging (docs 2025-11): buffer diffs from the first one; fetch a REST snapshot; a snapshot whose
lastUpdateId is below the first buffered U is stale (refetch); drop diffs with u <= lastUpdateId;
then every diff must have U == previous u + 1, else the book is invalid and resyncs.
The pieces the futures decoder shares (binance_usdm.decoder: locate, depth_levels, trade_fields,
ticker_fields, apply_diff, other_frame) are inlined into each decoder, so neither pays a call for the sharing.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK

from ...book_kernels import ASK, BID
from ...feed_kernels import (C_DECODE_ERRORS, NO_CHECKSUM, ROW_PRICE, ROW_QTY, ROW_SIDE, T_LENGTH, T_PX_DEC,
                             T_QTY_DEC, apply_levels, count_frame, publish_one_trade, report_gap, settle)
from ...jsonscan import (ERR_SYNTAX, decimal_string, equals, find_value, find_value_after, key, looks_like_object,
                         match_symbol, parse_int, parse_pairs, string_span)
from ...publish import mark_decoded
from ...sync import BRIDGING, BUFFERING, CS_TIME_UNIT, LIVE, SY_CONN, SY_NEXT_CONN, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 0  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0  # a channel we do not decode (kline, aggTrade, subscription acks)
FRAME_DEPTH = 1
FRAME_TRADE = 2
FRAME_TICKER = 3
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5

# header words filled by decode()
H_INSTRUMENT = 0
H_FIRST_ID = 1  # depth U | trade id | ticker u
H_LAST_ID = 2  # depth u
H_EVENT_TIME = 3  # depth E | trade T, in the connection's time unit (ms, or µs with timeUnit)
H_LEVELS = 4  # depth: levels written to the output arrays
H_ERROR = 5  # decode error code (shm.fixedpoint / jsonscan codes)
H_PRICE = 6  # trade price | ticker bid price
H_QTY = 7  # trade qty | ticker bid qty
H_SIDE = 8  # trade aggressor: 1 buy, -1 sell
H_ASK_PRICE = 9
H_ASK_QTY = 10
H_PREV_ID = 11  # futures depth pu: the previous event's u on this stream
H_RATE = 12  # futures markPrice: funding rate (RATE_DEC decimals)
H_FUNDING_TIME = 13  # futures markPrice: next funding time, in the connection's time unit
H_FIELDS = 14  # futures markPrice: FIELD_* bits of the values the message carried
HEADER_WORDS = 15

_E = key("e")
_S = key("s")
_U_FIRST = key("U")
_U_LAST = key("u")
_E_TIME = key("E")
_BIDS = key("b")
_ASKS = key("a")
_T_ID = key("t")
_TRADE_TIME = key("T")
_P = key("p")
_Q = key("q")
_M = key("m")
_B_QTY = key("B")
_A_QTY = key("A")
_LAST_UPDATE_ID = key("lastUpdateId")
_SNAPSHOT_BIDS = key("bids")
_SNAPSHOT_ASKS = key("asks")
ACTION_DONE = int(Action.DONE)
ACTION_BUFFER = int(Action.BUFFER)
ACTION_GAP = int(Action.GAP)
_DEPTH_UPDATE = np.frombuffer(b"depthUpdate", np.uint8)
_TRADE = np.frombuffer(b"trade", np.uint8)


@njit(inline="always", nogil=True)
def _decimal_at(buf, pos, end, decimals):
    value, stop, err = decimal_string(buf, pos, end, decimals)
    return value, err


@njit(inline="always", nogil=True)
def locate(buf, n, symbols, lengths, header):
    """Every combined-stream frame's start: the header cleared, the event type and the instrument
    found. Returns (FRAME_* to return at once or -1, position of the "e" value, symbol end)."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    if not looks_like_object(buf, n):
        header[H_ERROR] = ERR_SYNTAX
        return FRAME_ERROR, -1, -1
    event = find_value(buf, 0, n, _E)
    symbol_first, symbol_stop = string_span(buf, find_value_after(buf, event, n, _S), n)
    if symbol_first < 0:
        return FRAME_IGNORED, event, -1
    instrument = match_symbol(buf, symbol_first, symbol_stop, symbols, lengths)
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL, event, -1
    header[H_INSTRUMENT] = instrument
    return -1, event, symbol_stop


@njit(inline="always", nogil=True)
def depth_levels(buf, pos, n, px_dec, qty_dec, sides, prices, qtys, header):
    """A depthUpdate's `b` then `a` arrays (looked for from `pos`) into the level rows, bids first;
    FRAME_DEPTH, or FRAME_ERROR with its code in the header."""
    count, pos, err = parse_pairs(buf, find_value_after(buf, pos, n, _BIDS), n, px_dec, qty_dec, np.int64(BID),
                                  sides, prices, qtys, np.int64(0))
    if err == OK:
        count, pos, err = parse_pairs(buf, find_value_after(buf, pos, n, _ASKS), n, px_dec, qty_dec,
                                      np.int64(ASK), sides, prices, qtys, count)
    header[H_LEVELS] = count
    header[H_ERROR] = err
    return FRAME_DEPTH if err == OK else FRAME_ERROR


@njit(inline="always", nogil=True)
def trade_fields(buf, n, id_key, px_dec, qty_dec, header):
    """A trade event (trade, aggTrade): its id under `id_key`, trade time T, price, qty, and the
    aggressor from m; FRAME_TRADE, or FRAME_ERROR with its code in the header."""
    header[H_FIRST_ID], p1 = parse_int(buf, find_value(buf, 0, n, id_key), n)
    header[H_EVENT_TIME], p2 = parse_int(buf, find_value(buf, 0, n, _TRADE_TIME), n)
    header[H_PRICE], e1 = _decimal_at(buf, find_value(buf, 0, n, _P), n, px_dec)
    header[H_QTY], e2 = _decimal_at(buf, find_value(buf, 0, n, _Q), n, qty_dec)
    maker = find_value(buf, 0, n, _M)
    if p1 < 0 or p2 < 0 or maker < 0 or e1 != OK or e2 != OK:
        header[H_ERROR] = max(max(e1, e2), ERR_SYNTAX if (p1 < 0 or p2 < 0 or maker < 0) else OK)
        return FRAME_ERROR
    header[H_SIDE] = -1 if buf[maker] == 116 else 1  # buyer is maker ("m":true): the seller hit the bid
    return FRAME_TRADE


@njit(inline="always", nogil=True)
def ticker_fields(buf, n, px_dec, qty_dec, header):
    """A bookTicker event: its update id u, best bid b/B and best ask a/A; FRAME_TICKER, or
    FRAME_ERROR with its code in the header."""
    header[H_FIRST_ID], pos = parse_int(buf, find_value(buf, 0, n, _U_LAST), n)
    header[H_PRICE], e1 = _decimal_at(buf, find_value(buf, 0, n, _BIDS), n, px_dec)
    header[H_QTY], e2 = _decimal_at(buf, find_value(buf, 0, n, _B_QTY), n, qty_dec)
    header[H_ASK_PRICE], e3 = _decimal_at(buf, find_value(buf, 0, n, _ASKS), n, px_dec)
    header[H_ASK_QTY], e4 = _decimal_at(buf, find_value(buf, 0, n, _A_QTY), n, qty_dec)
    header[H_ERROR] = max(max(e1, e2), max(e3, e4)) if pos >= 0 else ERR_SYNTAX
    return FRAME_TICKER if header[H_ERROR] == OK else FRAME_ERROR


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one combined-stream frame; returns FRAME_*, details in `header`, depth levels in
    sides/prices/qtys (bids first, then asks, in frame order)."""
    early, event, symbol_stop = locate(buf, n, symbols, lengths, header)
    if early >= 0:
        return early
    instrument = header[H_INSTRUMENT]
    px_dec = px_decs[instrument]
    qty_dec = qty_decs[instrument]
    event_first, event_stop = string_span(buf, event, n)
    if event_first < 0:  # bookTicker carries no event type
        if find_value(buf, 0, n, _B_QTY) < 0:
            return FRAME_IGNORED
        return ticker_fields(buf, n, px_dec, qty_dec, header)
    if equals(buf, event_first, event_stop, _DEPTH_UPDATE):
        header[H_EVENT_TIME], p3 = parse_int(buf, find_value_after(buf, event, n, _E_TIME), n)
        header[H_FIRST_ID], p1 = parse_int(buf, find_value_after(buf, symbol_stop, n, _U_FIRST), n)
        header[H_LAST_ID], p2 = parse_int(buf, find_value_after(buf, p1, n, _U_LAST), n)
        if p1 < 0 or p2 < 0 or p3 < 0 or header[H_FIRST_ID] > header[H_LAST_ID]:
            header[H_ERROR] = ERR_SYNTAX
            return FRAME_ERROR
        return depth_levels(buf, p2, n, px_dec, qty_dec, sides, prices, qtys, header)
    if equals(buf, event_first, event_stop, _TRADE):
        return trade_fields(buf, n, _T_ID, px_dec, qty_dec, header)
    return FRAME_IGNORED


@njit(nogil=True, cache=True)
def decode_snapshot(buf, n, px_dec, qty_dec, sides, prices, qtys):
    """GET /api/v3/depth body -> (lastUpdateId, levels that are bids, all levels, error)."""
    last_id, pos = parse_int(buf, find_value(buf, 0, n, _LAST_UPDATE_ID), n)
    if pos < 0:
        return 0, 0, 0, ERR_SYNTAX
    n_bids, pos, err = parse_pairs(buf, find_value(buf, 0, n, _SNAPSHOT_BIDS), n, px_dec, qty_dec, np.int64(BID),
                                   sides, prices, qtys, np.int64(0))
    if err != OK:
        return last_id, 0, 0, err
    total, pos, err = parse_pairs(buf, find_value(buf, 0, n, _SNAPSHOT_ASKS), n, px_dec, qty_dec, np.int64(ASK),
                                  sides, prices, qtys, n_bids)
    return last_id, n_bids, total, err


@njit(inline="always", nogil=True)
def _take_over(book, conn, sync):
    """A rotation's new connection has proven it continues the book: it carries the book from now."""
    if sync[book, SY_NEXT_CONN] == conn:
        sync[book, SY_CONN] = conn
        sync[book, SY_NEXT_CONN] = -1


@njit(inline="always", nogil=True)
def apply_diff(book, conn, ts_recv, unit_ns, scratch, header, sync, books, out):
    """A diff that lines up with its book: apply its levels, record its last id, settle and publish."""
    apply_levels(book, 0, header[H_LEVELS], scratch, books, out)
    sync[book, SY_UPDATE_ID] = header[H_LAST_ID]
    _take_over(book, conn, sync)
    settle(book, np.bool_(False), NO_CHECKSUM, header[H_EVENT_TIME] * unit_ns, ts_recv, scratch, sync, books, out)


@njit(inline="always", nogil=True)
def other_frame(kind, ts_recv, unit_ns, scratch, header, sync, books, out):
    """What is not a diff: a trade is published, an undecodable frame counted."""
    if kind == FRAME_TRADE:
        publish_one_trade(header[H_INSTRUMENT], header[H_FIRST_ID], header[H_EVENT_TIME] * unit_ns,
                          header[H_PRICE], header[H_QTY], header[H_SIDE], ts_recv, scratch, sync, books, out)
    elif kind == FRAME_ERROR or kind == FRAME_UNKNOWN_SYMBOL:
        out.counters[-1, C_DECODE_ERRORS] += 1


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame, start to end: decode, sequence check, apply, settle and publish, trades.
    Returns an Action for what Python must do (buffer a diff of a book not yet bridged). `fresh`:
    count the frame (0 when a buffered diff is applied again after its snapshot).
    A live book takes diffs from any connection that carries it, in update-id order: during a
    rotation the old and the new connection overlap, and the new one takes the book over once one of
    its diffs lines up with the book (quantities are absolute, so an overlapping diff is exact)."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    kind = decode(frame, n, symbols, tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC], scratch[ROW_SIDE],
                  scratch[ROW_PRICE], scratch[ROW_QTY], header)
    mark_decoded(out.latency, ts_recv, fresh)
    unit_ns = conn_state[conn, CS_TIME_UNIT]
    if kind == FRAME_DEPTH:
        book = header[H_INSTRUMENT]
        state = sync[book, SY_STATE]
        if state != LIVE and state != BRIDGING:
            sync[book, SY_CONN] = conn
            return ACTION_BUFFER
        if header[H_LAST_ID] <= sync[book, SY_UPDATE_ID]:
            _take_over(book, conn, sync)  # already applied: this connection is level with the book
            return ACTION_DONE
        if header[H_FIRST_ID] > sync[book, SY_UPDATE_ID] + 1:
            if sync[book, SY_CONN] != conn:
                return ACTION_DONE  # a rotation's new connection ahead of the owner: the owner decides
            report_gap(book, ts_recv, sync, books, out)
            sync[book, SY_STATE] = BUFFERING
            return ACTION_GAP
        apply_diff(book, conn, ts_recv, unit_ns, scratch, header, sync, books, out)
    else:
        other_frame(kind, ts_recv, unit_ns, scratch, header, sync, books, out)
    return ACTION_DONE
