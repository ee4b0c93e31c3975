"""Exact decimal text <-> int64 fixed point (mantissa at a given number of decimals), in numba.

No float is ever involved: `"0.00100000"` at 8 decimals is the integer 100000. Parsing returns an
error code instead of raising, so a hostile frame is counted, never fatal and never silently wrong.
"""
from __future__ import annotations

import numpy as np
from numba import njit

INT64_MAX = 9223372036854775807
MAX_DECIMALS = 18
MAX_TEXT = 22  # sign + 19 digits + dot + one leading zero

OK = 0
ERR_EMPTY = 1  # no digit at all
ERR_CHAR = 2  # a byte that cannot be part of a plain decimal
ERR_SIGN = 3  # a sign where none is allowed
ERR_EXPONENT = 4  # 1e-05, 8.75E+3: exponent notation
ERR_NOT_FINITE = 5  # nan, inf, infinity
ERR_PRECISION = 6  # a non-zero digit beyond the allowed decimals
ERR_OVERFLOW = 7  # does not fit int64 at these decimals
ERR_DECIMALS = 8  # decimals outside 0..18

ERROR_NAMES = {
    OK: "ok", ERR_EMPTY: "empty", ERR_CHAR: "bad character", ERR_SIGN: "sign not allowed",
    ERR_EXPONENT: "exponent notation", ERR_NOT_FINITE: "not finite", ERR_PRECISION: "too precise",
    ERR_OVERFLOW: "overflow", ERR_DECIMALS: "decimals out of range",
}

_DOT, _MINUS, _PLUS, _ZERO = 46, 45, 43, 48


@njit(inline="always", nogil=True)
def _lower(c):
    return c | 32 if 65 <= c <= 90 else c


@njit(nogil=True, cache=True)
def _is_word(buf, start, end, word):
    if end - start != len(word):
        return False
    for k in range(len(word)):
        if _lower(buf[start + k]) != word[k]:
            return False
    return True


_NAN = np.frombuffer(b"nan", np.uint8)
_INF = np.frombuffer(b"inf", np.uint8)
_INFINITY = np.frombuffer(b"infinity", np.uint8)


POW10 = np.array([10 ** k for k in range(19)], np.int64)
_SAFE_DIGITS = 18  # any 18-digit mantissa fits int64: no overflow check before that


@njit(nogil=True, cache=True)
def _bad_text(buf, i):
    """The error for text that stopped being a plain decimal at `i`."""
    c = buf[i]
    if c == 101 or c == 69:
        return ERR_EXPONENT
    if c == _MINUS or c == _PLUS:
        return ERR_SIGN
    return ERR_CHAR


@njit(inline="always", nogil=True)
def _digits(buf, i, end, value):
    """Append the run of digits at `i` to `value`; returns (value, index after the run)."""
    while i < end:
        d = np.int64(buf[i]) - _ZERO
        if d < 0 or d > 9:
            break
        value = value * 10 + d
        i += 1
    return value, i


@njit(inline="always", nogil=True)
def scan_decimal(buf, start, end, decimals):
    """The fast path of decimal parsing: digits, optionally a dot and digits, from `start` up to the
    first other byte. Returns (mantissa, index of that byte, ok); ok only for what venues send
    (unsigned, at most 18 digits: no overflow possible, so a multiply-add per digit, `decimals`
    applied once at the end). Not ok means: use `parse_decimal`'s checked path for the verdict."""
    value, i = _digits(buf, start, end, 0)
    count = i - start
    fraction = 0
    if i < end and buf[i] == _DOT:
        value, stop = _digits(buf, i + 1, end, value)
        fraction = stop - i - 1
        count += fraction
        i = stop
    if 0 < count <= _SAFE_DIGITS and 0 <= decimals <= MAX_DECIMALS:
        if fraction <= decimals:
            if count + decimals - fraction <= _SAFE_DIGITS:
                return value * POW10[decimals - fraction], i, True
        else:
            scale = POW10[fraction - decimals]
            whole = value // scale
            if whole * scale == value:  # the extra digits are zeros
                return whole, i, True
    return 0, i, False


@njit(inline="always", nogil=True)
def parse_decimal(buf, start, end, decimals, signed):
    """Parse `buf[start:end]` (ASCII bytes) to (mantissa, error) at `decimals` decimals.

    Accepts `12`, `12.`, `.5`, `0012.3400`; extra fraction digits only when they are zeros.
    """
    value, stop, ok = scan_decimal(buf, start, end, decimals)
    if ok and stop == end:
        return value, OK
    return _parse_checked(buf, start, end, decimals, signed)


@njit(nogil=True, cache=True)
def _parse_checked(buf, start, end, decimals, signed):
    """parse_decimal with every check: signs, words, overflow past 18 significant digits."""
    if decimals < 0 or decimals > MAX_DECIMALS:
        return 0, ERR_DECIMALS
    i = start
    negative = False
    if i < end and (buf[i] == _MINUS or buf[i] == _PLUS):
        if not signed:
            return 0, ERR_SIGN
        negative = buf[i] == _MINUS
        i += 1
    if i < end and (_lower(buf[i]) == 110 or _lower(buf[i]) == 105):  # n, i: nan, inf, infinity
        if _is_word(buf, i, end, _NAN) or _is_word(buf, i, end, _INF) or _is_word(buf, i, end, _INFINITY):
            return 0, ERR_NOT_FINITE
        return 0, ERR_CHAR
    value = 0
    digits = 0
    significant = 0
    fraction = 0
    while i < end:  # integer part
        d = np.int64(buf[i]) - _ZERO
        if not 0 <= d <= 9:
            break
        i += 1
        digits += 1
        if value == 0 and d == 0:
            continue
        significant += 1
        if significant > _SAFE_DIGITS and value > (INT64_MAX - d) // 10:
            return 0, ERR_OVERFLOW
        value = value * 10 + d
    if i < end and buf[i] == _DOT:
        i += 1
        while i < end:
            d = np.int64(buf[i]) - _ZERO
            if not 0 <= d <= 9:
                break
            i += 1
            digits += 1
            if fraction == decimals:
                if d != 0:
                    return 0, ERR_PRECISION
                continue
            fraction += 1
            if value != 0 or d != 0:
                significant += 1
            if significant > _SAFE_DIGITS and value > (INT64_MAX - d) // 10:
                return 0, ERR_OVERFLOW
            value = value * 10 + d
    if i < end:
        return 0, _bad_text(buf, i) if not (signed and (buf[i] == _MINUS or buf[i] == _PLUS)) else ERR_CHAR
    if digits == 0:
        return 0, ERR_EMPTY
    scale = decimals - fraction
    if value != 0 and (significant + scale > _SAFE_DIGITS and value > INT64_MAX // POW10[scale]):
        return 0, ERR_OVERFLOW
    value *= POW10[scale]
    return (-value if negative else value), OK


@njit(nogil=True, cache=True)
def format_decimal_into(value, decimals, out):
    """Write `value` at `decimals` as exact decimal text into `out` (>= MAX_TEXT bytes); return length.

    Trailing zeros are kept: the text has exactly `decimals` fraction digits, as venues print it.
    With decimals 0 it is the plain integer, which is also what Kraken's checksum prints.
    """
    negative = value < 0
    # Digits are produced backwards from the negative magnitude, which also holds INT64_MIN exactly.
    rest = value if negative else -value
    n = 0
    while rest != 0 or n <= decimals:
        if n == decimals and decimals > 0:
            out[n] = _DOT
            n += 1
        quotient = rest // 10
        remainder = rest - quotient * 10
        digit = 0
        if remainder != 0:
            quotient += 1
            digit = 10 - remainder
        out[n] = _ZERO + digit
        n += 1
        rest = quotient
    if negative:
        out[n] = _MINUS
        n += 1
    for k in range(n // 2):
        out[k], out[n - 1 - k] = out[n - 1 - k], out[k]
    return n


def parse(text: str | bytes, decimals: int, signed: bool = False) -> int:
    """Python-side parse (config, tests, tools); raises ValueError naming the problem."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    buf = np.frombuffer(raw, np.uint8)
    value, err = parse_decimal(buf, 0, len(buf), decimals, signed)
    if err != OK:
        raise ValueError(f"cannot parse {raw!r} at {decimals} decimals: {ERROR_NAMES[err]}")
    return int(value)


def format_decimal(value: int, decimals: int) -> str:
    """Exact decimal text of a mantissa, e.g. (452852, 1) -> '45285.2'."""
    out = np.empty(MAX_TEXT, np.uint8)
    length = format_decimal_into(np.int64(value), decimals, out)
    return out[:length].tobytes().decode()
