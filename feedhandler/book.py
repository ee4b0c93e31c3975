"""BookStore: the writer-private, full-depth L2 books of one venue process, in plain arrays.

Python owns allocation and convenience access; per-level work happens in `book_kernels`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import book_kernels as k
from .checksum import kraken_checksum
from .run_kernels import run_blocks, run_rows

DEFAULT_WINDOW = 8192  # ladder ticks per side: with the best at 3/4, a dense 5,000-level snapshot fits


def _touched(shape) -> np.ndarray:
    """A zeroed int64 array whose pages are all written now, so no book change takes a page fault
    (np.zeros maps pages lazily, on first touch)."""
    array = np.empty(shape, np.int64)
    array.fill(0)
    return array


class BookStore:
    """Books for instruments 0..n-1. Each side holds every on-grid level within `window` ticks of its
    best in a tick-indexed ladder, and up to `capacity` further levels (deeper or off the tick grid)
    in a sorted run. `ticks`: each book's tick in price units (default 1); a wrong tick costs speed,
    never correctness."""

    def __init__(self, capacities: Sequence[int], window: int = DEFAULT_WINDOW, ticks: Sequence[int] | None = None):
        if any(int(c) < 1 for c in capacities):
            raise ValueError(f"book capacities must be >= 1 level per side, got {list(capacities)}")
        if window < 1:
            raise ValueError(f"the ladder window must be >= 1 tick, got {window}")
        ticks = [1] * len(capacities) if ticks is None else [int(t) for t in ticks]
        if len(ticks) != len(capacities) or any(not 1 <= t * window <= k.MAX_SPAN for t in ticks):
            raise ValueError(f"book ticks must be one per book, >= 1 and at most {k.MAX_SPAN} // window, got {ticks}")
        self.capacities = [int(c) for c in capacities]
        self.window = int(window)
        self.ticks = ticks
        self.levels = _touched((2 * sum(run_rows(c) for c in self.capacities), 2))
        self.ladder = _touched(2 * len(self.capacities) * k.ladder_words(self.window))
        self.meta = _touched((len(self.capacities), k.NMETA))
        self.journal = np.zeros((1, k.JOURNAL_COLUMNS), np.int64)  # records nothing until `record`
        offset = 0
        for book, capacity in enumerate(self.capacities):
            self.meta[book, k.M_CAPACITY] = capacity
            self.meta[book, k.M_BLOCKS] = run_blocks(capacity)
            self.meta[book, k.M_WINDOW] = self.window
            self.meta[book, k.M_TICK] = ticks[book]
            for side in (k.BID, k.ASK):
                column = k.SIDE_COLUMNS * side
                self.meta[book, column + k.S_OFFSET] = offset
                self.meta[book, column + k.S_LADDER] = (2 * book + side) * k.ladder_words(self.window)
                k.clear_side(self.levels, self.ladder, self.meta, book, side)
                offset += run_rows(capacity)

    @staticmethod
    def memory_bytes(capacity: int, window: int = DEFAULT_WINDOW) -> int:
        """The fixed memory one book takes: two sides of ladder (8 B a slot, plus a bit of occupancy)
        and run (16 B a row, a third more rows than `capacity`, and a directory)."""
        return 2 * (k.ladder_words(window) * 8 + run_rows(capacity) * 16)

    def __len__(self) -> int:
        return len(self.capacities)

    @property
    def arrays(self) -> k.Books:
        """levels, ladder, meta and journal as the one argument the feed kernels take."""
        return k.Books(self.levels, self.ladder, self.meta, self.journal)

    def record(self, rows: int) -> None:
        """Keep a journal of up to `rows` changes that feed kernels make to these books (see
        book_kernels' journal; `fh bench book --capture`). Take `arrays` again afterwards."""
        self.journal = np.zeros((rows + 1, k.JOURNAL_COLUMNS), np.int64)

    def recorded(self) -> np.ndarray:
        """The journal's rows so far; raises if some did not fit (a replay of part of it would
        measure a different book)."""
        used, dropped = int(self.journal[0, 0]), int(self.journal[0, 1])
        if dropped:
            raise OverflowError(f"the book journal held {used} rows; {dropped} more did not fit")
        return self.journal[1:used + 1]

    def load(self, book: int, bids: np.ndarray, asks: np.ndarray) -> None:
        """Replace a book with a snapshot; `bids`/`asks` are int64 (n, 2) [price, qty] in any order."""
        for side, rows in ((k.BID, bids), (k.ASK, asks)):
            rows = np.ascontiguousarray(rows, np.int64).reshape(-1, 2)
            k.load_side(self.levels, self.ladder, self.meta, book, side, rows[:, 0].copy(), rows[:, 1].copy(),
                        len(rows))

    def load_levels(self, book: int, sides: np.ndarray, prices: np.ndarray, qtys: np.ndarray) -> None:
        """Replace a book with a snapshot given as level changes, as a feed loads one: best-first
        levels per side load in one pass, anything else is applied in order to the emptied book."""
        k.load_book(self.levels, self.ladder, self.meta, book, np.asarray(sides, np.int64),
                    np.asarray(prices, np.int64), np.asarray(qtys, np.int64))

    def clear(self, book: int) -> None:
        k.clear_book(self.levels, self.ladder, self.meta, book)

    def set(self, book: int, side: int, price: int, qty: int) -> None:
        """One absolute level change (qty 0 deletes)."""
        self.apply(book, side, np.array([price], np.int64), np.array([qty], np.int64))

    def apply(self, book: int, side: int, prices: np.ndarray, qtys: np.ndarray) -> int:
        """Apply level changes to one side in order; returns the number of deletes of absent levels."""
        sides = np.full(len(prices), side, np.int64)
        return int(k.apply_changes(self.levels, self.ladder, self.meta, book, sides,
                                   np.asarray(prices, np.int64), np.asarray(qtys, np.int64)))

    def truncate(self, book: int, depth: int) -> None:
        for side in (k.BID, k.ASK):
            k.truncate_side(self.levels, self.ladder, self.meta, book, side, depth)

    def top(self, book: int, side: int, depth: int | None = None) -> np.ndarray:
        """Best-first int64 (n, 2) [price, qty] rows of one side."""
        count = self.count(book, side)
        depth = count if depth is None else min(depth, count)
        out = np.empty(2 * depth, np.int64)
        k.copy_top(self.levels, self.ladder, self.meta, book, side, out, 0, depth)
        return out.reshape(depth, 2)

    def count(self, book: int, side: int) -> int:
        return int(k.side_count(self.meta, book, side))

    def best(self, book: int, side: int) -> tuple[int, int] | None:
        price, qty = k.best_level(self.levels, self.ladder, self.meta, book, side)
        return (int(price), int(qty)) if qty else None

    def crossed(self, book: int) -> bool:
        return bool(k.is_crossed(self.levels, self.ladder, self.meta, book))

    def kraken_checksum(self, book: int, px_pad: int = 0, qty_pad: int = 0) -> int:
        work = np.empty(1024, np.int64)
        return int(kraken_checksum(self.levels, self.ladder, self.meta, book, px_pad, qty_pad, work))

    def absent_deletes(self, book: int) -> int:
        return int(self.meta[book, k.M_ABSENT_DELETES])

    def overflow(self, book: int) -> int:
        return int(self.meta[book, k.M_OVERFLOW])

    def rejected(self, book: int) -> int:
        return int(self.meta[book, k.M_REJECTED])
