"""Coinbase: the Advanced Trade `level2` channel (l2_data) and the Exchange `level2(_batch)` feed.

Advanced Trade: `{"channel":"l2_data","sequence_num":N,"events":[{"type":"snapshot"|"update",
"product_id":..,"updates":[{"side":"bid"|"offer","price_level":..,"new_quantity":..},...]}]}`;
`sequence_num` counts every message of a connection, all channels together, so a jump means that
connection lost messages. Exchange: `{"type":"snapshot","product_id":..,"bids":[[p,q]..],"asks":..}`
and `{"type":"l2update","product_id":..,"changes":[["buy"|"sell",p,q],..]}`.
Quantities are absolute; 0 removes the level.
"""
from __future__ import annotations


import numpy as np
from numba import njit

from shm.fixedpoint import OK

from ...book_kernels import ASK, BID
from ...jsonscan import (ERR_SYNTAX, RFC3339, after_member, decimal_string, equals, find_value, find_value_after,
                         first_element, is_key, key, key_table, looks_like_object, match_symbol, member_at,
                         next_element, parse_int, parse_level_objects, parse_pairs, parse_rfc3339_ns,
                         parse_trade_objects, push_level, skip_spaces_to, skip_value, string_span)
from ...feed_kernels import (C_DECODE_ERRORS, NO_CHECKSUM, R_DECODE_ERROR, R_SEQUENCE_GAP, ROW_BOOK, ROW_ID,
                             ROW_PRICE, ROW_QTY, ROW_SIDE, ROW_TIME, T_LENGTH, T_PX_DEC, T_QTY_DEC, apply_levels,
                             count_frame, load_snapshot, publish_one_trade, publish_trades, report_connection_loss,
                             settle)
from ...publish import mark_decoded
from ...sync import CS_SEQUENCE, LIVE, SY_CONN, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 2  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0
FRAME_L2 = 1  # Advanced: events listed in `events`
FRAME_SNAPSHOT = 2  # Exchange
FRAME_UPDATE = 3  # Exchange
FRAME_OTHER_SEQUENCED = 6  # Advanced, another channel: only its sequence_num matters here
FRAME_TRADE = 7  # Exchange match: the trade is in the header
FRAME_MARKET_TRADES = 8  # Advanced market_trades: decode with decode_market_trades
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5

H_INSTRUMENT = 0  # Exchange frames
H_LEVELS = 1
H_SEQUENCE = 2  # Advanced sequence_num, -1 when absent
H_EVENTS = 3  # Advanced: rows filled in `events`
H_ERROR = 4
H_TRADE_ID = 5
H_PRICE = 6
H_QTY = 7
H_SIDE = 8  # the aggressor: +1 buy, -1 sell
H_TIME = 9
HEADER_WORDS = 12
# `events` rows
E_INSTRUMENT = 0
E_SNAPSHOT = 1
E_FIRST = 2
E_END = 3
E_AFTER = 4  # decoder's own: where the event object ended
EVENT_WORDS = 5
MAX_EVENTS = 64
ACTION_DONE = int(Action.DONE)

_CHANNEL = key("channel")
_SEQUENCE = key("sequence_num")
_EVENTS = key("events")
_TYPE = key("type")
_PRODUCT = key("product_id")
_UPDATES = key("updates")
_SIDE = key("side")
_PRICE_LEVEL = key("price_level")
_NEW_QUANTITY = key("new_quantity")
_BIDS = key("bids")
_ASKS = key("asks")
_CHANGES = key("changes")
_L2_DATA = np.frombuffer(b"l2_data", np.uint8)
_MARKET_TRADES = np.frombuffer(b"market_trades", np.uint8)
_TRADES = key("trades")
_TRADE_KEYS = key_table("product_id", "side", "price", "size", "trade_id", "time")
_BUY_UPPER = np.frombuffer(b"BUY", np.uint8)
_SELL_UPPER = np.frombuffer(b"SELL", np.uint8)
_SNAPSHOT = np.frombuffer(b"snapshot", np.uint8)
_UPDATE = np.frombuffer(b"update", np.uint8)
_L2UPDATE = np.frombuffer(b"l2update", np.uint8)
_BID = np.frombuffer(b"bid", np.uint8)
_OFFER = np.frombuffer(b"offer", np.uint8)
_BUY = np.frombuffer(b"buy", np.uint8)
_SELL = np.frombuffer(b"sell", np.uint8)
_MATCH = np.frombuffer(b"match", np.uint8)
_TRADE_ID = key("trade_id")
_SIZE = key("size")
_PRICE = key("price")
_TIME = key("time")
_TIMESTAMP = key("timestamp")


@njit(nogil=True, cache=True)
def _side_of(buf, pos, end, bid_word, ask_word):
    first, stop = string_span(buf, pos, end)
    if equals(buf, first, stop, bid_word):
        return BID, stop
    if equals(buf, first, stop, ask_word):
        return ASK, stop
    return -1, stop


@njit(nogil=True, cache=True)
def _changes(buf, pos, end, px_dec, qty_dec, sides, prices, qtys, count):
    """Exchange `changes`: [["buy"|"sell", price, size], ...]. Returns (count, where the last change
    ended, error)."""
    item = first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != 91)):
        return count, pos, ERR_SYNTAX
    while item >= 0:
        stop = skip_value(buf, item, end)
        if stop < 0 or buf[item] != 91:
            return count, pos, ERR_SYNTAX
        side, after = _side_of(buf, first_element(buf, item, stop), stop, _BUY, _SELL)
        if side < 0:
            return count, pos, ERR_SYNTAX
        price_at = next_element(buf, after + 1, stop)
        price, after, err = decimal_string(buf, price_at, stop, px_dec)
        if err != OK:
            return count, pos, err
        qty, after, err = decimal_string(buf, next_element(buf, after + 1, stop), stop, qty_dec)
        if err != OK:
            return count, pos, err
        count, err = push_level(sides, prices, qtys, count, side, price, qty)
        if err != OK:
            return count, pos, err
        pos = stop
        item = next_element(buf, stop, end)
    return count, pos, OK


@njit(nogil=True, cache=True)
def _match(buf, n, px_dec, qty_dec, header):
    """Exchange `match`: `side` is the maker order's side, so the aggressor is the other one."""
    header[H_TRADE_ID], after = parse_int(buf, find_value(buf, 0, n, _TRADE_ID), n)
    maker, _ = _side_of(buf, find_value(buf, 0, n, _SIDE), n, _BUY, _SELL)
    header[H_PRICE], _, e1 = decimal_string(buf, find_value(buf, 0, n, _PRICE), n, px_dec)
    header[H_QTY], _, e2 = decimal_string(buf, find_value(buf, 0, n, _SIZE), n, qty_dec)
    first, stop = string_span(buf, find_value(buf, 0, n, _TIME), n)
    header[H_TIME] = parse_rfc3339_ns(buf, first, stop)
    header[H_SIDE] = -1 if maker == BID else 1
    if after < 0 or maker < 0 or e1 != OK or e2 != OK or header[H_TIME] < 0:
        header[H_ERROR] = ERR_SYNTAX if e1 == OK and e2 == OK else max(e1, e2)
        return FRAME_ERROR
    return FRAME_TRADE


_KNOWN = 1
_UNKNOWN = 2


@njit(nogil=True, cache=True)
def _event_members(buf, i, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, count, row):
    """One l2_data event object, members from `i`, in one pass (`updates` is parsed where it stands
    when `product_id` came first, as Coinbase sends it, else after the walk). Fills the event row
    (instrument, is snapshot, first level, end level, position after the object). Returns _KNOWN,
    _UNKNOWN (product not subscribed), -1 (syntax) or -2 (a level error, its code in the end word)."""
    instrument = -2  # not seen yet
    is_snapshot = -1
    updates = -1
    end = count
    while True:
        key_first, key_stop, value = member_at(buf, i, n)
        if key_first == -1:
            i = key_stop
            break
        if key_first < 0:
            return -1
        if is_key(buf, key_first, key_stop, _TYPE):
            first, stop = string_span(buf, value, n)
            is_snapshot = 1 if equals(buf, first, stop, _SNAPSHOT) else (0 if equals(buf, first, stop, _UPDATE)
                                                                           else -1)
            i = stop + 1 if first >= 0 else -1
        elif is_key(buf, key_first, key_stop, _PRODUCT):
            first, stop = string_span(buf, value, n)
            instrument = match_symbol(buf, first, stop, symbols, lengths)
            i = stop + 1 if first >= 0 else -1
        elif is_key(buf, key_first, key_stop, _UPDATES) and instrument >= 0:
            end, i, err = parse_level_objects(buf, value, n, px_decs[instrument], qty_decs[instrument], _PRICE_LEVEL,
                                              _NEW_QUANTITY, np.int64(-1), _SIDE, _BID, _OFFER, sides, prices, qtys,
                                              count)
            if err != OK:
                row[E_END] = err
                return -2
            updates = -2  # parsed
        else:
            if is_key(buf, key_first, key_stop, _UPDATES):
                updates = value
            i = skip_value(buf, value, n)
        i = after_member(buf, i, n)
        if i == -1:
            return -1
        if i < -1:
            i = -i - 2
            break
    if is_snapshot < 0 or updates == -1:
        return -1
    if instrument < 0:
        return _UNKNOWN
    if updates >= 0:
        end, after, err = parse_level_objects(buf, updates, n, px_decs[instrument], qty_decs[instrument],
                                              _PRICE_LEVEL, _NEW_QUANTITY, np.int64(-1), _SIDE, _BID, _OFFER, sides,
                                              prices, qtys, count)
        if err != OK:
            row[E_END] = err
            return -2
    row[E_INSTRUMENT] = instrument
    row[E_SNAPSHOT] = is_snapshot
    row[E_FIRST] = count
    row[E_END] = end
    row[E_AFTER] = i + 1
    return _KNOWN


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header, events):
    """Decode one Coinbase frame (either API); returns FRAME_*, details in `header` and, for
    Advanced l2_data, one `events` row per book event."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    header[H_SEQUENCE] = -1
    if not looks_like_object(buf, n):
        header[H_ERROR] = ERR_SYNTAX
        return FRAME_ERROR
    key_first, key_stop, value = member_at(buf, skip_spaces_to(buf, 0, n) + 1, n)
    kind_at = -1
    if key_first >= 0 and is_key(buf, key_first, key_stop, _CHANNEL):
        channel = value
    elif key_first >= 0 and is_key(buf, key_first, key_stop, _TYPE):
        channel = -1  # Exchange frames lead with their type
        kind_at = value
    else:
        channel = find_value(buf, 0, n, _CHANNEL)
    if channel >= 0:  # Advanced Trade
        first, stop = string_span(buf, find_value_after(buf, channel, n, _TIMESTAMP), n)
        header[H_TIME] = max(0, parse_rfc3339_ns(buf, first, stop))  # the envelope's, ns (0: unreadable)
        header[H_SEQUENCE], after = parse_int(buf, find_value_after(buf, channel, n, _SEQUENCE), n)
        if after < 0:
            header[H_SEQUENCE] = -1
        first, stop = string_span(buf, channel, n)
        if equals(buf, first, stop, _MARKET_TRADES):
            return FRAME_MARKET_TRADES
        if not equals(buf, first, stop, _L2_DATA):
            return FRAME_OTHER_SEQUENCED
        event = first_element(buf, find_value_after(buf, after, n, _EVENTS), n)
        count = np.int64(0)
        rows = 0
        while event >= 0:
            if rows >= MAX_EVENTS or buf[event] != 123:
                header[H_ERROR] = ERR_SYNTAX
                return FRAME_ERROR
            kind = _event_members(buf, event + 1, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, count,
                                  events[rows])
            if kind < 0:
                header[H_ERROR] = ERR_SYNTAX if kind == -1 else events[rows, E_END]
                return FRAME_ERROR
            if kind == _UNKNOWN:
                return FRAME_UNKNOWN_SYMBOL
            count = events[rows, E_END]
            rows += 1
            event = next_element(buf, events[rows - 1, E_AFTER], n)
        header[H_EVENTS] = rows
        header[H_LEVELS] = count
        return FRAME_L2
    kind_first, kind_stop = string_span(buf, kind_at if kind_at >= 0 else find_value(buf, 0, n, _TYPE), n)
    is_snapshot = equals(buf, kind_first, kind_stop, _SNAPSHOT)
    is_match = equals(buf, kind_first, kind_stop, _MATCH)
    if not is_snapshot and not is_match and not equals(buf, kind_first, kind_stop, _L2UPDATE):
        return FRAME_IGNORED  # last_match (history), subscriptions, heartbeats, tickers
    product_first, product_stop = string_span(buf, find_value_after(buf, kind_stop, n, _PRODUCT), n)
    instrument = match_symbol(buf, product_first, product_stop, symbols, lengths)
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_INSTRUMENT] = instrument
    px_dec, qty_dec = px_decs[instrument], qty_decs[instrument]
    if is_match:
        return _match(buf, n, px_dec, qty_dec, header)
    if is_snapshot:
        count, pos, err = parse_pairs(buf, find_value_after(buf, product_stop, n, _BIDS), n, px_dec, qty_dec,
                                      np.int64(BID), sides, prices, qtys, np.int64(0))
        if err == OK:
            count, pos, err = parse_pairs(buf, find_value_after(buf, pos, n, _ASKS), n, px_dec, qty_dec,
                                          np.int64(ASK), sides, prices, qtys, count)
    else:
        count, changes_end, err = _changes(buf, find_value_after(buf, product_stop, n, _CHANGES), n, px_dec, qty_dec,
                                           sides, prices, qtys, 0)
        if err == OK:
            time_at = find_value_after(buf, changes_end, n, _TIME)  # the feed sends it after the changes
            if time_at < 0:
                time_at = find_value_after(buf, product_stop, n, _TIME)
            time_first, time_stop = string_span(buf, time_at, n)
            header[H_TIME] = max(0, parse_rfc3339_ns(buf, time_first, time_stop))
    header[H_LEVELS] = count
    header[H_ERROR] = err
    if err != OK:
        return FRAME_ERROR
    return FRAME_SNAPSHOT if is_snapshot else FRAME_UPDATE


@njit(nogil=True, cache=True)
def decode_market_trades(buf, n, symbols, lengths, px_decs, qty_decs, books, aggressors, prices, qtys, ids, times):
    """Advanced `market_trades`: trades of "update" events ("snapshot" ones are history). `side` is
    the maker's: in our 2026 recording 75 of 76 trades priced at the touch have `side` opposite to
    the side that crossed. Returns the trades written, -1 if malformed, -2 for an unknown product."""
    count = np.int64(0)
    event = first_element(buf, find_value(buf, 0, n, _EVENTS), n)
    while event >= 0:
        stop = skip_value(buf, event, n)
        if stop < 0:
            return -1
        first, last = string_span(buf, find_value(buf, event, stop, _TYPE), stop)
        if equals(buf, first, last, _UPDATE):
            count = parse_trade_objects(buf, find_value(buf, event, stop, _TRADES), stop, symbols, lengths, px_decs,
                                        qty_decs, _TRADE_KEYS, _BUY_UPPER, _SELL_UPPER, np.int64(-1), RFC3339, books,
                                        aggressors, prices, qtys, ids, times, count)
            if count < 0:
                return count
        elif not equals(buf, first, last, _SNAPSHOT):
            return -1
        event = next_element(buf, stop, n)
    return count


@njit(nogil=True, cache=True, _nrt=False)
def _check_sequence(conn, sequence, ts_recv, sync, conn_state, books, out):
    """Advanced: sequence_num counts a connection's messages; a jump invalidates every live book
    that connection carries (they resubscribe)."""
    last = conn_state[conn, CS_SEQUENCE]
    conn_state[conn, CS_SEQUENCE] = sequence
    if last < 0 or sequence == last + 1:
        return
    report_connection_loss(conn, R_SEQUENCE_GAP, ts_recv, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def _levels(book, is_snapshot, first, end, conn, ts_exchange, ts_recv, scratch, sync, books, out):
    """A snapshot (the book goes live on this connection) or an update of a live book."""
    if is_snapshot:
        load_snapshot(book, first, end, scratch, books, out)
        sync[book, SY_UPDATE_ID] = 0
        sync[book, SY_CONN] = conn
    elif sync[book, SY_STATE] == LIVE:
        apply_levels(book, first, end, scratch, books, out)
        sync[book, SY_UPDATE_ID] += 1  # neither API numbers book updates: count the ones applied
    else:
        return  # nothing to apply it to until the next snapshot
    settle(book, is_snapshot, NO_CHECKSUM, ts_exchange, ts_recv, scratch, sync, books, out)


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame of either API: decode, sequence check (Advanced), snapshots loaded and
    updates of live books applied, each settled and published; trades published. Always DONE."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    lengths, px_decs, qty_decs = tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC]
    kind = decode(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_SIDE], scratch[ROW_PRICE],
                  scratch[ROW_QTY], header, events)
    if kind != FRAME_MARKET_TRADES:
        mark_decoded(out.latency, ts_recv, fresh)
    if header[H_SEQUENCE] >= 0:
        _check_sequence(conn, header[H_SEQUENCE], ts_recv, sync, conn_state, books, out)
    if kind == FRAME_L2:
        for row in range(header[H_EVENTS]):
            _levels(events[row, E_INSTRUMENT], events[row, E_SNAPSHOT] == 1, events[row, E_FIRST], events[row, E_END],
                    conn, header[H_TIME], ts_recv, scratch, sync, books, out)
    elif kind == FRAME_SNAPSHOT or kind == FRAME_UPDATE:
        _levels(header[H_INSTRUMENT], kind == FRAME_SNAPSHOT, 0, header[H_LEVELS], conn, header[H_TIME], ts_recv,
                scratch, sync, books, out)
    elif kind == FRAME_MARKET_TRADES:
        count = decode_market_trades(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_BOOK],
                                     scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_ID],
                                     scratch[ROW_TIME])
        mark_decoded(out.latency, ts_recv, fresh)
        publish_trades(count, ts_recv, scratch, sync, books, out)
    elif kind == FRAME_TRADE:
        publish_one_trade(header[H_INSTRUMENT], header[H_TRADE_ID], header[H_TIME], header[H_PRICE], header[H_QTY],
                          header[H_SIDE], ts_recv, scratch, sync, books, out)
    elif kind == FRAME_ERROR:  # maybe a book change we cannot apply: the connection's books resync
        out.counters[-1, C_DECODE_ERRORS] += 1
        report_connection_loss(conn, R_DECODE_ERROR, ts_recv, sync, books, out)
    elif kind == FRAME_UNKNOWN_SYMBOL:
        out.counters[-1, C_DECODE_ERRORS] += 1
    return ACTION_DONE
