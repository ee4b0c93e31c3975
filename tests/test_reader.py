import time
from decimal import Decimal

import numpy as np
import pytest

from feedhandler.book import BookStore
from feedhandler.publish import output_of, publish
from shm import ring
from shm.histogram import HIST_WORDS
from shm.layout import Counter, Reason, Side, Status
from readers import in_process_reader
from shm.reader import BookEvent, GapEvent, StatusEvent, TradeEvent, VenueReader
from shm.segment import InstrumentSpec, SegmentError, SegmentWriter

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 100), InstrumentSpec("ETHUSDT", "ETH-USDT", 2, 4, 100)]

LATENCY = np.zeros((3, HIST_WORDS), np.int64)  # the writer's latency rows (publish.VENUE_HOPS)


@pytest.fixture
def venue(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance", SPEC, 5, 16)
    books = BookStore([100, 100])
    books.load(0, np.array([[6500012, 150000], [6500000, 7]]), np.array([[6500100, 2500000]]))
    yield writer, books, in_process_reader("binance", shm_prefix)
    writer.close()


def test_lists_instruments_with_symbols_and_decimals(venue):
    _, _, reader = venue
    assert [(i.venue_symbol, i.symbol, i.px_dec, i.qty_dec) for i in reader.instruments] == [
        ("BTCUSDT", "BTC-USDT", 2, 5), ("ETHUSDT", "ETH-USDT", 2, 4)]


def test_finds_an_instrument_by_normalized_symbol_venue_symbol_or_index(venue):
    _, _, reader = venue
    assert reader.instrument("ETH-USDT") is reader.instrument("ETHUSDT") is reader.instrument(1)


def test_an_unknown_symbol_error_lists_the_known_ones(venue):
    _, _, reader = venue
    with pytest.raises(KeyError, match="unknown instrument 'DOGE-USD'.*BTC-USDT, ETH-USDT"):
        reader.instrument("DOGE-USD")


def test_an_unpublished_book_is_invalid_and_empty(venue):
    _, _, reader = venue
    snapshot = reader.book("ETH-USDT")
    assert not snapshot.valid
    assert snapshot.best_bid() is None and len(snapshot.asks) == 0


def test_a_valid_book_reads_invalid_once_its_writer_stops_heartbeating(venue, shm_prefix):
    writer, books, _ = venue
    publish(books.arrays, 0, output_of(writer, LATENCY), 41, 1000, 2000, True)
    strict = VenueReader("binance", prefix=shm_prefix, stale_after_s=0.2)
    writer.heartbeat()
    assert strict.book("BTC-USDT").valid
    time.sleep(0.3)
    assert not strict.book("BTC-USDT").valid
    writer.heartbeat()
    assert strict.book("BTC-USDT").valid
    strict.close()


def test_a_closed_writers_books_read_invalid_but_keep_their_levels(venue):
    writer, books, reader = venue
    publish(books.arrays, 0, output_of(writer, LATENCY), 41, 1000, 2000, True)
    writer.close()
    snapshot = reader.book("BTC-USDT")
    assert not snapshot.valid and snapshot.levels_text("bids")[0] == ["65000.12", "1.50000"]


def test_book_snapshot_has_exact_levels_and_stamps(venue):
    writer, books, reader = venue
    publish(books.arrays, 0, output_of(writer, LATENCY), 41, 1000, 2000, True)
    snapshot = reader.book("BTC-USDT")
    assert snapshot.valid and snapshot.update_id == 41
    assert (snapshot.ts_exchange, snapshot.ts_recv) == (1000, 2000) and snapshot.ts_publish > 0
    assert snapshot.best_bid() == (Decimal("65000.12"), Decimal("1.50000"))
    assert snapshot.best_ask() == (Decimal("65001.00"), Decimal("25.00000"))
    assert snapshot.levels_text("bids") == [["65000.12", "1.50000"], ["65000.00", "0.00007"]]
    assert snapshot.n_bids == 2 and snapshot.n_asks == 1


def test_book_depth_limits_the_levels_returned(venue):
    writer, books, reader = venue
    publish(books.arrays, 0, output_of(writer, LATENCY), 1, 0, 0, True)
    assert len(reader.book("BTC-USDT", depth=1).bids) == 1


def test_events_arrive_typed_and_in_order(venue):
    writer, books, reader = venue
    cursor = reader.events()
    publish(books.arrays, 0, output_of(writer, LATENCY), 5, 0, 0, True)
    ring.publish_trade(writer.ring, writer.ring_control, 0, 9, 0, 0, 0, 6500012, 100, int(Side.SELL), 6500012, 40,
                       6500100, 30, 1, 5)
    ring.publish_status(writer.ring, writer.ring_control, 0, int(Status.BOOK_INVALID), int(Reason.CHECKSUM), 0, 0, 0)
    book, trade, status = cursor.poll()
    assert isinstance(book, BookEvent) and (book.bid_px, book.ask_px, book.update_id) == (6500012, 6500100, 5)
    assert isinstance(trade, TradeEvent) and trade.side == Side.SELL and trade.instrument.symbol == "BTC-USDT"
    assert (trade.bid_px, trade.bid_qty, trade.ask_px, trade.ask_qty, trade.swept, trade.book_update_id) == (
        6500012, 40, 6500100, 30, 1, 5)
    assert isinstance(status, StatusEvent) and (status.status, status.reason) == (Status.BOOK_INVALID, Reason.CHECKSUM)
    assert [e.position for e in (book, trade, status)] == [0, 1, 2]


def test_a_live_cursor_skips_history_and_an_oldest_cursor_replays_what_the_ring_holds(venue):
    writer, books, reader = venue
    for update_id in range(3):
        publish(books.arrays, 0, output_of(writer, LATENCY), update_id, 0, 0, True)
    assert reader.events("live").poll() == []
    assert [e.update_id for e in reader.events("oldest").poll()] == [0, 1, 2]


def test_a_slow_consumer_is_told_how_many_events_it_lost(venue):
    writer, books, reader = venue
    cursor = reader.events()
    for update_id in range(40):
        publish(books.arrays, 0, output_of(writer, LATENCY), update_id, 0, 0, True)
    events = cursor.poll()
    assert events == [GapEvent(position=40, missed=40)]
    assert cursor.missed == 40


def test_counters_by_instrument_and_for_the_venue(venue):
    writer, _, reader = venue
    writer.counters[1, Counter.GAPS] = 3
    writer.counters[-1, Counter.FRAMES] = 1234
    assert reader.counters("ETH-USDT")["gaps"] == 3
    assert reader.counters()["frames"] == 1234


def test_status_reports_the_writer(venue):
    writer, _, reader = venue
    writer.heartbeat()
    status = reader.status()
    assert status["state"] == "open" and status["writer_alive"]
    writer.close()
    assert reader.status()["state"] == "closed"


def test_attaching_to_an_absent_venue_fails_clearly(shm_prefix):
    with pytest.raises(SegmentError, match="is the writer for 'kraken' running"):
        in_process_reader("kraken", shm_prefix)


def test_totals_sum_every_counter_over_the_venue_and_its_instruments(venue):
    writer, _, reader = venue
    writer.counters[0, Counter.GAPS] = 2
    writer.counters[1, Counter.GAPS] = 3
    writer.counters[-1, Counter.FRAMES] = 7
    totals = reader.totals()
    assert totals["gaps"] == 5 and totals["frames"] == 7 and totals["resyncs"] == 0
