"""Other projects' order books fed the same level changes as fh's book (`fh bench book --capture --peers`).

Each peer is driven the way its users drive it: one Python call per level change, from the journal
a capture's replay recorded (integer price keys, the cheapest key either peer takes). Peers:
- `order_book`: cryptofeed's C order book (PyPI order-book), `book.bids[price] = size`, `del`;
- `sortedcontainers`: a SortedDict per side, the structure of cryptofeed's Python path and of many
  trading bots.
Timing is as fh's: snapshot clears are not timed, snapshot loads and updates are, per stretch.
After each replay the peer's book must equal fh's (every level of every book), or its figure is of
another stream and is not reported. A peer that is not installed is reported as such (`pip install
'fh[peers]'`).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from feedhandler.book_kernels import ASK, BID, J_CLEAR, J_LOAD, J_MORE, J_TRUNCATE


def _order_book() -> tuple[Callable[[int], object], Callable[[object, int], int]]:
    from order_book import OrderBook

    def new(side: int) -> object:
        book = OrderBook()
        return book.bids if side == BID else book.asks
    return new, lambda levels, side: levels.index(len(levels) - 1)[0]  # each side ordered best first


def _sorted_dict() -> tuple[Callable[[int], object], Callable[[object, int], int]]:
    from sortedcontainers import SortedDict
    return lambda side: SortedDict(), lambda levels, side: levels.peekitem(0 if side == BID else -1)[0]


# name -> () -> (a new empty side, the worst price of a side: what a truncation removes)
PEERS = {"order_book": _order_book, "sortedcontainers": _sorted_dict}


def replay_peer(peer: tuple[Callable, Callable], journal, books: int) -> tuple[list[list], int, int]:
    """The journal through one peer: (its sides per book, update ns, snapshot ns)."""
    new_side, worst = peer
    sides = [[new_side(BID), new_side(ASK)] for _ in range(books)]
    ops, book_ids, side_of = journal.ops.tolist(), journal.books.tolist(), journal.sides.tolist()
    prices, qtys = journal.prices.tolist(), journal.qtys.tolist()
    update_ns = snapshot_ns = 0
    n = len(ops)
    k = 0
    clock = time.perf_counter_ns
    start = clock()
    while k < n:
        op = ops[k]
        if op == J_TRUNCATE:
            levels = sides[book_ids[k]][side_of[k]]
            depth = qtys[k]
            while len(levels) > depth:
                del levels[worst(levels, side_of[k])]
            k += 1
            continue
        if op == J_CLEAR:
            now = clock()
            update_ns += now - start
            sides[book_ids[k]] = [new_side(BID), new_side(ASK)]
            k += 1
            start = clock()
            continue
        end = k + 1
        while end < n and ops[end] == J_MORE:
            end += 1
        if op == J_LOAD:
            now = clock()
            update_ns += now - start
        book = sides[book_ids[k]]
        for r in range(k, end):
            levels = book[side_of[r]]
            if qtys[r]:
                levels[prices[r]] = qtys[r]
            elif prices[r] in levels:
                del levels[prices[r]]
        if op == J_LOAD:
            start = clock()
            snapshot_ns += start - now
        k = end
    update_ns += clock() - start
    return sides, update_ns, snapshot_ns


def _same_as(sides: list[list], store) -> bool:
    for book, book_sides in enumerate(sides):
        for side, levels in zip((BID, ASK), book_sides):
            ordered = sorted(levels.keys(), reverse=side == BID)
            if [[price, levels[price]] for price in ordered] != store.top(book, side).tolist():
                return False
    return True


def replay_peers(journal, store, rounds: int) -> dict[str, dict[str, object]]:
    """Each peer's ns per level (median of `rounds` replays after one warm-up), as fh's are reported;
    `store`: the books fh built from the journal, which each peer's must equal."""
    books = len(journal.capacities)
    snapshot = int(np.count_nonzero(journal.is_snapshot_level))
    levels = int(np.count_nonzero(journal.is_level))
    results: dict[str, dict[str, object]] = {}
    for name, make in PEERS.items():
        try:
            peer = make()
        except ImportError:
            results[name] = {"error": "not installed (pip install 'fh[peers]')"}
            continue
        sides, _, _ = replay_peer(peer, journal, books)
        if not _same_as(sides, store):
            results[name] = {"error": "its books differ from fh's after the replay; no figure"}
            continue
        ns = np.array([replay_peer(peer, journal, books)[1:] for _ in range(rounds)])
        total = ns.sum(1) / levels
        results[name] = {"ns_per_level": float(np.median(total)), "ns_per_level_best": float(total.min()),
                         "ns_per_update_level": float(np.median(ns[:, 0])) / (levels - snapshot)
                         if levels > snapshot else None,
                         "ns_per_snapshot_level": float(np.median(ns[:, 1])) / snapshot if snapshot else None}
    return results
