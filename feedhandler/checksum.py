"""CRC32 (IEEE, as zlib) in numba, and the venues' book checksums over it: Kraken's over the top 10
levels (digits only), OKX's over the top 25 (interleaved `px:sz` decimals). Both copy the top levels
into a work row, print them there as text and take its CRC32."""
from __future__ import annotations

import numpy as np
from numba import njit

from shm.fixedpoint import POW10

from .book_kernels import ASK, BID, copy_top

KRAKEN_CHECKSUM_DEPTH = 10
OKX_CHECKSUM_DEPTH = 25


def _crc_tables() -> np.ndarray:
    """Table 0 is the classic byte-at-a-time table; table k advances a byte through k more zero
    bytes, which lets `crc32_update` fold 8 bytes per step with independent lookups."""
    tables = np.empty((8, 256), np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        tables[0, n] = c
    for k in range(1, 8):
        for n in range(256):
            tables[k, n] = (tables[k - 1, n] >> 8) ^ tables[0, tables[k - 1, n] & 0xFF]
    return tables


CRC_TABLES = _crc_tables()
CRC_TABLE = CRC_TABLES[0].copy()
TEXT_AT = 2 * KRAKEN_CHECKSUM_DEPTH  # where kraken_checksum writes its text in `work`
OKX_TEXT_AT = 4 * OKX_CHECKSUM_DEPTH  # where okx_checksum writes its text: after both sides' levels


@njit(inline="always", nogil=True)
def _word32(data, k):
    """data[k:k + 4] as a little-endian uint32. Each byte is widened before its shift: a uint8 shifted
    as a uint8 (numpy's rule, unlike numba's widening to int64) would lose its bits."""
    return (np.uint32(data[k]) | (np.uint32(data[k + 1]) << 8) | (np.uint32(data[k + 2]) << 16)
            | (np.uint32(data[k + 3]) << 24))


@njit(inline="always", nogil=True)
def crc32_update(crc, data, first, stop):
    """Continue a CRC32 (pre-inverted state) over data[first:stop] (one byte per element):
    slicing-by-8, so the serial dependency is one step per 8 bytes, not per byte."""
    k = first
    while k + 8 <= stop:
        one = crc ^ _word32(data, k)
        two = _word32(data, k + 4)
        crc = (CRC_TABLES[7, one & 0xFF] ^ CRC_TABLES[6, (one >> 8) & 0xFF] ^ CRC_TABLES[5, (one >> 16) & 0xFF]
               ^ CRC_TABLES[4, one >> 24] ^ CRC_TABLES[3, two & 0xFF] ^ CRC_TABLES[2, (two >> 8) & 0xFF]
               ^ CRC_TABLES[1, (two >> 16) & 0xFF] ^ CRC_TABLES[0, two >> 24])
        k += 8
    while k < stop:
        crc = CRC_TABLES[0, (crc ^ np.uint32(data[k])) & 0xFF] ^ (crc >> 8)
        k += 1
    return crc


@njit(nogil=True, cache=True)
def crc32(data):
    return np.uint32(crc32_update(np.uint32(0xFFFFFFFF), data, 0, len(data)) ^ np.uint32(0xFFFFFFFF))


@njit(inline="always", nogil=True)
def write_digits(value, pad, text, at):
    """Write the decimal digits of a non-negative int64, then `pad` zeros, into text[at:] (one byte
    per element); returns the position after them. Unsigned division by a constant is a multiply,
    and two digits come out of each."""
    n = 1
    while n < 19 and value >= POW10[n]:
        n += 1
    rest = np.uint64(value)
    k = at + n - 1
    while k > at:
        pair = np.int64(rest % np.uint64(100))
        rest //= np.uint64(100)
        text[k] = 48 + pair % 10
        text[k - 1] = 48 + pair // 10
        k -= 2
    if k == at:
        text[k] = 48 + np.int64(rest)
    for j in range(pad):
        text[at + n + j] = 48
    return at + n + pad


@njit(nogil=True, cache=True, _nrt=False)
def kraken_checksum(levels, ladder, meta, book, px_pad, qty_pad, work):
    """Kraken's CRC32: top 10 asks best first, then top 10 bids best first, each price then qty as
    its digits, dot and leading zeros gone. The book's mantissas are printed with `px_pad` /
    `qty_pad` zeros appended: v2 prints at the instrument's precisions (pads 0), v1 sends strings
    with more decimals than the pair's (e.g. "354.15000000" at 2 price decimals: pad 6).
    `work`: int64 scratch of at least 1,024 words (levels, then the text, a byte per word)."""
    stop = TEXT_AT
    for side in (ASK, BID):
        count = copy_top(levels, ladder, meta, book, side, work, 0, KRAKEN_CHECKSUM_DEPTH)
        for i in range(2 * count):
            stop = write_digits(work[i], px_pad if i % 2 == 0 else qty_pad, work, stop)
    crc = crc32_update(np.uint32(0xFFFFFFFF), work, TEXT_AT, stop)
    return np.int64(crc ^ np.uint32(0xFFFFFFFF))


@njit(inline="always", nogil=True)
def write_decimal(value, decimals, text, at):
    """Write the mantissa `value` (>= 0, `decimals` fraction digits) as its shortest decimal text
    into text[at:]: no trailing zeros, no dot for a whole number ("30261", "0.0013275", as OKX
    prints them); returns the position after it."""
    while decimals > 0 and value % 10 == 0:
        value //= 10
        decimals -= 1
    scale = POW10[decimals]
    at = write_digits(value // scale, 0, text, at)
    if decimals == 0:
        return at
    text[at] = 46  # '.'
    fraction = value % scale
    digits = 1
    while digits < 19 and fraction >= POW10[digits]:
        digits += 1
    for k in range(decimals - digits):  # leading zeros of the fraction
        text[at + 1 + k] = 48
    return write_digits(fraction, 0, text, at + 1 + decimals - digits)


@njit(nogil=True, cache=True, _nrt=False)
def okx_checksum(levels, ladder, meta, book, px_dec, qty_dec, work):
    """OKX's CRC32 as a signed int32: the top 25 bids and asks, best first, interleaved
    `bid1.px:bid1.sz:ask1.px:ask1.sz:bid2...` with ':' between every field; a side that runs out is
    skipped, the other goes on. Values are printed as OKX prints them on the wire (shortest decimal).
    `work`: int64 scratch of at least 2,400 words (levels, then the text, a byte per word)."""
    bids = copy_top(levels, ladder, meta, book, BID, work, 0, OKX_CHECKSUM_DEPTH)
    asks = copy_top(levels, ladder, meta, book, ASK, work, 2 * OKX_CHECKSUM_DEPTH, OKX_CHECKSUM_DEPTH)
    stop = OKX_TEXT_AT
    for k in range(OKX_CHECKSUM_DEPTH):
        for side_at, count in ((0, bids), (2 * OKX_CHECKSUM_DEPTH, asks)):
            if k < count:
                if stop > OKX_TEXT_AT:
                    work[stop] = 58  # ':'
                    stop += 1
                stop = write_decimal(work[side_at + 2 * k], px_dec, work, stop)
                work[stop] = 58
                stop = write_decimal(work[side_at + 2 * k + 1], qty_dec, work, stop + 1)
    crc = np.int64(crc32_update(np.uint32(0xFFFFFFFF), work, OKX_TEXT_AT, stop) ^ np.uint32(0xFFFFFFFF))
    return crc - (np.int64(1) << 32) if crc >= (np.int64(1) << 31) else crc
