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


@njit(nogil=True, cache=True)
def parse_decimal(buf, start, end, decimals, signed):
    """Parse `buf[start:end]` (ASCII bytes) to (mantissa, error) at `decimals` decimals.

    Accepts `12`, `12.`, `.5`, `0012.3400`; extra fraction digits only when they are zeros.
    """
    if decimals < 0 or decimals > MAX_DECIMALS:
        return 0, ERR_DECIMALS
    i = start
    negative = False
    if i < end and (buf[i] == _MINUS or buf[i] == _PLUS):
        if not signed:
            return 0, ERR_SIGN
        negative = buf[i] == _MINUS
        i += 1
    if _is_word(buf, i, end, _NAN) or _is_word(buf, i, end, _INF) or _is_word(buf, i, end, _INFINITY):
        return 0, ERR_NOT_FINITE
    value = 0
    digits = 0
    fraction = 0
    in_fraction = False
    while i < end:
        c = buf[i]
        i += 1
        d = c - _ZERO
        if 0 <= d <= 9:
            digits += 1
            if in_fraction:
                if fraction == decimals:
                    if d != 0:
                        return 0, ERR_PRECISION
                    continue
                fraction += 1
            if value > (INT64_MAX - d) // 10:
                return 0, ERR_OVERFLOW
            value = value * 10 + d
        elif c == _DOT and not in_fraction:
            in_fraction = True
        elif c == 101 or c == 69:
            return 0, ERR_EXPONENT
        elif c == _MINUS or c == _PLUS:
            return 0, ERR_SIGN if not signed else ERR_CHAR
        else:
            return 0, ERR_CHAR
    if digits == 0:
        return 0, ERR_EMPTY
    for _ in range(decimals - fraction):
        if value > INT64_MAX // 10:
            return 0, ERR_OVERFLOW
        value *= 10
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
