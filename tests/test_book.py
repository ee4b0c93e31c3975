import gzip
import json
from decimal import Decimal

import numpy as np
import pytest

from feedhandler.book import BookStore
from feedhandler.book_kernels import ASK, BID
from feedhandler.run_kernels import run_rows
from shm.fixedpoint import format_decimal, parse


def rows(*levels):
    return np.array(levels, np.int64).reshape(-1, 2)


def test_snapshot_in_any_order_is_held_best_first():
    books = BookStore([16])
    books.load(0, rows([98, 1], [100, 2], [99, 3]), rows([103, 1], [101, 2], [102, 3]))
    assert books.top(0, BID).tolist() == [[100, 2], [99, 3], [98, 1]]
    assert books.top(0, ASK).tolist() == [[101, 2], [102, 3], [103, 1]]


def test_snapshot_keeps_the_last_quantity_of_a_repeated_price_and_drops_zero_quantities():
    books = BookStore([16])
    books.load(0, rows([100, 1], [99, 4], [100, 7], [98, 0]), rows())
    assert books.top(0, BID).tolist() == [[100, 7], [99, 4]]


def test_snapshot_replaces_the_previous_book():
    books = BookStore([16])
    books.load(0, rows([100, 1]), rows([101, 1]))
    books.load(0, rows([90, 2]), rows())
    assert books.top(0, BID).tolist() == [[90, 2]]
    assert books.count(0, ASK) == 0


def test_set_inserts_replaces_and_deletes_levels():
    books = BookStore([16])
    books.set(0, BID, 100, 5)
    books.set(0, BID, 102, 1)
    books.set(0, BID, 100, 9)
    books.set(0, BID, 101, 3)
    books.set(0, BID, 102, 0)
    assert books.top(0, BID).tolist() == [[101, 3], [100, 9]]


def test_deleting_an_absent_level_is_counted_and_ignored():
    books = BookStore([16])
    books.set(0, ASK, 101, 5)
    books.set(0, ASK, 105, 0)
    assert books.top(0, ASK).tolist() == [[101, 5]]
    assert books.absent_deletes(0) == 1


def test_truncate_keeps_the_best_levels_of_each_side():
    books = BookStore([16])
    books.load(0, rows(*[[100 - i, 1] for i in range(8)]), rows(*[[101 + i, 1] for i in range(8)]))
    books.truncate(0, 3)
    assert books.top(0, BID)[:, 0].tolist() == [100, 99, 98]
    assert books.top(0, ASK)[:, 0].tolist() == [101, 102, 103]


def test_top_returns_at_most_the_requested_depth():
    books = BookStore([16])
    books.load(0, rows(*[[100 - i, i + 1] for i in range(5)]), rows())
    assert books.top(0, BID, 2).tolist() == [[100, 1], [99, 2]]
    assert books.top(0, BID, 50).shape == (5, 2)


def test_best_of_an_empty_side_is_none():
    books = BookStore([4])
    assert books.best(0, BID) is None
    books.set(0, ASK, 7, 1)
    assert books.best(0, ASK) == (7, 1)


@pytest.mark.parametrize("bid, ask, crossed", [(100, 101, False), (101, 101, True), (102, 101, True)])
def test_a_book_with_bid_at_or_above_ask_is_crossed(bid, ask, crossed):
    books = BookStore([4])
    books.load(0, rows([bid, 1]), rows([ask, 1]))
    assert books.crossed(0) is crossed


def test_one_sided_book_is_not_crossed():
    books = BookStore([4])
    books.set(0, BID, 100, 1)
    assert not books.crossed(0)


def test_a_full_side_keeps_its_best_levels_and_counts_what_it_dropped():
    books = BookStore([4], window=2)  # 2 ticks in the ladder, 4 levels in the run below it
    books.load(0, rows(*[[100 - i, 1] for i in range(8)]), rows())
    assert books.top(0, BID)[:, 0].tolist() == [100, 99, 98, 97, 96, 95]
    books.set(0, BID, 50, 1)  # worse than everything held with the run full: dropped
    books.set(0, BID, 101, 1)  # a new best pushes 99 into the full run, which evicts its worst
    assert books.top(0, BID)[:, 0].tolist() == [101, 100, 99, 98, 97, 96]
    assert books.overflow(0) == 4


def test_levels_outside_the_window_are_held_exactly():
    books = BookStore([16], window=4)
    books.load(0, rows(*[[1000 - 3 * i, i + 1] for i in range(10)]), rows(*[[1001 + 5 * i, 1] for i in range(10)]))
    books.set(0, BID, 973, 0)  # deep, in the run
    books.set(0, BID, 990, 77)  # deep insert between run levels
    assert books.top(0, BID).tolist() == [[1000, 1], [997, 2], [994, 3], [991, 4], [990, 77], [988, 5],
                                          [985, 6], [982, 7], [979, 8], [976, 9]]


def test_the_window_follows_the_touch_both_ways():
    books = BookStore([64], window=8)
    for price in range(100, 140):  # best bid walks up far past the window
        books.set(0, BID, price, 1)
    for price in range(139, 110, -1):  # and back down
        books.set(0, BID, price, 0)
    assert books.top(0, BID)[:, 0].tolist() == list(range(110, 99, -1))
    assert books.best(0, BID) == (110, 1)


def test_hostile_prices_and_negative_quantities_are_refused_and_counted():
    books = BookStore([8])
    books.set(0, BID, 100, 1)
    books.set(0, BID, 2**63 - 1, 5)
    books.set(0, ASK, -5, 5)
    books.set(0, ASK, 101, -1)
    assert books.top(0, BID).tolist() == [[100, 1]]
    assert books.count(0, ASK) == 0
    assert books.rejected(0) == 3


def test_prices_far_apart_share_one_side():
    books = BookStore([8])
    for price in (1, 10**15, 5, 10**12, 2**62):
        books.set(0, BID, price, 1)
    assert books.top(0, BID)[:, 0].tolist() == [2**62, 10**15, 10**12, 5, 1]


def test_many_inserts_at_the_touch_re_centre_without_losing_levels():
    books = BookStore([64], window=4)
    for price in range(1, 61):
        books.set(0, BID, price, price)
    for price in range(1, 61, 2):
        books.set(0, BID, price, 0)
    for price in range(1000, 1004):
        books.set(0, ASK, price, 1)
    assert books.top(0, BID)[:, 0].tolist() == list(range(60, 0, -2))
    assert books.count(0, ASK) == 4


def test_memory_per_book_is_fixed_by_its_capacity():
    books = BookStore([5000, 1000], window=2048)
    held = books.levels.nbytes + books.ladder.nbytes
    assert held == BookStore.memory_bytes(5000, 2048) + BookStore.memory_bytes(1000, 2048)
    assert BookStore.memory_bytes(5000, window=4096) == 2 * ((4096 + 4096 // 64) * 8 + run_rows(5000) * 16)


def test_books_of_different_instruments_are_independent():
    books = BookStore([4, 4])
    books.set(0, BID, 100, 1)
    books.set(1, BID, 200, 2)
    books.clear(0)
    assert books.count(0, BID) == 0
    assert books.top(1, BID).tolist() == [[200, 2]]


def test_rejects_a_capacity_below_one_level():
    with pytest.raises(ValueError, match="capacit"):
        BookStore([0])


def test_full_depth_coinbase_btc_usd_snapshot_loads_exactly(captures):
    snapshot = json.loads(gzip.decompress((captures / "coinbase-rest-l2-2026" / "l2_snapshot.json.gz").read_bytes()))
    px_dec, qty_dec = 2, 8
    sides = {}
    for name in ("bids", "asks"):
        sides[name] = rows(*[[parse(level[0], px_dec), parse(level[1], qty_dec)] for level in snapshot[name]])
    books = BookStore([32768])
    books.load(0, sides["bids"], sides["asks"])

    for name, side, reverse in (("bids", BID, True), ("asks", ASK, False)):
        reference = {}
        for level in snapshot[name]:
            reference[Decimal(level[0])] = Decimal(level[1])
        expected = sorted(((p, q) for p, q in reference.items() if q), reverse=reverse)
        held = [(Decimal(format_decimal(int(p), px_dec)), Decimal(format_decimal(int(q), qty_dec)))
                for p, q in books.top(0, side)]
        assert held == expected
    assert books.count(0, BID) + books.count(0, ASK) > 40_000
    assert not books.crossed(0)
