"""OKX v5 public `books` and `trades`: the numba decoder and step.

Pushes are `{"arg":{"channel":C,"instId":I},"action":"snapshot"|"update","data":[{...}]}`
(../shared/docs/derivatives-protocols.md §2.4-2.7). A `books` object has `asks`/`bids` as
`[px, sz, "0", numOrders]` strings (size "0" deletes), `ts` (ms string), `checksum` (signed int32,
0 since 2026-06-23: then not checked) and, since late 2022, `prevSeqId`/`seqId`: an update must
have prevSeqId == the last seqId (keep-alives repeat it with no levels, a maintenance reset may go
lower and is still chained); a mismatch is a gap. A snapshot has prevSeqId -1. After every change
the book is cut to the channel's 400 levels and the checksum of the top 25 verified; a gap or a
mismatch invalidates that book, which the feed resubscribes. Events (acks, errors, notices) and the
`pong` text carry nothing for books.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK

from ...book_kernels import ASK, BID
from ...checksum import okx_checksum
from ...feed_kernels import (C_DECODE_ERRORS, CHECK_FAIL, CHECK_NONE, CHECK_OK, R_DECODE_ERROR, ROW_BOOK, ROW_ID,
                             ROW_PRICE, ROW_QTY, ROW_SIDE, ROW_TIME, ROW_WORK, T_LENGTH, T_PX_DEC, T_QTY_DEC,
                             apply_levels, count_frame, load_snapshot, publish_trades, report_gap, report_loss,
                             settle_checked, truncate_to_depth)
from ...jsonscan import (ERR_SYNTAX, after_member, equals, first_element, integer_value, is_key, key, key_table,
                         looks_like_object, match_symbol, member_at, parse_pairs, parse_trade_objects, skip_spaces_to,
                         skip_value, string_span)
from ...publish import mark_decoded
from ...sync import LIVE, SY_CONN, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 4  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0  # events, `pong`, channels not decoded here (tickers)
FRAME_SNAPSHOT = 1
FRAME_UPDATE = 2
FRAME_TRADES = 3  # decode with parse_trade_objects from H_DATA
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5

ACTION_DONE = int(Action.DONE)

H_INSTRUMENT = 0  # -1 until the instrument is known
H_LEVELS = 1
H_CHECKSUM = 2
H_HAS_CHECKSUM = 3  # 1: a non-zero checksum came, verify it
H_SEQ = 4
H_PREV_SEQ = 5
H_HAS_SEQ = 6  # 1: the message carried seqId and prevSeqId
H_TIME = 7  # `ts`, ns
H_ERROR = 8
H_DATA = 9  # position of the `data` array
HEADER_WORDS = 10

MS_NS = np.int64(1_000_000)
_EVENT = key("event")
_ARG = key("arg")
_ACTION = key("action")
_DATA = key("data")
_CHANNEL = key("channel")
_INST_ID = key("instId")
_ASKS = key("asks")
_BIDS = key("bids")
_TS = key("ts")
_CHECKSUM = key("checksum")
_SEQ = key("seqId")
_PREV_SEQ = key("prevSeqId")
_BOOKS = np.frombuffer(b"books", np.uint8)
_TRADES = np.frombuffer(b"trades", np.uint8)
_SNAPSHOT = np.frombuffer(b"snapshot", np.uint8)
_UPDATE = np.frombuffer(b"update", np.uint8)
_PONG = np.frombuffer(b"pong", np.uint8)
_TRADE_KEYS = key_table("instId", "side", "px", "sz", "tradeId", "ts")
_BUY = np.frombuffer(b"buy", np.uint8)
_SELL = np.frombuffer(b"sell", np.uint8)


@njit(nogil=True, cache=True)
def signed_int(buf, pos, end):
    """(value, position after it) of a JSON integer at `pos`, minus sign allowed; position -1 if none."""
    if pos < 0 or pos >= end:
        return 0, -1
    sign = 1
    if buf[pos] == 45:
        sign = -1
        pos += 1
    value = 0
    i = pos
    while i < end and 48 <= buf[i] <= 57 and i - pos < 18:
        value = value * 10 + (np.int64(buf[i]) - 48)
        i += 1
    if i == pos or (i < end and 48 <= buf[i] <= 57):
        return 0, -1
    return sign * value, i


@njit(nogil=True, cache=True)
def _arg(buf, pos, end, symbols, lengths, header):
    """The `arg` object at `pos`: (channel first, stop, position after it); the instrument into
    header[H_INSTRUMENT] (-1: unknown)."""
    stop = skip_value(buf, pos, end)
    if stop < 0 or buf[pos] != 123:
        return -1, -1, -1
    channel_first, channel_stop = -1, -1
    i = pos + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, stop)
        if key_first < 0:
            break
        if is_key(buf, key_first, key_stop, _CHANNEL):
            channel_first, channel_stop = string_span(buf, value, stop)
            i = channel_stop + 1
        elif is_key(buf, key_first, key_stop, _INST_ID):
            first, last = string_span(buf, value, stop)
            header[H_INSTRUMENT] = match_symbol(buf, first, last, symbols, lengths)
            i = last + 1
        else:
            i = skip_value(buf, value, stop)
        i = after_member(buf, i, stop)
        if i < 0:
            break
    return channel_first, channel_stop, stop


@njit(nogil=True, cache=True)
def _book(buf, pos, end, px_dec, qty_dec, sides, prices, qtys, header):
    """The book object at `pos`, its members in one pass: levels into the outputs (asks, bids in
    message order), the rest into the header. Returns an error code."""
    if pos < 0 or buf[pos] != 123:
        return ERR_SYNTAX
    count = np.int64(0)
    seq_fields = 0
    i = pos + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, end)
        if key_first == -1:
            break
        if key_first < 0:
            return ERR_SYNTAX
        err = OK
        if is_key(buf, key_first, key_stop, _ASKS):
            count, i, err = parse_pairs(buf, value, end, px_dec, qty_dec, ASK, sides, prices, qtys, count)
        elif is_key(buf, key_first, key_stop, _BIDS):
            count, i, err = parse_pairs(buf, value, end, px_dec, qty_dec, BID, sides, prices, qtys, count)
        elif is_key(buf, key_first, key_stop, _CHECKSUM):
            header[H_CHECKSUM], i = signed_int(buf, value, end)
            header[H_HAS_CHECKSUM] = header[H_CHECKSUM] != 0
        elif is_key(buf, key_first, key_stop, _SEQ):
            header[H_SEQ], i = signed_int(buf, value, end)
            seq_fields += 1
        elif is_key(buf, key_first, key_stop, _PREV_SEQ):
            header[H_PREV_SEQ], i = signed_int(buf, value, end)
            seq_fields += 1
        elif is_key(buf, key_first, key_stop, _TS):
            ms, ok = integer_value(buf, value, end)
            header[H_TIME] = ms * MS_NS if ok else 0
            i = skip_value(buf, value, end)
        else:
            i = skip_value(buf, value, end)
        if err != OK:
            return err
        i = after_member(buf, i, end)
        if i == -1:
            return ERR_SYNTAX
        if i < -1:
            break
    header[H_LEVELS] = count
    header[H_HAS_SEQ] = seq_fields == 2
    if seq_fields == 1:  # one without the other cannot be chained
        return ERR_SYNTAX
    return OK


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one frame; returns FRAME_*, details in `header`, levels in sides/prices/qtys."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    header[H_INSTRUMENT] = -1
    start = skip_spaces_to(buf, 0, n)
    if equals(buf, start, n, _PONG):
        return FRAME_IGNORED
    if not looks_like_object(buf, n):
        return FRAME_ERROR
    channel_first = channel_stop = action_first = action_stop = data = -1
    i = start + 1
    while data < 0:  # the envelope's members up to `data` (pushes put it last)
        key_first, key_stop, value = member_at(buf, i, n)
        if key_first == -1:
            break
        if key_first < 0:
            return FRAME_ERROR
        if is_key(buf, key_first, key_stop, _EVENT):
            return FRAME_IGNORED
        if is_key(buf, key_first, key_stop, _ARG):
            channel_first, channel_stop, i = _arg(buf, value, n, symbols, lengths, header)
        elif is_key(buf, key_first, key_stop, _ACTION):
            action_first, action_stop = string_span(buf, value, n)
            i = action_stop + 1
        elif is_key(buf, key_first, key_stop, _DATA):
            data = value
            break
        else:
            i = skip_value(buf, value, n)
        i = after_member(buf, i, n)
        if i == -1:
            return FRAME_ERROR
        if i < -1:
            break
    is_trades = equals(buf, channel_first, channel_stop, _TRADES)
    if not is_trades and not equals(buf, channel_first, channel_stop, _BOOKS):
        return FRAME_IGNORED if channel_first >= 0 else FRAME_ERROR
    instrument = header[H_INSTRUMENT]
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_DATA] = data
    if is_trades:
        return FRAME_TRADES
    is_snapshot = equals(buf, action_first, action_stop, _SNAPSHOT)
    err = ERR_SYNTAX
    book = first_element(buf, data, n)
    if is_snapshot or equals(buf, action_first, action_stop, _UPDATE):
        err = _book(buf, book, n, px_decs[instrument], qty_decs[instrument], sides, prices, qtys, header)
    header[H_ERROR] = err
    if err != OK:
        return FRAME_ERROR
    return FRAME_SNAPSHOT if is_snapshot else FRAME_UPDATE


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame: decode; a snapshot, or an update of a live book whose prevSeqId chains
    (when it has one), is applied, cut to the channel depth, checksummed (a non-zero checksum) and
    published; a broken chain is a gap; trades are published. A malformed book message of a live
    book is a loss (the book resyncs). Always returns DONE."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    lengths, px_decs, qty_decs = tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC]
    kind = decode(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_SIDE], scratch[ROW_PRICE],
                  scratch[ROW_QTY], header)
    if kind == FRAME_IGNORED:
        return ACTION_DONE
    if kind == FRAME_TRADES:
        count = parse_trade_objects(frame, header[H_DATA], n, symbols, lengths, px_decs, qty_decs, _TRADE_KEYS, _BUY,
                                    _SELL, np.int64(1), MS_NS, scratch[ROW_BOOK], scratch[ROW_SIDE],
                                    scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_ID], scratch[ROW_TIME],
                                    np.int64(0))
        mark_decoded(out.latency, ts_recv, fresh)
        publish_trades(count, ts_recv, scratch, sync, books, out)
        return ACTION_DONE
    book = header[H_INSTRUMENT]
    if kind != FRAME_SNAPSHOT and kind != FRAME_UPDATE:
        out.counters[-1, C_DECODE_ERRORS] += 1
        if kind == FRAME_ERROR and book >= 0 and sync[book, SY_STATE] == LIVE:
            report_loss(book, R_DECODE_ERROR, ts_recv, sync, books, out)
        return ACTION_DONE
    mark_decoded(out.latency, ts_recv, fresh)
    sync[book, SY_CONN] = conn
    if kind == FRAME_SNAPSHOT:
        load_snapshot(book, 0, header[H_LEVELS], scratch, books, out)
        sync[book, SY_UPDATE_ID] = header[H_SEQ] if header[H_HAS_SEQ] else 0
    elif sync[book, SY_STATE] == LIVE:  # an update: nothing to apply it to before a snapshot
        if header[H_HAS_SEQ]:
            if header[H_PREV_SEQ] != sync[book, SY_UPDATE_ID]:
                report_gap(book, ts_recv, sync, books, out)
                return ACTION_DONE
            sync[book, SY_UPDATE_ID] = header[H_SEQ]
            if header[H_LEVELS] == 0 and header[H_SEQ] == header[H_PREV_SEQ]:
                return ACTION_DONE  # a keep-alive: nothing changed
        else:
            sync[book, SY_UPDATE_ID] += 1  # the 2022 format numbers no update: count the ones applied
        apply_levels(book, 0, header[H_LEVELS], scratch, books, out)
    else:
        return ACTION_DONE
    truncate_to_depth(book, sync, books)
    verdict = CHECK_NONE
    if header[H_HAS_CHECKSUM]:
        computed = okx_checksum(books.levels, books.ladder, books.meta, book, px_decs[book], qty_decs[book],
                                scratch[ROW_WORK])
        verdict = CHECK_OK if computed == header[H_CHECKSUM] else CHECK_FAIL
    settle_checked(book, kind == FRAME_SNAPSHOT, verdict, header[H_TIME], ts_recv, sync, books, out)
    return ACTION_DONE
