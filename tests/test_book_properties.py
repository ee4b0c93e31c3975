"""Random operation sequences against a deliberately plain dict-of-Decimal reference book."""
import random
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedhandler.book import BookStore
from feedhandler.book_kernels import ASK, BID
from shm.fixedpoint import format_decimal, parse

PX_DEC, QTY_DEC = 2, 8


class ReferenceBook:
    """Both sides as {Decimal price: Decimal qty}, nothing else."""

    def __init__(self):
        self.sides = {BID: {}, ASK: {}}

    def set(self, side: int, price: Decimal, qty: Decimal) -> None:
        if qty == 0:
            self.sides[side].pop(price, None)
        else:
            self.sides[side][price] = qty

    def load(self, side: int, levels) -> None:
        self.sides[side] = {}
        for price, qty in levels:
            self.set(side, price, qty)

    def truncate(self, depth: int) -> None:
        for side in (BID, ASK):
            self.sides[side] = dict(self.levels(side)[:depth])

    def levels(self, side: int):
        return sorted(self.sides[side].items(), reverse=side == BID)


def held(books: BookStore, side: int):
    return [(Decimal(format_decimal(int(p), PX_DEC)), Decimal(format_decimal(int(q), QTY_DEC)))
            for p, q in books.top(0, side)]


def encoded(levels):
    return np.array([[parse(format(p, "f"), PX_DEC), parse(format(q, "f"), QTY_DEC)] for p, q in levels], np.int64).reshape(-1, 2)


def apply(books: BookStore, reference: ReferenceBook, op) -> None:
    kind = op[0]
    if kind == "set":
        _, side, price, qty = op
        books.set(0, side, parse(format(price, "f"), PX_DEC), parse(format(qty, "f"), QTY_DEC))
        reference.set(side, price, qty)
    elif kind == "batch":
        _, side, levels = op
        rows = encoded(levels)
        books.apply(0, side, rows[:, 0].copy(), rows[:, 1].copy())
        for price, qty in levels:
            reference.set(side, price, qty)
    elif kind == "load":
        _, bids, asks = op
        books.load(0, encoded(bids), encoded(asks))
        reference.load(BID, bids)
        reference.load(ASK, asks)
    elif kind == "snapshot":  # as a feed loads one: both sides' levels in one call
        _, rows, best_first = op
        if best_first:  # as venues send them: each side distinct, non-zero, best first
            rows = [row for row in rows if row[2] != 0]
            rows = list({(side, price): (side, price, qty) for side, price, qty in rows}.values())
            rows.sort(key=lambda row: (row[0], -row[1] if row[0] == BID else row[1]))
        books.load_levels(0, [side for side, _, _ in rows], [parse(format(p, "f"), PX_DEC) for _, p, _ in rows],
                          [parse(format(q, "f"), QTY_DEC) for _, _, q in rows])
        reference.sides = {BID: {}, ASK: {}}
        for side, price, qty in rows:
            reference.set(side, price, qty)
    elif kind == "truncate":
        books.truncate(0, op[1])
        reference.truncate(op[1])


def assert_same(books: BookStore, reference: ReferenceBook) -> None:
    for side in (BID, ASK):
        assert held(books, side) == reference.levels(side)
    bids, asks = reference.levels(BID), reference.levels(ASK)
    assert books.crossed(0) == bool(bids and asks and bids[0][0] >= asks[0][0])


near_prices = st.integers(1, 400).map(lambda units: Decimal(units).scaleb(-PX_DEC))
# on the grid of every tick below but 7: a book keeps them in its ladder, and the near prices between
# them are off-grid levels (Binance's legacy levels finer than the tick) that it keeps in its run
grid_prices = st.integers(1, 40).map(lambda steps: Decimal(30 * steps).scaleb(-PX_DEC))
far_prices = st.integers(1, 10**15).map(lambda units: Decimal(units).scaleb(-PX_DEC))
prices = st.one_of(near_prices, grid_prices, grid_prices, far_prices)
ticks = st.sampled_from([1, 3, 5, 7, 30])
qtys = st.one_of(st.just(Decimal(0)), st.integers(1, 10**12).map(lambda units: Decimal(units).scaleb(-QTY_DEC)))
sides = st.sampled_from([BID, ASK])
level_lists = st.lists(st.tuples(prices, qtys), max_size=60)
operations = st.one_of(
    st.tuples(st.just("set"), sides, prices, qtys),
    st.tuples(st.just("set"), sides, prices, qtys),
    st.tuples(st.just("batch"), sides, level_lists),
    st.tuples(st.just("load"), level_lists, level_lists),
    st.tuples(st.just("snapshot"), st.lists(st.tuples(sides, prices, qtys), max_size=80), st.booleans()),
    st.tuples(st.just("truncate"), st.integers(0, 30)),
)


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 64), ticks, st.lists(operations, max_size=40))
def test_random_operations_match_the_reference_book(window, tick, ops):
    books, reference = BookStore([10_000], window=window, ticks=[tick]), ReferenceBook()
    for op in ops:
        apply(books, reference, op)
        assert_same(books, reference)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 16), ticks, st.lists(operations, max_size=40))
def test_a_book_that_overflows_never_holds_a_level_the_reference_lacks(window, capacity, tick, ops):
    books, reference = BookStore([capacity], window=window, ticks=[tick]), ReferenceBook()
    for op in ops:
        apply(books, reference, op)
        for side in (BID, ASK):
            assert set(held(books, side)) <= set(reference.levels(side))
        if books.overflow(0) == 0:
            assert_same(books, reference)


@pytest.mark.parametrize("tick, off_grid", [(1, 0.0), (10, 0.05)])
def test_long_random_session_on_a_deep_book_matches_the_reference(tick, off_grid):
    """A deep book moving for 3,000 diffs; with a tick of 10, one level in 20 is off the grid."""
    rng = random.Random(20261121)
    books, reference = BookStore([6000], window=1024, ticks=[tick]), ReferenceBook()
    mid = 5_000_000

    def price(steps: int) -> Decimal:
        units = max(steps, 1) * tick + (rng.randint(1, tick - 1) if rng.random() < off_grid else 0)
        return Decimal(units).scaleb(-PX_DEC)

    snapshot_bids = [(price(mid - i), Decimal(rng.randint(1, 10**9)).scaleb(-QTY_DEC)) for i in range(1, 5001)]
    snapshot_asks = [(price(mid + i), Decimal(rng.randint(1, 10**9)).scaleb(-QTY_DEC)) for i in range(1, 5001)]
    apply(books, reference, ("load", snapshot_bids, snapshot_asks))
    for step in range(3000):
        mid += rng.randint(-3, 3)
        side = rng.choice((BID, ASK))
        levels = []
        for _ in range(rng.randint(1, 40)):
            depth = int(rng.expovariate(1 / 30)) if rng.random() < 0.9 else rng.randint(0, 6000)
            steps = mid - 1 - depth if side == BID else mid + 1 + depth
            qty = 0 if rng.random() < 0.3 else rng.randint(1, 10**9)
            levels.append((price(steps), Decimal(qty).scaleb(-QTY_DEC)))
        apply(books, reference, ("batch", side, levels))
        if step % 250 == 0:
            assert_same(books, reference)
    assert_same(books, reference)
