"""Coinbase Advanced Trade and Exchange level2: crafted frames, and replay of both real recordings."""
import io
import json
from decimal import Decimal

import pytest
import zstandard

from feedhandler.venues.coinbase import CoinbaseFeed
from feedhandler.sync import SyncState
from feedhandler.venues.coinbase.protocol import parse_instruments
from feedhandler.instruments import Instrument, decimals_of
from feedhandler.capture import CaptureReader, FrameKind
from shm.layout import Counter, Side
from readers import in_process_reader
from shm.reader import StatusEvent, TradeEvent
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.replay import replay

BTC = Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8)
ETH = Instrument("coinbase", "ETH-USD", "ETH", "USD", 2, 8)


def l2(sequence, kind, product, updates):
    return json.dumps({"channel": "l2_data", "timestamp": "2026-08-09T21:05:48Z", "sequence_num": sequence,
                       "events": [{"type": kind, "product_id": product, "updates": [
                           {"side": side, "event_time": "2026-08-09T21:05:48Z", "price_level": p, "new_quantity": q}
                           for side, p, q in updates]}]}).encode()


def heartbeat(sequence):
    return json.dumps({"channel": "heartbeats", "sequence_num": sequence, "events": [{"heartbeat_counter": 1}]}).encode()


@pytest.fixture
def feed(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "coinbase", [BTC.spec(256), ETH.spec(256)], depth=5, ring_slots=1024)
    coinbase = CoinbaseFeed([BTC, ETH], writer, capacity=256)
    coinbase.on_frame(l2(0, "snapshot", "BTC-USD", [("bid", "100.00", "1"), ("offer", "101.00", "2")]), 1, conn=7)
    coinbase.on_frame(l2(1, "snapshot", "ETH-USD", [("bid", "10.00", "1"), ("offer", "11.00", "2")]), 1, conn=7)
    yield coinbase, in_process_reader("coinbase", shm_prefix)
    writer.close()


def test_the_offer_side_and_updates_apply_in_order(feed):
    coinbase, reader = feed
    coinbase.on_frame(l2(2, "update", "BTC-USD", [("offer", "100.50", "3"), ("bid", "100.00", "0"),
                                                  ("bid", "99.00", "4")]), 2, conn=7)
    book = reader.book("BTC-USD")
    assert book.valid
    assert book.levels_text("asks") == [["100.50", "3.00000000"], ["101.00", "2.00000000"]]
    assert book.levels_text("bids") == [["99.00", "4.00000000"]]


def test_a_sequence_jump_invalidates_the_books_of_that_connection(feed):
    coinbase, reader = feed
    cursor = reader.events()
    coinbase.on_frame(heartbeat(2), 2, conn=7)
    coinbase.on_frame(heartbeat(4), 3, conn=7)  # 3 is missing
    assert not reader.book("BTC-USD").valid and not reader.book("ETH-USD").valid
    assert sorted(coinbase.books_to_resync()) == ["BTC-USD", "ETH-USD"]
    assert reader.counters("BTC-USD")["gaps"] == 1
    assert ("GAP", "SEQUENCE_GAP") in [(e.status.name, e.reason.name) for e in cursor.poll()
                                       if isinstance(e, StatusEvent)]
    coinbase.on_frame(l2(5, "snapshot", "BTC-USD", [("bid", "100.00", "1")]), 4, conn=7)
    assert reader.book("BTC-USD").valid and coinbase.state(1) == SyncState.SNAPSHOT


def test_sequences_are_per_connection(feed):
    coinbase, reader = feed
    coinbase.on_frame(heartbeat(0), 2, conn=8)  # another connection starts its own count
    coinbase.on_frame(heartbeat(2), 2, conn=7)
    assert reader.book("BTC-USD").valid


@pytest.mark.parametrize("frame", [
    l2(2, "update", "BTC-USD", [("bid", "1e5", "1")]),
    l2(2, "update", "BTC-USD", [("ask", "100.00", "1")]),
    l2(2, "update", "BTC-USD", [("bid", "100.001", "1")]),
    l2(2, "update", "BTC-USD", [("bid", "100.00", "1")])[:-10],
    b'{"type":"l2update","product_id":"BTC-USD","changes":[["hold","1","1"]]}',
], ids=["exponent", "ask-is-spelled-offer", "too-precise", "truncated", "exchange-bad-side"])
def test_an_undecodable_frame_is_counted_and_the_books_of_its_connection_resync(feed, frame):
    """Coinbase has no checksum: a change that could not be applied would leave a book silently wrong."""
    coinbase, reader = feed
    cursor = reader.events()
    coinbase.on_frame(frame, 2, conn=7)
    assert reader.counters()["decode_errors"] == 1
    assert not reader.book("BTC-USD").valid and not reader.book("ETH-USD").valid
    assert sorted(coinbase.books_to_resync()) == ["BTC-USD", "ETH-USD"]
    assert ("GAP", "DECODE_ERROR") in [(e.status.name, e.reason.name) for e in cursor.poll()
                                       if isinstance(e, StatusEvent)]


def test_a_frame_of_a_product_not_carried_is_counted_and_changes_no_book(feed):
    coinbase, reader = feed
    before = reader.book("BTC-USD").levels_text("bids")
    coinbase.on_frame(l2(2, "update", "DOGE-USD", [("bid", "1", "1")]), 2, conn=7)
    assert reader.counters()["decode_errors"] == 1
    assert reader.book("BTC-USD").valid and reader.book("BTC-USD").levels_text("bids") == before


def test_products_of_both_apis_give_symbols_and_decimals():
    advanced = {"products": [{"product_id": "BTC-USD", "base_currency_id": "BTC", "quote_currency_id": "USD",
                              "quote_increment": "0.01", "base_increment": "0.00000001"}]}
    exchange = [{"id": "SKL-USD", "base_currency": "SKL", "quote_currency": "USD", "quote_increment": "0.0001",
                 "base_increment": "0.1"}]
    assert [(i.symbol, i.px_dec, i.qty_dec) for i in parse_instruments("coinbase", advanced)] == [("BTC-USD", 2, 8)]
    assert [(i.symbol, i.px_dec, i.qty_dec) for i in parse_instruments("coinbase", exchange)] == [("SKL-USD", 4, 1)]


@pytest.mark.parametrize("step, decimals", [("0.00010000", 4), ("1", 0), ("0.25", 2), ("10", 0)])
def test_step_sizes_give_their_decimals(step, decimals):
    assert decimals_of(step) == decimals


# ---------------------------------------------------------------- the real recordings

def apply_reference(book, side, price, qty):
    if Decimal(qty) == 0:
        book[side].pop(Decimal(price), None)
    else:
        book[side][Decimal(price)] = Decimal(qty)


def assert_same(summary_book, reference, depth):
    assert [(Decimal(p), Decimal(q)) for p, q in summary_book["bids"]] == \
        sorted(reference["bids"].items(), reverse=True)[:depth]
    assert [(Decimal(p), Decimal(q)) for p, q in summary_book["asks"]] == sorted(reference["asks"].items())[:depth]


def test_advanced_trade_recording_loads_full_depth_with_continuous_sequence(captures, tmp_path, shm_prefix):
    path = captures / "coinbase-advanced-2026" / "COINBASE.jsonl.zst"
    import_recordings([str(path)], str(tmp_path / "c.fhcap"))
    summary = replay([str(tmp_path / "c.fhcap")], shm_prefix=shm_prefix, depth=5000)
    books, sequence, levels_after_snapshot = {}, [], {}
    with open(path, "rb") as f:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8").readlines()
    for line in lines[1:]:
        record = json.loads(line)
        if record["t"] != "recv":
            continue
        message = json.loads(record["data"])
        sequence.append(message["sequence_num"])
        if message["channel"] != "l2_data":
            continue
        for event in message["events"]:
            book = books.setdefault(event["product_id"], {"bids": {}, "asks": {}})
            if event["type"] == "snapshot":
                book["bids"], book["asks"] = {}, {}
            for update in event["updates"]:
                apply_reference(book, "bids" if update["side"] == "bid" else "asks", update["price_level"],
                                update["new_quantity"])
            if event["type"] == "snapshot":
                levels_after_snapshot[event["product_id"]] = len(book["bids"]) + len(book["asks"])
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))
    assert levels_after_snapshot["BTC-USD"] > 45_000
    assert summary["decode_errors"] == 0
    for product, reference in books.items():
        got = summary["books"][f"coinbase:{product}"]
        assert got["valid"] and got["gaps"] == 0 and got["crossed"] == 0
        assert_same(got, reference, 5000)


def test_exchange_recording_keeps_all_ten_books_uncrossed_and_exact(captures, tmp_path, shm_prefix):
    import_recordings([str(captures / "coinbase-exchange-2021" / "COINBASE")], str(tmp_path / "e.fhcap"))
    summary = replay([str(tmp_path / "e.fhcap")], shm_prefix=shm_prefix, depth=1000)
    books = {}
    for line in open(captures / "coinbase-exchange-2021" / "COINBASE.ws.28.0"):
        if not line[0].isdigit():
            continue
        message = json.loads(line.partition(": ")[2])
        if message.get("type") == "snapshot":
            books[message["product_id"]] = {"bids": {Decimal(p): Decimal(q) for p, q in message["bids"]},
                                            "asks": {Decimal(p): Decimal(q) for p, q in message["asks"]}}
        elif message.get("type") == "l2update":
            for side, price, qty in message["changes"]:
                apply_reference(books[message["product_id"]], "bids" if side == "buy" else "asks", price, qty)
            best_bid = max(books[message["product_id"]]["bids"])
            best_ask = min(books[message["product_id"]]["asks"])
            assert best_bid < best_ask
    assert len(books) == 10 and summary["decode_errors"] == 0
    for product, reference in books.items():
        got = summary["books"][f"coinbase:{product}"]
        assert got["valid"] and got["crossed"] == 0 and got["resyncs"] == 0
        assert_same(got, reference, 1000)


def test_an_exchange_match_publishes_the_taker_side(feed):
    coinbase, reader = feed
    cursor = reader.events()
    coinbase.on_frame(b'{"type":"match","trade_id":280232,"maker_order_id":"a","taker_order_id":"b","side":"sell",'
                      b'"size":"0.5","price":"100.50","product_id":"BTC-USD","sequence":1,'
                      b'"time":"2021-04-17T16:43:37.089723Z"}', 9, conn=3)
    (trade,) = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert (trade.trade_id, trade.price, trade.qty) == (280232, 10050, 50000000)
    assert trade.side == Side.BUY  # the resting order sold: a buyer lifted it
    assert trade.ts_exchange == 1618677817089723000


def test_last_match_is_history_not_a_new_trade(feed):
    coinbase, reader = feed
    coinbase.on_frame(b'{"type":"last_match","trade_id":1,"side":"sell","size":"1","price":"100","product_id":'
                      b'"BTC-USD","time":"2021-04-17T16:43:37Z"}', 9, conn=3)
    assert reader.counters("BTC-USD")["trades"] == 0 and reader.counters()["decode_errors"] == 0


def test_exchange_recording_publishes_every_match(captures, tmp_path, shm_prefix):
    path = captures / "coinbase-exchange-2021" / "COINBASE.ws.28.0"
    matches = sum(1 for line in open(path) if '"type":"match"' in line)
    import_recordings([str(captures / "coinbase-exchange-2021" / "COINBASE")], str(tmp_path / "e.fhcap"))
    products = sorted({json.loads(line.partition(": ")[2])["product_id"] for line in open(path)
                       if '"type":"match"' in line})
    instruments = [Instrument("coinbase", p, *p.split("-"), 8, 8) for p in products]
    with SegmentWriter.create(shm_prefix, "coinbase", [i.spec(256) for i in instruments], 5, 1 << 12) as writer:
        coinbase = CoinbaseFeed(instruments, writer, capacity=256)
        for frame in CaptureReader(tmp_path / "e.fhcap").frames():
            if frame.kind == FrameKind.WS_RECV and b'"match"' in frame.payload:
                coinbase.on_frame(frame.payload, frame.ts_ns, frame.conn)
        assert matches > 0 and int(writer.counters[:, Counter.TRADES].sum()) == matches
        assert int(writer.counters[-1, Counter.DECODE_ERRORS]) == 0


def test_advanced_market_trades_publish_the_opposite_of_the_makers_side(feed):
    coinbase, reader = feed
    cursor = reader.events()
    message = {"channel": "market_trades", "sequence_num": 2, "events": [
        {"type": "snapshot", "trades": [{"product_id": "BTC-USD", "trade_id": "1", "price": "100.00",
                                         "size": "1", "time": "2026-08-09T21:05:42.514318Z", "side": "SELL"}]},
        {"type": "update", "trades": [{"product_id": "BTC-USD", "trade_id": "1068572091", "price": "101.00",
                                       "size": "0.01034361", "time": "2026-08-09T21:05:48.167634Z", "side": "SELL"}]}]}
    coinbase.on_frame(json.dumps(message).encode(), 3, conn=7)
    (trade,) = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert (trade.trade_id, trade.price, trade.qty, trade.side) == (1068572091, 10100, 1034361, Side.BUY)


def test_advanced_recording_trade_sides_agree_with_the_touch(captures, tmp_path, shm_prefix):
    """Taker side inferred from the trade price against the latest ticker best bid/ask."""
    path = captures / "coinbase-advanced-2026" / "COINBASE.jsonl.zst"
    import_recordings([str(path)], str(tmp_path / "c.fhcap"))
    instruments = [Instrument("coinbase", p, *p.split("-"), 2, 8) for p in ("BTC-USD", "ETH-USD")]
    with SegmentWriter.create(shm_prefix, "coinbase", [i.spec(65536) for i in instruments], 5, 1 << 14) as writer:
        coinbase = CoinbaseFeed(instruments, writer)
        reader = in_process_reader("coinbase", shm_prefix)
        cursor = reader.events(batch=1 << 14)
        best, inferred = {}, {}
        for frame in CaptureReader(tmp_path / "c.fhcap").frames():
            if frame.kind != FrameKind.WS_RECV:
                continue
            coinbase.on_frame(frame.payload, frame.ts_ns, frame.conn)
            message = json.loads(frame.payload)
            for event in message.get("events", []):
                for ticker in event.get("tickers", []):
                    best[ticker["product_id"]] = (Decimal(ticker["best_bid"]), Decimal(ticker["best_ask"]))
                for trade in event.get("trades", []) if event.get("type") == "update" else []:
                    bid, ask = best.get(trade["product_id"], (None, None))
                    if bid is not None and Decimal(trade["price"]) >= ask:
                        inferred[int(trade["trade_id"])] = Side.BUY
                    elif bid is not None and Decimal(trade["price"]) <= bid:
                        inferred[int(trade["trade_id"])] = Side.SELL
        published = {e.trade_id: e.side for e in cursor.poll() if isinstance(e, TradeEvent)}
        assert int(writer.counters[-1, Counter.DECODE_ERRORS]) == 0 and len(inferred) > 50
        agree = sum(published[trade_id] == side for trade_id, side in inferred.items())
        assert agree >= 0.95 * len(inferred)
