"""Bybit v5 public `orderbook` and `publicTrade`, and the records `orderbook.1` (BBO), `tickers`
(funding, open interest) and `allLiquidation`: the documented examples (../shared/docs/
derivatives-protocols.md §3), the `u` rules (continuity, stale, `u == 1` reset), malformed frames,
instruments of the three categories, the plan and the client ping, and the simulator's encoders
driven through the feed. No public Bybit v5 recording exists: each test says which messages are the
documented examples."""
import asyncio
import dataclasses
import json
import os
from decimal import Decimal

import numpy as np
import pytest

from feedhandler.config import RunConfig, parse_config
from feedhandler.instrument_cache import InstrumentCache
from feedhandler.instruments import FUTURE, PERPETUAL, SPOT, Instrument
from feedhandler.sim_market import ASK, BID, Market
from feedhandler.sync import SyncState
from feedhandler.venues import VENUES
from feedhandler.venues.base import PlanOptions
from feedhandler.venues.bybit import BybitEncoder, BybitFeed
from feedhandler.venues.bybit.protocol import ARGS_PER_REQUEST, parse_instruments
from feedhandler.venues.bybit.simulator import BybitStatsEncoder
from pipeline import Pipeline, free_base_port, wait_for
from readers import in_process_reader
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, Reason, Side, Status
from shm.reader import (BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent, StatusEvent, TradeEvent,
                        VenueReader, funding_rate)
from shm.segment import SegmentError
from shm.segment import SegmentWriter
from tools.plan import venue_plan
from tools.sim.server import REFERENCE_MIDS, BybitLinearSim, Reference, Simulator
from workers.venue import VenueWorker

BTC = Instrument("bybit_linear", "BTCUSDT", "BTC", "USDT", 2, 3)
ETH = Instrument("bybit_linear", "ETHUSDT", "ETH", "USDT", 2, 3)
ROSE = Instrument("bybit_linear", "ROSEUSDT", "ROSE", "USDT", 5, 0)
# §3.4: the documented snapshot example, whole
DOC_SNAPSHOT = (b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1671179923028,"data":{"s":"BTCUSDT",'
                b'"b":[["17440.00","40.833"]],"a":[["17440.50","78.815"]],"u":13079592,"seq":22520573250},'
                b'"cts":1671179923021}')
# §3.6: the documented trade example, its elided id "20f43950-..." written out as a UUID
DOC_TRADE = (b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
             b'"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",'
             b'"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":1783284617}]}')


def delta(u, bids=(), asks=(), symbol="BTCUSDT", depth=50):
    """A delta in the shape of §3.4's documented delta example (the nautilus fixture), with its own `u`."""
    return json.dumps({"topic": f"orderbook.{depth}.{symbol}", "type": "delta", "ts": 1709891679500,
                       "data": {"s": symbol, "b": [list(level) for level in bids],
                                "a": [list(level) for level in asks], "u": u, "seq": 987654322}}).encode()


def snapshot(u, bids, asks, symbol="BTCUSDT"):
    return delta(u, bids, asks, symbol).replace(b'"type": "delta"', b'"type": "snapshot"')


@pytest.fixture
def feed(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "bybit_linear", [BTC.spec(64), ETH.spec(64), ROSE.spec(64)], depth=10,
                                  ring_slots=1024)
    bybit = BybitFeed([BTC, ETH, ROSE], writer, capacity=64, options=PlanOptions("ws://x", "http://x", book_depth=50))
    bybit.assign(1, ("BTCUSDT", "ETHUSDT", "ROSEUSDT"))
    yield bybit, in_process_reader("bybit_linear", shm_prefix)
    writer.close()


def test_documented_snapshot_then_documented_delta_shape_build_the_book(feed):
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(DOC_SNAPSHOT, 1)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("bids") == [["17440.00", "40.833"]]
    assert book.levels_text("asks") == [["17440.50", "78.815"]]
    assert (book.update_id, book.ts_exchange) == (13079592, 1671179923021_000_000)  # `cts`, the engine's time
    # §3.4's delta example ("27450.00" 0.400 bid, "27451.00" ask deleted), its `u` following the snapshot
    bybit.on_frame(delta(13079593, [("17439.50", "0.400")], [("17440.50", "0")]), 2)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("bids") == [["17440.00", "40.833"], ["17439.50", "0.400"]]
    assert book.n_asks == 0 and book.update_id == 13079593
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("BOOK_VALID", "SNAPSHOT")] and reader.counters("BTC-USDT")["book_updates"] == 1


def test_members_in_any_order_decode_the_same(feed):
    """§3.4: where `ts` stands varies by category; here `data` even comes before the topic."""
    bybit, reader = feed
    message = json.loads(DOC_SNAPSHOT)
    reordered = {key: message[key] for key in ("data", "cts", "type", "ts", "topic")}
    reordered["data"] = {key: message["data"][key] for key in ("seq", "u", "a", "b", "s")}
    bybit.on_frame(json.dumps(reordered).encode(), 1)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("asks") == [["17440.50", "78.815"]] and book.update_id == 13079592
    assert book.ts_exchange == 1671179923021_000_000


def test_a_u_gap_invalidates_that_book_only_and_resubscribes_its_topic(feed):
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT, 1)
    bybit.on_frame(snapshot(7, [("2000.00", "1.000")], [("2001.00", "1.000")], "ETHUSDT"), 1)
    cursor = reader.events()
    bybit.on_frame(delta(13079594, [("17439.50", "1.000")]), 2)  # 13079593 is missing
    assert not reader.book("BTC-USDT").valid and reader.book("ETH-USDT").valid
    assert bybit.state(0) == SyncState.RESYNC and reader.counters("BTC-USDT")["gaps"] == 1
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("GAP", "SEQUENCE_GAP"), ("BOOK_INVALID", "SEQUENCE_GAP")]
    bybit.on_frame(delta(13079595, [("17439.00", "1.000")]), 3)  # nothing to apply it to before a snapshot
    assert not reader.book("BTC-USDT").valid
    (request,) = bybit.requests(now=0.0)
    assert request.conn == 1 and [json.loads(m) for m in request.messages] == [
        {"req_id": "102", "op": "unsubscribe", "args": ["orderbook.50.BTCUSDT"]},
        {"req_id": "103", "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}]
    bybit.on_frame(DOC_SNAPSHOT, 4)  # the resubscription's snapshot
    assert reader.book("BTC-USDT").valid and bybit.state(0) == SyncState.LIVE


def test_a_stale_or_repeated_delta_is_dropped(feed):
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT, 1)
    bybit.on_frame(delta(13079593, [("17439.50", "1.000")]), 2)
    bybit.on_frame(delta(13079593, [("17439.50", "9.000")]), 3)
    bybit.on_frame(delta(13079500, [("17439.00", "9.000")]), 4)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("bids")[1] == ["17439.50", "1.000"] and book.n_bids == 2
    assert reader.counters("BTC-USDT")["gaps"] == 0 and reader.counters("BTC-USDT")["book_updates"] == 1


def test_u_of_1_is_a_service_restart_whose_message_replaces_the_book(feed):
    """§3.5: `u == 1` is a fresh full snapshot, whatever the type says; the next delta follows it."""
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT, 1)
    cursor = reader.events()
    bybit.on_frame(delta(1, [("17000.00", "2.000")], [("17001.00", "3.000")]), 2)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("bids") == [["17000.00", "2.000"]] and book.update_id == 1
    assert book.levels_text("asks") == [["17001.00", "3.000"]]
    bybit.on_frame(delta(2, [("16999.00", "1.000")]), 3)
    assert reader.book("BTC-USDT").n_bids == 2 and reader.counters("BTC-USDT")["gaps"] == 0
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("BOOK_VALID", "SNAPSHOT")]


def test_each_book_is_cut_to_its_topics_depth(feed):
    bybit, reader = feed
    bids = [(f"{17440 - k}.00", "1.000") for k in range(50)]
    bybit.on_frame(snapshot(5, bids, [("17441.00", "1.000")]), 1)
    bybit.on_frame(delta(6, [("17440.50", "1.000")], []), 2)
    book = reader.book("BTC-USDT")
    assert book.n_bids == 50 and book.levels_text("bids")[0] == ["17440.50", "1.000"]  # and 17391.00 left


def test_documented_trade_is_published_with_the_takers_side_and_time(feed):
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(DOC_TRADE, 1)
    (trade,) = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert (trade.price, trade.qty, trade.side) == (1657850, 1, Side.BUY)
    assert trade.ts_exchange == 1672304486865_000_000 and trade.trade_id > 0


def test_a_uuid_trade_id_maps_to_one_stable_id_and_a_numeric_one_to_its_value(feed):
    bybit, reader = feed
    cursor = reader.events()
    other = DOC_TRADE.replace(b'20f43950-d8dd-5b31-9112-a178eb6023af', b'9dc75fca-4bdd-4773-9f78-6f5d7ab2a110')
    spot = DOC_TRADE.replace(b'"20f43950-d8dd-5b31-9112-a178eb6023af"', b'"2290000000061666327"')
    for frame in (DOC_TRADE, DOC_TRADE, other, spot):
        bybit.on_frame(frame, 1)
    ids = [e.trade_id for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert ids[0] == ids[1] != ids[2] and ids[3] == 2290000000061666327


@pytest.mark.parametrize("frame", [
    b'{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}',
    b'{"success":true,"ret_msg":"pong","conn_id":"465772b1-7630-4fdc-a492-e003e6f0f260","req_id":"","op":"ping"}',
    b'{"success":true,"ret_msg":"","conn_id":"3cd84cb1-4d06-4a05-930a-2efe5fc70f0f","req_id":"","op":"subscribe"}',
    b'{"success":false,"ret_msg":"error:handler not found","conn_id":"a","req_id":"","op":"subscribe"}',
    b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"1"},"cs":1,"ts":1}',
], ids=["spot-pong", "linear-pong", "ack", "failed-ack", "tickers"])
def test_acks_pongs_and_other_topics_are_not_errors(feed, frame):
    """The pong and ack shapes are §3.2-3.3's documented examples."""
    bybit, reader = feed
    bybit.on_frame(frame, 1)
    assert reader.counters()["decode_errors"] == 0


@pytest.mark.parametrize("frame, names_the_book", [
    (DOC_SNAPSHOT[:-40], False),  # not a whole object: nothing in it is trusted
    (b'\x00\x01garbage', False),
    (delta(13079593, [("17439.50", "1.000")]).replace(b', "u": 13079593', b''), True),
    (delta(13079593, [("1e5", "1.000")]), True),
    (delta(13079593, [("17439.50",)]), True),
    (delta(13079593).replace(b'"delta"', b'"merge"'), True),
    (delta(13079593).replace(b'orderbook.50.', b'orderbook.x.'), False),
], ids=["truncated", "binary", "no-u", "exponent", "no-size", "unknown-type", "bad-depth"])
def test_a_malformed_frame_is_counted_and_a_live_book_it_names_is_lost(feed, frame, names_the_book):
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT, 1)
    bybit.on_frame(frame, 2)
    assert reader.counters()["decode_errors"] == 1
    assert reader.book("BTC-USDT").valid != names_the_book
    assert reader.counters("BTC-USDT")["gaps"] == int(names_the_book)


def test_an_unknown_symbol_is_a_decode_error(feed):
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT.replace(b"BTCUSDT", b"DOGEUSDT"), 1)
    bybit.on_frame(DOC_TRADE.replace(b'"s":"BTCUSDT"', b'"s":"DOGEUSDT"'), 1)
    assert reader.counters()["decode_errors"] == 2 and not reader.book("BTC-USDT").valid


def test_the_encoder_driven_through_the_feed_keeps_the_markets_top_50(shm_prefix):
    instrument = Instrument("bybit", "BTCUSDT", "BTC", "USDT", 2, 8)
    writer = SegmentWriter.create(shm_prefix, "bybit", [instrument.spec(512)], depth=50, ring_slots=4096)
    feed = BybitFeed([instrument], writer, capacity=512)
    reader = in_process_reader("bybit", shm_prefix)
    market, encoder = Market(mid=10_000_000, seed=3), BybitEncoder("BTCUSDT", 2, 8)
    feed.on_frame(encoder.snapshot(market, 1_000_000), 1)
    for k in range(300):
        for frame in encoder.frames(market, market.step(), 1_000_000 * (k + 2)):
            feed.on_frame(frame, 1)
    book = reader.book("BTC-USDT")
    assert book.valid and [tuple(level) for level in book.bids] == market.top(BID, 50)
    assert [tuple(level) for level in book.asks] == market.top(ASK, 50)
    counters = reader.counters("BTC-USDT")
    assert counters["gaps"] == 0 and counters["trades"] > 0 and reader.counters()["decode_errors"] == 0
    writer.close()


def test_instruments_of_the_three_categories():
    """§3.9's fields, in the shapes of nautilus_trader's public samples: spot (basePrecision), linear
    perpetual and dated future, inverse perpetual (its sample carries a deliveryTime a perpetual
    ignores) and dated future; an option entry is skipped."""
    spot = {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "status": "Trading",
            "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001", "minOrderQty": "0.000048"},
            "priceFilter": {"tickSize": "0.01"}}
    linear = {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
              "quoteCoin": "USDT", "settleCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0",
              "priceScale": "2", "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
              "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001"}}
    linear_future = dict(linear, symbol="BTCUSDT-21FEB25", contractType="LinearFutures",
                         deliveryTime="1740124800000")
    inverse = {"symbol": "BTCUSD", "contractType": "InversePerpetual", "status": "Trading", "baseCoin": "BTC",
               "quoteCoin": "USD", "settleCoin": "BTC", "launchTime": "1699980000000", "deliveryTime": "1702582000000",
               "priceScale": "1", "priceFilter": {"minPrice": "1", "maxPrice": "1000000", "tickSize": "0.5"},
               "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": "1", "qtyStep": "1"}}
    inverse_future = dict(inverse, symbol="BTCUSDH23", contractType="InverseFutures", deliveryTime="1680249600000")
    option = {"symbol": "BTC-30JUN23-20000-C", "optionsType": "Call", "baseCoin": "BTC", "quoteCoin": "USD",
              "settleCoin": "USDC", "priceFilter": {"tickSize": "5"}, "lotSizeFilter": {"qtyStep": "0.01"}}

    def response(category, *entries):
        return {"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": list(entries),
                                                         "nextPageCursor": ""}}

    got = (parse_instruments("bybit", response("spot", spot))
           + parse_instruments("bybit_linear", response("linear", linear, linear_future))
           + parse_instruments("bybit_inverse", response("inverse", inverse, inverse_future))
           + parse_instruments("bybit_option", response("option", option)))
    assert [(i.venue_symbol, i.symbol, i.market, i.px_dec, i.qty_dec) for i in got] == [
        ("BTCUSDT", "BTC-USDT", SPOT, 2, 6), ("BTCUSDT", "BTC-USDT-PERP", PERPETUAL, 1, 3),
        ("BTCUSDT-21FEB25", "BTC-USDT-20250221", FUTURE, 1, 3), ("BTCUSD", "BTC-USD-PERP", PERPETUAL, 1, 0),
        ("BTCUSDH23", "BTC-USD-20230331", FUTURE, 1, 0)]
    assert (got[0].tick, got[0].lot, got[0].settle) == (Decimal("0.01"), Decimal("0.000001"), "")
    assert (got[1].tick, got[1].lot, got[1].contract_ccy, got[1].settle) == (Decimal("0.10"), Decimal("0.001"),
                                                                              "BTC", "USDT")
    assert (got[3].contract_size, got[3].contract_ccy, got[3].settle, got[3].expiry_ms) == (1, "USD", "BTC", 0)
    assert got[4].expiry_ms == 1680249600000


def test_the_spot_plan_subscribes_books_trades_and_the_bbo_ten_args_a_request():
    venue = VENUES["bybit"]
    symbols = tuple(f"S{k}USDT" for k in range(12))
    (plan,) = venue.plan(symbols, PlanOptions(venue.ws_url, venue.rest_url, book_depth=200))
    messages = [json.loads(m) for m in plan.subscribe]
    assert plan.url == "wss://stream.bybit.com/v5/public/spot" and all(m["op"] == "subscribe" for m in messages)
    assert all(len(m["args"]) <= ARGS_PER_REQUEST for m in messages)
    assert [a for m in messages for a in m["args"]][:3] == ["orderbook.200.S0USDT", "publicTrade.S0USDT",
                                                            "orderbook.1.S0USDT"]
    assert venue.protocol.subscribed_symbols([], plan.subscribe) == set(symbols)
    assert {VENUES[name].ws_url.rpartition("/")[2] for name in ("bybit", "bybit_linear", "bybit_inverse")} == {
        "spot", "linear", "inverse"}
    assert not [a for m in messages for a in m["args"] if a.startswith(("tickers.", "allLiquidation."))]


@pytest.mark.parametrize("name", ["bybit_linear", "bybit_inverse"])
def test_a_contracts_socket_also_subscribes_the_bbo_tickers_and_liquidations_of_each_symbol(name):
    venue = VENUES[name]
    (plan,) = venue.plan(("SOLUSDT",), PlanOptions("ws://127.0.0.1:1/v5/public/linear", "", book_depth=50))
    assert [a for m in plan.subscribe for a in json.loads(m)["args"]] == [
        "orderbook.50.SOLUSDT", "publicTrade.SOLUSDT", "orderbook.1.SOLUSDT", "tickers.SOLUSDT",
        "allLiquidation.SOLUSDT"]


def test_the_configured_depth_defaults_to_50_and_must_be_one_bybit_serves():
    config = parse_config({"venues": {"bybit_linear": {"symbols": ["BTC-USDT-PERP"]}}})
    assert config.venues["bybit_linear"].book_depth == 50
    for depth in (25, 1):  # orderbook.1 is the BBO, never the book
        with pytest.raises(Exception, match="book_depth"):
            parse_config({"venues": {"bybit": {"symbols": ["BTC-USDT"], "book_depth": depth}}})


def test_the_plan_states_the_client_ping(tmp_path):
    config = parse_config({"venues": {"bybit_inverse": {"symbols": ["BTC-USD-PERP"]}}})
    plan = venue_plan(config.venues["bybit_inverse"], InstrumentCache(tmp_path))
    assert plan["keepalive"]["send"] == '{"op":"ping"} every 20 s'
    assert plan["books"] == {"BTC-USD-PERP": "BTCUSD"}
    assert plan["connections"][0]["url"] == "wss://stream.bybit.com/v5/public/inverse"


# ---------------------------------------------------------------- the records: BBO, funding, open interest, liquidation

# bybit-exchange/docs docs/v5/websocket/public/ticker.mdx, "Response Example", Linear (BY; §3.7), whole
DOC_TICKER = (b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"PlusTick",'
              b'"price24hPcnt":"0.017103","lastPrice":"17216.00","prevPrice24h":"16926.50","highPrice24h":"17281.50",'
              b'"lowPrice24h":"16915.00","prevPrice1h":"17238.00","markPrice":"17217.33","indexPrice":"17227.36",'
              b'"openInterest":"68744.761","openInterestValue":"1183601235.91","turnover24h":"1570383121.943499",'
              b'"volume24h":"91705.276","nextFundingTime":"1673280000000","fundingRate":"-0.000212",'
              b'"bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00","ask1Size":"83.020"},'
              b'"cs":24987956059,"ts":1673272861686}')
# §3.8: the documented allLiquidation example, whole
DOC_LIQUIDATION = (b'{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,"data":[{'
                   b'"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}')
# §3.4: the documented level-1 delta (the nautilus fixture), whole
DOC_BBO_DELTA = (b'{"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1709891679500,"data":{"s":"BTCUSDT",'
                 b'"b":[["27450.00","0.400"]],"a":[["27451.00","0"]],"u":123456790,"seq":987654322}}')
ALL_FUNDING = FIELD_RATE | FIELD_FUNDING_TIME | FIELD_MARK | FIELD_INDEX


def ticker_delta(**fields):
    """A linear ticker delta: only the changed fields (§3.7), in DOC_TICKER's envelope."""
    return json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", **fields},
                       "cs": 24987956060, "ts": 1673272861786}).encode()


def records(cursor) -> list:
    return [e for e in cursor.poll() if isinstance(e, (BboEvent, FundingEvent, OpenInterestEvent, LiquidationEvent))]


def test_documented_ticker_is_one_funding_record_with_every_field_and_one_open_interest_record(feed):
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(DOC_TICKER, 1)
    funding, open_interest = records(cursor)
    assert isinstance(funding, FundingEvent) and funding.fields == ALL_FUNDING
    assert funding_rate(funding.rate) == Decimal("-0.000212") and funding.next_funding_ns == 1673280000000_000_000
    price = funding.instrument.stats_price
    assert (price(funding.mark_px), price(funding.index_px)) == (Decimal("17217.33"), Decimal("17227.36"))
    assert funding.ts_exchange == 1673272861686_000_000 and funding.instrument.symbol == "BTC-USDT"
    assert isinstance(open_interest, OpenInterestEvent) and open_interest.open_interest == 68744761
    stats = reader.stats("BTC-USDT")
    assert (stats.mark_px, stats.open_interest) == (funding.mark_px, 68744761)
    assert reader.counters("BTC-USDT")["fundings"] == 1 and reader.counters()["decode_errors"] == 0


def test_a_ticker_delta_names_only_its_fields_and_each_record_holds_the_rest_as_last_sent(feed):
    """§3.7: a delta carries the changed fields only; a missing one is unchanged."""
    bybit, reader = feed
    bybit.on_frame(DOC_TICKER, 1)
    cursor = reader.events()
    bybit.on_frame(ticker_delta(markPrice="17218.00", lastPrice="17217.00"), 2)
    bybit.on_frame(ticker_delta(openInterest="68745.000"), 3)
    bybit.on_frame(ticker_delta(bid1Price="17216.50"), 4)
    mark, open_interest = records(cursor)
    price = mark.instrument.stats_price
    assert isinstance(mark, FundingEvent) and mark.fields == FIELD_MARK and price(mark.mark_px) == Decimal("17218")
    assert funding_rate(mark.rate) == Decimal("-0.000212") and price(mark.index_px) == Decimal("17227.36")
    assert isinstance(open_interest, OpenInterestEvent) and open_interest.open_interest == 68745000
    assert reader.counters()["decode_errors"] == 0


def test_an_empty_funding_field_is_absent_not_zero(feed):
    """A dated future's ticker has no funding: Bybit leaves such fields empty."""
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(ticker_delta(fundingRate="", nextFundingTime="", markPrice="17218.00"), 1)
    (mark,) = records(cursor)
    assert mark.fields == FIELD_MARK and reader.counters()["decode_errors"] == 0


@pytest.mark.parametrize("data", ["array", "object"])
def test_documented_liquidation_of_a_short_is_a_buy_order_with_the_venues_side_kept(feed, data):
    """§3.8: `S` is the side of the POSITION ("Sell": a short), so the liquidation order buys; the
    doc's example sends `data` as an array, its table as an object: both decode alike."""
    bybit, reader = feed
    cursor = reader.events()
    frame = DOC_LIQUIDATION if data == "array" else DOC_LIQUIDATION.replace(b'"data":[', b'"data":')[:-2] + b'}'
    bybit.on_frame(frame, 1)
    (liquidation,) = records(cursor)
    assert isinstance(liquidation, LiquidationEvent) and liquidation.instrument.venue_symbol == "ROSEUSDT"
    assert (liquidation.side, liquidation.venue_side) == (Side.BUY, Side.SELL)
    assert (liquidation.instrument.stats_price(liquidation.price), liquidation.qty) == (Decimal("0.04499"), 20000)
    assert liquidation.ts_exchange == 1739502302929_000_000
    assert reader.counters("ROSE-USDT")["liquidations"] == 1


def test_a_liquidated_long_is_a_sell(feed):
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(DOC_LIQUIDATION.replace(b'"S":"Sell"', b'"S":"Buy"'), 1)
    (liquidation,) = records(cursor)
    assert (liquidation.side, liquidation.venue_side) == (Side.SELL, Side.BUY)


def test_orderbook_1_is_the_bbo_a_delta_sets_the_sides_it_carries_and_keeps_the_other(feed):
    """A level-1 snapshot (DOC_SNAPSHOT's shape and levels on orderbook.1), then §3.4's documented
    level-1 delta: its bid replaces the bid, its ask of size "0" leaves no ask; then a delta with a
    bid only keeps the ask as last sent. The book (orderbook.50) is not touched."""
    bybit, reader = feed
    cursor = reader.events()
    bybit.on_frame(DOC_SNAPSHOT.replace(b"orderbook.50.", b"orderbook.1."), 1)
    bybit.on_frame(DOC_BBO_DELTA, 2)
    bybit.on_frame(DOC_BBO_DELTA.replace(b'"a":[["27451.00","0"]]', b'"a":[["27452.00","1.500"]]')
                   .replace(b'"b":[["27450.00","0.400"]]', b'"b":[]'), 3)
    bybit.on_frame(DOC_BBO_DELTA.replace(b'"a":[["27451.00","0"]],', b''), 4)
    quotes = [(e.update_id, e.bid_px, e.bid_qty, e.ask_px, e.ask_qty) for e in records(cursor)]
    assert quotes == [(13079592, 1744000, 40833, 1744050, 78815), (123456790, 2745000, 400, 0, 0),
                      (123456790, 2745000, 400, 2745200, 1500), (123456790, 2745000, 400, 2745200, 1500)]
    assert not reader.book("BTC-USDT").valid and reader.counters("BTC-USDT")["book_updates"] == 0
    assert reader.counters("BTC-USDT")["bbos"] == 4


@pytest.mark.parametrize("frame", [
    DOC_TICKER.replace(b'"-0.000212"', b'"-0.00x212"'),
    DOC_TICKER.replace(b'"markPrice":"17217.33"', b'"markPrice":"-17217.33"'),
    DOC_TICKER.replace(b'"markPrice":"17217.33"', b'"markPrice":17217.33'),
    DOC_TICKER.replace(b'"1673280000000"', b'"9223372036854775"'),
    DOC_TICKER.replace(b'"data":{', b'"data":[{').replace(b'},"cs"', b'}],"cs"'),
    DOC_LIQUIDATION.replace(b'"S":"Sell",', b''),
    DOC_LIQUIDATION.replace(b'"S":"Sell"', b'"S":"Short"'),
    DOC_LIQUIDATION.replace(b'"p":"0.04499"', b'"p":"1e-3"'),
    DOC_LIQUIDATION.replace(b'"s":"ROSEUSDT"', b'"s":"DOGEUSDT"'),
    DOC_LIQUIDATION.replace(b'"s":"ROSEUSDT",', b''),
    DOC_LIQUIDATION.partition(b'"data":')[0] + b'"data":"x"}',
    DOC_BBO_DELTA.replace(b',"u":123456790', b''),
    DOC_BBO_DELTA.replace(b'"delta"', b'"merge"'),
    DOC_BBO_DELTA.replace(b'"27450.00"', b'"2745O.00"'),
], ids=["bad-rate", "negative-mark", "bare-number", "funding-time-overflow", "ticker-array", "no-side",
        "unknown-side", "exponent", "unknown-symbol", "no-symbol", "data-not-a-list", "bbo-no-u", "bbo-unknown-type",
        "bbo-bad-price"])
def test_a_malformed_record_message_is_a_decode_error_that_publishes_nothing_and_leaves_the_book(feed, frame):
    bybit, reader = feed
    bybit.on_frame(DOC_SNAPSHOT, 1)
    cursor = reader.events()
    bybit.on_frame(frame, 2)
    assert reader.counters()["decode_errors"] == 1 and records(cursor) == []
    assert reader.book("BTC-USDT").valid and reader.counters("BTC-USDT")["gaps"] == 0


def test_the_simulators_tickers_and_liquidations_decode_to_the_state_it_sent(shm_prefix):
    instrument = Instrument("bybit_linear", "SOLUSDT", "SOL", "USDT", 2, 1, PERPETUAL)
    writer = SegmentWriter.create(shm_prefix, "bybit_linear", [instrument.spec(64)], depth=10, ring_slots=4096)
    feed = BybitFeed([instrument], writer, capacity=64)
    reader = in_process_reader("bybit_linear", shm_prefix)
    cursor = reader.events()
    market, encoder = Market(mid=18_000, seed=3), BybitStatsEncoder("SOLUSDT", 2, 1)
    feed.on_frame(encoder.ticker_snapshot(market, 1_000_000_000), 1)
    for k in range(30):
        market.step()
        for frame in filter(None, [encoder.ticker_delta(market, (k + 2) * 1_000_000_000),
                                   encoder.liquidation(market, (k + 2) * 1_000_000_000)]):
            feed.on_frame(frame, 1)
    stats, sent = reader.stats("SOL-USDT-PERP"), encoder.fields
    price = reader.instrument("SOL-USDT-PERP").stats_price
    assert (price(stats.mark_px), price(stats.index_px)) == (Decimal(sent["markPrice"]), Decimal(sent["indexPrice"]))
    assert funding_rate(stats.funding_rate) == Decimal(sent["fundingRate"])
    assert stats.open_interest == int(Decimal(sent["openInterest"]) * 10)
    assert len([e for e in records(cursor) if isinstance(e, LiquidationEvent)]) == 30
    assert reader.counters()["decode_errors"] == 0
    writer.close()


# ---------------------------------------------------------------- the worker against `fh sim`

@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """`fh sim --venues bybit_linear` and `fh run` of that one venue (SOL-USDT-PERP)."""
    with Pipeline(tmp_path_factory.mktemp("bybit"), f"fhbybit{os.getpid()}", venues=("bybit_linear",),
                  stale_after_s=5.0).serving() as pipeline:
        wait_for(lambda: book_valid(pipeline), 240, "the bybit_linear book valid")  # a cold compile takes minutes
        yield pipeline


def book_valid(pipeline: Pipeline) -> bool:
    try:
        with VenueReader("bybit_linear", prefix=pipeline.prefix) as venue:
            return venue.book("SOL-USDT-PERP").valid
    except SegmentError:
        return False


def test_the_worker_keeps_the_book_valid_and_rings_every_record_kind(running):
    with VenueReader("bybit_linear", prefix=running.prefix) as venue:
        cursor, seen = venue.events(), []

        def kinds():
            seen.extend(cursor.poll())
            return {type(e) for e in seen} >= {BboEvent, FundingEvent, OpenInterestEvent, LiquidationEvent}
        wait_for(kinds, 30, "a BBO, funding, open interest and liquidation record")  # a liquidation every 3 s
        book, stats = venue.book("SOL-USDT-PERP"), venue.stats("SOL-USDT-PERP")
        assert book.valid and stats.mark_px > 0 and stats.open_interest > 0 and stats.next_funding_ns > 0
        bbo = [e for e in seen if isinstance(e, BboEvent)][-1]
        assert 0 < bbo.bid_px < bbo.ask_px and bbo.bid_qty > 0 and bbo.ask_qty > 0
        totals = venue.totals()
        assert totals["decode_errors"] == 0 and totals["gaps"] == 0


def test_a_dropped_delta_is_a_gap_the_worker_resubscribes_for_a_fresh_snapshot(running):
    with VenueReader("bybit_linear", prefix=running.prefix) as venue:
        cursor, before = venue.events(), venue.totals()
        running.fault("bybit_linear", "drop", symbol="SOLUSDT")
        statuses: list = []

        def valid_again():
            statuses.extend((e.status, e.reason) for e in cursor.poll() if isinstance(e, StatusEvent))
            return (Status.BOOK_VALID, Reason.SNAPSHOT) in statuses
        wait_for(valid_again, 30, "the book valid again")
        assert statuses[0] == (Status.GAP, Reason.SEQUENCE_GAP)
        assert venue.totals()["resyncs"] == before["resyncs"] + 1


def test_a_service_restart_snapshot_u_1_replaces_the_book_with_no_gap(running):
    """§3.5: `u == 1` is a new full snapshot; the deltas after it follow it."""
    with VenueReader("bybit_linear", prefix=running.prefix) as venue:
        wait_for(lambda: venue.book("SOL-USDT-PERP").update_id > 10, 30, "ten deltas")
        before, numbered = venue.totals(), venue.book("SOL-USDT-PERP").update_id
        running.fault("bybit_linear", "reset", symbol="SOLUSDT")
        wait_for(lambda: venue.book("SOL-USDT-PERP").update_id < numbered, 10, "the book numbered from 1 again")
        wait_for(lambda: venue.book("SOL-USDT-PERP").update_id >= 3, 10, "deltas after the reset applied")
        assert venue.book("SOL-USDT-PERP").valid and running.sim_stats("bybit_linear")["served"]["reset"] == 1
        after = venue.totals()
        assert after["gaps"] == before["gaps"] and after["decode_errors"] == 0


# ---------------------------------------------------------------- instruments, every page

def listing(cursor: str, *symbols: str) -> bytes:
    return json.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
        {"symbol": s} for s in symbols], "nextPageCursor": cursor}, "retExtInfo": {}, "time": 1}).encode()


def test_the_next_page_is_the_same_request_with_the_cursor_and_the_pages_merge_in_order():
    """§3.9: linear and inverse page by `cursor` = the last page's `nextPageCursor`, "" on the last."""
    protocol = VENUES["bybit_linear"].protocol
    url = "https://api.bybit.com/v5/market/instruments-info?category=linear&limit=2"
    second = protocol.next_page(url, listing("first=SOLUSDT&last=BTCUSDT", "SOLUSDT", "BTCUSDT"))
    assert second == url + "&cursor=first%3DSOLUSDT%26last%3DBTCUSDT"
    assert protocol.next_page(second, listing("next%3A3", "ETHUSDT")) == url + "&cursor=next%253A3"
    assert protocol.next_page(second, listing("", "ETHUSDT")) is None
    assert protocol.next_page(url, b'{"retCode":10001,"retMsg":"params error","result":{}}') is None
    merged = json.loads(protocol.merge_pages([listing("x", "SOLUSDT", "BTCUSDT"), listing("", "ETHUSDT")]))
    assert [e["symbol"] for e in merged["result"]["list"]] == ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
    assert merged["result"]["nextPageCursor"] == ""
    with pytest.raises(ValueError, match="page 2 of 2"):
        protocol.merge_pages([listing("x", "SOLUSDT"), b'{"retCode":10001,"result":{}}'])


def test_the_worker_reads_every_page_of_the_simulators_instruments(tmp_path):
    """A page size of one: the third perpetual is on the third page."""
    instruments = [Instrument("bybit_linear", f"{base}USDT", base, "USDT", 2, 1, PERPETUAL, settle="USDT")
                   for base in ("SOL", "BTC", "ETH")]
    references = {i.symbol: Reference(REFERENCE_MIDS[i.base], np.random.default_rng(1)) for i in instruments}

    async def main():
        async with Simulator({"bybit_linear": BybitLinearSim(instruments, references, 1, 0.0)},
                             base_port=free_base_port()) as sim:
            urls = sim.urls()["bybit_linear"]
            config = parse_config({"venues": {"bybit_linear": {"symbols": ["ETH-USDT-PERP", "SOL-USDT-PERP"],
                                                               **urls}}})
            worker = VenueWorker(config.venues["bybit_linear"], RunConfig(instrument_cache=str(tmp_path)))
            worker.venue = dataclasses.replace(worker.venue, instruments_path=worker.venue.instruments_path.replace(
                "limit=1000", "limit=1"))
            chosen = await worker._instruments()
            return chosen, json.loads(InstrumentCache(tmp_path).record("bybit_linear")["body"]), sim.venues[
                "bybit_linear"].tally.stats()
    chosen, cached, tally = asyncio.run(main())
    assert [i.venue_symbol for i in chosen] == ["ETHUSDT", "SOLUSDT"]
    assert [e["symbol"] for e in cached["result"]["list"]] == ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
    assert tally["rejected"] == {}
