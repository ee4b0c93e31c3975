"""Kraken v1 books: checksums on crafted frames, and replay of the real recording."""
import json
import zlib
from decimal import Decimal

import pytest

from feedhandler.venues.kraken import KrakenFeed
from feedhandler.sync import SyncState
from feedhandler.venues.kraken.protocol import parse_instruments
from feedhandler.instruments import Instrument
from feedhandler.capture import CaptureReader, FrameKind
from shm.layout import Counter, Side
from readers import in_process_reader
from shm.reader import StatusEvent, TradeEvent
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.replay import replay

XMR = Instrument("kraken", "XMR/USD", "XMR", "USD", 2, 8)
ETH = Instrument("kraken", "ETH/USD", "ETH", "USD", 2, 8)


def checksum(asks, bids):
    """Kraken's rule on the strings as sent: top 10 asks then bids, dot removed, leading zeros stripped."""
    text = "".join(s.replace(".", "").lstrip("0") for level in asks[:10] + bids[:10] for s in level[:2])
    return zlib.crc32(text.encode())


def snapshot_frame(pair, asks, bids, depth=10):
    return json.dumps([1, {"as": [[p, q, "1618678133.1"] for p, q in asks],
                           "bs": [[p, q, "1618678133.1"] for p, q in bids]}, f"book-{depth}", pair]).encode()


def update_frame(pair, side, levels, crc, depth=10):
    return json.dumps([1, {side: [[p, q, "1618678134.2"] for p, q in levels], "c": str(crc)},
                       f"book-{depth}", pair]).encode()


ASKS = [("354.20000000", "1.00000000"), ("354.30000000", "2.00000000")]
BIDS = [("354.10000000", "3.00000000"), ("354.00000000", "4.00000000")]


@pytest.fixture
def feed(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "kraken", [XMR.spec(64), ETH.spec(64)], depth=10, ring_slots=1024)
    kraken = KrakenFeed([XMR, ETH], writer, capacity=64)
    for pair in ("XMR/USD", "ETH/USD"):
        kraken.on_frame(snapshot_frame(pair, ASKS, BIDS), 1)
    yield kraken, in_process_reader("kraken", shm_prefix)
    writer.close()


def test_an_update_with_the_right_checksum_keeps_the_book_valid(feed):
    kraken, reader = feed
    bids = [("354.15000000", "5.00000000")] + BIDS
    kraken.on_frame(update_frame("XMR/USD", "b", [bids[0]], checksum(ASKS, bids)), 2)
    book = reader.book("XMR-USD")
    assert book.valid and book.levels_text("bids")[0] == ["354.15", "5.00000000"]
    assert reader.counters("XMR-USD")["checksum_ok"] == 1


def test_a_bad_checksum_invalidates_that_book_only(feed):
    kraken, reader = feed
    cursor = reader.events()
    kraken.on_frame(update_frame("XMR/USD", "b", [("354.15000000", "5.00000000")], 12345), 2)
    assert not reader.book("XMR-USD").valid and reader.book("ETH-USD").valid
    assert reader.counters("XMR-USD")["checksum_fail"] == 1
    assert kraken.books_to_resync() == ["XMR/USD"]
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("BOOK_INVALID", "CHECKSUM")]
    kraken.on_frame(snapshot_frame("XMR/USD", ASKS, BIDS), 3)  # the resubscribe's snapshot
    assert reader.book("XMR-USD").valid and kraken.state(0) == SyncState.LIVE


def test_updates_are_truncated_to_the_subscribed_depth_before_the_checksum(feed):
    kraken, reader = feed
    asks = [(f"{354.2 + i / 100:.8f}", "1.00000000") for i in range(10)]
    kraken.on_frame(snapshot_frame("XMR/USD", asks, BIDS), 1)
    better = ("354.19000000", "9.00000000")
    kraken.on_frame(update_frame("XMR/USD", "a", [better], checksum([better] + asks[:9], BIDS)), 2)
    book = reader.book("XMR-USD")
    assert book.valid and book.n_asks == 10  # the 11th ask fell out of scope


@pytest.mark.parametrize("frame", [
    b'[1,{"b":[["1e5","1.0","1"]],"c":"1"},"book-10","XMR/USD"]',
    b'[1,{"b":[["354.1","1.0","1"]],"c":"not-a-number"},"book-10","XMR/USD"]',
    b'[1,{"b":[["354.1","1.0","1"]],"c":"1"},"book-10","DOGE/USD"]',
    b'[1,{"b":[["354.1","1.0"',
    b'[1,{"x":1},"book-10","XMR/USD"]',
], ids=["exponent", "bad-checksum-text", "unknown-pair", "truncated", "no-levels"])
def test_bad_frames_are_counted_and_no_book_changes(feed, frame):
    kraken, reader = feed
    before = reader.book("XMR-USD").levels_text("bids")
    kraken.on_frame(frame, 2)
    assert reader.counters()["decode_errors"] == 1
    assert reader.book("XMR-USD").valid and reader.book("XMR-USD").levels_text("bids") == before


def test_events_and_other_channels_are_not_errors(feed):
    kraken, reader = feed
    kraken.on_frame(b'{"event":"heartbeat"}', 2)
    kraken.on_frame(b'[2,[["354.1","0.5","1618678134.1","b","l",""]],"trade","XMR/USD"]', 2)
    assert reader.counters()["decode_errors"] == 0


def test_assetpairs_give_ws_names_normalized_assets_and_decimals():
    pairs = {"result": {"XXBTZUSD": {"wsname": "XBT/USD", "pair_decimals": 1, "lot_decimals": 8},
                        "XBTUSD.d": {"wsname": "XBT/USD", "pair_decimals": 1, "lot_decimals": 8},
                        "XDGUSD": {"wsname": "XDG/USD", "pair_decimals": 7, "lot_decimals": 8}}}
    assert [(i.venue_symbol, i.symbol, i.px_dec) for i in parse_instruments("kraken", pairs)] == [
        ("XBT/USD", "BTC-USD", 1), ("XDG/USD", "DOGE-USD", 7)]


# ---------------------------------------------------------------- the real recording

def reference_books(path):
    """Plain Decimal books with the original strings; every update's checksum recomputed from them."""
    books, verified = {}, 0
    for line in open(path):
        message = json.loads(line.partition(": ")[2]) if line[0].isdigit() else None
        if not isinstance(message, list) or not str(message[-2]).startswith("book-"):
            continue
        pair, depth = message[-1], int(message[-2][5:])
        objects = [part for part in message[1:-2] if isinstance(part, dict)]
        if "as" in objects[0] or "bs" in objects[0]:
            books[pair] = {"a": {Decimal(p): (p, q) for p, q, *_ in objects[0].get("as", [])},
                           "b": {Decimal(p): (p, q) for p, q, *_ in objects[0].get("bs", [])}}
            continue
        book = books[pair]
        for part in objects:
            for side in ("a", "b"):
                for p, q, *_ in part.get(side, []):
                    if Decimal(q) == 0:
                        book[side].pop(Decimal(p), None)
                    else:
                        book[side][Decimal(p)] = (p, q)
        for side, best_first in (("a", sorted(book["a"])), ("b", sorted(book["b"], reverse=True))):
            book[side] = {price: book[side][price] for price in best_first[:depth]}
        asks = [book["a"][p] for p in sorted(book["a"])]
        bids = [book["b"][p] for p in sorted(book["b"], reverse=True)]
        assert checksum(asks, bids) == int(objects[-1]["c"])
        verified += 1
    return books, verified


def test_real_recording_verifies_every_checksum_and_matches_the_reference(captures, tmp_path, shm_prefix):
    capture = tmp_path / "kraken.fhcap"
    import_recordings([str(captures / "kraken-v1-2021" / "KRAKEN")], str(capture))
    summary = replay([str(capture)], shm_prefix=shm_prefix, depth=1000)
    reference, verified = reference_books(captures / "kraken-v1-2021" / "KRAKEN.ws.50.0")
    assert verified == 4269
    assert sum(book["checksum_ok"] for book in summary["books"].values()) == 4269
    assert all(book["checksum_fail"] == 0 and book["valid"] and book["crossed"] == 0
               for book in summary["books"].values())
    assert summary["decode_errors"] == 0
    for pair, book in reference.items():
        got = summary["books"][f"kraken:{pair}"]
        assert [(Decimal(p), Decimal(q)) for p, q in got["bids"]] == \
            [(p, Decimal(book["b"][p][1])) for p in sorted(book["b"], reverse=True)]
        assert [(Decimal(p), Decimal(q)) for p, q in got["asks"]] == \
            [(p, Decimal(book["a"][p][1])) for p in sorted(book["a"])]


# ---------------------------------------------------------------- WebSocket v2

MATIC = Instrument("kraken", "MATIC/USD", "MATIC", "USD", 4, 8)


def v2(kind, symbol, bids, asks, checksum):
    return json.dumps({"channel": "book", "type": kind, "data": [{
        "symbol": symbol, "bids": [{"price": p, "qty": q} for p, q in bids],
        "asks": [{"price": p, "qty": q} for p, q in asks], "checksum": checksum,
        "timestamp": "2023-10-06T17:35:55.440295Z"}]}).encode()


@pytest.fixture
def matic(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "kraken", [MATIC.spec(64)], depth=10, ring_slots=1024)
    yield KrakenFeed([MATIC], writer, capacity=64), in_process_reader("kraken", shm_prefix)
    writer.close()


def test_v2_documented_matic_snapshot_and_update_verify(matic):
    from test_checksum import MATIC_ASKS, MATIC_BIDS
    kraken, reader = matic
    kraken.on_frame(b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
                    b'"symbol":"MATIC/USD"},"success":true}', 1)
    kraken.on_frame(v2("snapshot", "MATIC/USD", MATIC_BIDS, MATIC_ASKS, 2439117997), 1)
    kraken.on_frame(v2("update", "MATIC/USD", [(0.5657, 1098.3947558)], [], 2114181697), 2)
    book = reader.book("MATIC-USD")
    assert book.valid and reader.counters("MATIC-USD")["checksum_ok"] == 2
    assert book.levels_text("bids")[-1] == ["0.5657", "1098.39475580"]


def test_v2_snapshot_with_a_wrong_checksum_never_becomes_valid(matic):
    from test_checksum import MATIC_ASKS, MATIC_BIDS
    kraken, reader = matic
    kraken.on_frame(v2("snapshot", "MATIC/USD", MATIC_BIDS, MATIC_ASKS, 1), 1)
    assert not reader.book("MATIC-USD").valid
    assert reader.counters("MATIC-USD")["checksum_fail"] == 1


INSTRUMENT_SNAPSHOT = {"channel": "instrument", "type": "snapshot", "data": {
    "assets": [{"id": "BTC", "status": "enabled", "precision": 10, "precision_display": 5}],
    "pairs": [{"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "status": "online", "qty_precision": 8,
               "qty_increment": 1e-08, "price_precision": 1, "price_increment": 0.1, "cost_precision": 5},
              {"symbol": "XDG/EUR", "base": "XDG", "quote": "EUR", "status": "delisted", "qty_precision": 8,
               "price_precision": 7}]}}


def test_the_v2_instrument_channel_gives_symbols_and_the_checksum_precisions():
    assert [(i.venue_symbol, i.symbol, i.px_dec, i.qty_dec) for i in parse_instruments("kraken", INSTRUMENT_SNAPSHOT)] == [
        ("BTC/USD", "BTC-USD", 1, 8)]


def test_v2_recorded_sample_snapshot_verifies_through_the_decoder(captures, shm_prefix):
    payload = (captures / "kraken-v2-samples" / "ws_book_snapshot.json").read_bytes()  # as published, pretty-printed
    [btc] = parse_instruments("kraken", INSTRUMENT_SNAPSHOT)  # precisions as the instrument channel gives them
    with SegmentWriter.create(shm_prefix, "kraken", [btc.spec(64)], depth=10, ring_slots=64) as writer:
        KrakenFeed([btc], writer, capacity=64).on_frame(payload, 1)
        reader = in_process_reader("kraken", shm_prefix)
        assert reader.book("BTC-USD").valid
        assert reader.counters("BTC-USD")["checksum_ok"] == 1


# ---------------------------------------------------------------- trades

def test_v1_trades_are_published_with_the_takers_side_and_exchange_time(feed):
    kraken, reader = feed
    cursor = reader.events()
    kraken.on_frame(b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""],'
                    b'["354.55000000","1.25690315","1618678145.715785","b","m",""]],"trade","XMR/USD"]', 5)
    trades = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert [(t.price, t.qty, t.side, t.ts_exchange, t.trade_id) for t in trades] == [
        (35411, 89594024, Side.SELL, 1618678142557535000, 1), (35455, 125690315, Side.BUY, 1618678145715785000, 2)]
    assert reader.counters("XMR-USD")["trades"] == 2


def test_a_trade_with_an_unknown_side_letter_is_a_decode_error(feed):
    kraken, reader = feed
    kraken.on_frame(b'[993,[["354.11","0.5","1618678142.5","x","l",""]],"trade","XMR/USD"]', 5)
    assert reader.counters()["decode_errors"] == 1 and reader.counters("XMR-USD")["trades"] == 0


def test_real_recording_publishes_every_trade(captures, tmp_path, shm_prefix):
    recorded = 0
    for path in sorted((captures / "kraken-v1-2021").glob("KRAKEN.ws.*")):
        for line in open(path):
            message = json.loads(line.partition(": ")[2]) if line[0].isdigit() else None
            if isinstance(message, list) and message[-2] == "trade":
                recorded += len(message[1])
    capture = tmp_path / "kraken.fhcap"
    import_recordings([str(captures / "kraken-v1-2021" / "KRAKEN")], str(capture))
    pairs = ["ADA/XBT", "ETH/CHF", "GRT/ETH", "KSM/XBT", "OCEAN/XBT", "OMG/USD", "SC/EUR", "WAVES/EUR", "XBT/CHF",
             "XMR/USD"]
    instruments = [Instrument("kraken", p, p.split("/")[0], p.split("/")[1], 8, 8) for p in pairs]
    with SegmentWriter.create(shm_prefix, "kraken", [i.spec(2048) for i in instruments], 10, 1 << 12) as writer:
        kraken = KrakenFeed(instruments, writer)
        for frame in CaptureReader(capture).frames():
            if frame.kind == FrameKind.WS_RECV and b'"trade"' in frame.payload:
                kraken.on_frame(frame.payload, frame.ts_ns)
        assert recorded > 0 and int(writer.counters[:, Counter.TRADES].sum()) == recorded
        assert int(writer.counters[-1, Counter.DECODE_ERRORS]) == 0


def test_v2_trades_carry_the_takers_side_id_and_time(matic):
    kraken, reader = matic
    cursor = reader.events()
    trade = {"symbol": "MATIC/USD", "side": "buy", "price": 0.5147, "qty": 6423.46326, "ord_type": "limit",
             "trade_id": 4665846, "timestamp": "2023-09-25T07:48:36.925533Z"}
    kraken.on_frame(json.dumps({"channel": "trade", "type": "snapshot", "data": [trade]}).encode(), 1)  # history
    kraken.on_frame(json.dumps({"channel": "trade", "type": "update", "data": [trade]}).encode(), 2)
    (event,) = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert (event.trade_id, event.price, event.qty, event.side) == (4665846, 5147, 642346326000, Side.BUY)
    assert event.ts_exchange == 1695628116925533000
    assert reader.counters()["decode_errors"] == 0


def test_a_disconnect_invalidates_the_books_of_that_connection_only(shm_prefix):
    with SegmentWriter.create(shm_prefix, "kraken", [XMR.spec(64), ETH.spec(64)], depth=10, ring_slots=1024) as writer:
        kraken = KrakenFeed([XMR, ETH], writer, capacity=64)
        kraken.on_frame(snapshot_frame("XMR/USD", ASKS, BIDS), 1, conn=1)
        kraken.on_frame(snapshot_frame("ETH/USD", ASKS, BIDS), 1, conn=2)
        reader = in_process_reader("kraken", shm_prefix)
        cursor = reader.events()
        kraken.on_disconnect(1, 2)
        assert not reader.book("XMR-USD").valid and reader.book("ETH-USD").valid
        assert (kraken.state(0), kraken.state(1)) == (SyncState.CONNECTING, SyncState.LIVE)
        statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
        assert statuses == [("DISCONNECT", "DISCONNECTED"), ("BOOK_INVALID", "DISCONNECTED")]
        kraken.on_frame(snapshot_frame("XMR/USD", ASKS, BIDS), 3, conn=3)  # resubscribed on a new connection
        assert reader.book("XMR-USD").valid and kraken.state(0) == SyncState.LIVE


def test_resyncs_of_a_flapping_book_are_rate_limited(feed):
    kraken, reader = feed
    now = [100.0]
    kraken.clock = lambda: now[0]
    bad = update_frame("XMR/USD", "b", [("354.15000000", "5.00000000")], 12345)
    kraken.on_frame(bad, 2)
    assert kraken.books_to_resync() == ["XMR/USD"] and kraken.state(0) == SyncState.SNAPSHOT
    kraken.on_frame(snapshot_frame("XMR/USD", ASKS, BIDS), 3)
    kraken.on_frame(bad, 4)
    assert kraken.state(0) == SyncState.RESYNC
    now[0] = 100.2
    assert kraken.books_to_resync() == []  # the second resync waits out its backoff
    now[0] = 101.1
    assert kraken.books_to_resync() == ["XMR/USD"]
