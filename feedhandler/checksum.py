"""CRC32 (IEEE, as zlib) in numba, and Kraken's book checksum over the top 10 levels."""
from __future__ import annotations

import numpy as np
from numba import njit

from .book_kernels import ASK, BID, copy_top

KRAKEN_CHECKSUM_DEPTH = 10


def _crc_table() -> np.ndarray:
    table = np.empty(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        table[n] = c
    return table


CRC_TABLE = _crc_table()


@njit(inline="always", nogil=True)
def crc32_update(crc, data, n):
    """Continue a CRC32 (pre-inverted state) over data[:n]."""
    for k in range(n):
        crc = CRC_TABLE[(crc ^ data[k]) & 0xFF] ^ (crc >> 8)
    return crc


@njit(nogil=True, cache=True)
def crc32(data):
    return np.uint32(crc32_update(np.uint32(0xFFFFFFFF), data, len(data)) ^ np.uint32(0xFFFFFFFF))


@njit(inline="always", nogil=True)
def crc32_digits(crc, value, pad, work, at):
    """Continue a CRC32 over the decimal digits of a non-negative int64, then `pad` zeros. The
    digits come out least significant first (division by the constant 10 is a multiply) into
    work[at:at + 19], then go through the CRC in reading order."""
    n = 0
    while True:
        work[at + n] = value % 10
        value //= 10
        n += 1
        if value == 0:
            break
    for k in range(n - 1, -1, -1):
        crc = CRC_TABLE[(crc ^ (48 + work[at + k])) & 0xFF] ^ (crc >> 8)
    for _ in range(pad):
        crc = CRC_TABLE[(crc ^ 48) & 0xFF] ^ (crc >> 8)
    return crc


@njit(nogil=True, cache=True, _nrt=False)
def kraken_checksum(levels, ladder, meta, book, px_pad, qty_pad, work):
    """Kraken's CRC32: top 10 asks best first, then top 10 bids best first, each price then qty as
    its digits, dot and leading zeros gone. The book's mantissas are printed with `px_pad` /
    `qty_pad` zeros appended: v2 prints at the instrument's precisions (pads 0), v1 sends strings
    with more decimals than the pair's (e.g. "354.15000000" at 2 price decimals: pad 6).
    `work`: int64 scratch of at least 40 words."""
    crc = np.uint32(0xFFFFFFFF)
    for side in (ASK, BID):
        count = copy_top(levels, ladder, meta, book, side, work, 0, KRAKEN_CHECKSUM_DEPTH)
        for i in range(2 * count):
            crc = crc32_digits(crc, work[i], px_pad if i % 2 == 0 else qty_pad, work, 2 * KRAKEN_CHECKSUM_DEPTH)
    return np.int64(crc ^ np.uint32(0xFFFFFFFF))
