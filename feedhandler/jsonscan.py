"""numba scanning of JSON frames as bytes: keys, integers, strings and arrays of decimal pairs.

Scanners never raise and never read outside [start, end): they return -1 positions or error codes,
so a malformed or hostile frame is counted, never fatal. They assume the venues' compact JSON
(keys are unique within the object scanned; values of interest are numbers and plain strings).

numba compiles a function called from another once per distinct argument types, and a constant
argument (`0`, `BID`, a count that starts at 0) is a type of its own (Literal[int](0)). The level and
trade parsers take seconds each to compile, so decoders pass them constants as np.int64(...): one
compile serves every call site (measured: 8 compiles of parse_level_objects down to 1).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import OK, parse_decimal, scan_decimal

from .book_kernels import ASK, BID

QUOTE, COLON, COMMA, LBRACKET, RBRACKET = 34, 58, 44, 91, 93
ERR_SYNTAX = 20  # decode error codes above the fixed-point ones
ERR_TOO_MANY_LEVELS = 21
NO_WORD = np.zeros(0, np.uint8)  # for parse_level_objects arguments a call does not use
NO_TRADE_ID = -1  # a trade decoder's id for venues that number no trades (Kraken v1)
RFC3339 = np.int64(0)  # parse_trade_objects' time unit for RFC 3339 time strings


def key(name: str) -> np.ndarray:
    """The bytes `"name"` to search for."""
    return np.frombuffer(f'"{name}"'.encode(), np.uint8)


@njit(inline="always", nogil=True)
def skip_spaces_to(buf, pos, end):
    while pos < end and (buf[pos] == 32 or buf[pos] == 9 or buf[pos] == 10 or buf[pos] == 13):
        pos += 1
    return pos


@njit(nogil=True, cache=True)
def looks_like_object(buf, n):
    """A frame that is not `{...}` (truncated, binary garbage) is a decode error, not ignorable."""
    first = skip_spaces_to(buf, 0, n)
    last = n - 1
    while last > first and (buf[last] == 32 or buf[last] == 9 or buf[last] == 10 or buf[last] == 13):
        last -= 1
    return first < last and buf[first] == 123 and buf[last] == 125


@njit(nogil=True, cache=True)
def find_value(buf, start, end, name):
    """Position of the value after `"name":` in buf[start:end], or -1."""
    n = len(name)
    last = end - n
    i = start
    while i <= last:
        if buf[i] == QUOTE:
            matched = True
            for k in range(1, n):
                if buf[i + k] != name[k]:
                    matched = False
                    break
            if matched:
                pos = skip_spaces_to(buf, i + n, end)
                if pos < end and buf[pos] == COLON:
                    return skip_spaces_to(buf, pos + 1, end)
        i += 1
    return -1


@njit(nogil=True, cache=True)
def find_value_after(buf, hint, end, name):
    """find_value in buf[0:end], looking from `hint` first: venues print their keys in a fixed
    order, so the search starting where the previous value was found rarely scans anything."""
    if hint >= 0:
        pos = find_value(buf, hint, end, name)
        if pos >= 0:
            return pos
    return find_value(buf, 0, end, name)


@njit(nogil=True, cache=True)
def parse_int(buf, pos, end):
    """(value, position after it) of a non-negative JSON integer at `pos`; position -1 if none."""
    if pos < 0 or pos >= end:
        return 0, -1
    value = 0
    i = pos
    while i < end and 48 <= buf[i] <= 57:
        d = np.int64(buf[i]) - 48  # widened first: uint8 arithmetic would wrap
        if value > (9223372036854775807 - d) // 10:
            return 0, -1
        value = value * 10 + d
        i += 1
    if i == pos:
        return 0, -1
    return value, i


@njit(nogil=True, cache=True)
def string_span(buf, pos, end):
    """(first, stop) of the string value starting with a quote at `pos`; (-1, -1) if none.
    Escapes are not decoded (the values scanned never contain them)."""
    if pos < 0 or pos >= end or buf[pos] != QUOTE:
        return -1, -1
    i = pos + 1
    while i < end and buf[i] != QUOTE:
        if buf[i] == 92:  # backslash: never in a symbol or a number
            return -1, -1
        i += 1
    if i >= end:
        return -1, -1
    return pos + 1, i


@njit(inline="always", nogil=True)
def equals(buf, first, stop, word):
    """buf[first:stop] == word (False for a missing span, first < 0)."""
    if first < 0 or stop - first != len(word):
        return False
    for k in range(len(word)):
        if buf[first + k] != word[k]:
            return False
    return True


@njit(inline="always", nogil=True)
def push_trade(books, aggressors, prices, qtys, ids, times, count, book, aggressor, price, qty, trade_id, when):
    """Append one trade (the caller checked there is room); returns the new count."""
    books[count] = book
    aggressors[count] = aggressor
    prices[count] = price
    qtys[count] = qty
    ids[count] = trade_id
    times[count] = when
    return count + 1


@njit(inline="always", nogil=True)
def push_level(sides, prices, qtys, count, side, price, qty):
    """Append one level; returns (new count, OK or ERR_TOO_MANY_LEVELS)."""
    if count >= len(prices):
        return count, ERR_TOO_MANY_LEVELS
    sides[count] = side
    prices[count] = price
    qtys[count] = qty
    return count + 1, OK


@njit(inline="always", nogil=True)
def decimal_string(buf, pos, end, decimals):
    """(mantissa, position of the closing quote, error) of a quoted decimal at `pos`: one pass for
    a plain number, the checked parse for anything else."""
    if 0 <= pos < end and buf[pos] == QUOTE:
        value, stop, ok = scan_decimal(buf, pos + 1, end, decimals)
        if ok and stop < end and buf[stop] == QUOTE:
            return value, stop, OK
    return _checked_decimal_string(buf, pos, end, decimals)


@njit(nogil=True, cache=True)
def _checked_decimal_string(buf, pos, end, decimals):
    first, stop = string_span(buf, pos, end)
    if first < 0:
        return 0, -1, ERR_SYNTAX
    value, err = parse_decimal(buf, first, stop, decimals, False)
    return value, stop, err


@njit(inline="always", nogil=True)
def _level_done(buf, i, end, sides, prices, qtys, count, side, price, qty):
    """Store a parsed level whose array element ends before `i`. Returns (count, where the next
    element starts or -(position after the closing bracket + 2) when the array ends, error)."""
    count, err = push_level(sides, prices, qtys, count, side, price, qty)
    if err != OK:
        return count, -1, err
    i = skip_spaces_to(buf, i, end)
    if i < end and buf[i] == RBRACKET:
        return count, -(i + 1 + 2), OK
    if i >= end or buf[i] != COMMA:
        return count, -1, ERR_SYNTAX
    i = skip_spaces_to(buf, i + 1, end)
    return count, i, OK if i < end else ERR_SYNTAX


@njit(nogil=True, cache=True)
def parse_pairs(buf, pos, end, px_dec, qty_dec, side, sides, prices, qtys, count):
    """Parse `[["price","qty"], ...]` (extra elements in a pair are skipped) at `pos`, appending to
    the output arrays from index `count`. Returns (new count, position after the array, error)."""
    if pos < 0 or pos >= end or buf[pos] != LBRACKET:
        return count, -1, ERR_SYNTAX
    i = skip_spaces_to(buf, pos + 1, end)
    if i < end and buf[i] == RBRACKET:
        return count, i + 1, OK
    while i < end:
        if buf[i] != LBRACKET:
            return count, -1, ERR_SYNTAX
        price, stop, err = decimal_string(buf, skip_spaces_to(buf, i + 1, end), end, px_dec)
        if err != OK:
            return count, -1, err
        i = skip_spaces_to(buf, stop + 1, end)
        if i >= end or buf[i] != COMMA:
            return count, -1, ERR_SYNTAX
        qty, stop, err = decimal_string(buf, skip_spaces_to(buf, i + 1, end), end, qty_dec)
        if err != OK:
            return count, -1, err
        i = stop + 1
        while i < end and buf[i] != RBRACKET:  # skip anything else in the pair
            if buf[i] == LBRACKET or buf[i] == 123:
                return count, -1, ERR_SYNTAX
            i += 1
        if i >= end:
            return count, -1, ERR_SYNTAX
        count, i, err = _level_done(buf, i + 1, end, sides, prices, qtys, count, side, price, qty)
        if err != OK or i < -1:
            return count, -i - 2 if err == OK else -1, err
    return count, -1, ERR_SYNTAX


@njit(nogil=True, cache=True)
def match_symbol(buf, first, stop, symbols, lengths):
    """Index of buf[first:stop] in the symbol table (uint8 rows, with lengths), or -1."""
    n = stop - first
    for row in range(len(lengths)):
        if lengths[row] != n:
            continue
        same = True
        for k in range(n):
            if symbols[row, k] != buf[first + k]:
                same = False
                break
        if same:
            return row
    return -1


def symbol_table(symbols: list[str], width: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 rows, lengths) for `match_symbol`."""
    table = np.zeros((len(symbols), width), np.uint8)
    lengths = np.zeros(len(symbols), np.int64)
    for row, symbol in enumerate(symbols):
        encoded = symbol.encode()
        table[row, :len(encoded)] = np.frombuffer(encoded, np.uint8)
        lengths[row] = len(encoded)
    return table, lengths


@njit(nogil=True, cache=True)
def skip_value(buf, pos, end):
    """Position just after the JSON value at `pos` (strings, numbers, literals, nested arrays and
    objects), or -1 when it does not end inside [pos, end)."""
    pos = skip_spaces_to(buf, pos, end)
    if pos >= end:
        return -1
    depth = 0
    i = pos
    while i < end:
        c = buf[i]
        if c == QUOTE:
            i += 1
            while i < end and buf[i] != QUOTE:
                i += 2 if buf[i] == 92 else 1
            if i >= end:
                return -1
            if depth == 0:
                return i + 1
        elif c == LBRACKET or c == 123:
            depth += 1
        elif c == RBRACKET or c == 125:
            if depth == 0:  # the bracket that closes the container of a number or literal
                return i if i > pos else -1
            depth -= 1
            if depth == 0:
                return i + 1
        elif depth == 0 and (c == COMMA or c == 32 or c == 10 or c == 13 or c == 9):
            return i
        i += 1
    return end if depth == 0 and i > pos else -1


@njit(nogil=True, cache=True)
def next_element(buf, pos, end):
    """After an element ending at `pos`: position of the next element of the same array, or -1 at
    the closing bracket (or on a syntax error)."""
    pos = skip_spaces_to(buf, pos, end)
    if pos < end and buf[pos] == COMMA:
        return skip_spaces_to(buf, pos + 1, end)
    return -1


@njit(nogil=True, cache=True)
def first_element(buf, pos, end):
    """Position of the first element of the array at `pos`, or -1 when empty or not an array."""
    if pos < 0 or pos >= end or buf[pos] != LBRACKET:
        return -1
    pos = skip_spaces_to(buf, pos + 1, end)
    if pos >= end or buf[pos] == RBRACKET:
        return -1
    return pos


@njit(nogil=True, cache=True)
def number_span(buf, pos, end):
    """(first, stop) of a bare JSON number at `pos` (the digits, sign, dot and exponent characters
    it is made of; the fixed-point parser then judges them), or (-1, -1)."""
    if pos < 0 or pos >= end:
        return -1, -1
    i = pos
    while i < end and (48 <= buf[i] <= 57 or buf[i] == 46 or buf[i] == 45 or buf[i] == 43 or buf[i] == 101
                       or buf[i] == 69):
        i += 1
    if i == pos:
        return -1, -1
    return pos, i


@njit(inline="always", nogil=True)
def number_at(buf, pos, end, decimals):
    """(mantissa, position after the value, error) of a decimal at `pos` written as a JSON string
    or a bare JSON number."""
    if 0 <= pos < end and buf[pos] == QUOTE:
        value, stop, err = decimal_string(buf, pos, end, decimals)
        return value, stop + 1, err
    first, stop = number_span(buf, pos, end)
    if first < 0:
        return 0, -1, ERR_SYNTAX
    value, err = parse_decimal(buf, first, stop, decimals, False)
    return value, stop, err


@njit(inline="always", nogil=True)
def is_key(buf, first, stop, name):
    """buf[first:stop] is the string `name` names (`name` holds the quotes, as `key` makes it)."""
    return len(name) > 0 and equals(buf, first - 1, stop + 1, name)


@njit(inline="always", nogil=True)
def member_at(buf, i, end):
    """At `i` inside an object, after `{` or a comma: (key first, key stop, value position) of the
    member there; key first is -1 at the closing brace, -2 on a syntax error."""
    i = skip_spaces_to(buf, i, end)
    if i < end and buf[i] == 125:
        return -1, i, -1
    key_first, key_stop = string_span(buf, i, end)
    if key_first < 0:
        return -2, -1, -1
    i = skip_spaces_to(buf, key_stop + 1, end)
    if i >= end or buf[i] != COLON:
        return -2, -1, -1
    return key_first, key_stop, skip_spaces_to(buf, i + 1, end)


@njit(inline="always", nogil=True)
def after_member(buf, i, end):
    """After a member's value ending at `i`: where the next member starts, the closing brace's
    position as -(pos + 2) when the object ends there, or -1 on a syntax error."""
    if i < 0:
        return -1
    i = skip_spaces_to(buf, i, end)
    if i < end and buf[i] == COMMA:
        return i + 1
    if i < end and buf[i] == 125:
        return -(i + 2)
    return -1


@njit(nogil=True, cache=True)
def parse_level_objects(buf, pos, end, px_dec, qty_dec, price_name, qty_name, side, side_name, bid_word,
                        ask_word, sides, prices, qtys, count):
    """Parse `[{price_name: p, qty_name: q, ...}, ...]` (values quoted or bare) at `pos`, appending
    to the outputs, in one pass over each object's members. Each level is on `side`, or, when
    `side` < 0, on the side its `side_name` string names (`bid_word` / `ask_word`).
    Returns (count, position after the array, error)."""
    item = first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != LBRACKET)):
        return count, -1, ERR_SYNTAX
    if item < 0:
        return count, skip_spaces_to(buf, pos + 1, end) + 1, OK
    while True:
        if buf[item] != 123:
            return count, -1, ERR_SYNTAX
        level_side = side
        price = qty = -1
        err = OK
        i = item + 1
        while True:
            key_first, key_stop, value = member_at(buf, i, end)
            if key_first == -1:
                i = key_stop
                break
            if key_first < 0:
                return count, -1, ERR_SYNTAX
            if is_key(buf, key_first, key_stop, price_name):
                price, i, err = number_at(buf, value, end, px_dec)
            elif is_key(buf, key_first, key_stop, qty_name):
                qty, i, err = number_at(buf, value, end, qty_dec)
            elif side < 0 and is_key(buf, key_first, key_stop, side_name):
                first, last = string_span(buf, value, end)
                level_side = BID if equals(buf, first, last, bid_word) else (
                    ASK if equals(buf, first, last, ask_word) else -1)
                i = last + 1 if first >= 0 else -1
            else:
                i = skip_value(buf, value, end)
            if err != OK:
                return count, -1, err
            i = after_member(buf, i, end)
            if i == -1:
                return count, -1, ERR_SYNTAX
            if i < -1:
                i = -i - 2
                break
        if price < 0 or qty < 0 or level_side < 0:
            return count, -1, ERR_SYNTAX
        count, item, err = _level_done(buf, i + 1, end, sides, prices, qtys, count, level_side, price, qty)
        if err != OK or item < -1:
            return count, -item - 2 if err == OK else -1, err


@njit(inline="always", nogil=True)
def _digits(buf, first, count):
    value = 0
    for k in range(first, first + count):
        d = np.int64(buf[k]) - 48
        if d < 0 or d > 9:
            return -1
        value = value * 10 + d
    return value


@njit(nogil=True, cache=True)
def parse_rfc3339_ns(buf, first, stop):
    """ns since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in buf[first:stop], or -1.
    (Days from the civil date, H. Hinnant's algorithm; no float, fraction exact to 1 ns.)"""
    if first < 0 or stop - first < 20 or buf[stop - 1] != 90:  # 'Z'
        return -1
    year, month, day = _digits(buf, first, 4), _digits(buf, first + 5, 2), _digits(buf, first + 8, 2)
    hour, minute, second = _digits(buf, first + 11, 2), _digits(buf, first + 14, 2), _digits(buf, first + 17, 2)
    if min(year, month, day, hour, minute, second) < 0 or not 1 <= month <= 12 or not 1 <= day <= 31 \
            or hour > 23 or minute > 59 or second > 60:
        return -1
    nanos = 0
    pos = first + 19
    if buf[pos] == 46:  # '.'
        scale = 100_000_000
        pos += 1
        while pos < stop - 1:
            d = np.int64(buf[pos]) - 48
            if d < 0 or d > 9:
                return -1
            nanos += d * scale
            scale //= 10
            pos += 1
    elif pos != stop - 1:
        return -1
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146097 + day_of_era - 719468
    return ((days * 24 + hour) * 60 + minute) * 60_000_000_000 + second * 1_000_000_000 + nanos


@njit(nogil=True, cache=True)
def integer_value(buf, pos, end):
    """(value, ok) of a non-negative integer at `pos`, bare or as a quoted string of digits."""
    if pos >= 0 and pos < end and buf[pos] == QUOTE:
        first, stop = string_span(buf, pos, end)
        value, after = parse_int(buf, first, stop)
        return value, first >= 0 and after == stop
    value, after = parse_int(buf, pos, end)
    return value, after >= 0


@njit(nogil=True, cache=True)
def parse_trade_objects(buf, pos, end, symbols, lengths, px_decs, qty_decs, names, buy_word, sell_word,
                        side_sign, time_unit_ns, books, aggressors, prices, qtys, ids, times, count):
    """Parse `[{symbol, side, price, qty, id, time}, ...]` at `pos`, appending from `count`. `names`
    holds the five key tokens in that order (symbol, side, price, qty, id) and the time key last,
    as rows of a uint8 table with lengths in column 0. `side_sign` is +1 when the venue names the
    taker's side, -1 when it names the maker's. Times are RFC 3339 strings when `time_unit_ns` is 0,
    else integers (bare or quoted) of that many ns (OKX: ms strings). Returns the new count, -1 for
    a malformed trade, -2 for an unknown symbol."""
    item = first_element(buf, pos, end)
    if pos < 0 or (item < 0 and (pos >= end or buf[pos] != LBRACKET)):
        return -1
    while item >= 0:
        stop = skip_value(buf, item, end)
        if stop < 0 or buf[item] != 123 or count >= len(prices):
            return -1
        first, last = string_span(buf, find_value(buf, item, stop, names[0, 1:1 + names[0, 0]]), stop)
        book = match_symbol(buf, first, last, symbols, lengths)
        if book < 0:
            return -2
        first, last = string_span(buf, find_value(buf, item, stop, names[1, 1:1 + names[1, 0]]), stop)
        if equals(buf, first, last, buy_word):
            aggressor = side_sign
        elif equals(buf, first, last, sell_word):
            aggressor = -side_sign
        else:
            return -1
        price, after, err = number_at(buf, find_value(buf, item, stop, names[2, 1:1 + names[2, 0]]), stop,
                                      px_decs[book])
        qty, after, err2 = number_at(buf, find_value(buf, item, stop, names[3, 1:1 + names[3, 0]]), stop,
                                     qty_decs[book])
        trade_id, ok = integer_value(buf, find_value(buf, item, stop, names[4, 1:1 + names[4, 0]]), stop)
        time_at = find_value(buf, item, stop, names[5, 1:1 + names[5, 0]])
        if time_unit_ns == 0:
            first, last = string_span(buf, time_at, stop)
            when = parse_rfc3339_ns(buf, first, last)
        else:
            when, time_ok = integer_value(buf, time_at, stop)
            when = when * time_unit_ns if time_ok else -1
        if err != OK or err2 != OK or not ok or when < 0:
            return -1
        count = push_trade(books, aggressors, prices, qtys, ids, times, count, book, aggressor, price, qty,
                           trade_id, when)
        item = next_element(buf, stop, end)
    return count


def key_table(*names: str) -> np.ndarray:
    """Quoted key tokens as rows [length, bytes...] for kernels that take several keys at once."""
    tokens = [f'"{name}"'.encode() for name in names]
    table = np.zeros((len(tokens), 1 + max(len(t) for t in tokens)), np.uint8)
    for row, token in enumerate(tokens):
        table[row, 0] = len(token)
        table[row, 1:1 + len(token)] = np.frombuffer(token, np.uint8)
    return table
