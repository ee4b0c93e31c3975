"""`fh bench book --capture FILE`: a capture's book changes replayed through the book alone.

The capture goes once through its venue's feed (the live decode path, as `fh replay` takes it),
which journals every change it makes to its books (book_kernels' journal). The journal is then
replayed through the book kernels only, on fresh books built as the feed's (capacity, window, each
instrument's tick), in one kernel call per round. Snapshot clears are not timed (zeroing a ladder
is a resync's cost, not a level's); everything else is, one `apply_changes` call per call the feed
made, truncations included. `ns_per_level` = timed ns / level changes (snapshot levels included):
for the venue's interleaved stream and for each book alone. `--unit-tick` replays with a ladder
step of one price unit (the book before the tick-indexed ladder) for comparison, and `--peers`
replays the same changes through other projects' books where they are installed (`bench.peers`).
"""
from __future__ import annotations

import os
from functools import partial

import numpy as np
from numba import njit

from feedhandler.book import BookStore
from feedhandler.book_kernels import (J_APPLY, J_CLEAR, J_LOAD, J_MORE, J_TRUNCATE, apply_changes, clear_book,
                                      load_book, truncate_side)
from feedhandler.capture import CaptureReader
from shm.clock import monotonic_ns
from shm.segment import SegmentWriter

from ..replay import capture_feed
from ..warmup import load_kernels, replay_loop
from .stats import machine

ROUNDS = 7
MAX_JOURNAL_ROWS = 1 << 26  # 2.5 GiB of journal: a capture with more level changes is benched in parts


class BookBenchError(ValueError):
    """A capture this bench cannot measure, with the reason."""


@njit(nogil=True, cache=True, _nrt=False)
def replay_journal(books, ops, book_ids, sides, prices, qtys, out_ns):
    """Journal rows through the book kernels, as the feed made the calls (a J_LOAD's levels in one
    load_book). Adds to out_ns[0] the ns of updates (stretches between snapshots, timed as a whole
    so that a clock read is not per call) and to out_ns[1] those of snapshot loads (each timed);
    a lone clear (a book invalidated) is not timed."""
    levels, ladder, meta = books.levels, books.ladder, books.meta
    n = len(ops)
    start = monotonic_ns()
    k = 0
    while k < n:
        op = ops[k]
        if op == J_TRUNCATE:
            truncate_side(levels, ladder, meta, book_ids[k], sides[k], qtys[k])
            k += 1
            continue
        end = k + 1
        while end < n and ops[end] == J_MORE:
            end += 1
        if op == J_APPLY:
            apply_changes(levels, ladder, meta, book_ids[k], sides[k:end], prices[k:end], qtys[k:end])
            k = end
            continue
        now = monotonic_ns()
        out_ns[0] += now - start
        if op == J_CLEAR:
            clear_book(levels, ladder, meta, book_ids[k])
        else:
            load_book(levels, ladder, meta, book_ids[k], sides[k:end], prices[k:end], qtys[k:end])
            out_ns[1] += monotonic_ns() - now
        k = end
        start = monotonic_ns()
    out_ns[0] += monotonic_ns() - start


class Journal:
    """A capture's book changes as columns, with the books' configuration they were made on."""

    def __init__(self, rows: np.ndarray, capacities: list[int], window: int, ticks: list[int]):
        self.ops, self.books, self.sides, self.prices, self.qtys = (np.ascontiguousarray(rows[:, c]) for c in range(5))
        self.capacities, self.window, self.ticks = capacities, window, ticks

    @property
    def is_level(self) -> np.ndarray:
        return np.isin(self.ops, (J_APPLY, J_LOAD, J_MORE))

    @property
    def is_snapshot_level(self) -> np.ndarray:
        """Rows that are levels of a J_LOAD call (the call's first row and the J_MORE rows after it)."""
        starts = np.flatnonzero(self.ops != J_MORE)
        call_op = self.ops[starts][np.cumsum(self.ops != J_MORE) - 1]
        return self.is_level & (call_op == J_LOAD)

    def subset(self, mask: np.ndarray) -> "Journal":
        rows = np.stack([self.ops, self.books, self.sides, self.prices, self.qtys], 1)[mask]
        return Journal(rows, self.capacities, self.window, self.ticks)

    def replay(self, ticks: list[int] | None = None) -> tuple[BookStore, np.ndarray]:
        """One timed replay on fresh books (`ticks`: each book's ladder step; the feed's by default):
        the books, and the ns of [updates, snapshot loads]."""
        store = BookStore(self.capacities, window=self.window, ticks=ticks or self.ticks)
        ns = np.zeros(2, np.int64)
        replay_journal(store.arrays, self.ops, self.books, self.sides, self.prices, self.qtys, ns)
        return store, ns


def journal_of(path: str) -> tuple[str, list, Journal, BookStore]:
    """(venue, instruments, journal, the feed's books at the end) of a capture run through its feed."""
    reader = CaptureReader(path)
    feed_class, instruments = capture_feed(reader)
    venue = reader.header["venue"]
    prefix = f"fhbenchbook{os.getpid()}"
    rows = min(max(1 << 16, os.path.getsize(path)), MAX_JOURNAL_ROWS)  # grown, and the capture run again
    while True:
        with SegmentWriter.create(prefix, venue, [i.spec(feed_class.CAPACITY) for i in instruments], depth=10,
                                  ring_slots=1 << 16) as writer:
            try:
                feed = feed_class(instruments, writer)
                feed.record_books(rows)
                for batch in reader.batches():
                    feed.on_batch(batch)
            finally:
                writer.close(unlink=True)
        try:
            recorded = feed.books.recorded()
        except OverflowError as exc:
            if rows == MAX_JOURNAL_ROWS:
                raise BookBenchError(f"{path}: {exc}: more level changes than this bench holds; bench a shorter "
                                     "capture") from exc
            rows = min(rows * 4, MAX_JOURNAL_ROWS)
            continue
        store = feed.books
        return venue, instruments, Journal(recorded.copy(), store.capacities, store.window, store.ticks), store


def _timings(journal: Journal, rounds: int, ticks: list[int] | None = None) -> dict[str, float]:
    """Median (and best) ns per level over `rounds` replays after one warm-up: all levels, update
    levels alone and snapshot levels alone (None where the journal has none)."""
    journal.replay(ticks)
    ns = np.array([journal.replay(ticks)[1] for _ in range(rounds)])
    snapshot = int(np.count_nonzero(journal.is_snapshot_level))
    updates = int(np.count_nonzero(journal.is_level)) - snapshot
    total = ns.sum(1) / max(updates + snapshot, 1)
    return {"ns_per_level": float(np.median(total)), "ns_per_level_best": float(total.min()),
            "ns_per_update_level": float(np.median(ns[:, 0])) / updates if updates else None,
            "ns_per_snapshot_level": float(np.median(ns[:, 1])) / snapshot if snapshot else None}


def _off_grid(journal: Journal, tick: int) -> int:
    levels = journal.is_level
    return int(np.count_nonzero(journal.prices[levels] % tick))


def run(path: str, rounds: int = ROUNDS, unit_tick: bool = False, peers: bool = False) -> dict[str, object]:
    load_kernels("fh bench book", partial(_kernels, CaptureReader(path).header["venue"]))
    venue, instruments, journal, fed = journal_of(path)
    levels = int(np.count_nonzero(journal.is_level))
    if levels == 0:
        raise BookBenchError(f"{path}: the capture changed no book (no snapshot or update reached one)")
    _check_same_books(journal, fed)
    result: dict[str, object] = {"capture": path, "venue": venue, "rounds": rounds, "levels": levels,
                                 "snapshot_levels": int(np.count_nonzero(journal.is_snapshot_level)),
                                 "window": journal.window}
    result.update(_timings(journal, rounds))
    result["levels_per_s"] = 1e9 / result["ns_per_level"]
    units = [1] * len(instruments)
    if unit_tick:
        result["unit_tick"] = _timings(journal, rounds, units)
    books: dict[str, dict[str, object]] = {}
    for index, instrument in enumerate(instruments):
        own = journal.subset(journal.books == index)
        n = int(np.count_nonzero(own.is_level))
        if n == 0:
            continue
        entry: dict[str, object] = {"levels": n, "tick_units": journal.ticks[index],
                                    "off_grid_levels": _off_grid(own, journal.ticks[index]),
                                    "held": fed.count(index, 0) + fed.count(index, 1)}
        entry.update(_timings(own, rounds))
        if unit_tick:
            entry["unit_tick"] = _timings(own, rounds, units)
        books[instrument.symbol] = entry
    result["books"] = books
    if peers:
        from .peers import replay_peers
        result["peers"] = replay_peers(journal, fed, rounds)
        fastest = min((p["ns_per_level"] for p in result["peers"].values() if "ns_per_level" in p), default=None)
        if fastest:
            result["ratio_to_fastest_peer"] = result["ns_per_level"] / fastest
    result["machine"] = machine()
    return result


def _check_same_books(journal: Journal, fed: BookStore) -> None:
    """The replay must build the books the feed built, or its timing is of something else."""
    replayed, _ = journal.replay()
    for book in range(len(fed)):
        for side in (0, 1):
            if not np.array_equal(replayed.top(book, side), fed.top(book, side)):
                raise BookBenchError(f"book {book} side {side}: the journal's replay built another book than the "
                                     "feed did (a bug in the journal); its timing would be of something else")


def _kernels(venue: str, prefix: str) -> None:
    """The venue's replay path and the journal replay, on a two-level journal."""
    replay_loop(prefix, venue)
    rows = np.array([[J_LOAD, 0, 0, 100, 1], [J_MORE, 0, 1, 101, 1], [J_TRUNCATE, 0, 0, 0, 5],
                     [J_CLEAR, 0, 0, 0, 0]], np.int64)
    Journal(rows, [8], 64, [1]).replay()
