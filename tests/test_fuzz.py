"""Hostile bytes from the network never crash a feed and never leave a crossed book published valid.

Real frames are mutated (cut, bytes flipped, bytes inserted, duplicated) and fed to each venue's
feed; numba decoders read no byte outside the frame, so a bug here would be a segfault."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedhandler.venues.binance import BinanceFeed
from feedhandler.venues.bybit import BybitFeed
from feedhandler.venues.coinbase import CoinbaseFeed
from feedhandler.venues.kraken import KrakenFeed
from feedhandler.instruments import Instrument
from readers import in_process_reader
from shm.segment import SegmentWriter

FRAMES = {
    "binance": [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"BTCUSDT","U":101,'
        b'"u":102,"b":[["99.50000000","1.00000000"],["99.40000000","0.00000000"]],"a":[["100.50000000","2.0"]]}}',
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":12345,"p":"99.9","q":"1","T":1,'
        b'"m":true,"M":true}}',
    ],
    "kraken": [
        b'[992,{"b":[["99.50000000","5.00000000","1618678133.365913"]],"c":"2583817756"},"book-10","BTC/USD"]',
        b'[992,{"a":[["100.50000000","1.0","1.1"]]},{"b":[["99.1","1.0","1.1","r"]],"c":"1"},"book-10","BTC/USD"]',
        b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","BTC/USD"]',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":99.5,"qty":1.5}],'
        b'"asks":[],"checksum":1,"timestamp":"2023-10-06T17:35:55.440295Z"}]}',
    ],
    "coinbase": [
        b'{"channel":"l2_data","timestamp":"x","sequence_num":2,"events":[{"type":"update","product_id":"BTC-USD",'
        b'"updates":[{"side":"bid","event_time":"t","price_level":"99.50","new_quantity":"0.5"},'
        b'{"side":"offer","event_time":"t","price_level":"100.50","new_quantity":"0"}]}]}',
        b'{"type":"l2update","product_id":"BTC-USD","changes":[["sell","100.50","1.5"],["buy","99","0"]],'
        b'"time":"2021-04-17T16:43:37.075687Z"}',
        b'{"type":"match","trade_id":1,"side":"sell","size":"0.5","price":"100.00","product_id":"BTC-USD",'
        b'"time":"2021-04-17T16:43:37.089723Z"}',
    ],
    "bybit": [
        b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1709891679500,"data":{"s":"BTCUSDT",'
        b'"b":[["99.50","1.5"],["99.00","0"]],"a":[["100.50","2.0"]],"u":101,"seq":987654322},"cts":1709891679496}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["99.1","1"]],'
        b'"a":[["100.1","1"]],"u":1,"seq":2}}',
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
        b'"s":"BTCUSDT","S":"Buy","v":"0.001","p":"100.50","L":"PlusTick","i":"20f43950-d8dd","BT":false}]}',
    ],
}
SYMBOL = {"binance": "BTCUSDT", "kraken": "BTC/USD", "coinbase": "BTC-USD", "bybit": "BTCUSDT"}
FEEDS = {"binance": BinanceFeed, "kraken": KrakenFeed, "coinbase": CoinbaseFeed, "bybit": BybitFeed}


def mutate(frame: bytes, cuts: list[int], flips: list[tuple[int, int]], inserts: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(frame)
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    for position, chunk in inserts:
        at = position % (len(data) + 1)
        data[at:at] = chunk
    for cut in cuts:
        data = data[:cut % (len(data) + 1)]
    return bytes(data)


def live_feed(venue: str, prefix: str):
    instrument = Instrument(venue, SYMBOL[venue], "BTC", "USD", 8, 8)
    writer = SegmentWriter.create(prefix, venue, [instrument.spec(256)], depth=5, ring_slots=256)
    feed = FEEDS[venue]([instrument], writer, 256)
    bids, asks = [["99.00000000", "1.00000000"]], [["101.00000000", "1.00000000"]]
    if venue == "binance":
        feed.on_frame(FRAMES["binance"][0].replace(b'"U":101,"u":102', b'"U":100,"u":100'), 0)
        feed.on_snapshot("BTCUSDT", json.dumps({"lastUpdateId": 100, "bids": bids, "asks": asks}).encode(), 0)
    elif venue == "kraken":
        feed.on_frame(json.dumps([1, {"as": [a + ["1.0"] for a in asks], "bs": [b + ["1.0"] for b in bids]},
                                  "book-10", "BTC/USD"]).encode(), 0)
    elif venue == "bybit":
        feed.on_frame(json.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "data": {
            "s": "BTCUSDT", "b": bids, "a": asks, "u": 100}}).encode(), 0)
    else:
        feed.on_frame(json.dumps({"channel": "l2_data", "sequence_num": 1, "events": [{
            "type": "snapshot", "product_id": "BTC-USD", "updates": [
                {"side": "bid", "price_level": bids[0][0], "new_quantity": bids[0][1]},
                {"side": "offer", "price_level": asks[0][0], "new_quantity": asks[0][1]}]}]}).encode(), 0)
    return feed, writer


mutations = st.tuples(
    st.sampled_from(range(3)),
    st.lists(st.integers(0, 400), max_size=1),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from([b'"', b"[", b"]", b"{", b"}", b",", b":", b"\\", b"e",
                                                              b"-", b".", b"9" * 30, b"\x00", b" "])), max_size=3),
)


@pytest.mark.parametrize("venue", list(FEEDS))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(mutations, min_size=1, max_size=8))
def test_mutated_frames_never_crash_and_never_publish_a_crossed_book(venue, batch, shm_prefix):
    feed, writer = live_feed(venue, shm_prefix)
    try:
        for choice, cuts, flips, inserts in batch:
            frames = FRAMES[venue]
            feed.on_frame(mutate(frames[choice % len(frames)], cuts, flips, inserts), 1, 0)
        with in_process_reader(venue, shm_prefix) as reader:
            book = reader.book(0)
            if book.valid and len(book.bids) and len(book.asks):
                assert book.bids[0, 0] < book.asks[0, 0]
            assert all(np.diff(book.bids[:, 0]) < 0) and all(np.diff(book.asks[:, 0]) > 0)
            assert (book.bids[:, 1] > 0).all() and (book.asks[:, 1] > 0).all()
    finally:
        writer.close(unlink=True)
