"""Kraken WebSocket books, v1 (the format of our real recording) and v2: numba decoders and data.

v1: `[channelID, {...}, ("book-N"), "PAIR"]`: a snapshot object with "as"/"bs", or one or two
update objects with "a"/"b", the CRC32 "c" in the last one. Levels are [price, volume, timestamp
(, "r")] as decimal strings.
v2: `{"channel":"book","type":"snapshot"|"update","data":[{"symbol":..,"bids":[{"price":p,"qty":q}..],
"asks":[..],"checksum":N,..}]}` with JSON numbers; the checksum comes on snapshots too, and the
depth is the subscription's (not in the message).
After every message the book is truncated to the subscribed depth, then the top-10 checksum must
match.
"""
from __future__ import annotations


import numpy as np
from numba import njit

from shm.fixedpoint import OK

from ...book_kernels import ASK, BID
from ...jsonscan import (ERR_SYNTAX, NO_TRADE_ID, NO_WORD, RFC3339, after_member, decimal_string, equals, find_value,
                         first_element, is_key, key, key_table, looks_like_object, match_symbol, member_at,
                         next_element, parse_decimal, parse_int, parse_level_objects, parse_pairs, parse_rfc3339_ns,
                         parse_trade_objects, push_trade, skip_spaces_to, skip_value, string_span)
from ...feed_kernels import (C_DECODE_ERRORS, ROW_BOOK, ROW_ID, ROW_PRICE, ROW_QTY, ROW_SIDE, ROW_TIME, T_LENGTH,
                             T_PX_DEC, T_QTY_DEC, apply_levels, count_frame, load_snapshot, publish_trades, settle)
from ...publish import mark_decoded
from ...sync import LIVE, SY_CONN, SY_DEPTH, SY_PX_PAD, SY_QTY_PAD, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 1  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0  # events (heartbeat, status, acks) and channels not decoded here
FRAME_SNAPSHOT = 1
FRAME_UPDATE = 2
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5
FRAME_TRADES = 6  # v1 trade channel: decode with decode_trades
FRAME_TRADES_V2 = 7  # v2 trade channel: decode with decode_v2_trades
FRAME_ACK = 8  # v2 method response (subscribe ack: carries the book depth)

ACTION_DONE = int(Action.DONE)
ACTION_ACK = int(Action.ACK)

H_INSTRUMENT = 0
H_LEVELS = 1
H_CHECKSUM = 2  # -1 when the message carries none
H_DEPTH = 3  # subscribed depth, from the channel name
H_PX_WIRE_DEC = 4  # decimals the venue printed (snapshot), for the checksum text
H_QTY_WIRE_DEC = 5
H_ERROR = 6
H_TIME = 7  # v2: the book message's timestamp, ns (0: none)
HEADER_WORDS = 8

_SNAP_ASKS = key("as")
_SNAP_BIDS = key("bs")
_ASKS = key("a")
_BIDS = key("b")
_CHECKSUM = key("c")
_BOOK = np.frombuffer(b"book-", np.uint8)
_TRADE_CHANNEL = np.frombuffer(b"trade", np.uint8)


@njit(inline="always", nogil=True)
def _string_before(buf, i):
    """Span (first, stop) of the JSON string ending at or before `i` with only separators after it,
    and the index before its opening quote; first is -1 when there is none."""
    while i > 0 and buf[i] != 34:
        if buf[i] != 32 and buf[i] != 44 and buf[i] != 10:
            return -1, -1, i
        i -= 1
    stop = i
    i -= 1
    while i > 0 and buf[i] != 34:
        i -= 1
    return i + 1, stop, i - 1


@njit(nogil=True, cache=True)
def _last_strings(buf, n):
    """Spans of the last two strings of a JSON array frame: (channel first, stop, pair first, stop),
    -1 where missing."""
    end = n - 1
    while end > 0 and buf[end] != 93:
        end -= 1
    pair_first, pair_stop, i = _string_before(buf, end - 1)
    if pair_first < 0:
        return -1, -1, -1, -1
    channel_first, channel_stop, i = _string_before(buf, i)
    return channel_first, channel_stop, pair_first, pair_stop


@njit(nogil=True, cache=True)
def _fraction_digits(buf, pos, n):
    """Digits after the dot in the first string of the first level of the array at `pos`."""
    i = pos
    while i < n and buf[i] != 34:
        i += 1
    first, stop = string_span(buf, i, n)
    digits = 0
    seen_dot = False
    for k in range(max(first, 0), max(stop, 0)):
        if seen_dot:
            digits += 1
        elif buf[k] == 46:
            seen_dot = True
    return digits, stop


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one v1 frame; returns FRAME_*, details in `header`, levels in sides/prices/qtys
    (asks, then bids, each in message order)."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    header[H_CHECKSUM] = -1
    start = 0
    while start < n and buf[start] == 32:
        start += 1
    if start >= n or buf[start] != 91:  # events are objects: nothing for the book
        return FRAME_IGNORED if start < n and buf[start] == 123 else FRAME_ERROR
    channel_first, channel_stop, pair_first, pair_stop = _last_strings(buf, n)
    if channel_first < 0 or pair_first < 0:
        return FRAME_ERROR
    if equals(buf, channel_first, channel_stop, _TRADE_CHANNEL):
        return FRAME_TRADES
    if channel_stop - channel_first <= len(_BOOK):
        return FRAME_IGNORED
    for k in range(len(_BOOK)):
        if buf[channel_first + k] != _BOOK[k]:
            return FRAME_IGNORED
    depth, after = parse_int(buf, channel_first + len(_BOOK), channel_stop)
    if after != channel_stop or depth <= 0:
        return FRAME_ERROR
    header[H_DEPTH] = depth
    instrument = match_symbol(buf, pair_first, pair_stop, symbols, lengths)
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_INSTRUMENT] = instrument
    px_dec = px_decs[instrument]
    qty_dec = qty_decs[instrument]
    body_end = channel_first - 1
    item = next_element(buf, skip_value(buf, first_element(buf, start, body_end), body_end), body_end)
    count = np.int64(0)
    err = OK
    snapshot = False
    levels = False
    while item >= 0 and buf[item] == 123 and err == OK:  # the book objects, members in one pass
        i = item + 1
        while err == OK:
            key_first, key_stop, value = member_at(buf, i, body_end)
            if key_first == -1:
                i = key_stop
                break
            if key_first < 0:
                err = ERR_SYNTAX
                break
            side = -1
            if is_key(buf, key_first, key_stop, _SNAP_ASKS) or is_key(buf, key_first, key_stop, _SNAP_BIDS):
                side = ASK if is_key(buf, key_first, key_stop, _SNAP_ASKS) else BID
                if not snapshot:  # the decimals Kraken printed, from the first level, for the checksum text
                    header[H_PX_WIRE_DEC], stop = _fraction_digits(buf, value, body_end)
                    header[H_QTY_WIRE_DEC], stop = _fraction_digits(buf, stop + 1, body_end)
                snapshot = True
            elif is_key(buf, key_first, key_stop, _ASKS) or is_key(buf, key_first, key_stop, _BIDS):
                side = ASK if is_key(buf, key_first, key_stop, _ASKS) else BID
            if side >= 0:
                count, i, err = parse_pairs(buf, value, body_end, px_dec, qty_dec, side, sides, prices, qtys, count)
                levels = True
            elif is_key(buf, key_first, key_stop, _CHECKSUM):
                first, stop = string_span(buf, value, body_end)
                checksum, after = parse_int(buf, first, stop)
                if first < 0 or after != stop or checksum > 0xFFFFFFFF:
                    err = ERR_SYNTAX
                header[H_CHECKSUM] = checksum
                i = stop + 1
            else:
                i = skip_value(buf, value, body_end)
            i = after_member(buf, i, body_end)
            if i == -1:
                err = ERR_SYNTAX if err == OK else err
            elif i < -1:
                i = -i - 2
                break
        item = next_element(buf, i + 1, body_end)
    if not levels and err == OK:
        err = ERR_SYNTAX
    header[H_LEVELS] = count
    header[H_ERROR] = err
    if err != OK:
        return FRAME_ERROR
    return FRAME_SNAPSHOT if snapshot else FRAME_UPDATE


_CHANNEL = key("channel")
_METHOD = key("method")
_TYPE = key("type")
_DATA = key("data")
_SYMBOL = key("symbol")
_V2_BIDS = key("bids")
_V2_ASKS = key("asks")
_V2_CHECKSUM = key("checksum")
_TIMESTAMP = key("timestamp")
_PRICE = key("price")
_QTY = key("qty")
_BOOK_CHANNEL = np.frombuffer(b"book", np.uint8)
_TRADE_V2_CHANNEL = np.frombuffer(b"trade", np.uint8)
_V2_TRADE_KEYS = key_table("symbol", "side", "price", "qty", "trade_id", "timestamp")
_BUY = np.frombuffer(b"buy", np.uint8)
_SELL = np.frombuffer(b"sell", np.uint8)
_SNAPSHOT_TYPE = np.frombuffer(b"snapshot", np.uint8)
_UPDATE_TYPE = np.frombuffer(b"update", np.uint8)


@njit(nogil=True, cache=True)
def decode_v2(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one v2 frame; returns FRAME_*, details in `header` (depth 0: the subscription's)."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    header[H_CHECKSUM] = -1
    if not looks_like_object(buf, n):
        return FRAME_ERROR
    opening = skip_spaces_to(buf, skip_spaces_to(buf, 0, n) + 1, n)
    if equals(buf, opening, opening + len(_METHOD), _METHOD):
        return FRAME_ACK  # a method response: its result may hold a "channel" of its own
    first, stop = string_span(buf, find_value(buf, 0, n, _CHANNEL), n)
    if first < 0 and find_value(buf, 0, n, _METHOD) >= 0:
        return FRAME_ACK
    if equals(buf, first, stop, _TRADE_V2_CHANNEL):
        return FRAME_TRADES_V2
    if not equals(buf, first, stop, _BOOK_CHANNEL):
        return FRAME_IGNORED
    first, stop = string_span(buf, find_value(buf, 0, n, _TYPE), n)
    is_snapshot = equals(buf, first, stop, _SNAPSHOT_TYPE)
    if not is_snapshot and not equals(buf, first, stop, _UPDATE_TYPE):
        header[H_ERROR] = ERR_SYNTAX
        return FRAME_ERROR
    book = first_element(buf, find_value(buf, 0, n, _DATA), n)
    end = skip_value(buf, book, n) if book >= 0 else -1
    if end < 0 or next_element(buf, end, n) >= 0:  # exactly one book object
        header[H_ERROR] = ERR_SYNTAX
        return FRAME_ERROR
    first, stop = string_span(buf, find_value(buf, book, end, _SYMBOL), end)
    instrument = match_symbol(buf, first, stop, symbols, lengths)
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_INSTRUMENT] = instrument
    count = np.int64(0)
    err = OK
    for name, side in ((_V2_ASKS, ASK), (_V2_BIDS, BID)):
        if err == OK:
            count, after, err = parse_level_objects(buf, find_value(buf, book, end, name), end,
                                                    px_decs[instrument], qty_decs[instrument], _PRICE, _QTY, side,
                                                    NO_WORD, NO_WORD, NO_WORD, sides, prices, qtys, count)
    checksum, after = parse_int(buf, find_value(buf, book, end, _V2_CHECKSUM), end)
    if after < 0 or checksum > 0xFFFFFFFF:
        err = ERR_SYNTAX if err == OK else err
    header[H_CHECKSUM] = checksum
    header[H_LEVELS] = count
    header[H_ERROR] = err
    first, stop = string_span(buf, find_value(buf, book, end, _TIMESTAMP), end)
    header[H_TIME] = max(0, parse_rfc3339_ns(buf, first, stop))
    if err != OK:
        return FRAME_ERROR
    return FRAME_SNAPSHOT if is_snapshot else FRAME_UPDATE


@njit(nogil=True, cache=True)
def decode_trades(buf, n, symbols, lengths, px_decs, qty_decs, books, aggressors, prices, qtys, ids, times):
    """v1 `[id, [[price, volume, time, side, type, misc], ...], "trade", PAIR]`: side is the taker's
    ("b" buy, "s" sell), time decimal seconds, no trade id (ids are NO_TRADE_ID). Same outputs as
    `parse_trade_objects`: the trades written, -1 on a bad frame, -2 for an unknown pair."""
    channel_first, channel_stop, pair_first, pair_stop = _last_strings(buf, n)
    instrument = match_symbol(buf, pair_first, pair_stop, symbols, lengths)
    if instrument < 0:
        return -2
    start = 1
    while start < n and buf[start] != 44:  # past the channel id
        start += 1
    item = first_element(buf, skip_spaces_to(buf, start + 1, n), n)
    count = 0
    while item >= 0:
        stop = skip_value(buf, item, n)
        field = first_element(buf, item, stop)
        price, after, err = decimal_string(buf, field, stop, px_decs[instrument])
        if err != OK:
            return -1
        qty, after, err = decimal_string(buf, next_element(buf, after + 1, stop), stop, qty_decs[instrument])
        if err != OK:
            return -1
        first, last = string_span(buf, next_element(buf, after + 1, stop), stop)
        when, err = parse_decimal(buf, first, last, 9, False)
        side_first, side_stop = string_span(buf, next_element(buf, last + 1, stop), stop)
        if err != OK or side_stop - side_first != 1 or count >= len(prices):
            return -1
        aggressor = 1 if buf[side_first] == 98 else (-1 if buf[side_first] == 115 else 0)
        if aggressor == 0:
            return -1
        count = push_trade(books, aggressors, prices, qtys, ids, times, count, instrument, aggressor, price, qty,
                           NO_TRADE_ID, when)
        item = next_element(buf, stop, n)
    return count


@njit(nogil=True, cache=True)
def decode_v2_trades(buf, n, symbols, lengths, px_decs, qty_decs, books, aggressors, prices, qtys, ids, times):
    """v2 `{"channel":"trade","type":"update","data":[{symbol, side, price, qty, trade_id, timestamp}]}`;
    `side` is the taker's. A snapshot (the last 50 trades, history) gives 0 trades. Returns the
    trades written, -1 for a malformed frame, -2 for an unknown symbol."""
    first, stop = string_span(buf, find_value(buf, 0, n, _TYPE), n)
    if equals(buf, first, stop, _SNAPSHOT_TYPE):
        return 0
    if not equals(buf, first, stop, _UPDATE_TYPE):
        return -1
    return parse_trade_objects(buf, find_value(buf, 0, n, _DATA), n, symbols, lengths, px_decs, qty_decs,
                               _V2_TRADE_KEYS, _BUY, _SELL, np.int64(1), RFC3339, books, aggressors, prices, qtys, ids,
                               times, np.int64(0))


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received v1 or v2 frame: decode; a snapshot, or an update of a live book, is applied,
    truncated, checksummed and published; trades are published. Returns Action.ACK for a v2
    subscription ack (Python reads the depth from it), else DONE."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    start = skip_spaces_to(frame, 0, n)
    v2 = start < n and frame[start] == 123  # v2 messages are objects; v1 objects are events, ignored either way
    lengths, px_decs, qty_decs = tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC]
    if v2:
        kind = decode_v2(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_SIDE], scratch[ROW_PRICE],
                         scratch[ROW_QTY], header)
    else:
        kind = decode(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_SIDE], scratch[ROW_PRICE],
                      scratch[ROW_QTY], header)
    if kind == FRAME_IGNORED:
        return ACTION_DONE
    if kind == FRAME_ACK:
        return ACTION_ACK
    if kind == FRAME_TRADES or kind == FRAME_TRADES_V2:
        if kind == FRAME_TRADES:
            count = decode_trades(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_BOOK],
                                  scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_ID],
                                  scratch[ROW_TIME])
        else:
            count = decode_v2_trades(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_BOOK],
                                     scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_ID],
                                     scratch[ROW_TIME])
        mark_decoded(out.latency, ts_recv, fresh)
        publish_trades(count, ts_recv, scratch, sync, books, out)
        return ACTION_DONE
    if kind != FRAME_SNAPSHOT and kind != FRAME_UPDATE:
        out.counters[-1, C_DECODE_ERRORS] += 1
        return ACTION_DONE
    mark_decoded(out.latency, ts_recv, fresh)
    book = header[H_INSTRUMENT]
    sync[book, SY_CONN] = conn
    if not v2:
        sync[book, SY_DEPTH] = header[H_DEPTH]
    if kind == FRAME_SNAPSHOT:
        if not v2:  # the checksum text has the decimals Kraken printed, more than the pair's
            sync[book, SY_PX_PAD] = max(0, header[H_PX_WIRE_DEC] - tables[T_PX_DEC, book])
            sync[book, SY_QTY_PAD] = max(0, header[H_QTY_WIRE_DEC] - tables[T_QTY_DEC, book])
        load_snapshot(book, 0, header[H_LEVELS], scratch, books, out)
        sync[book, SY_UPDATE_ID] = 0
    elif sync[book, SY_STATE] == LIVE:  # an update: nothing to apply it to before a snapshot
        apply_levels(book, 0, header[H_LEVELS], scratch, books, out)
        sync[book, SY_UPDATE_ID] += 1  # Kraken numbers no update: count the ones applied
    else:
        return ACTION_DONE
    settle(book, kind == FRAME_SNAPSHOT, header[H_CHECKSUM], header[H_TIME], ts_recv, scratch, sync, books, out)
    return ACTION_DONE
