"""HDR-style log-linear latency histograms in int64 arrays: 3 significant digits from 1 ns to ~68 s.

A value v < 2048 has a slot of its own; above, slot k*1024 + (v >> k) with k such that v >> k lies in
[1024, 2048), so every slot is at most 1/1024 of its value wide. One histogram is a row of HIST_WORDS
int64 words: a few summary words, then the counts. One process writes a row (plain aligned 8-byte
stores: atomic on x86-64 and aarch64); readers in other processes copy it and compute quantiles.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from .intrinsics import leading_zeros

SUB_BITS = 11
HALF = 1 << (SUB_BITS - 1)  # 1024
MAX_SHIFT = 25  # values up to 2**36 - 1 ns (~68.7 s); above, the last slot (counted in H_OVERFLOW)
SLOTS = (MAX_SHIFT + 2) * HALF
HIGHEST = (1 << (MAX_SHIFT + SUB_BITS)) - 1

# summary words
H_COUNT = 0  # values recorded (negative ones included)
H_SUM = 1  # of the values recorded, ns (negative ones as 0)
H_MAX = 2
H_MIN = 3  # may be negative: the smallest raw value (a clock offset shows here)
H_NEGATIVE = 4  # values < 0 (clocks apart): recorded as 0
H_OVERFLOW = 5  # values > HIGHEST: recorded in the last slot
H_MARK = 6  # the writer's own scratch stamp (e.g. when a frame was decoded), not a statistic
COUNTS = 8
HIST_WORDS = COUNTS + SLOTS


@njit(inline="always", nogil=True)
def slot_of(value: int) -> int:
    """The slot of a value in [0, HIGHEST]."""
    if value < 2 * HALF:
        return value
    shift = 64 - SUB_BITS - leading_zeros(value)  # floor(log2(value)) - (SUB_BITS - 1)
    return shift * HALF + (value >> shift)


@njit(nogil=True, cache=True, _nrt=False)
def record(hist, value):
    """Count one value (ns) into a histogram row."""
    raw = value
    if value < 0:
        hist[H_NEGATIVE] += 1
        value = 0
    elif value > HIGHEST:
        hist[H_OVERFLOW] += 1
        value = HIGHEST
    hist[COUNTS + slot_of(value)] += 1
    hist[H_SUM] += value
    if hist[H_COUNT] == 0 or raw > hist[H_MAX]:
        hist[H_MAX] = raw
    if hist[H_COUNT] == 0 or raw < hist[H_MIN]:
        hist[H_MIN] = raw
    hist[H_COUNT] += 1


@njit(nogil=True, cache=True, _nrt=False)
def record_many(hist, values):
    """Count every value of an int64 array (one call for a batch of records)."""
    for k in range(len(values)):
        record(hist, values[k])


def slot_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) value of every slot, int64."""
    index = np.arange(SLOTS, dtype=np.int64)
    shift = np.maximum(index // HALF - 1, 0)
    low = np.where(index < 2 * HALF, index, (index - shift * HALF) << shift)
    return low, low + (np.int64(1) << shift) - 1


_LOW, _HIGH = slot_bounds()


def quantiles(hist: np.ndarray, qs) -> list[int | None]:
    """The value at each quantile q in [0, 1] (the highest value of its slot, so never an
    understatement; the exact maximum for q = 1); None when the histogram is empty."""
    counts = hist[COUNTS:]
    total = int(counts.sum())
    if total == 0:
        return [None for _ in qs]
    cumulative = np.cumsum(counts)
    values = []
    for q in qs:
        if q >= 1:
            values.append(int(hist[H_MAX]))
            continue
        rank = max(1, int(np.ceil(q * total)))
        slot = int(np.searchsorted(cumulative, rank))
        values.append(min(int(_HIGH[slot]), int(hist[H_MAX])))
    return values


def difference(newer: np.ndarray, older: np.ndarray) -> np.ndarray:
    """What `newer` counted since `older` (two copies of one row) as a row of its own: an interval's
    histogram. Its min and max are the bounds of its extreme slots (exact values are kept only over
    the whole life of a row)."""
    row = np.zeros_like(newer)
    row[COUNTS:] = newer[COUNTS:] - older[COUNTS:]
    for word in (H_COUNT, H_SUM, H_NEGATIVE, H_OVERFLOW):
        row[word] = newer[word] - older[word]
    filled = np.flatnonzero(row[COUNTS:])
    if len(filled):
        row[H_MIN] = _LOW[filled[0]]
        row[H_MAX] = min(int(_HIGH[filled[-1]]), int(newer[H_MAX]))
    return row


def summary(hist: np.ndarray, percentiles=(50, 90, 99, 99.9)) -> dict:
    """Count, mean, the percentiles and max of one histogram row (ns); what `fh latency` prints."""
    row = np.array(hist, copy=True)  # one copy: the writer goes on meanwhile
    count = int(row[COUNTS:].sum())
    values = quantiles(row, [p / 100 for p in percentiles])
    out = {"count": count, "mean_ns": int(row[H_SUM]) // count if count else None}
    out.update({f"p{p:g}_ns": v for p, v in zip(percentiles, values)})
    out.update(max_ns=int(row[H_MAX]) if count else None, min_ns=int(row[H_MIN]) if count else None,
               negative=int(row[H_NEGATIVE]), overflow=int(row[H_OVERFLOW]))
    return out
