"""Binance USD-M and COIN-M futures (derivatives-protocols.md §1): the decoder on the documented
example messages, the futures book rule (drop u < lastUpdateId, the first diff straddles it, then pu
chains on), the plans and the instruments, and the real 2021 USD-M recording replayed with no gap."""
import json
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
from readers import in_process_reader
from shm.layout import Side, Status
from shm.reader import StatusEvent, TradeEvent
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.plan import plan
from tools.replay import replay

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


@pytest.mark.parametrize("data", [DOC_BOOK_TICKER, DOC_MARK_PRICE, DOC_FORCE_ORDER],
                         ids=["bookTicker", "markPriceUpdate", "forceOrder"])
def test_documented_streams_we_do_not_decode_are_ignored_not_errors(futures, data):
    feed, reader = futures
    live(feed)
    feed.on_frame(wrapped({**data, "s": "BTCUSDT"} if "s" in data else data), 3)
    assert reader.counters()["decode_errors"] == 0 and reader.book("BTCUSDT").update_id == 160
    assert not [e for e in reader.events("oldest").poll() if isinstance(e, TradeEvent)]  # markPrice T is no trade


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

def test_usdm_books_go_on_the_public_route_and_trades_on_the_market_route():
    venue = VENUES["binance_usdm"]
    urls = [plan.url for plan in venue.plan(("BTCUSDT", "ETHUSDT"), PlanOptions(venue.ws_url, venue.rest_url))]
    assert urls == ["wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms",
                    "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"]


def test_coin_m_keeps_one_combined_stream_and_its_own_rest_paths():
    venue = VENUES["binance_coinm"]
    (plan,) = venue.plan(("BTCUSD_PERP",), PlanOptions(venue.ws_url, venue.rest_url))
    assert plan.url == "wss://dstream.binance.com/stream?streams=btcusd_perp@depth@100ms/btcusd_perp@aggTrade"
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
        "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms",
        "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade"]
    assert venues["binance_usdm"]["rest"]["startup"][1] == {
        "method": "GET", "url": "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000", "weight": 20}
    assert venues["binance_coinm"]["rest"]["startup"][1]["url"] == (
        "https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000")
