"""Binance spot: decoder and book sync on crafted frames, and replay of the real recording."""
import json
from decimal import Decimal

import pytest

from feedhandler.capture import CaptureReader
from feedhandler.venues.binance import BinanceFeed
from feedhandler.sync import SyncState
from feedhandler.venues.binance.protocol import parse_instruments
from feedhandler.instruments import Instrument
from readers import in_process_reader
from shm.reader import StatusEvent
from shm.segment import SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.replay import replay

BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", 8, 8)


def depth(first, last, bids=(), asks=(), symbol="BTCUSDT"):
    data = {"e": "depthUpdate", "E": 1700000000000, "s": symbol, "U": first, "u": last,
            "b": [list(level) for level in bids], "a": [list(level) for level in asks]}
    return json.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).encode()


def snapshot(last_id, bids, asks):
    return json.dumps({"lastUpdateId": last_id, "bids": [list(b) for b in bids],
                       "asks": [list(a) for a in asks]}).encode()


@pytest.fixture
def feed(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance", [BTC.spec(1024)], depth=5, ring_slots=1024)
    yield BinanceFeed([BTC], writer, capacity=1024), in_process_reader("binance", shm_prefix)
    writer.close()


def bridged(feed):
    feed.on_frame(depth(100, 101, bids=[("99.5", "1")]), 1)
    feed.on_snapshot("BTCUSDT", snapshot(100, [("99", "2")], [("101", "3")]), 2)


def test_a_book_stays_invalid_until_a_snapshot_bridges_the_buffered_diffs(feed):
    binance, reader = feed
    binance.on_frame(depth(100, 101, bids=[("99.5", "1")]), 1)
    assert not reader.book("BTCUSDT").valid
    assert binance.books_to_resync() == ["BTCUSDT"]
    binance.on_snapshot("BTCUSDT", snapshot(100, [("99", "2")], [("101", "3")]), 2)
    book = reader.book("BTCUSDT")
    assert book.valid and book.update_id == 101
    assert book.levels_text("bids") == [["99.50000000", "1.00000000"], ["99.00000000", "2.00000000"]]


def test_diffs_already_in_the_snapshot_are_dropped(feed):
    binance, reader = feed
    binance.on_frame(depth(90, 95, bids=[("50", "1")]), 1)
    binance.on_frame(depth(96, 101, bids=[("99.5", "1")]), 1)
    binance.on_snapshot("BTCUSDT", snapshot(97, [("99", "2")], [("101", "3")]), 2)
    assert [p for p, _ in reader.book("BTCUSDT").levels_text("bids")] == ["99.50000000", "99.00000000"]


def test_a_snapshot_older_than_the_buffer_is_refused_and_asked_again(feed):
    binance, reader = feed
    binance.on_frame(depth(100, 101), 1)
    binance.on_snapshot("BTCUSDT", snapshot(98, [("99", "2")], [("101", "3")]), 2)
    assert not reader.book("BTCUSDT").valid
    assert binance.stale_snapshots == 1
    assert binance.books_to_resync() == ["BTCUSDT"]


def test_a_gap_invalidates_the_book_tells_consumers_and_resyncs(feed):
    binance, reader = feed
    bridged(binance)
    cursor = reader.events()
    binance.on_frame(depth(105, 106, bids=[("99.7", "1")]), 3)
    assert not reader.book("BTCUSDT").valid
    assert binance.state(0) == SyncState.BUFFERING
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("GAP", "SEQUENCE_GAP"), ("BOOK_INVALID", "SEQUENCE_GAP")]
    assert reader.counters("BTCUSDT")["gaps"] == 1 and reader.counters("BTCUSDT")["resyncs"] == 1
    binance.on_snapshot("BTCUSDT", snapshot(105, [("99", "2")], [("101", "3")]), 4)
    assert reader.book("BTCUSDT").valid and reader.book("BTCUSDT").update_id == 106


def test_a_crossed_book_is_never_published_as_valid(feed):
    binance, reader = feed
    bridged(binance)
    binance.on_frame(depth(102, 102, bids=[("102", "1")]), 3)
    assert not reader.book("BTCUSDT").valid
    assert reader.counters("BTCUSDT")["crossed"] == 1


@pytest.mark.parametrize("frame", [
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[["1e5","1"]],"a":[]}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[["NaN","1"]],"a":[]}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[["-5","1"]],"a":[]}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[[1,"1"]],"a":[]}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[["99999999999999999999","1"]],"a":[]}}',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":102,"u":102,"b":[["99.1","1"]',
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"DOGEUSDT","U":102,"u":102,"b":[],"a":[]}}',
    b"\x00\xff\x10 binary garbage",
    b"",
], ids=["exponent", "nan", "negative", "number-not-string", "overflow", "truncated", "unknown-symbol", "binary",
        "empty"])
def test_bad_frames_are_counted_and_leave_the_book_untouched(feed, frame):
    binance, reader = feed
    bridged(binance)
    before = reader.book("BTCUSDT")
    binance.on_frame(frame, 3)
    after = reader.book("BTCUSDT")
    assert reader.counters()["decode_errors"] == 1
    assert after.valid and after.update_id == before.update_id
    assert after.levels_text("bids") == before.levels_text("bids")


def test_instruments_use_the_printed_precision_and_normalized_assets():
    info = {"symbols": [{"symbol": "XBTUSDT", "baseAsset": "XBT", "quoteAsset": "USDT", "baseAssetPrecision": 8,
                         "quotePrecision": 8, "quoteAssetPrecision": 8, "filters": []}]}
    (instrument,) = parse_instruments("binance", info)
    assert (instrument.symbol, instrument.px_dec, instrument.qty_dec) == ("BTC-USDT", 8, 8)


@pytest.mark.parametrize("tick, units", [
    ("0.00010000", 10_000),  # NKNUSDT's: the ladder steps by 10,000 units of 1e-8
    ("0.00000001", 1),
    ("0.000000001", 1),  # finer than the printed decimals: one unit (never so on Binance)
    ("0.00000000", 1), ("-0.01", 1), ("NaN", 1), ("abc", 1), (None, 1),  # malformed: one unit, no error
    ("1e30", 1),  # a step no book could span: one unit
])
def test_the_ladder_steps_by_the_price_filters_tick_and_by_one_unit_where_it_cannot(tick, units):
    filters = [{"filterType": "PRICE_FILTER", "tickSize": tick}] if tick is not None else []
    info = {"symbols": [{"symbol": "NKNUSDT", "baseAsset": "NKN", "quoteAsset": "USDT", "baseAssetPrecision": 8,
                         "quoteAssetPrecision": 8, "filters": filters}]}
    (instrument,) = parse_instruments("binance", info)
    assert instrument.tick_units == units


# ---------------------------------------------------------------- the real recording

def reference_books(folder):
    """Deliberately plain: Decimal dicts, the snapshot, then every diff with u > lastUpdateId in order."""
    snapshots = {}
    for line in open(folder / "BINANCE.http.0.0"):
        if not line.strip():
            continue
        url, _, rest = line.partition(" -> ")
        symbol = url.split("symbol=")[1].split("&")[0]
        body = json.loads(rest.partition(": ")[2])
        snapshots[symbol] = (body["lastUpdateId"], {Decimal(p): Decimal(q) for p, q in body["bids"]},
                             {Decimal(p): Decimal(q) for p, q in body["asks"]})
    last = {symbol: snap[0] for symbol, snap in snapshots.items()}
    for line in open(folder / "BINANCE.ws.1.0"):
        if '"depthUpdate"' not in line:
            continue
        event = json.loads(line.partition(": ")[2])["data"]
        symbol = event["s"]
        if event["u"] <= last[symbol]:
            continue
        assert event["U"] <= last[symbol] + 1, f"{symbol}: the recording has a gap"
        for side, key in ((1, "b"), (2, "a")):
            for price, qty in event[key]:
                if Decimal(qty) == 0:
                    snapshots[symbol][side].pop(Decimal(price), None)
                else:
                    snapshots[symbol][side][Decimal(price)] = Decimal(qty)
        last[symbol] = event["u"]
    return {symbol: (last[symbol], sorted(snap[1].items(), reverse=True), sorted(snap[2].items()))
            for symbol, snap in snapshots.items()}


@pytest.fixture
def binance_capture(captures, tmp_path):
    path = tmp_path / "binance.fhcap"
    import_recordings([str(captures / "binance-spot-2021" / "BINANCE")], str(path))
    return path


def test_real_recording_bridges_all_four_books_with_no_gap_and_matches_the_reference(
        captures, binance_capture, shm_prefix):
    summary = replay([str(binance_capture)], shm_prefix=shm_prefix, depth=1000)
    reference = reference_books(captures / "binance-spot-2021")
    assert summary["decode_errors"] == 0
    assert sorted(summary["books"]) == [f"binance:{s}" for s in sorted(reference)]
    for symbol, (update_id, bids, asks) in reference.items():
        book = summary["books"][f"binance:{symbol}"]
        assert book["valid"] and book["gaps"] == 0 and book["resyncs"] == 0 and book["crossed"] == 0
        assert book["update_id"] == update_id
        assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == bids[:1000]
        assert [(Decimal(p), Decimal(q)) for p, q in book["asks"]] == asks[:1000]


def test_two_replays_give_identical_books(binance_capture, shm_prefix):
    first = replay([str(binance_capture)], shm_prefix=shm_prefix)
    second = replay([str(binance_capture)], shm_prefix=shm_prefix)
    assert first["books"] == second["books"] and first["frames"] == second["frames"]


def test_replay_writes_the_summary_contract(binance_capture, shm_prefix, tmp_path):
    out = tmp_path / "summary.json"
    replay([str(binance_capture)], shm_prefix=shm_prefix, summary_json=str(out))
    summary = json.loads(out.read_text())
    assert set(summary) == {"books", "frames", "decode_errors", "elapsed_s", "msgs_per_s"}
    book = summary["books"]["binance:NKNUSDT"]
    assert set(book) == {"symbol", "valid", "bids", "asks", "update_id", "gaps", "resyncs", "checksum_ok",
                         "checksum_fail", "crossed"}
    assert book["symbol"] == "NKN-USDT" and len(book["bids"]) == 10
    assert CaptureReader(binance_capture).header["venue"] == "binance"


def test_a_book_goes_connecting_buffering_snapshot_live(feed):
    binance, reader = feed
    assert binance.state(0) == SyncState.CONNECTING
    binance.on_frame(depth(100, 101, bids=[("99.5", "1")]), 1)
    assert binance.state(0) == SyncState.BUFFERING
    assert binance.books_to_resync(now=0.0) == ["BTCUSDT"] and binance.state(0) == SyncState.SNAPSHOT
    assert binance.books_to_resync(now=0.1) == []  # asked already
    binance.on_snapshot("BTCUSDT", snapshot(100, [("99", "2")], [("101", "3")]), 2)
    assert binance.state(0) == SyncState.LIVE and reader.book("BTCUSDT").valid
