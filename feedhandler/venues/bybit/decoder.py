"""Bybit v5 public: `orderbook.{depth}`, `publicTrade`, and the market-data records `orderbook.1` (BBO),
`tickers` (funding and open interest) and `allLiquidation`: the numba decoder and step.

Pushes are `{"topic":T,"type":"snapshot"|"delta","ts":ms,"data":...,"cts":ms}`, members in any order
(../shared/docs/derivatives-protocols.md §3.4-3.10). A book's `data` is an object: `s`, `b`/`a`
as `[px, sz]` strings (size "0" deletes), `u` the update id, `seq` the cross sequence. A snapshot,
or any message with `u == 1` (the service restarted), replaces the book. A delta of a live book
must carry the next `u` (last + 1, the rule the doc assumes from "generally continuous"): one with
`u <= last` is stale and dropped, one further on is a gap that invalidates the book, which the feed
resubscribes. A trade push's `data` is an array of `{T, s, S (taker side), v, p, i}`. Acks and
pongs (`op`, `success`) and other topics carry nothing.

`orderbook.1` is the BBO channel (never a book here): a BBO record (SLOT_ID = `u`, time `cts` else
`ts`) per message. A snapshot sets both sides; a delta sets the sides it carries (a side's best is
its highest bid / lowest ask of a size above 0, none if every level it carries is "0") and keeps the
other as last sent, from the feed's per-instrument event rows. `tickers` (linear, inverse: a
snapshot, then deltas of the changed fields only): a FUNDING record with the FIELD_* bits of the
fields present (`fundingRate` signed at RATE_DEC decimals, `nextFundingTime` ms string, `markPrice`,
`indexPrice`; an empty string is absent), SLOT_ID = `cs`, time `ts`; and an OPEN_INTEREST record when
`openInterest` is present (linear: base coin; inverse: USD). `allLiquidation`: `data` an array (the
doc's example) or one object (its table) of `{T, s, S, v, p}`; `S` is the side of the POSITION
liquidated, so the record's side (the liquidation order's) is the opposite and its venue side `S`.
A malformed record message is a decode error and leaves the book alone.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK, parse_decimal
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, RATE_DEC, stats_px_dec

from ...book_kernels import ASK, BID

from ...feed_kernels import (BUY, C_DECODE_ERRORS, CHECK_NONE, KIND_BBO, KIND_FUNDING, KIND_LIQUIDATION,
                             KIND_OPEN_INTEREST, R_DECODE_ERROR, ROW_BOOK, ROW_ID, ROW_PRICE, ROW_QTY, ROW_SIDE,
                             ROW_TIME, SELL, T_LENGTH, T_PX_DEC, T_QTY_DEC, apply_levels, count_frame, load_snapshot,
                             publish_stats, publish_trades, report_gap, report_loss, settle_checked, truncate_to_depth)
from ...jsonscan import (ERR_SYNTAX, after_member, equals, first_element, integer_value, is_key, key,
                         looks_like_object, match_symbol, member_at, next_element, number_at, parse_int, parse_pairs,
                         push_trade, skip_spaces_to, skip_value, string_span)
from ...publish import mark_decoded
from ...sync import LIVE, SY_CONN, SY_DEPTH, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 5  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0  # acks, pongs, topics not decoded here
FRAME_SNAPSHOT = 1
FRAME_DELTA = 2
FRAME_TRADES = 3  # decode with `trades` from H_DATA
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5
FRAME_BBO = 6  # levels as a book's; H_SNAPSHOT
FRAME_TICKER = 7  # decode with `ticker` from H_DATA
FRAME_LIQUIDATIONS = 8  # decode with `liquidations` from H_DATA
FRAME_RECORD_ERROR = 9  # a malformed BBO, ticker or liquidation message: the book is not concerned

TOPIC_BAD = 0  # missing or malformed
TOPIC_OTHER = 1  # not decoded here
TOPIC_BOOK = 2
TOPIC_TRADES = 3
TOPIC_BBO = 4  # orderbook.1; this and the topics after it carry records
TOPIC_TICKERS = 5
TOPIC_LIQUIDATION = 6

ACTION_DONE = int(Action.DONE)

H_INSTRUMENT = 0  # -1 until the instrument is known
H_LEVELS = 1
H_UPDATE = 2  # `u`
H_SEQ = 3  # `seq`
H_TIME = 4  # `cts` (the book in the matching engine), else `ts`, ns
H_ERROR = 5
H_DATA = 6  # position of `data`
H_DEPTH = 7  # the book topic's depth
H_CROSS = 8  # the envelope's `cs` (tickers' cross sequence)
H_TS = 9  # the envelope's `ts`, ns
H_SNAPSHOT = 10  # 1: type "snapshot"
HEADER_WORDS = 11

E_BID_PX, E_BID_QTY, E_ASK_PX, E_ASK_QTY = 0, 1, 2, 3  # the feed's event rows: each instrument's last BBO
EVENT_WORDS = 4

MS_NS = np.int64(1_000_000)
ID_MAX = np.int64(0x7FFF_FFFF_FFFF_FFFF)
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_TOPIC, _TYPE, _TS, _CTS, _CS, _DATA, _OP, _SUCCESS = (key(name) for name in ("topic", "type", "ts", "cts", "cs",
                                                                                "data", "op", "success"))
_RATE, _FUNDING_TIME, _MARK, _INDEX, _OPEN_INTEREST = (key(name) for name in (
    "fundingRate", "nextFundingTime", "markPrice", "indexPrice", "openInterest"))
_BIDS, _ASKS, _UPDATE, _SEQ = key("b"), key("a"), key("u"), key("seq")
_TIME, _SYMBOL, _SIDE, _QTY, _PRICE, _ID = key("T"), key("s"), key("S"), key("v"), key("p"), key("i")
_BOOK_TOPIC = np.frombuffer(b"orderbook.", np.uint8)
_TRADE_TOPIC = np.frombuffer(b"publicTrade.", np.uint8)
_TICKERS_TOPIC = np.frombuffer(b"tickers.", np.uint8)
_LIQUIDATION_TOPIC = np.frombuffer(b"allLiquidation.", np.uint8)
_SNAPSHOT = np.frombuffer(b"snapshot", np.uint8)
_DELTA = np.frombuffer(b"delta", np.uint8)
_BUY_WORD = np.frombuffer(b"Buy", np.uint8)
_SELL_WORD = np.frombuffer(b"Sell", np.uint8)


@njit(inline="always", nogil=True)
def starts_with(buf, first, stop, word):
    """buf[first:stop] begins with `word`."""
    return first >= 0 and stop - first >= len(word) and equals(buf, first, first + len(word), word)


@njit(nogil=True, cache=True)
def trade_id(buf, first, stop):
    """A trade id `i` as an int64: its value when it is a decimal integer that fits, else (the UUIDs
    of linear and inverse) the 63-bit FNV-1a hash of its text, which is as stable as the id."""
    value, after = parse_int(buf, first, stop)
    if after == stop:
        return value
    h = FNV_OFFSET
    for k in range(first, stop):
        h = (h ^ np.uint64(buf[k])) * FNV_PRIME
    return np.int64(h & np.uint64(ID_MAX))


@njit(nogil=True, cache=True)
def _book(buf, pos, end, px_dec, qty_dec, sides, prices, qtys, header):
    """The book object at `pos`, its members in one pass: levels into the outputs (in message
    order), `u` and `seq` into the header. Returns (error code, position after the object); a book
    without `u` is an error."""
    if pos < 0 or pos >= end or buf[pos] != 123:
        return ERR_SYNTAX, -1
    count = np.int64(0)
    has_update = False
    i = pos + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, end)
        if key_first == -1:
            i = key_stop + 1
            break
        if key_first < 0:
            return ERR_SYNTAX, -1
        err = OK
        if is_key(buf, key_first, key_stop, _BIDS):
            count, i, err = parse_pairs(buf, value, end, px_dec, qty_dec, BID, sides, prices, qtys, count)
        elif is_key(buf, key_first, key_stop, _ASKS):
            count, i, err = parse_pairs(buf, value, end, px_dec, qty_dec, ASK, sides, prices, qtys, count)
        elif is_key(buf, key_first, key_stop, _UPDATE):
            header[H_UPDATE], i = parse_int(buf, value, end)
            has_update = i >= 0
        elif is_key(buf, key_first, key_stop, _SEQ):
            header[H_SEQ], i = parse_int(buf, value, end)
        else:
            i = skip_value(buf, value, end)
        if err != OK:
            return err, -1
        i = after_member(buf, i, end)
        if i == -1:
            return ERR_SYNTAX, -1
        if i < -1:
            i = -i - 2 + 1
            break
    header[H_LEVELS] = count
    return (OK, i) if has_update else (ERR_SYNTAX, -1)


@njit(nogil=True, cache=True)
def _topic(buf, first, stop, symbols, lengths, header):
    """The topic buf[first:stop]: TOPIC_*, the instrument (-1: unknown) and a book topic's depth
    into the header."""
    if starts_with(buf, first, stop, _TRADE_TOPIC):
        header[H_INSTRUMENT] = match_symbol(buf, first + len(_TRADE_TOPIC), stop, symbols, lengths)
        return TOPIC_TRADES
    if starts_with(buf, first, stop, _TICKERS_TOPIC):
        header[H_INSTRUMENT] = match_symbol(buf, first + len(_TICKERS_TOPIC), stop, symbols, lengths)
        return TOPIC_TICKERS
    if starts_with(buf, first, stop, _LIQUIDATION_TOPIC):
        header[H_INSTRUMENT] = match_symbol(buf, first + len(_LIQUIDATION_TOPIC), stop, symbols, lengths)
        return TOPIC_LIQUIDATION
    if not starts_with(buf, first, stop, _BOOK_TOPIC):
        return TOPIC_OTHER if first >= 0 else TOPIC_BAD
    header[H_DEPTH], symbol_first = parse_int(buf, first + len(_BOOK_TOPIC), stop)
    if symbol_first < 0 or symbol_first >= stop or buf[symbol_first] != 46:  # the dot after the depth
        return TOPIC_BAD
    header[H_INSTRUMENT] = match_symbol(buf, symbol_first + 1, stop, symbols, lengths)
    return TOPIC_BBO if header[H_DEPTH] == 1 else TOPIC_BOOK


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, sides, prices, qtys, header):
    """Decode one frame in one pass (a book's `data` is parsed where it stands once the topic named
    the book, as Bybit orders them); returns FRAME_*, details in `header`, a book's levels in
    sides/prices/qtys."""
    for k in range(HEADER_WORDS):
        header[k] = 0
    header[H_INSTRUMENT] = -1
    if not looks_like_object(buf, n):
        return FRAME_ERROR
    topic = TOPIC_BAD
    type_first = type_stop = data = -1
    err, parsed = ERR_SYNTAX, False  # the book's `data`: its error once parsed
    ts = cts = np.int64(-1)
    i = skip_spaces_to(buf, 0, n) + 1
    while True:  # every envelope member: the key order varies by category
        key_first, key_stop, value = member_at(buf, i, n)
        if key_first == -1:
            break
        if key_first < 0:
            return FRAME_RECORD_ERROR if topic >= TOPIC_BBO else FRAME_ERROR
        if is_key(buf, key_first, key_stop, _OP) or is_key(buf, key_first, key_stop, _SUCCESS):
            return FRAME_IGNORED
        if is_key(buf, key_first, key_stop, _TOPIC):
            first, i = string_span(buf, value, n)
            topic = _topic(buf, first, i, symbols, lengths, header)
            i = i + 1 if first >= 0 else -1
        elif is_key(buf, key_first, key_stop, _TYPE):
            type_first, type_stop = string_span(buf, value, n)
            i = type_stop + 1 if type_first >= 0 else -1
        elif is_key(buf, key_first, key_stop, _DATA):
            data = value
            instrument = header[H_INSTRUMENT]
            if (topic == TOPIC_BOOK or topic == TOPIC_BBO) and instrument >= 0:
                err, i = _book(buf, value, n, px_decs[instrument], qty_decs[instrument], sides, prices, qtys, header)
                parsed = True
            else:
                i = skip_value(buf, value, n)
        elif is_key(buf, key_first, key_stop, _TS):
            ts, i = parse_int(buf, value, n)
        elif is_key(buf, key_first, key_stop, _CTS):
            cts, i = parse_int(buf, value, n)
        elif is_key(buf, key_first, key_stop, _CS):
            header[H_CROSS], i = parse_int(buf, value, n)
        else:
            i = skip_value(buf, value, n)
        i = after_member(buf, i, n)
        if i == -1:
            return FRAME_RECORD_ERROR if topic >= TOPIC_BBO else FRAME_ERROR
        if i < -1:
            break
    if topic == TOPIC_OTHER:
        return FRAME_IGNORED
    instrument = header[H_INSTRUMENT]
    record = topic == TOPIC_BBO or topic == TOPIC_TICKERS or topic == TOPIC_LIQUIDATION
    if topic == TOPIC_BAD or data < 0:
        return FRAME_RECORD_ERROR if record else FRAME_ERROR
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_DATA] = data
    header[H_TS] = (ts if ts >= 0 else 0) * MS_NS
    if topic == TOPIC_TRADES:
        return FRAME_TRADES
    if topic == TOPIC_TICKERS:
        return FRAME_TICKER
    if topic == TOPIC_LIQUIDATION:
        return FRAME_LIQUIDATIONS
    if not parsed:  # `data` came before the topic
        err, _ = _book(buf, data, n, px_decs[instrument], qty_decs[instrument], sides, prices, qtys, header)
    header[H_TIME] = (cts if cts >= 0 else ts if ts >= 0 else 0) * MS_NS
    is_snapshot = equals(buf, type_first, type_stop, _SNAPSHOT)
    if not is_snapshot and not equals(buf, type_first, type_stop, _DELTA):
        err = ERR_SYNTAX
    header[H_ERROR] = err
    header[H_SNAPSHOT] = is_snapshot
    if err != OK:
        return FRAME_RECORD_ERROR if record else FRAME_ERROR
    if topic == TOPIC_BBO:
        return FRAME_BBO
    return FRAME_SNAPSHOT if is_snapshot else FRAME_DELTA


@njit(inline="always", nogil=True)
def _item_fields(buf, item, end, symbols, lengths):
    """The members of one publicTrade or allLiquidation object at `item`, in any order: (status,
    position after it, book, side (BUY/SELL from "Buy"/"Sell", 0: neither), time ns (-1: none), where
    the price and the size are (-1: absent), the trade id's span). status: 0, -1 malformed or without a
    symbol, -2 an unknown symbol."""
    book = side = 0
    price_at = qty_at = -1
    when = id_first = id_stop = -1
    status = -1  # until a symbol is found
    i = item + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, end)
        if key_first == -1:
            i = key_stop + 1
            break
        if key_first < 0:
            return -1, i, book, side, when, price_at, qty_at, id_first, id_stop
        if is_key(buf, key_first, key_stop, _SYMBOL):
            first, last = string_span(buf, value, end)
            book = match_symbol(buf, first, last, symbols, lengths)
            if book < 0:
                return -2, i, book, side, when, price_at, qty_at, id_first, id_stop
            status = 0
        elif is_key(buf, key_first, key_stop, _SIDE):
            first, last = string_span(buf, value, end)
            side = BUY if equals(buf, first, last, _BUY_WORD) else (SELL if equals(buf, first, last, _SELL_WORD) else 0)
        elif is_key(buf, key_first, key_stop, _ID):
            id_first, id_stop = string_span(buf, value, end)
        elif is_key(buf, key_first, key_stop, _TIME):
            ms, ok = integer_value(buf, value, end)
            when = ms * MS_NS if ok else -1
        elif is_key(buf, key_first, key_stop, _PRICE):
            price_at = value
        elif is_key(buf, key_first, key_stop, _QTY):
            qty_at = value
        i = after_member(buf, skip_value(buf, value, end), end)
        if i == -1:
            return -1, i, book, side, when, price_at, qty_at, id_first, id_stop
        if i < -1:
            i = -i - 2 + 1
            break
    return status, i, book, side, when, price_at, qty_at, id_first, id_stop


@njit(nogil=True, cache=True)
def trades(buf, pos, end, symbols, lengths, px_decs, qty_decs, books, aggressors, prices, qtys, ids, times):
    """The trade objects of the array at `pos`, members in any order, into the outputs. Returns the
    count, -1 for a malformed trade, -2 for an unknown symbol."""
    item = first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != 91)):
        return -1
    count = 0
    while item >= 0:
        if buf[item] != 123 or count >= len(prices):
            return -1
        status, i, book, aggressor, when, price_at, qty_at, id_first, id_stop = _item_fields(buf, item, end, symbols,
                                                                                             lengths)
        if status < 0:
            return status
        if aggressor == 0 or when < 0 or id_first < 0:
            return -1
        price, _, err = number_at(buf, price_at, end, px_decs[book])
        qty, _, err2 = number_at(buf, qty_at, end, qty_decs[book])
        if err != OK or err2 != OK:
            return -1
        count = push_trade(books, aggressors, prices, qtys, ids, times, count, book, aggressor, price, qty,
                           trade_id(buf, id_first, id_stop), when)
        item = next_element(buf, i, end)
    return count
@njit(nogil=True, cache=True)
def _string_decimal(buf, pos, end, decimals):
    """A decimal written as a JSON string at `pos`, a sign allowed: (mantissa, position after it,
    error, present); the empty string is absent (Bybit leaves fields it has no value for empty)."""
    first, stop = string_span(buf, pos, end)
    if first < 0:
        return np.int64(0), -1, ERR_SYNTAX, False
    if first == stop:
        return np.int64(0), stop + 1, OK, False
    value, err = parse_decimal(buf, first, stop, decimals, True)
    return value, stop + 1, err, True


@njit(nogil=True, cache=True)
def ticker(buf, pos, end, px_dec, qty_dec):
    """The funding and open-interest fields of the ticker object at `pos` (the others skipped):
    (ok, FIELD_* bits present, rate, next funding ns, mark, index, open interest present, open interest)."""
    rate = funding_ns = mark = index = open_interest = np.int64(0)
    fields = np.int64(0)
    has_open_interest = False
    if pos < 0 or pos >= end or buf[pos] != 123:
        return False, fields, rate, funding_ns, mark, index, has_open_interest, open_interest
    i = pos + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, end)
        if key_first == -1:
            break
        if key_first < 0:
            return False, fields, rate, funding_ns, mark, index, has_open_interest, open_interest
        err, present, number = OK, False, np.int64(0)
        if is_key(buf, key_first, key_stop, _RATE):
            number, i, err, present = _string_decimal(buf, value, end, RATE_DEC)
            if present:
                rate, fields = number, fields | FIELD_RATE
        elif is_key(buf, key_first, key_stop, _FUNDING_TIME):
            number, i, err, present = _string_decimal(buf, value, end, 0)
            if number > ID_MAX // MS_NS:  # not a time in ns
                err = ERR_SYNTAX
            if present:
                funding_ns, fields = number * MS_NS, fields | FIELD_FUNDING_TIME
        elif is_key(buf, key_first, key_stop, _MARK):
            number, i, err, present = _string_decimal(buf, value, end, stats_px_dec(px_dec))
            if present:
                mark, fields = number, fields | FIELD_MARK
        elif is_key(buf, key_first, key_stop, _INDEX):
            number, i, err, present = _string_decimal(buf, value, end, stats_px_dec(px_dec))
            if present:
                index, fields = number, fields | FIELD_INDEX
        elif is_key(buf, key_first, key_stop, _OPEN_INTEREST):
            number, i, err, present = _string_decimal(buf, value, end, qty_dec)
            if present:
                open_interest, has_open_interest = number, True
        else:
            i = skip_value(buf, value, end)
        if err != OK or number < 0 and not is_key(buf, key_first, key_stop, _RATE):
            return False, fields, rate, funding_ns, mark, index, has_open_interest, open_interest
        i = after_member(buf, i, end)
        if i == -1:
            return False, fields, rate, funding_ns, mark, index, has_open_interest, open_interest
        if i < -1:
            break
    return True, fields, rate, funding_ns, mark, index, has_open_interest, open_interest


@njit(nogil=True, cache=True)
def liquidations(buf, pos, end, symbols, lengths, px_decs, qty_decs, books, sides, prices, qtys, times):
    """The liquidation objects at `pos` (an array of them, or one object), members in any order, into
    the outputs (sides: the position's, as sent). Returns the count, -1 for a malformed one, -2 for
    an unknown symbol."""
    single = 0 <= pos < end and buf[pos] == 123
    item = pos if single else first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != 91)):
        return -1
    count = 0
    while item >= 0:
        if buf[item] != 123 or count >= len(prices):
            return -1
        status, i, book, side, when, price_at, qty_at, _, _ = _item_fields(buf, item, end, symbols, lengths)
        if status < 0:
            return status
        if side == 0 or when < 0 or price_at < 0 or qty_at < 0:
            return -1
        price, _, err = number_at(buf, price_at, end, stats_px_dec(px_decs[book]))
        qty, _, err2 = number_at(buf, qty_at, end, qty_decs[book])
        if err != OK or err2 != OK:
            return -1
        books[count], sides[count], prices[count], qtys[count], times[count] = book, side, price, qty, when
        count += 1
        item = -1 if single else next_element(buf, i, end)
    return count

@njit(inline="always", nogil=True)
def _best(side, count, sides, prices, qtys):
    """(whether the message carries `side`, its best level of a size above 0: price, size; 0, 0 if none)."""
    seen = False
    best_px = best_qty = np.int64(0)
    for k in range(count):
        if sides[k] != side:
            continue
        seen = True
        better = prices[k] > best_px if side == BID else prices[k] < best_px
        if qtys[k] > 0 and (best_qty == 0 or better):
            best_px, best_qty = prices[k], qtys[k]
    return seen, best_px, best_qty


@njit(nogil=True, cache=True)
def bbo(book, count, is_snapshot, sides, prices, qtys, last):
    """The instrument's BBO after this `orderbook.1` message, into its row of `last`: a snapshot sets
    both sides, a delta the sides it carries (each side's best level of a size above 0, none if it
    carries only "0" sizes)."""
    seen, px, qty = _best(BID, count, sides, prices, qtys)
    if seen or is_snapshot:
        last[book, E_BID_PX], last[book, E_BID_QTY] = px, qty
    seen, px, qty = _best(ASK, count, sides, prices, qtys)
    if seen or is_snapshot:
        last[book, E_ASK_PX], last[book, E_ASK_QTY] = px, qty


@njit(nogil=True, cache=True)
def publish_records(kind, frame, n, ts_recv, fresh, feed, out):
    """A decoded BBO, ticker or liquidation message (FRAME_BBO, FRAME_TICKER, FRAME_LIQUIDATIONS) as
    its records; a malformed one counted as a decode error."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    book = header[H_INSTRUMENT]
    px_decs, qty_decs = tables[T_PX_DEC], tables[T_QTY_DEC]
    zero = np.int64(0)
    if kind == FRAME_BBO:
        bbo(book, header[H_LEVELS], header[H_SNAPSHOT] == 1, scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY],
            events)
        mark_decoded(out.latency, ts_recv, fresh)
        publish_stats(KIND_BBO, book, header[H_UPDATE], header[H_TIME], ts_recv, (
            events[book, E_BID_PX], events[book, E_BID_QTY], events[book, E_ASK_PX], events[book, E_ASK_QTY], zero),
            out)
        return
    if kind == FRAME_TICKER:
        ok, fields, rate, funding_ns, mark, index, has_open_interest, open_interest = ticker(
            frame, header[H_DATA], n, px_decs[book], qty_decs[book])
        if not ok:
            out.counters[-1, C_DECODE_ERRORS] += 1
            return
        mark_decoded(out.latency, ts_recv, fresh)
        if fields:
            publish_stats(KIND_FUNDING, book, header[H_CROSS], header[H_TS], ts_recv,
                          (rate, funding_ns, mark, index, fields), out)
        if has_open_interest:
            publish_stats(KIND_OPEN_INTEREST, book, header[H_CROSS], header[H_TS], ts_recv,
                          (open_interest, zero, zero, zero, zero), out)
        return
    count = liquidations(frame, header[H_DATA], n, symbols, tables[T_LENGTH], px_decs, qty_decs, scratch[ROW_BOOK],
                         scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_TIME])
    if count < 0:
        out.counters[-1, C_DECODE_ERRORS] += 1
        return
    mark_decoded(out.latency, ts_recv, fresh)
    for k in range(count):
        side = scratch[ROW_SIDE, k]
        publish_stats(KIND_LIQUIDATION, scratch[ROW_BOOK, k], zero, scratch[ROW_TIME, k], ts_recv,
                      (scratch[ROW_PRICE, k], scratch[ROW_QTY, k], -side, side, zero), out)


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame: decode; a snapshot (or `u == 1`) replaces the book, a delta of a live book
    whose `u` is the next one is applied, a stale one dropped, a later one is a gap; the book is cut
    to its topic's depth and published. Trades, BBOs, funding, open interest and liquidations are
    published. A malformed book message of a live book is a loss (the book resyncs). Always returns
    DONE."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    lengths, px_decs, qty_decs = tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC]
    kind = decode(frame, n, symbols, lengths, px_decs, qty_decs, scratch[ROW_SIDE], scratch[ROW_PRICE],
                  scratch[ROW_QTY], header)
    if kind == FRAME_IGNORED:
        return ACTION_DONE
    if kind == FRAME_BBO or kind == FRAME_TICKER or kind == FRAME_LIQUIDATIONS:
        publish_records(kind, frame, n, ts_recv, fresh, feed, out)
        return ACTION_DONE
    if kind == FRAME_TRADES:
        count = trades(frame, header[H_DATA], n, symbols, lengths, px_decs, qty_decs, scratch[ROW_BOOK],
                       scratch[ROW_SIDE], scratch[ROW_PRICE], scratch[ROW_QTY], scratch[ROW_ID], scratch[ROW_TIME])
        mark_decoded(out.latency, ts_recv, fresh)
        publish_trades(count, ts_recv, scratch, sync, books, out)
        return ACTION_DONE
    book = header[H_INSTRUMENT]
    if kind != FRAME_SNAPSHOT and kind != FRAME_DELTA:
        out.counters[-1, C_DECODE_ERRORS] += 1
        if kind == FRAME_ERROR and book >= 0 and sync[book, SY_STATE] == LIVE:
            report_loss(book, R_DECODE_ERROR, ts_recv, sync, books, out)
        return ACTION_DONE
    mark_decoded(out.latency, ts_recv, fresh)
    update = header[H_UPDATE]
    is_snapshot = kind == FRAME_SNAPSHOT or update == 1
    if is_snapshot:
        sync[book, SY_CONN] = conn
        sync[book, SY_DEPTH] = header[H_DEPTH]
        load_snapshot(book, 0, header[H_LEVELS], scratch, books, out)
    elif sync[book, SY_STATE] == LIVE:  # a delta: nothing to apply it to before a snapshot
        last = sync[book, SY_UPDATE_ID]
        if update <= last:
            return ACTION_DONE  # stale or repeated
        if update != last + 1:
            report_gap(book, ts_recv, sync, books, out)
            return ACTION_DONE
        apply_levels(book, 0, header[H_LEVELS], scratch, books, out)
    else:
        return ACTION_DONE
    sync[book, SY_UPDATE_ID] = update
    truncate_to_depth(book, sync, books)
    settle_checked(book, is_snapshot, CHECK_NONE, header[H_TIME], ts_recv, sync, books, out)
    return ACTION_DONE
