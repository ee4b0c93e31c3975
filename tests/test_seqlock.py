import multiprocessing

import numpy as np
import pytest

import procs
from feedhandler.book import BookStore
from feedhandler.publish import write_book_block
from shm.layout import BOOK_SEQ, BOOK_UPDATE_ID
from shm.segment import InstrumentSpec, Segment, SegmentWriter
from shm.seqlock import read_best, read_block, read_top, write_begin

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 100)]


def published(shm_prefix, depth=3):
    writer = SegmentWriter.create(shm_prefix, "binance", SPEC, depth, 16)
    books = BookStore([100])
    books.load(0, np.array([[100, 1], [99, 2], [98, 3], [97, 4]]), np.array([[101, 5], [102, 6]]))
    write_book_block(books.levels, books.ladder, books.meta, 0, writer.books[0], 7, 1, 2, 3, True)
    return writer


def test_a_publish_leaves_the_sequence_even_and_advanced(shm_prefix):
    with published(shm_prefix) as writer:
        assert writer.books[0, BOOK_SEQ] == 2


def test_read_top_returns_the_published_levels_best_first(shm_prefix):
    with published(shm_prefix) as writer:
        bids, asks = np.zeros((5, 2), np.int64), np.zeros((5, 2), np.int64)
        update_id, valid, n_bids, n_asks = read_top(writer.books[0], 5, bids, asks, 100)
        assert (update_id, valid, n_bids, n_asks) == (7, 1, 3, 2)  # depth 3 published
        assert bids[:3].tolist() == [[100, 1], [99, 2], [98, 3]]
        assert asks[:2].tolist() == [[101, 5], [102, 6]]


def test_read_best_gives_the_touch_and_validity(shm_prefix):
    with published(shm_prefix) as writer:
        out = np.zeros(5, np.int64)
        assert read_best(writer.books[0], out, 100)
        assert out.tolist() == [100, 1, 101, 5, 7]


def test_a_reader_gives_up_on_a_writer_stuck_inside_a_publish(shm_prefix):
    with published(shm_prefix) as writer:
        write_begin(writer.books[0])  # as if the writer died mid-publish
        out = np.zeros(writer.geometry.block_words, np.int64)
        assert read_block(writer.books[0], out, 1000) == -1
        assert not read_best(writer.books[0], np.zeros(5, np.int64), 1000)


@pytest.mark.jit
def test_readers_in_another_process_never_see_a_torn_book(shm_prefix):
    spawn = multiprocessing.get_context("spawn")
    ready, enough = spawn.Event(), spawn.Event()
    writer = spawn.Process(target=procs.seqlock_writer, args=(shm_prefix, "binance", 100_000, ready, enough))
    writer.start()
    assert ready.wait(120)
    segment = Segment(shm_prefix, "binance")
    copy = np.zeros(segment.geometry.block_words, np.int64)
    reads, torn, seen = 0, 0, set()
    while writer.is_alive() and (reads < 20_000 or len(seen) < 100):
        if read_block(segment.books[0], copy, 1_000_000) >= 0:
            reads += 1
            torn += procs.book_torn_words(copy) != 0
            seen.add(int(copy[BOOK_UPDATE_ID]))
    enough.set()
    writer.join(60)
    assert torn == 0
    assert len(seen) >= 100  # the reads really overlapped many different writes
