"""OKX v5 public `books`, `trades` and the derivatives market-data channels: the numba decoder and step.

Pushes are `{"arg":{"channel":C,"instId":I},"action":"snapshot"|"update","data":[{...}]}`
(../shared/docs/derivatives-protocols.md §2.4-2.7). A `books` object has `asks`/`bids` as
`[px, sz, "0", numOrders]` strings (size "0" deletes), `ts` (ms string), `checksum` (signed int32,
0 since 2026-06-23: then not checked) and, since late 2022, `prevSeqId`/`seqId`: an update must
have prevSeqId == the last seqId (keep-alives repeat it with no levels, a maintenance reset may go
lower and is still chained); a mismatch is a gap. A snapshot has prevSeqId -1. After every change
the book is cut to the channel's 400 levels and the checksum of the top 25 verified; a gap or a
mismatch invalidates that book, which the feed resubscribes. Events (acks, errors, notices) and the
`pong` text carry nothing for books.

The market-data channels (§2.4, §2.8) become ring records through publish_stats, all decoded before
any is published (a malformed message publishes nothing, is a decode error and leaves the book be):
`bbo-tbt` (one level a side, `seqId`) a BBO; `funding-rate` (`fundingRate`, `fundingTime`: when the
current rate is paid) and `mark-price` (`markPx`) a FUNDING record with the fields they carry;
`open-interest` (`oi` in contracts) an OPEN_INTEREST; `liquidation-orders`, subscribed per instType,
one LIQUIDATION per `details[]` entry (`side`: the liquidation order's side, kept as the venue side
too; `bkPx`, `sz` in contracts, `ts`); its entries for instruments not carried are skipped;
`index-tickers` (`idxPx`, keyed by the index, e.g. BTC-USDT: the uly of BTC-USDT-SWAP and of the
BTC-USDT-YYMMDD futures) a FUNDING record carrying the index price (FIELD_INDEX) for each carried
swap or future of that index.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK

from ...book_kernels import ASK, BID
from ...checksum import okx_checksum
from shm.fixedpoint import parse_decimal
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, RATE_DEC, stats_px_dec

from ...feed_kernels import (C_DECODE_ERRORS, CHECK_FAIL, CHECK_NONE, CHECK_OK, KIND_BBO, KIND_FUNDING,
                             KIND_LIQUIDATION, KIND_OPEN_INTEREST, R_DECODE_ERROR, ROW_BOOK, ROW_ID, ROW_PRICE,
                             ROW_QTY, ROW_SIDE, ROW_TIME, ROW_WORK, T_LENGTH, T_PX_DEC, T_QTY_DEC, BUY, SELL,
                             apply_levels, count_frame, load_snapshot, publish_stats, publish_trades, report_gap,
                             report_loss, settle_checked, truncate_to_depth)
from ...jsonscan import (COMMA, ERR_SYNTAX, RBRACKET, after_member, decimal_string, equals, find_value, first_element,
                         integer_value, is_key, key, key_table, looks_like_object, match_symbol, member_at,
                         next_element, parse_pairs, parse_trade_objects, skip_spaces_to, skip_value, string_span)
from ...publish import mark_decoded
from ...sync import LIVE, SY_CONN, SY_STATE, SY_UPDATE_ID, Action

PROTOCOL_ID = 4  # this decoder's branch in venues.dispatch

FRAME_IGNORED = 0  # events, `pong`, channels not decoded here (tickers)
FRAME_SNAPSHOT = 1
FRAME_UPDATE = 2
FRAME_TRADES = 3  # decode with parse_trade_objects from H_DATA
FRAME_ERROR = 4
FRAME_UNKNOWN_SYMBOL = 5
FRAME_RECORDS = 6  # market-data records in the scratch columns (REC_*): H_KIND, H_LEVELS of them
FRAME_BAD_RECORD = 7  # a malformed market-data message: a decode error that costs no book

# the channels decoded here
CH_OTHER, CH_BOOKS, CH_TRADES, CH_BBO, CH_FUNDING, CH_MARK, CH_OPEN_INTEREST, CH_LIQUIDATION, CH_INDEX = range(9)

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
H_KIND = 10  # FRAME_RECORDS: the records' Kind
HEADER_WORDS = 11

# A market-data record decoded, one scratch column each: its book and exchange time, and the five
# words publish_stats takes (REC_V4: a funding record's fields; a BBO's update id, its fifth word 0).
REC_BOOK, REC_TIME = ROW_BOOK, ROW_TIME
REC_V0, REC_V1, REC_V2, REC_V3, REC_V4 = ROW_SIDE, ROW_PRICE, ROW_QTY, ROW_ID, ROW_WORK

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
_BBO_TBT = np.frombuffer(b"bbo-tbt", np.uint8)
_FUNDING_RATE = np.frombuffer(b"funding-rate", np.uint8)
_MARK_PRICE = np.frombuffer(b"mark-price", np.uint8)
_OPEN_INTEREST = np.frombuffer(b"open-interest", np.uint8)
_LIQUIDATION_ORDERS = np.frombuffer(b"liquidation-orders", np.uint8)
_INDEX_TICKERS = np.frombuffer(b"index-tickers", np.uint8)
_IDX_PX = key("idxPx")
_DASH = 45
_FUNDING_RATE_KEY = key("fundingRate")
_FUNDING_TIME = key("fundingTime")
_MARK_PX = key("markPx")
_OI = key("oi")
_DETAILS = key("details")
_SIDE = key("side")
_BK_PX = key("bkPx")
_SZ = key("sz")
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
def channel_of(buf, first, stop):
    """The CH_* code of the channel name buf[first:stop]."""
    if equals(buf, first, stop, _BOOKS):
        return CH_BOOKS
    if equals(buf, first, stop, _TRADES):
        return CH_TRADES
    if equals(buf, first, stop, _BBO_TBT):
        return CH_BBO
    if equals(buf, first, stop, _FUNDING_RATE):
        return CH_FUNDING
    if equals(buf, first, stop, _MARK_PRICE):
        return CH_MARK
    if equals(buf, first, stop, _OPEN_INTEREST):
        return CH_OPEN_INTEREST
    if equals(buf, first, stop, _LIQUIDATION_ORDERS):
        return CH_LIQUIDATION
    if equals(buf, first, stop, _INDEX_TICKERS):
        return CH_INDEX
    return CH_OTHER


@njit(nogil=True, cache=True)
def signed_decimal_string(buf, pos, end, decimals):
    """(mantissa, position of the closing quote, error) of a quoted decimal that may be negative."""
    first, stop = string_span(buf, pos, end)
    if first < 0:
        return 0, -1, ERR_SYNTAX
    value, err = parse_decimal(buf, first, stop, decimals, True)
    return value, stop, err


@njit(nogil=True, cache=True)
def cut_decimal_string(buf, pos, end, decimals):
    """(mantissa, position of the closing quote, error) of a quoted decimal cut to `decimals`: OKX
    prints open interest with binary-float noise past the lot (the push example of its docs'
    open-interest channel: "2216113.01000000309" contracts of lot 0.01); the digits cut must still be
    digits."""
    first, stop = string_span(buf, pos, end)
    if first < 0:
        return 0, -1, ERR_SYNTAX
    cut = stop
    for i in range(first, stop):
        if buf[i] == 46:
            cut = min(stop, i + 1 + decimals)
            break
    for i in range(cut, stop):
        if not 48 <= buf[i] <= 57:
            return 0, -1, ERR_SYNTAX
    value, err = parse_decimal(buf, first, cut, decimals, False)
    return value, stop, err


@njit(nogil=True, cache=True)
def ms_string(buf, pos, end):
    """(ns, position after the value) of a ms time string such as `ts`; position -1 if it is not one."""
    value, ok = integer_value(buf, pos, end)
    if not ok or value > 9_000_000_000_000:  # past year 2255: not a time in ms
        return 0, -1
    return value * MS_NS, skip_value(buf, pos, end)


@njit(nogil=True, cache=True)
def top_level(buf, pos, end, px_dec, qty_dec):
    """(price, qty, position after, error) of a bbo-tbt side: `[]` (no level: 0, 0) or one level
    `[px, sz, "0", orders]`."""
    if pos < 0 or pos >= end or buf[pos] != 91:
        return 0, 0, -1, ERR_SYNTAX
    i = skip_spaces_to(buf, pos + 1, end)
    if i < end and buf[i] == RBRACKET:
        return 0, 0, i + 1, OK
    level_end = skip_value(buf, i, end)
    if level_end < 0 or buf[i] != 91:
        return 0, 0, -1, ERR_SYNTAX
    price, stop, err = decimal_string(buf, skip_spaces_to(buf, i + 1, end), end, px_dec)
    if err != OK:
        return 0, 0, -1, err
    i = skip_spaces_to(buf, stop + 1, end)
    if i >= end or buf[i] != COMMA:
        return 0, 0, -1, ERR_SYNTAX
    qty, stop, err = decimal_string(buf, skip_spaces_to(buf, i + 1, end), end, qty_dec)
    if err != OK:
        return 0, 0, -1, err
    i = skip_spaces_to(buf, level_end, end)
    if i >= end or buf[i] != RBRACKET:  # one level a side
        return 0, 0, -1, ERR_SYNTAX
    return price, qty, i + 1, OK


# the members each per-instrument channel's data object must carry (bits: _SEEN_*)
_SEEN_TS, _SEEN_A, _SEEN_B, _SEEN_C = 1, 2, 4, 8
_REQUIRED = np.array([0, 0, 0, _SEEN_TS | _SEEN_A | _SEEN_B | _SEEN_C, _SEEN_TS | _SEEN_A | _SEEN_B,
                      _SEEN_TS | _SEEN_A, _SEEN_TS | _SEEN_A, 0, 0], np.int64)  # by CH_*


@njit(nogil=True, cache=True)
def instrument_record(buf, pos, end, channel, book, px_dec, qty_dec, scratch, col):
    """One data object of bbo-tbt, funding-rate, mark-price or open-interest (the instrument is the
    arg's) into scratch column `col`, its members in one pass; returns an error code."""
    if pos < 0 or buf[pos] != 123:
        return ERR_SYNTAX
    for row in (REC_V0, REC_V1, REC_V2, REC_V3, REC_V4):
        scratch[row, col] = 0
    scratch[REC_BOOK, col] = book
    seen = 0
    i = pos + 1
    while True:
        key_first, key_stop, value = member_at(buf, i, end)
        if key_first == -1:
            break
        if key_first < 0:
            return ERR_SYNTAX
        err = OK
        i = -1
        if is_key(buf, key_first, key_stop, _TS):
            scratch[REC_TIME, col], i = ms_string(buf, value, end)
            seen |= _SEEN_TS
        elif channel == CH_BBO and (is_key(buf, key_first, key_stop, _BIDS) or is_key(buf, key_first, key_stop, _ASKS)):
            ask = is_key(buf, key_first, key_stop, _ASKS)
            price, qty, i, err = top_level(buf, value, end, px_dec, qty_dec)
            scratch[REC_V2 if ask else REC_V0, col] = price
            scratch[REC_V3 if ask else REC_V1, col] = qty
            seen |= _SEEN_B if ask else _SEEN_A
        elif channel == CH_BBO and is_key(buf, key_first, key_stop, _SEQ):
            scratch[REC_V4, col], i = signed_int(buf, value, end)
            seen |= _SEEN_C
        elif channel == CH_FUNDING and is_key(buf, key_first, key_stop, _FUNDING_RATE_KEY):
            scratch[REC_V0, col], i, err = signed_decimal_string(buf, value, end, RATE_DEC)
            i += 1
            seen |= _SEEN_A
        elif channel == CH_FUNDING and is_key(buf, key_first, key_stop, _FUNDING_TIME):
            scratch[REC_V1, col], i = ms_string(buf, value, end)
            seen |= _SEEN_B
        elif channel == CH_MARK and is_key(buf, key_first, key_stop, _MARK_PX):
            scratch[REC_V2, col], i, err = decimal_string(buf, value, end, stats_px_dec(px_dec))
            i += 1
            seen |= _SEEN_A
        elif channel == CH_OPEN_INTEREST and is_key(buf, key_first, key_stop, _OI):
            scratch[REC_V0, col], i, err = cut_decimal_string(buf, value, end, qty_dec)
            i += 1
            seen |= _SEEN_A
        else:
            i = skip_value(buf, value, end)
        if err != OK or i <= 0:
            return ERR_SYNTAX if err == OK else err
        i = after_member(buf, i, end)
        if i == -1:
            return ERR_SYNTAX
        if i < -1:
            break
    if seen & _REQUIRED[channel] != _REQUIRED[channel]:
        return ERR_SYNTAX
    if channel == CH_FUNDING:
        scratch[REC_V4, col] = FIELD_RATE | FIELD_FUNDING_TIME
    elif channel == CH_MARK:
        scratch[REC_V4, col] = FIELD_MARK
    return OK


@njit(nogil=True, cache=True)
def liquidation_details(buf, pos, end, book, px_dec, qty_dec, scratch, count):
    """The `details` array at `pos` of one instrument's liquidations, a record per entry from
    column `count`: (new count, error)."""
    item = first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != 91)):
        return count, ERR_SYNTAX
    while item >= 0:
        stop = skip_value(buf, item, end)
        if stop < 0 or buf[item] != 123 or count >= scratch.shape[1]:
            return count, ERR_SYNTAX
        first, last = string_span(buf, find_value(buf, item, stop, _SIDE), stop)
        side = BUY if equals(buf, first, last, _BUY) else SELL if equals(buf, first, last, _SELL) else 0
        price, after, err = decimal_string(buf, find_value(buf, item, stop, _BK_PX), stop, stats_px_dec(px_dec))
        qty, after, err2 = decimal_string(buf, find_value(buf, item, stop, _SZ), stop, qty_dec)
        when, after = ms_string(buf, find_value(buf, item, stop, _TS), stop)
        if side == 0 or err != OK or err2 != OK or after < 0:
            return count, ERR_SYNTAX if err == OK else err
        scratch[REC_BOOK, count] = book
        scratch[REC_TIME, count] = when
        scratch[REC_V0, count] = price
        scratch[REC_V1, count] = qty
        scratch[REC_V2, count] = side
        scratch[REC_V3, count] = side  # the venue's side is the order's side (§5.1)
        scratch[REC_V4, count] = 0
        count += 1
        item = next_element(buf, stop, end)
    return count, OK


@njit(nogil=True, cache=True)
def index_records(buf, pos, end, symbols, lengths, px_decs, scratch, count):
    """One index-tickers data object at `pos`: a funding record carrying only the index price
    (FIELD_INDEX) for every carried instrument of that index (its instId followed by `-`: the swap, the
    futures; not the spot pair of the same name), from column `count`: (new count, error)."""
    first, last = string_span(buf, find_value(buf, pos, end, _INST_ID), end)
    price_at = find_value(buf, pos, end, _IDX_PX)
    when, after = ms_string(buf, find_value(buf, pos, end, _TS), end)
    if first < 0 or price_at < 0 or after < 0:
        return count, ERR_SYNTAX
    size = last - first
    for book in range(len(lengths)):
        if lengths[book] <= size or symbols[book, size] != _DASH:
            continue
        same = True
        for k in range(size):
            if symbols[book, k] != buf[first + k]:
                same = False
                break
        if not same:
            continue
        price, _, err = decimal_string(buf, price_at, end, stats_px_dec(px_decs[book]))
        if err != OK or count >= scratch.shape[1]:
            return count, ERR_SYNTAX if err == OK else err
        for row in (REC_V0, REC_V1, REC_V2):
            scratch[row, count] = 0
        scratch[REC_BOOK, count] = book
        scratch[REC_TIME, count] = when
        scratch[REC_V3, count] = price
        scratch[REC_V4, count] = FIELD_INDEX
        count += 1
    return count, OK


@njit(nogil=True, cache=True)
def records(buf, data, end, channel, symbols, lengths, px_decs, qty_decs, scratch, header):
    """Every record of a market-data push's `data` array into the scratch columns (count into
    header[H_LEVELS], Kind into header[H_KIND]); returns FRAME_RECORDS or FRAME_BAD_RECORD.
    liquidation-orders names the instrument in each data object, index-tickers the index; the others the
    instrument in the arg."""
    header[H_KIND] = (KIND_BBO if channel == CH_BBO else KIND_OPEN_INTEREST if channel == CH_OPEN_INTEREST
                      else KIND_LIQUIDATION if channel == CH_LIQUIDATION else KIND_FUNDING)
    item = first_element(buf, data, end)
    if data < 0 or (item < 0 and (data >= end or buf[data] != 91)):
        return FRAME_BAD_RECORD
    count = np.int64(0)
    book = header[H_INSTRUMENT]
    while item >= 0:
        stop = skip_value(buf, item, end)
        if stop < 0 or buf[item] != 123 or count >= scratch.shape[1]:
            return FRAME_BAD_RECORD
        if channel == CH_LIQUIDATION:
            first, last = string_span(buf, find_value(buf, item, stop, _INST_ID), stop)
            if first < 0:
                return FRAME_BAD_RECORD
            book = match_symbol(buf, first, last, symbols, lengths)
            err = OK
            if book >= 0:  # per instType: the instruments not carried are not ours
                count, err = liquidation_details(buf, find_value(buf, item, stop, _DETAILS), stop, book,
                                                 px_decs[book], qty_decs[book], scratch, count)
        elif channel == CH_INDEX:
            count, err = index_records(buf, item, stop, symbols, lengths, px_decs, scratch, count)
        else:
            err = instrument_record(buf, item, stop, channel, book, px_decs[book], qty_decs[book], scratch, count)
            count += 1
        if err != OK:
            return FRAME_BAD_RECORD
        item = next_element(buf, stop, end)
    header[H_LEVELS] = count
    return FRAME_RECORDS


@njit(nogil=True, cache=True)
def decode(buf, n, symbols, lengths, px_decs, qty_decs, scratch, header):
    """Decode one frame; returns FRAME_*, details in `header`, levels in the scratch rows SIDE, PRICE,
    QTY, market-data records in its columns (REC_*)."""
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
    channel = channel_of(buf, channel_first, channel_stop)
    if channel == CH_OTHER:
        return FRAME_IGNORED if channel_first >= 0 else FRAME_ERROR
    if channel == CH_LIQUIDATION or channel == CH_INDEX:
        return records(buf, data, n, channel, symbols, lengths, px_decs, qty_decs, scratch, header)
    instrument = header[H_INSTRUMENT]
    if instrument < 0:
        return FRAME_UNKNOWN_SYMBOL
    header[H_DATA] = data
    if channel == CH_TRADES:
        return FRAME_TRADES
    if channel != CH_BOOKS:
        return records(buf, data, n, channel, symbols, lengths, px_decs, qty_decs, scratch, header)
    is_snapshot = equals(buf, action_first, action_stop, _SNAPSHOT)
    err = ERR_SYNTAX
    book = first_element(buf, data, n)
    if is_snapshot or equals(buf, action_first, action_stop, _UPDATE):
        err = _book(buf, book, n, px_decs[instrument], qty_decs[instrument], scratch[ROW_SIDE], scratch[ROW_PRICE],
                    scratch[ROW_QTY], header)
    header[H_ERROR] = err
    if err != OK:
        return FRAME_ERROR
    return FRAME_SNAPSHOT if is_snapshot else FRAME_UPDATE


@njit(nogil=True, cache=True, _nrt=False)
def publish_records(kind, count, ts_recv, scratch, out):
    """Publish the `count` decoded market-data records of `kind` (scratch columns, REC_*)."""
    zero = np.int64(0)
    for k in range(count):
        last = scratch[REC_V4, k]
        values = (scratch[REC_V0, k], scratch[REC_V1, k], scratch[REC_V2, k], scratch[REC_V3, k],
                  zero if kind == KIND_BBO else last)
        publish_stats(kind, scratch[REC_BOOK, k], last if kind == KIND_BBO else zero, scratch[REC_TIME, k], ts_recv,
                      values, out)


@njit(nogil=True, cache=True, _nrt=False)
def step(frame, ts_recv, conn, fresh, feed, books, out):
    """One received frame: decode; a snapshot, or an update of a live book whose prevSeqId chains
    (when it has one), is applied, cut to the channel depth, checksummed (a non-zero checksum) and
    published; a broken chain is a gap; trades and market-data records are published. A malformed
    book message of a live book is a loss (the book resyncs). Always returns DONE."""
    symbols, tables, scratch, header, events, sync, conn_state = feed
    n = len(frame)
    if fresh:
        count_frame(out.counters, n)
    lengths, px_decs, qty_decs = tables[T_LENGTH], tables[T_PX_DEC], tables[T_QTY_DEC]
    kind = decode(frame, n, symbols, lengths, px_decs, qty_decs, scratch, header)
    if kind == FRAME_IGNORED:
        return ACTION_DONE
    if kind == FRAME_RECORDS:
        mark_decoded(out.latency, ts_recv, fresh)
        publish_records(header[H_KIND], header[H_LEVELS], ts_recv, scratch, out)
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
