"""Trades are matched, in the writer and in feed order, to their book as it stood just before them."""
import numpy as np
import pytest

from feedhandler.book import BookStore
from feedhandler.feed_kernels import SCRATCH_ROWS, publish_one_trade
from feedhandler.publish import Output
from feedhandler.sync import LIVE, SY_STATE, SY_UPDATE_ID, new_sync
from shm.histogram import HIST_WORDS
from shm.layout import (N_COUNTERS, NO_BOOK, RING_CONTROL_WORDS, SLOT_TRADE_ASK_PX, SLOT_TRADE_ASK_QTY,
                        SLOT_TRADE_BID_PX, SLOT_TRADE_BID_QTY, SLOT_TRADE_BOOK_ID, SLOT_TRADE_SWEPT, SLOT_WORDS, Side)
from shm.ring import poll


@pytest.fixture
def market():
    """One book: bids 99/98/97 (sizes 1/2/3), asks 101/102/103 (sizes 4/5/6), LIVE at update 77."""
    books = BookStore([64], window=64)
    books.load(0, np.array([[99, 1], [98, 2], [97, 3]]), np.array([[101, 4], [102, 5], [103, 6]]))
    sync = new_sync(1)
    sync[0, SY_STATE] = LIVE
    sync[0, SY_UPDATE_ID] = 77
    ring, control = np.zeros((16, SLOT_WORDS), np.int64), np.zeros(RING_CONTROL_WORDS, np.int64)
    return books, sync, ring, control


def trade(market, price, side):
    books, sync, ring, control = market
    out = Output(np.zeros((1, 1), np.int64), ring, control, np.zeros((2, N_COUNTERS), np.int64), np.zeros((3, HIST_WORDS), np.int64))
    publish_one_trade(0, 1, 0, price, 1, int(side), 0, np.zeros((SCRATCH_ROWS, 1), np.int64), sync, books.arrays, out)
    rows = np.zeros((1, SLOT_WORDS), np.int64)
    poll(ring, control, np.array([int(control[0]) - 1, 0], np.int64), rows)
    return rows[0]


def test_a_trade_carries_the_touch_and_the_book_id_before_it(market):
    row = trade(market, 101, Side.BUY)
    assert [row[SLOT_TRADE_BID_PX], row[SLOT_TRADE_BID_QTY], row[SLOT_TRADE_ASK_PX], row[SLOT_TRADE_ASK_QTY],
            row[SLOT_TRADE_BOOK_ID]] == [99, 1, 101, 4, 77]


@pytest.mark.parametrize("price, side, swept", [
    (101, Side.BUY, 1), (102, Side.BUY, 2), (150, Side.BUY, 3), (100, Side.BUY, 0),
    (99, Side.SELL, 1), (97, Side.SELL, 3), (103, Side.UNKNOWN, 3), (98, Side.UNKNOWN, 2), (100, Side.UNKNOWN, 0),
])
def test_a_trade_counts_the_levels_it_swept_on_the_side_it_hit(market, price, side, swept):
    assert trade(market, price, side)[SLOT_TRADE_SWEPT] == swept


def test_a_trade_on_a_book_that_is_not_valid_says_so(market):
    market[1][0, SY_STATE] = 0
    assert trade(market, 101, Side.BUY)[SLOT_TRADE_SWEPT] == NO_BOOK
