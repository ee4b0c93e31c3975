"""Binance USD-M and COIN-M futures (derivatives-protocols.md §1): the decoder on the documented
example messages, the futures book rule (drop u < lastUpdateId, the first diff straddles it, then pu
chains on), the market-data records (bookTicker, markPriceUpdate, forceOrder), the plans and the
instruments, the real 2021 USD-M recording replayed with no gap, and a worker against the simulator."""
import asyncio
import json
import time
from decimal import Decimal

import pytest

from feedhandler.config import parse_config
from feedhandler.instruments import FUTURE, PERPETUAL, Instrument
from feedhandler.sync import SyncState
from feedhandler.venues import VENUES, by_cryptofeed
from feedhandler.venues.base import PlanOptions
from feedhandler.venues.binance_coinm import BinanceCoinmFeed
from feedhandler.venues.binance_usdm import BinanceFuturesFeed
from feedhandler.venues.binance_usdm.protocol import parse_instruments
from pipeline import free_base_port
from readers import in_process_reader
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, Side, Status
from shm.reader import (BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent, StatusEvent, TradeEvent,
                        funding_rate)
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.plan import plan
from tools.replay import replay
from tools.sim.server import Simulator
from workers.lifecycle import Stop
from workers.venue import VenueWorker

BTC = Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", 4, 0, market=PERPETUAL)

# The documented examples of §1.4, verbatim but for the combined-stream wrapper the connections use.
DOC_DEPTH = {"e": "depthUpdate", "E": 123456789, "T": 123456788, "s": "BTCUSDT", "U": 157, "u": 160, "pu": 149,
             "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
DOC_AGG_TRADE = {"e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "0.001", "q": "100",
                 "nq": "100", "f": 100, "l": 105, "T": 123456785, "m": True}
DOC_BOOK_TICKER = {"e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891, "s": "BNBUSDT",
                   "b": "25.35", "B": "31.21", "a": "25.36", "A": "40.66"}
DOC_MARK_PRICE = {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15", "i": "11784.62",
                  "P": "11784.25", "r": "0.00038167", "T": 1562306400000}
DOC_FORCE_ORDER = {"e": "forceOrder", "E": 1568014460893, "o": {
    "s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC", "q": "0.014", "p": "9910", "ap": "9910", "X": "FILLED",
    "l": "0.014", "z": "0.014", "T": 1568014460893}}


def wrapped(data, stream="btcusdt@depth@100ms"):
    return json.dumps({"stream": stream, "data": data}).encode()


def diff(first, last, prev, bids=(), asks=(), time_ms=1_700_000_000_000):
    return wrapped({"e": "depthUpdate", "E": time_ms + 5, "T": time_ms, "s": "BTCUSDT", "U": first, "u": last,
                    "pu": prev, "b": [list(b) for b in bids], "a": [list(a) for a in asks]})


def snapshot(last_id, bids=(("0.0020", "5"),), asks=(("0.0030", "5"),)):
    return json.dumps({"lastUpdateId": last_id, "E": 1, "T": 1, "bids": [list(b) for b in bids],
                       "asks": [list(a) for a in asks]}).encode()


@pytest.fixture
def futures(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance_usdm", [BTC.spec(1024)], depth=10, ring_slots=1024)
    feed = BinanceFuturesFeed([BTC], writer, capacity=1024,
                              options=PlanOptions("wss://x", "https://fapi.binance.com", snapshot_limit=1000))
    yield feed, in_process_reader("binance_usdm", shm_prefix)
    writer.close()


def snapshot_by_rest(feed, last_id, now=0.0, **levels):
    (request,) = feed.requests(now=now)
    assert request.request.url == "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    feed.on_rest(request.request.url, snapshot(last_id, **levels), 2)


def live(feed):
    """Bridged by the first diff straddling the snapshot (U 150 <= 155 <= u 160)."""
    feed.on_frame(diff(150, 160, 140, bids=[("0.0021", "1")]), 1)
    snapshot_by_rest(feed, 155)
    assert feed.state(0) == SyncState.LIVE


def statuses(reader):
    return [e.status for e in reader.events("oldest").poll() if isinstance(e, StatusEvent)]


# ---------------------------------------------------------------- the documented examples

def test_the_documented_depth_update_applies_its_levels_at_its_transaction_time(futures):
    feed, reader = futures
    feed.on_frame(wrapped(DOC_DEPTH), 1)  # U 157 <= lastUpdateId 158 <= u 160
    snapshot_by_rest(feed, 158, bids=[("0.0020", "3")], asks=[("0.0030", "4")])
    book = reader.book("BTCUSDT")
    assert book.valid and book.update_id == 160
    assert book.levels_text("bids") == [["0.0024", "10"], ["0.0020", "3"]]
    assert book.levels_text("asks") == [["0.0026", "100"], ["0.0030", "4"]]
    assert book.ts_exchange == 123456788 * 1_000_000  # T, not the push time E


def test_the_documented_agg_trade_is_a_sell_at_its_trade_time(futures):
    feed, reader = futures
    feed.on_frame(wrapped(DOC_AGG_TRADE, "btcusdt@aggTrade"), 1)
    (trade,) = [e for e in reader.events("oldest").poll() if isinstance(e, TradeEvent)]
    assert (trade.trade_id, trade.price, trade.qty) == (5933014, 10, 100)  # 0.001 at 4 decimals
    assert trade.side == Side.SELL  # m true: the buyer was the maker, the taker sold
    assert trade.ts_exchange == 123456785 * 1_000_000


def test_the_documented_coin_m_depth_update_with_its_pair_applies(shm_prefix):
    perp = Instrument("binance_coinm", "BTCUSD_PERP", "BTC", "USD", 4, 0, market=PERPETUAL)
    writer = SegmentWriter.create(shm_prefix, "binance_coinm", [perp.spec(64)], depth=10, ring_slots=1024)
    feed = BinanceCoinmFeed([perp], writer, capacity=64,
                            options=PlanOptions("wss://x", "https://dapi.binance.com", snapshot_limit=1000))
    feed.on_frame(wrapped({**DOC_DEPTH, "s": "BTCUSD_PERP", "ps": "BTCUSD"}, "btcusd_perp@depth@100ms"), 1)
    (request,) = feed.requests(now=0.0)
    assert request.request.url == "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000"
    feed.on_rest(request.request.url, snapshot(158), 2)
    book = in_process_reader("binance_coinm", shm_prefix).book("BTCUSD_PERP")
    assert book.valid and book.update_id == 160
    writer.close()


# ---------------------------------------------------------------- the market-data records (§1.4)

# Instruments at the decimals the documented examples print: BNBUSDT 25.35 / 31.21, BTCUSDT 11794.15 / 0.014.
BNB_2_2 = Instrument("binance_usdm", "BNBUSDT", "BNB", "USDT", 2, 2, market=PERPETUAL)
BTC_2_3 = Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", 2, 3, market=PERPETUAL)
DELIVERY = Instrument("binance_coinm", "BTCUSD_211231", "BTC", "USD", 2, 0, market=FUTURE)
RECORDS = (BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent)


@pytest.fixture
def records(shm_prefix):
    """A USD-M feed of the examples' instruments, its reader, and a way to feed it one event (wrapped as
    the combined stream it comes on)."""
    writer = SegmentWriter.create(shm_prefix, "binance_usdm", [BNB_2_2.spec(64), BTC_2_3.spec(64)], depth=10,
                                  ring_slots=1024)
    feed = BinanceFuturesFeed([BNB_2_2, BTC_2_3], writer, capacity=64)
    reader = in_process_reader("binance_usdm", shm_prefix)
    cursor = reader.events("oldest")

    def receive(data, stream=""):
        feed.on_frame(data if isinstance(data, bytes) else wrapped(data, stream), 7)
        return [e for e in cursor.poll() if isinstance(e, RECORDS)]

    def answer(body, url="https://fapi.binance.com/fapi/v1/openInterest?symbol=BTCUSDT"):
        feed.on_rest(url, body if isinstance(body, bytes) else json.dumps(body).encode(), 7)
        return [e for e in cursor.poll() if isinstance(e, RECORDS)]
    receive.rest = answer  # a REST answer, as the worker hands it over
    yield receive, reader
    writer.close()


def test_the_documented_book_ticker_is_a_bbo_with_its_update_id_at_its_transaction_time(records):
    receive, reader = records
    (bbo,) = receive(DOC_BOOK_TICKER, "bnbusdt@bookTicker")
    assert isinstance(bbo, BboEvent) and bbo.instrument.venue_symbol == "BNBUSDT"
    assert (bbo.update_id, bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty) == (400900217, 2535, 3121, 2536, 4066)
    assert (bbo.ts_exchange, bbo.ts_recv) == (1568014460891 * 1_000_000, 7)  # T, not the push time E
    assert reader.counters("BNBUSDT")["bbos"] == 1 and reader.counters()["decode_errors"] == 0


def test_the_documented_mark_price_update_is_funding_with_every_field_it_carries(records):
    receive, reader = records
    (funding,) = receive(DOC_MARK_PRICE, "btcusdt@markPrice@1s")
    assert isinstance(funding, FundingEvent) and funding.fields == FIELD_RATE | FIELD_FUNDING_TIME | FIELD_MARK | FIELD_INDEX
    assert funding_rate(funding.rate) == Decimal("0.00038167")
    assert funding.next_funding_ns == 1562306400000 * 1_000_000  # T: the next funding time
    instrument = funding.instrument
    assert instrument.stats_price(funding.mark_px) == Decimal("11794.15")
    assert instrument.stats_price(funding.index_px) == Decimal("11784.62")
    assert funding.ts_exchange == 1562305380000 * 1_000_000  # E: T is no event time here
    stats = reader.stats("BTCUSDT")
    assert (stats.funding_rate, stats.mark_px, stats.next_funding_ns) == (funding.rate, funding.mark_px,
                                                                          funding.next_funding_ns)
    assert not [e for e in reader.events("oldest").poll() if isinstance(e, TradeEvent)]  # nor is it a trade


def test_a_negative_funding_rate_is_exact(records):
    receive, _ = records
    (funding,) = receive({**DOC_MARK_PRICE, "r": "-0.00012500"}, "btcusdt@markPrice@1s")
    assert funding_rate(funding.rate) == Decimal("-0.000125")


@pytest.mark.parametrize("index", ["11784.62659091", "11784.625", "11784"])
def test_an_index_printed_finer_than_the_tick_is_kept_exactly_at_the_stats_decimals(records, index):
    receive, _ = records
    (funding,) = receive({**DOC_MARK_PRICE, "i": index}, "btcusdt@markPrice@1s")
    assert funding.instrument.stats_price(funding.index_px) == Decimal(index)


def test_an_index_printed_finer_than_the_stats_decimals_is_a_decode_error_not_rounded(records):
    receive, reader = records
    assert receive({**DOC_MARK_PRICE, "i": "11784.626590911"}, "btcusdt@markPrice@1s") == []
    assert reader.counters()["decode_errors"] == 1


def test_a_coin_m_delivery_mark_price_carries_no_rate_and_no_funding_time(shm_prefix):
    """§1.4 [BD-STREAMS]: a delivery contract's markPriceUpdate has "r":"" and "T":0: neither is a value."""
    writer = SegmentWriter.create(shm_prefix, "binance_coinm", [DELIVERY.spec(64)], depth=10, ring_slots=64)
    feed = BinanceCoinmFeed([DELIVERY], writer, capacity=64)
    feed.on_frame(wrapped({**DOC_MARK_PRICE, "s": "BTCUSD_211231", "r": "", "T": 0}, "btcusd_211231@markPrice@1s"), 7)
    reader = in_process_reader("binance_coinm", shm_prefix)
    (funding,) = [e for e in reader.events("oldest").poll() if isinstance(e, FundingEvent)]
    assert funding.fields == FIELD_MARK | FIELD_INDEX
    assert (funding.instrument.stats_price(funding.mark_px), funding.instrument.stats_price(funding.index_px)) == (
        Decimal("11794.15"), Decimal("11784.62"))
    stats = reader.stats("BTCUSD_211231")
    assert not stats.has(FIELD_RATE) and not stats.has(FIELD_FUNDING_TIME) and reader.counters()["decode_errors"] == 0
    writer.close()


def test_the_documented_force_order_is_a_sell_liquidation_of_what_filled(records):
    receive, reader = records
    (liquidation,) = receive(DOC_FORCE_ORDER, "btcusdt@forceOrder")
    assert isinstance(liquidation, LiquidationEvent) and liquidation.instrument.venue_symbol == "BTCUSDT"
    assert (liquidation.side, liquidation.venue_side) == (Side.SELL, Side.SELL)  # S: the order's side, a long closed
    assert (liquidation.instrument.stats_price(liquidation.price), liquidation.qty) == (Decimal(9910), 14)  # ap, z 0.014
    assert liquidation.ts_exchange == 1568014460893 * 1_000_000  # o.T
    assert reader.counters("BTCUSDT")["liquidations"] == 1


def test_a_liquidation_takes_its_average_fill_price_and_filled_quantity_not_the_order_limit(records):
    """A partly filled IOC liquidation (the 8-decimal ap as nautilus_trader's test data prints it)."""
    receive, _ = records
    order = {**DOC_FORCE_ORDER["o"], "S": "BUY", "p": "9990.00", "q": "0.020", "ap": "9910.12345678",
             "X": "EXPIRED", "z": "0.011"}
    (liquidation,) = receive({**DOC_FORCE_ORDER, "o": order}, "btcusdt@forceOrder")
    assert (liquidation.side, liquidation.qty) == (Side.BUY, 11)
    assert liquidation.instrument.stats_price(liquidation.price) == Decimal("9910.12345678")


# the documented answer of GET /fapi/v1/openInterest (§1.6 [BF-REST])
DOC_OPEN_INTEREST = {"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}


def test_the_documented_open_interest_answer_is_an_open_interest_record_at_its_time(records):
    receive, reader = records
    (open_interest,) = receive.rest(DOC_OPEN_INTEREST)
    assert isinstance(open_interest, OpenInterestEvent) and open_interest.instrument.venue_symbol == "BTCUSDT"
    assert open_interest.open_interest == 10659509 and open_interest.ts_exchange == 1589437530011 * 1_000_000
    assert reader.stats("BTCUSDT").open_interest == 10659509 and reader.counters("BTCUSDT")["open_interests"] == 1


@pytest.mark.parametrize("body", [{**DOC_OPEN_INTEREST, "openInterest": 10659.509},
                                  {**DOC_OPEN_INTEREST, "openInterest": "1.0659509e4"},
                                  {k: v for k, v in DOC_OPEN_INTEREST.items() if k != "time"},
                                  {**DOC_OPEN_INTEREST, "openInterest": "10659.5091"}, b'{"openInterest":"10659.5'],
                         ids=["number", "exponent", "no-time", "too-precise", "truncated"])
def test_a_malformed_open_interest_answer_is_a_decode_error_and_no_record(records, body):
    receive, reader = records
    assert receive.rest(body) == [] and reader.counters("BTCUSDT")["decode_errors"] == 1


def test_each_instrument_s_open_interest_is_polled_every_10_s_the_first_polls_spread_over_one_interval(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance_usdm", [BNB_2_2.spec(64), BTC_2_3.spec(64)], depth=10,
                                  ring_slots=64)
    feed = BinanceFuturesFeed([BNB_2_2, BTC_2_3], writer, capacity=64,
                              options=PlanOptions("wss://x", "https://fapi.binance.com"))
    assert [(p.symbol, p.request.url, p.request.weight) for p in feed.polls(now=100.0)] == [
        ("BNBUSDT", "https://fapi.binance.com/fapi/v1/openInterest?symbol=BNBUSDT", 1)]
    assert feed.polls(now=104.9) == [] and [p.symbol for p in feed.polls(now=105.0)] == ["BTCUSDT"]
    assert [p.symbol for p in feed.polls(now=110.0)] == ["BNBUSDT"]
    writer.close()


@pytest.mark.parametrize("instruments, interval_s", [(1, 10.0), (100, 10.0), (200, 20.0), (600, 60.0)])
def test_the_polls_take_at_most_a_quarter_of_the_rest_weight_budget(instruments, interval_s):
    for name, path in (("binance_usdm", "/fapi/v1/openInterest"), ("binance_coinm", "/dapi/v1/openInterest")):
        protocol = VENUES[name].protocol
        assert protocol.poll_interval_s(instruments) == interval_s and protocol.poll_path == path
        assert 60 / interval_s * instruments * protocol.poll_weight <= VENUES[name].limits.rest_weight_per_minute / 4


def hostile(data, **fields):
    return {**data, **fields}


def order_with(**fields):
    return {**DOC_FORCE_ORDER, "o": {**DOC_FORCE_ORDER["o"], **fields}}


@pytest.mark.parametrize("data, stream", [
    (hostile(DOC_BOOK_TICKER, b="2.5e1"), "bnbusdt@bookTicker"),
    (hostile(DOC_BOOK_TICKER, B="-31.21"), "bnbusdt@bookTicker"),
    (hostile(DOC_BOOK_TICKER, a="25.365"), "bnbusdt@bookTicker"),  # finer than the book's decimals: not a book price
    ({k: v for k, v in DOC_BOOK_TICKER.items() if k != "T"}, "bnbusdt@bookTicker"),
    (hostile(DOC_MARK_PRICE, p="NaN"), "btcusdt@markPrice@1s"),
    (hostile(DOC_MARK_PRICE, i="99999999999999999999"), "btcusdt@markPrice@1s"),
    (hostile(DOC_MARK_PRICE, r="3.8167e-4"), "btcusdt@markPrice@1s"),
    (hostile(DOC_MARK_PRICE, r=0.00038167), "btcusdt@markPrice@1s"),  # a number, not the documented string
    (hostile(DOC_MARK_PRICE, T=-1), "btcusdt@markPrice@1s"),
    (hostile(DOC_MARK_PRICE, E="soon"), "btcusdt@markPrice@1s"),
    (order_with(S="LONG"), "btcusdt@forceOrder"),
    (order_with(z="inf"), "btcusdt@forceOrder"),
    (order_with(ap="9910.1.2"), "btcusdt@forceOrder"),
    ({**DOC_FORCE_ORDER, "o": {k: v for k, v in DOC_FORCE_ORDER["o"].items() if k != "T"}}, "btcusdt@forceOrder"),
    ({**DOC_FORCE_ORDER, "o": {k: v for k, v in DOC_FORCE_ORDER["o"].items() if k != "S"}}, "btcusdt@forceOrder"),
], ids=["exponent", "negative-qty", "too-precise", "no-T", "nan-mark", "overflow-index", "exponent-rate",
        "numeric-rate", "negative-time", "text-time", "bad-side", "infinite-qty", "two-dots", "no-order-T",
        "no-side"])
def test_hostile_or_malformed_record_frames_are_decode_errors_and_publish_nothing(records, data, stream):
    receive, reader = records
    assert receive(data, stream) == []
    assert reader.counters()["decode_errors"] == 1


def test_a_truncated_record_frame_is_a_decode_error(records):
    receive, reader = records
    assert receive(wrapped(DOC_MARK_PRICE, "btcusdt@markPrice@1s")[:-20]) == []
    assert reader.counters()["decode_errors"] == 1


# ---------------------------------------------------------------- the futures book rule (§1.5)

def test_diffs_before_the_snapshot_are_dropped_and_the_first_straddles_it(futures):
    feed, reader = futures
    feed.on_frame(diff(100, 120, 90, bids=[("0.0010", "9")]), 1)  # u < lastUpdateId: dropped
    feed.on_frame(diff(130, 160, 120, bids=[("0.0021", "1")]), 1)
    snapshot_by_rest(feed, 140)
    book = reader.book("BTCUSDT")
    assert book.valid and book.update_id == 160
    assert [p for p, _ in book.levels_text("bids")] == ["0.0021", "0.0020"]


def test_diffs_chain_by_pu_not_by_consecutive_ids(futures):
    feed, reader = futures
    live(feed)
    feed.on_frame(diff(175, 190, 160, bids=[("0.0022", "1")]), 3)  # U != 160 + 1: the ids are shared by symbols
    feed.on_frame(diff(230, 231, 190, asks=[("0.0029", "2")]), 4)
    book = reader.book("BTCUSDT")
    assert book.valid and book.update_id == 231 and reader.counters("BTCUSDT")["gaps"] == 0
    assert [p for p, _ in book.levels_text("asks")] == ["0.0029", "0.0030"]


def test_a_pu_that_is_not_the_previous_u_is_a_gap_and_resyncs(futures):
    feed, reader = futures
    live(feed)
    feed.on_frame(diff(175, 190, 170, bids=[("0.0022", "1")]), 3)  # the event ending at 170 was lost
    assert not reader.book("BTCUSDT").valid and feed.state(0) == SyncState.BUFFERING
    assert Status.GAP in statuses(reader) and reader.counters("BTCUSDT")["gaps"] == 1
    snapshot_by_rest(feed, 180, now=600.0)  # asked for again (the resync rate allows it by then); the buffered diff straddles the new snapshot
    assert reader.book("BTCUSDT").valid and reader.book("BTCUSDT").update_id == 190


def test_a_diff_already_in_the_book_is_dropped_not_a_gap(futures):
    feed, reader = futures
    live(feed)
    feed.on_frame(diff(150, 160, 140, bids=[("0.0021", "7")]), 3)
    assert reader.book("BTCUSDT").valid and reader.counters("BTCUSDT")["gaps"] == 0
    assert reader.book("BTCUSDT").levels_text("bids")[0] == ["0.0021", "1"]


def test_a_snapshot_older_than_the_buffer_is_fetched_again(futures):
    feed, reader = futures
    feed.on_frame(diff(150, 160, 140), 1)
    snapshot_by_rest(feed, 120)  # U 150 > 120: the diffs between are lost
    assert not reader.book("BTCUSDT").valid and feed.stale_snapshots == 1
    assert feed.books_to_resync() == ["BTCUSDT"]


def test_after_a_snapshot_newer_than_the_buffer_the_first_live_diff_must_straddle_it(futures):
    feed, reader = futures
    feed.on_frame(diff(150, 160, 140), 1)
    snapshot_by_rest(feed, 165)  # every buffered diff is already in it
    assert reader.book("BTCUSDT").valid and feed.state(0) == SyncState.BRIDGING
    feed.on_frame(diff(161, 170, 160, bids=[("0.0021", "1")]), 3)  # straddles 165: the book goes live
    assert feed.state(0) == SyncState.LIVE and reader.book("BTCUSDT").update_id == 170
    feed.on_frame(diff(180, 185, 175), 4)  # pu 175 is not 170
    assert feed.state(0) == SyncState.BUFFERING and reader.counters("BTCUSDT")["gaps"] == 1


def test_a_first_live_diff_beyond_the_snapshot_is_a_gap(futures):
    feed, reader = futures
    feed.on_frame(diff(150, 160, 140), 1)
    snapshot_by_rest(feed, 165)
    feed.on_frame(diff(170, 175, 168), 3)  # U 170 > 165: the update at 166..169 is lost
    assert feed.state(0) == SyncState.BUFFERING and not reader.book("BTCUSDT").valid


def test_a_rotation_joins_by_straddling_and_then_chains_on_its_own_stream(futures):
    feed, reader = futures
    live(feed)
    feed.begin_hand_over(0, 1)
    feed.on_frame(diff(175, 190, 170), 3, 1)  # the new connection ahead of the owner: the owner decides
    assert feed.state(0) == SyncState.LIVE and reader.book("BTCUSDT").update_id == 160
    feed.on_frame(diff(155, 180, 150, bids=[("0.0022", "1")]), 4, 1)  # straddles 160: exact, the book moves
    assert feed.waiting_hand_over(0) == 0 and reader.book("BTCUSDT").update_id == 180
    feed.on_frame(diff(185, 190, 180), 5, 1)  # chains on the new connection's own pu
    feed.on_disconnect(0, 6)
    assert reader.book("BTCUSDT").valid and reader.book("BTCUSDT").update_id == 190
    assert reader.counters("BTCUSDT")["gaps"] == 0


# ---------------------------------------------------------------- venues, plans, instruments

def test_usdm_books_and_bbo_go_on_the_public_route_and_trades_funding_liquidations_on_the_market_route():
    venue = VENUES["binance_usdm"]
    urls = [plan.url for plan in venue.plan(("BTCUSDT", "ETHUSDT"), PlanOptions(venue.ws_url, venue.rest_url))]
    assert urls == ["wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/"
                    "ethusdt@depth@100ms/ethusdt@bookTicker",
                    "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/"
                    "btcusdt@forceOrder/ethusdt@aggTrade/ethusdt@markPrice@1s/ethusdt@forceOrder"]


@pytest.mark.parametrize("name, per_connection", [("binance_usdm", 66), ("binance_coinm", 40)])
def test_no_connection_carries_more_than_200_streams_with_the_record_streams_counted(name, per_connection):
    """USD-M: 3 streams per instrument on /market, so 66 instruments a connection; COIN-M: 5 on one stream, 40."""
    venue = VENUES[name]
    symbols = tuple(f"S{k}" for k in range(100))
    plans = venue.plan(symbols, PlanOptions(venue.ws_url, venue.rest_url))
    streams = [plan.url.partition("streams=")[2].split("/") for plan in plans]
    assert max(len(names) for names in streams) <= venue.limits.streams_per_connection == 200
    assert max(len(plan.symbols) for plan in plans) == per_connection
    assert sorted(n for names in streams for n in names if n.endswith("@markPrice@1s")) == sorted(
        f"s{k}@markPrice@1s" for k in range(100))


def test_coin_m_keeps_one_combined_stream_and_its_own_rest_paths():
    venue = VENUES["binance_coinm"]
    (plan,) = venue.plan(("BTCUSD_PERP",), PlanOptions(venue.ws_url, venue.rest_url))
    assert plan.url == ("wss://dstream.binance.com/stream?streams=btcusd_perp@depth@100ms/btcusd_perp@aggTrade/"
                        "btcusd_perp@bookTicker/btcusd_perp@markPrice@1s/btcusd_perp@forceOrder")
    assert venue.instruments_url() == "https://dapi.binance.com/dapi/v1/exchangeInfo"
    assert VENUES["binance_usdm"].instruments_url() == "https://fapi.binance.com/fapi/v1/exchangeInfo"


@pytest.mark.parametrize("limit, weight", [(5, 2), (50, 2), (100, 5), (500, 10), (1000, 20)])
def test_snapshot_weights_are_the_documented_table(limit, weight):
    for name, path in (("binance_usdm", "/fapi/v1/depth"), ("binance_coinm", "/dapi/v1/depth")):
        venue = VENUES[name]
        request = venue.protocol.snapshot_request("X", PlanOptions(venue.ws_url, venue.rest_url, snapshot_limit=limit))
        assert (request.url, request.weight) == (f"{venue.rest_url}{path}?symbol=X&limit={limit}", weight)


def test_documented_futures_limits_are_data():
    limits = VENUES["binance_usdm"].limits
    assert (limits.messages.count, limits.messages.per_s, limits.streams_per_connection) == (10, 1.0, 200)
    assert (limits.server_ping_s, limits.pong_deadline_s, limits.lifetime_s) == (180.0, 600.0, 86_400.0)
    assert limits.snapshot_limits == (5, 10, 20, 50, 100, 500, 1000) and limits.rest_weight_per_minute == 2400


def test_cryptofeed_ids_name_the_futures_venues():
    assert by_cryptofeed("BINANCE_FUTURES").name == "binance_usdm"
    assert by_cryptofeed("BINANCE_DELIVERY").name == "binance_coinm"


def coin_m_entry(symbol, contract_type, delivery_ms):
    """The COIN-M exchangeInfo fields of §1.6 (contractSize 100 USD, as in the docs' BTCUSD sample)."""
    return {"symbol": symbol, "pair": "BTCUSD", "contractType": contract_type, "deliveryDate": delivery_ms,
            "contractStatus": "TRADING", "baseAsset": "BTC", "quoteAsset": "USD", "marginAsset": "BTC",
            "pricePrecision": 1, "quantityPrecision": 0, "contractSize": 100,
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.1", "minPrice": "1000", "maxPrice": "100000"},
                        {"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1", "maxQty": "1000000"}]}


def test_coin_m_instruments_are_inverse_contracts_named_by_kind_and_expiry():
    perp, dated = parse_instruments("binance_coinm", {"symbols": [
        coin_m_entry("BTCUSD_PERP", "PERPETUAL", 4133404800000),
        coin_m_entry("BTCUSD_261225", "CURRENT_QUARTER", 1798185600000)]})  # 2026-12-25 08:00 UTC
    assert (perp.symbol, perp.venue_symbol, perp.market) == ("BTC-USD-PERP", "BTCUSD_PERP", PERPETUAL)
    assert (dated.symbol, dated.market, dated.expiry_ms) == ("BTC-USD-20261225", FUTURE, 1798185600000)
    assert (perp.contract_size, perp.contract_ccy, perp.settle) == (Decimal(100), "USD", "BTC")
    assert (perp.tick, perp.lot, perp.px_dec, perp.qty_dec) == (Decimal("0.1"), Decimal(1), 1, 0)


def test_usdm_instruments_take_tick_and_lot_from_the_filters(captures):
    info = json.loads((captures / "binance-usdm-2021" / "BINANCE_FUTURES.0").open().readline().partition(": ")[2])
    instruments = {i.venue_symbol: i for i in parse_instruments("binance_usdm", info)}
    sushi, quarterly = instruments["SUSHIUSDT"], instruments["BTCUSDT_210924"]
    assert (sushi.symbol, sushi.tick, sushi.lot, sushi.px_dec, sushi.qty_dec) == (
        "SUSHI-USDT-PERP", Decimal("0.0010"), Decimal(1), 4, 0)  # its book prints 7.6110
    assert (sushi.settle, sushi.contract_size, sushi.contract_ccy) == ("USDT", Decimal(1), "")
    assert (quarterly.symbol, quarterly.market) == ("BTC-USDT-20210924", FUTURE)
    assert "BTCSTUSDT" not in instruments  # no contractType: pending, not a contract yet


def test_spot_instruments_are_unchanged():
    spot = Instrument("binance", "BTCUSDT", "BTC", "USDT", 8, 8)
    assert (spot.symbol, spot.market, spot.contract_size, spot.expiry_ms) == ("BTC-USDT", "spot", Decimal(1), 0)


# ---------------------------------------------------------------- the real recording

def reference_books(folder):
    """Deliberately plain: Decimal dicts from the REST snapshots, then the documented procedure over
    every depthUpdate in the file (drop u < L, the first straddles L, then pu == previous u)."""
    books, last, applied, dropped = {}, {}, 0, 0
    for line in open(folder / "BINANCE_FUTURES.http.0.0"):
        if "/fapi/v1/depth" in line:
            url, _, rest = line.partition(" -> ")
            body = json.loads(rest.partition(": ")[2])
            symbol = url.split("symbol=")[1].split("&")[0]
            books[symbol] = ({Decimal(p): Decimal(q) for p, q in body["bids"]},
                             {Decimal(p): Decimal(q) for p, q in body["asks"]})
            last[symbol] = (body["lastUpdateId"], False)
    for line in open(folder / "BINANCE_FUTURES.ws.1.0"):
        if '"depthUpdate"' not in line:
            continue
        event = json.loads(line.partition(": ")[2])["data"]
        symbol = event["s"]
        last_id, synced = last[symbol]
        if not synced and event["u"] < last_id:
            dropped += 1
            continue
        assert (event["pu"] == last_id) if synced else (event["U"] <= last_id <= event["u"]), f"{symbol}: gap"
        for side, key in ((0, "b"), (1, "a")):
            for price, qty in event[key]:
                if Decimal(qty) == 0:
                    books[symbol][side].pop(Decimal(price), None)
                else:
                    books[symbol][side][Decimal(price)] = Decimal(qty)
        last[symbol] = (event["u"], True)
        applied += 1
    assert applied + dropped == 764 and all(synced for _, synced in last.values())
    return {symbol: (last[symbol][0], sorted(bids.items(), reverse=True), sorted(asks.items()))
            for symbol, (bids, asks) in books.items()}


def test_the_real_usdm_recording_replays_with_no_gap_into_the_reference_books(captures, tmp_path, shm_prefix):
    imported = import_recordings([str(captures / "binance-usdm-2021" / "BINANCE_FUTURES")], str(tmp_path / "u.fhcap"))
    assert imported["venue"] == "binance_usdm"
    summary = replay([str(tmp_path / "u.fhcap")], shm_prefix=shm_prefix, depth=1000)
    reference = reference_books(captures / "binance-usdm-2021")
    assert summary["decode_errors"] == 0
    assert sorted(summary["books"]) == [f"binance_usdm:{s}" for s in sorted(reference)]
    for symbol, (update_id, bids, asks) in reference.items():
        book = summary["books"][f"binance_usdm:{symbol}"]
        assert book["valid"] and book["gaps"] == 0 and book["resyncs"] == 0 and book["crossed"] == 0
        assert book["update_id"] == update_id and book["symbol"].endswith("-USDT-PERP")
        assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == bids[:1000]
        assert [(Decimal(p), Decimal(q)) for p, q in book["asks"]] == asks[:1000]


def test_a_futures_config_plans_perpetuals_by_name_at_the_deepest_documented_snapshot(tmp_path):
    config = parse_config({"run": {"instrument_cache": str(tmp_path)},
                           "venues": {"binance_usdm": {"symbols": ["BTC-USDT-PERP"]},
                                      "binance_coinm": {"symbols": ["BTC-USD-PERP"]}}})
    venues = plan(config)["venues"]
    assert [c["url"] for c in venues["binance_usdm"]["connections"]] == [
        "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker",
        "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s/btcusdt@forceOrder"]
    assert venues["binance_usdm"]["rest"]["startup"][1] == {
        "method": "GET", "url": "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000", "weight": 20}
    assert venues["binance_coinm"]["rest"]["startup"][1]["url"] == (
        "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000")


def test_every_book_ticker_of_the_real_usdm_recording_is_a_bbo_record_exactly(captures, tmp_path, shm_prefix):
    """The 2021 recording's bookTicker events (e, u, s, b, B, a, A, T, E: §7) replayed: each one BBO record with
    its values, update id and transaction time, and no decode error (the recording has no markPrice or
    forceOrder stream)."""
    folder = captures / "binance-usdm-2021"
    recorded = [json.loads(line.partition(": ")[2])["data"] for line in open(folder / "BINANCE_FUTURES.ws.1.0")
                if '"bookTicker"' in line]
    import_recordings([str(folder / "BINANCE_FUTURES")], str(tmp_path / "u.fhcap"))
    summary = replay([str(tmp_path / "u.fhcap")], shm_prefix=shm_prefix, keep=True)
    reader = in_process_reader("binance_usdm", shm_prefix)
    cursor, bbos = reader.events("oldest"), []
    while batch := cursor.poll():
        bbos += [e for e in batch if isinstance(e, BboEvent)]
    assert summary["decode_errors"] == 0 and len(recorded) == 613
    assert [(e.instrument.venue_symbol, e.update_id, e.ts_exchange // 1_000_000) for e in bbos] == [
        (t["s"], t["u"], t["T"]) for t in recorded]
    assert [tuple(map(str, (e.instrument.price(e.bid_px), e.instrument.qty(e.bid_qty), e.instrument.price(e.ask_px),
                            e.instrument.qty(e.ask_qty)))) for e in bbos] == [
        (t["b"], t["B"], t["a"], t["A"]) for t in recorded]


# ---------------------------------------------------------------- a worker against the simulator

def test_a_worker_against_the_simulator_puts_every_record_kind_in_the_ring(tmp_path, shm_prefix):
    """One USD-M worker (in this process) against `fh sim`'s strict USD-M venue, which makes a liquidation
    every second here: BBO, funding, liquidation and the polled open interest reach the venue's ring,
    decoded without an error."""
    async def scenario():
        async with Simulator.synthetic(["binance_usdm"], base_port=free_base_port()) as sim:
            sim.venues["binance_usdm"].liquidation_chance = 1.0
            config = parse_config({"run": {"prefix": shm_prefix, "instrument_cache": str(tmp_path)},
                                   "venues": {"binance_usdm": {"symbols": ["BTC-USDT-PERP"],
                                                               **sim.urls()["binance_usdm"]}}})
            worker = VenueWorker(config.venues["binance_usdm"], config)
            await worker.start()
            stop = Stop()
            running = asyncio.create_task(worker.run(stop))
            reader, seen = in_process_reader("binance_usdm", shm_prefix), {}
            cursor, deadline = reader.events("oldest"), time.monotonic() + 20
            while len(seen) < len(RECORDS) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                for event in cursor.poll():
                    if isinstance(event, RECORDS):
                        seen.setdefault(type(event), event)
            totals = reader.totals()
            stop.set()
            await running
            return seen, totals
    seen, totals = asyncio.run(scenario())
    assert set(seen) == set(RECORDS), f"records seen: {sorted(kind.__name__ for kind in seen)}"
    assert all(event.instrument.venue_symbol == "BTCUSDT" for event in seen.values())
    assert seen[FundingEvent].fields == FIELD_RATE | FIELD_FUNDING_TIME | FIELD_MARK | FIELD_INDEX
    assert seen[LiquidationEvent].side in (Side.BUY, Side.SELL) and seen[BboEvent].bid_px < seen[BboEvent].ask_px
    assert totals["decode_errors"] == 0 and min(totals["bbos"], totals["fundings"], totals["liquidations"],
                                                totals["open_interests"]) >= 1
    assert seen[OpenInterestEvent].open_interest > 0
