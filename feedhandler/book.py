"""BookStore: the writer-private, full-depth L2 books of one venue process, in two plain arrays.

Python owns allocation and convenience access; per-level work happens in `book_kernels`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import book_kernels as k
from .checksum import kraken_checksum

BYTES_PER_LEVEL = 16


class BookStore:
    """Books for instruments 0..n-1, each side bounded to that instrument's capacity in levels."""

    def __init__(self, capacities: Sequence[int]):
        if any(int(c) < 1 for c in capacities):
            raise ValueError(f"book capacities must be >= 1 level per side, got {list(capacities)}")
        self.capacities = [int(c) for c in capacities]
        self.levels = np.zeros((2 * sum(self.capacities), 2), np.int64)
        self.meta = np.zeros((len(self.capacities), k.NMETA), np.int64)
        offset = 0
        for book, capacity in enumerate(self.capacities):
            self.meta[book, k.M_CAPACITY] = capacity
            for side in (k.BID, k.ASK):
                self.meta[book, 3 * side + k.M_OFFSET] = offset
                k.clear_side(self.meta, book, side)
                offset += capacity

    @staticmethod
    def memory_bytes(capacity: int) -> int:
        """The fixed memory one book of `capacity` levels per side takes."""
        return 2 * capacity * BYTES_PER_LEVEL

    def __len__(self) -> int:
        return len(self.capacities)

    def load(self, book: int, bids: np.ndarray, asks: np.ndarray) -> None:
        """Replace a book with a snapshot; `bids`/`asks` are int64 (n, 2) [price, qty] in any order."""
        for side, rows in ((k.BID, bids), (k.ASK, asks)):
            rows = np.ascontiguousarray(rows, np.int64).reshape(-1, 2)
            k.load_side(self.levels, self.meta, book, side, rows[:, 0].copy(), rows[:, 1].copy(), len(rows))

    def clear(self, book: int) -> None:
        for side in (k.BID, k.ASK):
            k.clear_side(self.meta, book, side)

    def set(self, book: int, side: int, price: int, qty: int) -> None:
        """One absolute level change (qty 0 deletes)."""
        self.apply(book, side, np.array([price], np.int64), np.array([qty], np.int64))

    def apply(self, book: int, side: int, prices: np.ndarray, qtys: np.ndarray) -> int:
        """Apply level changes in order; returns the number of deletes of absent levels."""
        return int(k.apply_levels(self.levels, self.meta, book, side, prices, qtys, len(prices)))

    def truncate(self, book: int, depth: int) -> None:
        for side in (k.BID, k.ASK):
            k.truncate_side(self.meta, book, side, depth)

    def top(self, book: int, side: int, depth: int | None = None) -> np.ndarray:
        """Best-first int64 (n, 2) [price, qty] rows of one side."""
        count = self.count(book, side)
        depth = count if depth is None else min(depth, count)
        out = np.empty(2 * depth, np.int64)
        k.copy_top(self.levels, self.meta, book, side, out, 0, depth)
        return out.reshape(depth, 2)

    def count(self, book: int, side: int) -> int:
        return int(self.meta[book, 3 * side + k.M_HI] - self.meta[book, 3 * side + k.M_LO])

    def best(self, book: int, side: int) -> tuple[int, int] | None:
        price, qty = k.best_level(self.levels, self.meta, book, side)
        return (int(price), int(qty)) if qty else None

    def crossed(self, book: int) -> bool:
        return bool(k.is_crossed(self.levels, self.meta, book))

    def kraken_checksum(self, book: int) -> int:
        return int(kraken_checksum(self.levels, self.meta, book))

    def absent_deletes(self, book: int) -> int:
        return int(self.meta[book, k.M_ABSENT_DELETES])

    def overflow(self, book: int) -> int:
        return int(self.meta[book, k.M_OVERFLOW])
