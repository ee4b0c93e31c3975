"""The venue registry and what it plans: one package per venue, no venue named anywhere else, the
requests the workers make held against the venues' documented forms, feeds that decide without
doing I/O, the shared backoff and pacer, and rotation handing books over without a snapshot."""
import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from feedhandler.capture import FrameKind
from feedhandler.config import load_config, parse_config
from feedhandler.instruments import Instrument
from feedhandler.sync import SyncState
from feedhandler.venues import VENUES, by_cryptofeed
from feedhandler.venues.base import FetchSnapshot, PlanOptions, Rate, Resubscribe
from feedhandler.venues.binance import BinanceFeed
from feedhandler.venues.binance.protocol import parse_instruments as binance_instruments
from feedhandler.venues.coinbase import CoinbaseFeed
from feedhandler.venues.kraken import KrakenFeed
from readers import in_process_reader
from shm.reader import StatusEvent
from shm.layout import Status
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.plan import plan
from tools.replay import replay
from workers.lifecycle import Backoff, IdleWait, Pacer, Stop

REPO = Path(__file__).resolve().parent.parent
# the protocol packages; variants are named after them
FAMILIES = ("binance", "binance_usdm", "coinbase", "kraken", "okx", "bybit")
VENUE_FREE = ["workers/venue.py", "workers/supervisor.py", "workers/aggregator.py", "feedhandler/config.py",
              "feedhandler/feed.py", "feedhandler/instrument_cache.py", "tools/warmup.py", "tools/replay.py",
              "tools/importers/cryptofeed.py", "tools/metrics.py", "tools/plan.py"]
BINANCE_STREAM = re.compile(r"^[a-z0-9]+@(depth(@100ms)?|trade|aggTrade|bookTicker|depth(5|10|20)(@100ms)?)$")
COINBASE_CHANNELS = {"level2", "market_trades", "heartbeats", "ticker", "ticker_batch", "candles", "status"}
BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", 2, 8)


def test_each_venue_is_one_package_exporting_its_venue():
    for family in FAMILIES:
        package = REPO / "feedhandler" / "venues" / family
        assert {p.name for p in package.glob("*.py")} >= {"__init__.py", "protocol.py", "decoder.py", "feed.py",
                                                          "simulator.py"}
        assert VENUES[family].feed.__module__ == f"feedhandler.venues.{family}.feed"
        assert VENUES[family].encoder.__module__ == f"feedhandler.venues.{family}.simulator"


def test_each_venue_step_has_its_own_branch_in_the_replay_dispatch():
    steps = {venue.feed.STEP: venue.feed.PROTOCOL_ID for venue in VENUES.values()}
    assert len(set(steps.values())) == len(steps), steps  # two steps on one id: replay would run the wrong one


@pytest.mark.parametrize("path", VENUE_FREE)
def test_worker_config_warmup_replay_import_and_metrics_name_no_venue(path):
    text = (REPO / path).read_text().lower()
    named = sorted({name for name in (*FAMILIES, *VENUES) if re.search(rf"\b{re.escape(name)}\b", text)})
    assert named == [], f"{path} names {named}: venue specifics belong in feedhandler/venues/<venue>/"


def test_live_plan_is_exactly_the_documented_request_forms():
    result = plan(load_config(str(REPO / "configs" / "live.toml")))["venues"]
    (binance,) = result["binance"]["connections"]
    url = urlparse(binance["url"])
    assert (url.scheme, url.netloc, url.path) == ("wss", "stream.binance.com:9443", "/stream")
    query = parse_qs(url.query)
    assert set(query) == {"streams", "timeUnit"} and query["timeUnit"] == ["MICROSECOND"]
    streams = query["streams"][0].split("/")
    assert len(streams) <= 1024 and all(BINANCE_STREAM.match(s) for s in streams)
    assert binance["send"] == []  # the URL subscribes: nothing counts against 5 messages/s
    assert result["binance"]["rest"]["startup"] == [
        {"method": "GET", "url": "https://api.binance.com/api/v3/exchangeInfo", "weight": 20},
        {"method": "GET", "url": "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000", "weight": 250},
        {"method": "GET", "url": "https://api.binance.com/api/v3/depth?symbol=ETHUSDT&limit=5000", "weight": 250}]
    for connection in result["coinbase"]["connections"]:
        assert connection["url"] == "wss://advanced-trade-ws.coinbase.com"
        for message in map(json.loads, connection["send"]):
            assert message["type"] == "subscribe" and message["channel"] in COINBASE_CHANNELS
            assert set(message) <= {"type", "channel", "product_ids"} and "channels" not in message
            assert len(message.get("product_ids", [])) <= 16
    for connection in result["kraken"]["connections"]:
        assert connection["url"] == "wss://ws.kraken.com/v2"
        for message in map(json.loads, connection["send"]):
            assert set(message) == {"method", "params", "req_id"} and message["method"] == "subscribe"
            assert all(re.match(r"^[A-Z0-9]+/[A-Z0-9]+$", s) for s in message["params"]["symbol"])
            if message["params"]["channel"] == "book":
                assert message["params"]["depth"] in (10, 25, 100, 500, 1000) and message["params"]["snapshot"]


def test_fh_plan_json_prints_the_plan():
    done = subprocess.run([sys.executable, "-m", "tools.cli", "plan", "-c", "configs/live.toml", "--json"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    printed = json.loads(done.stdout)
    assert printed["venues"]["kraken"]["connections"][0]["url"] == "wss://ws.kraken.com/v2"


def test_a_variant_is_data_and_plans_its_own_hosts():
    config = parse_config({"venues": {"binance-us": {"symbols": ["BTC-USDT"]}}})
    (connection,) = plan(config)["venues"]["binance-us"]["connections"]
    assert connection["url"].startswith("wss://stream.binance.us:9443/stream?streams=btcusdt@depth@100ms/")
    assert VENUES["binance-us"].feed is BinanceFeed and by_cryptofeed("binance_us").name == "binance-us"


def test_a_cryptofeed_recording_of_a_variant_imports_and_replays(captures, tmp_path, shm_prefix):
    source = captures / "binance-spot-2021"
    for path in source.glob("BINANCE.*"):  # the same frames, recorded as Binance.US would name them
        shutil.copy(path, tmp_path / path.name.replace("BINANCE", "BINANCE_US", 1))
    imported = import_recordings([str(tmp_path / "BINANCE_US")], str(tmp_path / "us.fhcap"))
    assert imported["venue"] == "binance-us"
    summary = replay([str(tmp_path / "us.fhcap")], shm_prefix=shm_prefix)
    assert summary["books"] and all(book["valid"] for book in summary["books"].values())
    assert all(key.startswith("binance-us:") for key in summary["books"])


# ---------------------------------------------------------------- feeds decide, workers do

@pytest.fixture
def binance(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance", [BTC.spec(1024)], depth=5, ring_slots=1024)
    feed = BinanceFeed([BTC], writer, capacity=1024, options=PlanOptions("ws://x", "http://rest", snapshot_limit=1000))
    feed.assign(0, ("BTCUSDT",))
    yield feed, in_process_reader("binance", shm_prefix)
    writer.close()


def depth(first, last, bids=(), conn_time_ms=1_700_000_000_000, symbol="BTCUSDT"):
    data = {"e": "depthUpdate", "E": conn_time_ms, "s": symbol, "U": first, "u": last,
            "b": [list(level) for level in bids], "a": [["101", "1"]]}
    return json.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).encode()


def live(feed, conn=0):
    feed.on_frame(depth(100, 101, bids=[("99", "1")]), 1, conn)
    (request,) = feed.requests(now=0.0)
    feed.on_rest(request.request.url, b'{"lastUpdateId":100,"bids":[["98","1"]],"asks":[["102","1"]]}', 2)
    assert feed.state(0) == SyncState.LIVE


def test_a_binance_feed_asks_for_its_snapshot_as_a_request(binance):
    feed, _ = binance
    feed.on_frame(depth(100, 101), 1)
    assert feed.requests(now=0.0) == [FetchSnapshot("BTCUSDT", feed.PROTOCOL.snapshot_request(
        "BTCUSDT", feed.options))]
    assert feed.requests(now=0.1) == []  # asked already; the rate limit holds the next one
    request = feed.PROTOCOL.snapshot_request("BTCUSDT", feed.options)
    assert (request.url, request.weight) == ("http://rest/api/v3/depth?symbol=BTCUSDT&limit=1000", 50)


def test_books_with_snapshots_on_the_socket_resync_by_resubscribing_on_their_connection(shm_prefix):
    xmr = Instrument("kraken", "XMR/USD", "XMR", "USD", 2, 8)
    writer = SegmentWriter.create(shm_prefix, "kraken", [xmr.spec(64)], depth=5, ring_slots=1024)
    feed = KrakenFeed([xmr], writer, capacity=64, options=PlanOptions("wss://ws.kraken.com/v2", "", book_depth=25))
    feed.assign(3, ("XMR/USD",))
    feed.sync[0, 0] = SyncState.RESYNC
    (request,) = feed.requests(now=0.0)
    assert isinstance(request, Resubscribe) and (request.conn, request.symbols) == (3, ("XMR/USD",))
    unsubscribe, subscribe = map(json.loads, request.messages)
    assert unsubscribe["method"] == "unsubscribe" and subscribe["params"] == {
        "channel": "book", "symbol": ["XMR/USD"], "depth": 25, "snapshot": True}
    writer.close()


def test_timestamps_follow_the_unit_the_connection_url_asked_for(binance):
    feed, reader = binance
    feed.on_connect(0, 0, "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms&timeUnit=MICROSECOND")
    live(feed)
    feed.on_frame(depth(102, 102, bids=[("99.5", "1")], conn_time_ms=1_700_000_000_123_456), 3)
    assert reader.book("BTCUSDT").ts_exchange == 1_700_000_000_123_456_000
    feed.on_connect(1, 0, "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms")
    feed.on_frame(depth(103, 103, bids=[("99.6", "1")], conn_time_ms=1_700_000_000_124), 4, 1)
    assert reader.book("BTCUSDT").ts_exchange == 1_700_000_000_124_000_000


def test_binance_trades_carry_the_trade_time_not_the_event_time(binance):
    feed, reader = binance
    feed.on_connect(0, 0, "wss://x/stream?streams=btcusdt@trade")
    trade = {"e": "trade", "E": 1_700_000_000_999, "s": "BTCUSDT", "t": 7, "p": "100", "q": "1",
             "T": 1_700_000_000_500, "m": True, "M": True}
    feed.on_frame(json.dumps({"stream": "btcusdt@trade", "data": trade}).encode(), 5)
    (event,) = [e for e in reader.events("oldest").poll() if getattr(e, "trade_id", None) == 7]
    assert event.ts_exchange == 1_700_000_000_500_000_000


# ---------------------------------------------------------------- rotation

def test_a_rotation_hands_each_book_over_once_the_new_connection_lines_up(binance):
    feed, reader = binance
    live(feed)
    feed.on_event(FrameKind.MARKER, b"hand-over 1", 2, 0)  # as the worker records it, so replays do it too
    assert feed.waiting_hand_over(0) == 1
    feed.on_frame(depth(105, 110, bids=[("97", "1")]), 3, 1)  # the new connection ahead of the old: not a gap
    assert feed.state(0) == SyncState.LIVE and reader.book("BTCUSDT").update_id == 101
    feed.on_frame(depth(102, 104, bids=[("96", "1")]), 4, 0)  # the old one continues
    feed.on_frame(depth(103, 106, bids=[("95", "1")]), 5, 1)  # overlaps the book: exact, the book moves
    assert feed.waiting_hand_over(0) == 0 and reader.book("BTCUSDT").update_id == 106
    feed.on_disconnect(0, 6)  # the old connection closing costs nothing
    book = reader.book("BTCUSDT")
    assert book.valid and feed.state(0) == SyncState.LIVE and feed.requests(now=10.0) == []
    assert [p for p, _ in book.levels_text("bids")] == ["99.00", "98.00", "96.00", "95.00"]  # never 97
    assert not [e for e in reader.events("oldest").poll() if isinstance(e, StatusEvent) and e.status == Status.GAP]


def test_a_quiet_book_moves_to_the_new_connection_as_it_is(binance):
    feed, reader = binance
    live(feed)
    feed.begin_hand_over(0, 1)
    assert feed.waiting_hand_over(0) == 1
    feed.finish_hand_over(0, 1)
    assert feed.waiting_hand_over(0) == 0
    feed.on_disconnect(0, 3)
    feed.on_frame(depth(102, 102, bids=[("99.5", "1")]), 4, 1)  # continues where the old one stopped
    assert reader.book("BTCUSDT").valid and reader.book("BTCUSDT").update_id == 102


# ---------------------------------------------------------------- Coinbase and Kraken protocol fixes

def coinbase_feed(shm_prefix, instruments):
    writer = SegmentWriter.create(shm_prefix, "coinbase", [i.spec(64) for i in instruments], depth=5,
                                  ring_slots=1024)
    return CoinbaseFeed(instruments, writer, capacity=64), writer, in_process_reader("coinbase", shm_prefix)


def l2(sequence, kind, product="BTC-USD", timestamp="2026-12-07T02:19:06.123456789Z"):
    updates = [{"side": "bid", "event_time": timestamp, "price_level": "99.5", "new_quantity": "1"},
               {"side": "offer", "event_time": timestamp, "price_level": "100.5", "new_quantity": "2"}]
    return json.dumps({"channel": "l2_data", "client_id": "", "timestamp": timestamp, "sequence_num": sequence,
                       "events": [{"type": kind, "product_id": product, "updates": updates}]}).encode()


def test_coinbase_books_carry_the_message_timestamp(shm_prefix):
    feed, writer, reader = coinbase_feed(shm_prefix, [Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8)])
    feed.on_frame(l2(0, "snapshot"), 1)
    assert reader.book("BTC-USD").valid and reader.book("BTC-USD").ts_exchange == 1_796_609_946_123_456_789
    writer.close()


def test_coinbase_exchange_updates_carry_their_time_sent_after_the_changes(shm_prefix):
    feed, writer, reader = coinbase_feed(shm_prefix, [Instrument("coinbase", "SKL-BTC", "SKL", "BTC", 8, 1)])
    feed.on_frame(b'{"type":"snapshot","product_id":"SKL-BTC","bids":[["0.00001300","10.0"]],'
                  b'"asks":[["0.00001310","5.0"]]}', 1)
    feed.on_frame(b'{"type":"l2update","product_id":"SKL-BTC","changes":[["sell","0.00001306","660.5"]],'
                  b'"time":"2021-04-17T16:43:37.075687Z"}', 2)  # as the 2021 recording orders its keys
    book = reader.book("SKL-BTC")
    assert book.valid and book.ts_exchange == 1_618_677_817_075_687_000
    writer.close()


def test_an_undecodable_coinbase_frame_invalidates_the_books_of_its_connection(shm_prefix):
    feed, writer, reader = coinbase_feed(shm_prefix, [Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8)])
    feed.assign(0, ("BTC-USD",))
    feed.on_frame(l2(0, "snapshot"), 1)
    feed.on_frame(l2(1, "update").replace(b'"99.5"', b'"99.5.5"'), 2)  # a change we cannot apply
    assert not reader.book("BTC-USD").valid and reader.counters("BTC-USD")["gaps"] == 1
    (request,) = feed.requests(now=0.0)
    assert isinstance(request, Resubscribe) and request.symbols == ("BTC-USD",)
    writer.close()


def test_a_coinbase_usdc_product_is_read_from_its_usd_book():
    usdc, usdt = (Instrument("coinbase", f"BTC-{q}", "BTC", q, 2, 8) for q in ("USDC", "USDT"))
    aliased = VENUES["coinbase"].protocol.wire_instruments([usdc, usdt], VENUES["coinbase"].ws_url)
    assert [(i.symbol, i.venue_symbol) for i in aliased] == [("BTC-USDC", "BTC-USD"), ("BTC-USDT", "BTC-USDT")]


def test_kraken_v2_books_carry_the_message_timestamp(shm_prefix):
    btc = Instrument("kraken", "BTC/USD", "BTC", "USD", 1, 8)
    writer = SegmentWriter.create(shm_prefix, "kraken", [btc.spec(64)], depth=5, ring_slots=1024)
    feed = KrakenFeed([btc], writer, capacity=64)
    encoder = VENUES["kraken"].encoder("BTC/USD", 1, 8)
    from feedhandler.sim_market import Market
    snapshot = json.loads(encoder.snapshot(Market(mid=650_000, seed=1)))
    snapshot["data"][0]["timestamp"] = "2023-10-06T17:35:55.440295Z"
    feed.on_frame(json.dumps(snapshot, separators=(",", ":")).encode(), 1)
    book = in_process_reader("kraken", shm_prefix).book("BTC/USD")
    assert book.valid and book.ts_exchange == 1_696_613_755_440_295_000
    writer.close()


# ---------------------------------------------------------------- one backoff, one pacer

def test_backoff_doubles_to_its_cap_with_jitter_and_starts_over_after_a_success():
    backoff = Backoff(0.2, 1.0)
    waits = [backoff.failed() for _ in range(5)]
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4 and all(0.5 <= w <= 1.0 for w in waits[3:])
    backoff.succeeded()
    assert backoff.failed() <= 0.2


def test_a_pacer_never_exceeds_the_rate_even_in_a_burst():
    pacer = Pacer(Rate(5, 1.0))
    waits = [pacer.reserve(now=10.0) for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert pacer.reserve(now=20.0) == 0.0


def test_instrument_parsers_name_the_venue_they_parse_for():
    info = {"symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT", "quoteAssetPrecision": 8,
                         "baseAssetPrecision": 8}]}
    assert binance_instruments("binance-us", info)[0].venue == "binance-us"


def test_an_idle_wait_doubles_to_its_cap_and_a_busy_poll_starts_it_over():
    slept = []
    wait = IdleWait(20e-6, 1e-3, sleep=slept.append)
    for _ in range(8):
        wait.idle()
    wait.busy()
    wait.idle()
    assert slept == pytest.approx([20e-6, 40e-6, 80e-6, 160e-6, 320e-6, 640e-6, 1e-3, 1e-3, 20e-6])
    never = IdleWait(0, 0, sleep=slept.append)
    never.idle()
    assert len(slept) == 9  # a loop with a core of its own never sleeps


def test_one_stop_signal_for_loops_threads_and_event_loops():
    stop = Stop()
    assert not stop()
    stop.set()
    assert stop() and Stop().expire_after(1e-9)() and not Stop().expire_after(0)()
    asyncio.run(asyncio.wait_for(stop.wait(), 1))


def test_a_venue_whose_rate_is_per_ip_paces_all_its_connections_together():
    from workers.venue import VenueWorker
    from feedhandler.config import RunConfig
    coinbase = VenueWorker(parse_config({"venues": {"coinbase": {"symbols": ["BTC-USD"]}}}).venues["coinbase"],
                           RunConfig())
    binance = VenueWorker(parse_config({"venues": {"binance": {"symbols": ["BTC-USDT"]}}}).venues["binance"],
                          RunConfig())
    plan = VENUES["coinbase"].plan(("BTC-USD",), PlanOptions("ws://x", ""))[0]
    assert coinbase._connection(plan).pacer is coinbase._connection(plan).pacer  # 8 messages/s per IP
    assert binance._connection(plan).pacer is not binance._connection(plan).pacer  # 5 per connection


def test_a_venue_that_wants_a_client_ping_gets_its_keepalive_every_interval_on_each_connection():
    """Bybit: `{"op":"ping"}` every 20 s from when the connection opened; Binance wants none."""
    from workers.venue import VenueWorker
    from feedhandler.config import RunConfig
    config = parse_config({"venues": {"bybit_linear": {"symbols": ["BTC-USDT-PERP"]},
                                      "binance": {"symbols": ["BTC-USDT"]}}})
    bybit, binance = (VenueWorker(config.venues[name], RunConfig()) for name in ("bybit_linear", "binance"))
    plan = VENUES["bybit_linear"].plan(("BTCUSDT",), PlanOptions("ws://x", "", book_depth=50))[0]
    first, second, quiet = bybit._connection(plan), bybit._connection(plan), binance._connection(plan)
    for connection in (first, second, quiet):
        connection.keepalive_at = 100.0  # opened then
    assert [t for t in (110.0, 119.9, 120.0, 125.0, 139.9, 140.0) if bybit._keepalive_due(first, t)] == [120.0, 140.0]
    assert bybit._keepalive_due(second, 140.0) and not binance._keepalive_due(quiet, 1000.0)
    assert bybit.venue.protocol.keepalive() == b'{"op":"ping"}'
